"""Two processes of DDP on CPU: they train, validate and test together, and rank 0 alone writes."""

from __future__ import annotations

import csv
import json
import re

import pytest

from tests.conftest import REPO
from tests.integration.test_train import mini_commands  # noqa: F401  (session fixture)
from tests.integration.tiny_kws import finish, train_process


@pytest.mark.slow
@pytest.mark.usefixtures("mini_commands")
def test_two_process_ddp_on_cpu_trains_validates_tests_and_rank0_alone_writes(data_dir, tmp_path):
    run_dir = tmp_path / "ddp"
    process = train_process(run_dir, data_dir, "trainer=ddp_cpu", "trainer.limit_test_batches=null")
    output = finish(process)
    assert "Starting with 2 processes" in output or "MEMBER: 2/2" in output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val/acc", "test/acc"} <= set(metrics)
    # Predictions come from both ranks: every test utterance once.
    log_text = (run_dir / "train.log").read_text()
    assert log_text.count("train: ") == 1, "only rank 0 writes the run log"
    test_size = int(re.search(r"test: (\d+) utterances", log_text).group(1))
    ids = [row[0] for row in csv.reader((run_dir / "predictions.tsv").open(), delimiter="\t")]
    assert len(ids[1:]) == len(set(ids[1:])) == test_size
    # One run dir, one set of checkpoints, one CSV log.
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert len(names) == 2 and names[0].startswith("epoch_") and names[1] == "last.ckpt"
    assert [p.name for p in (run_dir / "csv").iterdir() if p.suffix == ".csv"] == ["metrics.csv"]
    assert not (REPO / "outputs").exists() and not (tmp_path / "outputs").exists()


@pytest.mark.slow
@pytest.mark.usefixtures("mini_commands")
def test_a_grid_of_ddp_jobs_is_one_sweep_in_one_folder(data_dir, tmp_path):
    """Each job's DDP child runs that job: before, every child relaunched the whole sweep into
    a second sweep folder, and the second job of the process waited on the first's ranks."""
    import subprocess
    import sys

    for name in ("train.py", "conf"):
        (tmp_path / name).symlink_to(REPO / name)
    command = [
        sys.executable,
        "train.py",
        "-m",
        "trainer=ddp_cpu",
        "model=kws_cnn",
        "data=mini_commands",
        "seed=1,2",
        f"paths.data_dir={data_dir}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "callbacks.progress_bar=null",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (result.stdout + result.stderr).count("Launching 2 jobs") == 1
    (sweep,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    with (sweep / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [row["status"] for row in rows] == ["finished", "finished"]
    for job in ("0", "1"):
        assert "test/acc" in json.loads((sweep / job / "metrics.json").read_text())
