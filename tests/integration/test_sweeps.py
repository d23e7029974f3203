"""What a user runs to sweep: grid and Optuna multiruns, the launchers, summaries, relaunches."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REPO
from tests.integration.test_train import KWS, mini_commands, run_cli  # noqa: F401  (fixture)

# Every test here trains on the embedded corpus, generated once per session.
pytestmark = pytest.mark.usefixtures("mini_commands")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def tiny(data_dir: Path, tmp_path: Path, epochs: int = 1) -> list[str]:
    """Overrides for a few-second keyword-spotting job on the embedded corpus."""
    return [
        *KWS,
        f"paths.data_dir={data_dir}",
        f"paths.log_dir={tmp_path / 'logs'}",
        "debug=limit",
        f"trainer.max_epochs={epochs}",
        "callbacks.progress_bar=null",
    ]


def summary_rows(sweep: Path) -> list[dict[str, str]]:
    assert (sweep / "summary.png").read_bytes()[:8] == PNG_MAGIC
    assert (sweep / "summary.png").stat().st_size > 5000
    return list(csv.DictReader((sweep / "summary.csv").open()))


def record(job_dir: Path) -> dict:
    return json.loads((job_dir / "run.json").read_text())


def test_grid_summary_lists_each_job_and_a_joblib_relaunch_skips_the_finished_ones(
    data_dir, tmp_path
):
    sweep = tmp_path / "sweep"
    command = ["-m", *tiny(data_dir, tmp_path), "model.optimizer.lr=1e-3,3e-3,-1"]
    first = run_cli("train.py", *command, f"hydra.sweep.dir={sweep}", expect_ok=False)
    assert first.returncode != 0, "a failed job must fail the multirun"

    rows = summary_rows(sweep)  # written although the sweep ended in an error
    assert [(r["job"], r["status"], r["overrides"]) for r in rows] == [
        ("0", "finished", "model.optimizer.lr=0.001"),
        ("1", "finished", "model.optimizer.lr=0.003"),
        ("2", "failed", "model.optimizer.lr=-1"),
    ]
    for row in rows[:2]:
        job = record(sweep / row["job"])
        assert float(row["best"]) == job["best"] == job["metrics"]["val/acc_best"]
        assert 0.0 <= float(row["best"]) <= 1.0 and row["monitor"] == "val/acc"
        assert row["epochs"] == "1" and float(row["wall_s"]) > 0
    assert rows[2]["best"] == "" and "Invalid learning rate: -1" in rows[2]["error"]
    markdown = (sweep / "summary.md").read_text()
    assert "3 jobs: 2 finished, 1 failed, 0 unfinished" in markdown
    assert "`model.optimizer.lr=0.001`" in markdown and "`model.optimizer.lr=0.003`" in markdown

    checkpoints = sorted(sweep.glob("*/checkpoints/*.ckpt"))
    stamps = [p.stat().st_mtime_ns for p in checkpoints]
    relaunched = run_cli(
        "train.py", *command, "launcher=joblib", f"hydra.sweep.dir={sweep}", expect_ok=False
    )
    assert "Joblib" in relaunched.stdout + relaunched.stderr
    assert relaunched.returncode != 0, "the failed job runs again, and fails again"
    for job in ("0", "1"):
        job_log = (sweep / job / "debug.log").read_text()  # debug presets: task_name=debug
        assert f"job already finished in {sweep / job} (run.json)" in job_log
        assert len(record(sweep / job)["attempts"]) == 1
    assert [p.stat().st_mtime_ns for p in checkpoints] == stamps
    assert len(record(sweep / "2")["attempts"]) == 2
    assert [r["status"] for r in summary_rows(sweep)] == ["finished", "finished", "failed"]


def test_optuna_sweep_optimises_the_returned_best_metric(data_dir, tmp_path):
    sweep = tmp_path / "optuna"
    run_cli(
        "train.py",
        "-m",
        "hparams_search=kws_optuna",
        *tiny(data_dir, tmp_path),
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={sweep}",
    )
    rows = summary_rows(sweep)
    assert [r["status"] for r in rows] == ["finished", "finished"]
    lrs = [float(o.split("=")[1]) for r in rows for o in r["overrides"].split() if "lr=" in o]
    assert len(lrs) == 2 and lrs[0] != lrs[1] and all(3e-4 <= lr <= 3e-2 for lr in lrs)
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    # The study saw each trial's best val/acc and maximised it (the task's monitor_mode).
    assert result["best_value"] == pytest.approx(max(float(r["best"]) for r in rows))
    assert result["best_params"]["model.optimizer.lr"] in lrs


def test_a_submitit_relaunch_resumes_a_killed_job_from_its_last_checkpoint(data_dir, tmp_path):
    sweep = tmp_path / "sweep"
    command = [sys.executable, "train.py", "-m", *tiny(data_dir, tmp_path, epochs=4)]
    command.append(f"hydra.sweep.dir={sweep}")
    last = sweep / "0" / "checkpoints" / "last.ckpt"
    with (tmp_path / "first.log").open("w") as out:
        first = subprocess.Popen(command, cwd=REPO, stdout=out, stderr=out, start_new_session=True)
        deadline = time.monotonic() + 120
        while not last.exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # as a preemption or the OOM killer would
        first.wait()
    assert last.exists(), (tmp_path / "first.log").read_text()[-3000:]
    killed = record(sweep / "0")
    assert killed["status"] == "running", "the job must be killed before it finished"
    done_epochs = torch.load(last, map_location="cpu", weights_only=True)["epoch"] + 1
    assert done_epochs < 4

    # Relaunched through submitit, on this machine, as a SLURM requeue would.
    command.append("launcher=submitit_local")
    relaunched = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert relaunched.returncode == 0, (relaunched.stdout + relaunched.stderr)[-5000:]
    assert list((sweep / ".submitit").glob("*/*_result.pkl")), "submitit ran the job"
    assert f"resuming unfinished job from {last}" in (sweep / "0" / "debug.log").read_text()
    job = record(sweep / "0")
    assert job["status"] == "finished" and len(job["attempts"]) == 2
    # Epochs before the kill come from the first attempt, the rest from the relaunch: none twice.
    assert [(p["epoch"], p["attempt"]) for p in job["curve"]] == [
        (epoch, 0 if epoch < done_epochs else 1) for epoch in range(4)
    ]
    elapsed = [p["elapsed_s"] for p in job["curve"]]  # the learning curve's time axis, resumed
    assert elapsed == sorted(elapsed) and 0 < elapsed[-1] <= job["wall_s"]
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 3
    (row,) = summary_rows(sweep)
    assert row["status"] == "finished" and row["epochs"] == "4"
    assert float(row["wall_s"]) == pytest.approx(job["wall_s"])
