"""The sweep summary of a multirun dir: one row per job, whatever state each job is in."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from speechlab.run.sweep_summary import main

COMMON = ["model=kws_cnn", "trainer.max_epochs=3"]


def make_job(sweep: Path, job: str, lr: str, record: dict | None) -> None:
    hydra_dir = sweep / job / ".hydra"
    hydra_dir.mkdir(parents=True)
    (hydra_dir / "overrides.yaml").write_text(
        "".join(f"- {o}\n" for o in [*COMMON, f"model.optimizer.lr={lr}"])
    )
    if record is not None:
        (sweep / job / "run.json").write_text(json.dumps(record))


def curve(*values: float) -> list[dict]:
    return [{"epoch": i, "step": 10 * (i + 1), "value": v} for i, v in enumerate(values)]


def test_summary_lists_finished_failed_and_unfinished_jobs(tmp_path, capsys):
    sweep = tmp_path / "2026-01-01_00-00-00"
    base = {"monitor": "val/acc", "mode": "max"}
    make_job(
        sweep,
        "0",
        "0.001",
        {
            **base,
            "status": "finished",
            "best": 0.5,
            "epochs": 3,
            "wall_s": 12.5,
            "curve": curve(0.2, 0.5, 0.4),
        },
    )
    make_job(
        sweep,
        "1",
        "0.003",
        {
            **base,
            "status": "finished",
            "best": 0.7,
            "epochs": 3,
            "wall_s": 11.0,
            "curve": curve(0.3, 0.6, 0.7),
        },
    )
    make_job(
        sweep,
        "2",
        "-1",
        {**base, "status": "failed", "error": "ValueError: bad lr", "wall_s": 1.0, "curve": []},
    )
    make_job(
        sweep,
        "3",
        "0.01",
        {**base, "status": "running", "best": 0.1, "epochs": 1, "wall_s": 5.0, "curve": curve(0.1)},
    )
    make_job(sweep, "10", "0.03", None)  # the run never started its record
    (sweep / "multirun.yaml").write_text("{}\n")

    assert main([str(sweep)]) == 0
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert [(r["job"], r["status"], r["overrides"]) for r in rows] == [
        ("0", "finished", "model.optimizer.lr=0.001"),
        ("1", "finished", "model.optimizer.lr=0.003"),
        ("2", "failed", "model.optimizer.lr=-1"),
        ("3", "unfinished", "model.optimizer.lr=0.01"),
        ("10", "failed", "model.optimizer.lr=0.03"),
    ]
    assert [r["best"] for r in rows] == ["0.5", "0.7", "", "0.1", ""]
    assert rows[2]["error"] == "ValueError: bad lr" and "no run record" in rows[4]["error"]
    assert rows[0]["all_overrides"] == "model=kws_cnn trainer.max_epochs=3 model.optimizer.lr=0.001"
    markdown = (sweep / "summary.md").read_text()
    assert "5 jobs: 2 finished, 2 failed, 1 unfinished" in markdown
    assert "Best: job 1 (`model.optimizer.lr=0.003`), val/acc = 0.7" in markdown
    assert "| **1** | finished |" in markdown
    assert "Every job: `model=kws_cnn trainer.max_epochs=3`" in markdown
    assert (sweep / "summary.png").read_bytes()[:4] == b"\x89PNG"
    assert "Best: job 1" in capsys.readouterr().out


def test_minimised_metric_picks_the_lowest_job(tmp_path):
    base = {"monitor": "val/cer", "mode": "min", "status": "finished", "epochs": 2}
    make_job(tmp_path, "0", "0.001", {**base, "best": 0.3, "curve": curve(0.5, 0.3)})
    make_job(tmp_path, "1", "0.003", {**base, "best": 0.2, "curve": curve(0.4, 0.2)})
    assert main([str(tmp_path)]) == 0
    assert "Best: job 1" in (tmp_path / "summary.md").read_text()


def test_a_dir_without_jobs_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path)]) == 1
    assert "holds no job dirs" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 1
    assert main([]) == 2
