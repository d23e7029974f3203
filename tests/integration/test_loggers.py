"""Loggers across a resume: the wandb run and the CSV log continue, and secrets stay out."""

from __future__ import annotations

import csv

import pytest

from tests.integration.test_dashboards import wandb_log
from tests.integration.test_train import mini_commands  # noqa: F401  (session fixture)
from tests.integration.tiny_kws import finish, train_process


@pytest.mark.slow
@pytest.mark.usefixtures("mini_commands")
def test_a_resume_continues_the_wandb_run_and_the_csv_log_and_writes_no_secret(data_dir, tmp_path):
    secret = "sk-test-secret-8e1f0c"
    run_dir, log_dir = tmp_path / "run", tmp_path / "logs"
    overrides = [
        "logger=many",
        "logger.wandb.offline=true",
        f"paths.log_dir={log_dir}",
        "trainer.max_epochs=1",
    ]
    env = {"WANDB_API_KEY": secret}
    finish(train_process(run_dir, data_dir, *overrides, env=env))

    # What each logger shows is checked per task in test_dashboards.py; here: the run continues.
    csv_rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    assert any(row.get("val/acc") for row in csv_rows)

    run_id = (run_dir / ".run_id").read_text().strip()
    (first,) = (run_dir / "wandb").glob("offline-run-*")
    assert first.name.endswith(run_id)
    _, history = wandb_log(run_dir)
    assert any("kws/val/acc" in row for row in history)

    # Resumed for a second epoch: the same wandb run id, the CSV log continued.
    finish(train_process(run_dir, data_dir, *overrides[:-1], "ckpt_path=last", env=env))
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(run.name.endswith(run_id) for run in runs)
    steps = [int(row["step"]) for row in csv.DictReader((run_dir / "csv" / "metrics.csv").open())]
    assert max(steps) >= 24 and min(steps) < 24

    # The API key in the environment is written nowhere.
    for path in [*run_dir.rglob("*"), *log_dir.rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"{path} holds the secret"
