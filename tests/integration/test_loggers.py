"""Loggers: each writes what it should, secrets stay out, a resumed run continues the wandb run."""

from __future__ import annotations

import csv

import pytest

from tests.integration.test_train import mini_commands  # noqa: F401  (session fixture)
from tests.integration.tiny_kws import finish, train_process


@pytest.mark.slow
@pytest.mark.usefixtures("mini_commands")
def test_every_logger_writes_what_it_should_and_a_resume_continues_the_wandb_run(
    data_dir, tmp_path
):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

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

    csv_rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    assert any(row.get("val/acc") for row in csv_rows)

    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    assert {"val/acc", "train/loss"} <= set(events.Tags()["scalars"])
    assert any("confusion_matrix" in tag for tag in events.Tags()["images"])

    client = MlflowClient(tracking_uri=f"sqlite:///{log_dir}/mlflow.db")
    (mlflow_run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert {"val/acc", "test/acc"} <= set(mlflow_run.data.metrics)
    artifacts = [a.path for a in client.list_artifacts(mlflow_run.info.run_id)]
    assert "test_confusion_matrix.png" in artifacts

    run_id = (run_dir / ".run_id").read_text().strip()
    (first,) = (run_dir / "wandb").glob("offline-run-*")
    assert first.name.endswith(run_id)
    assert b"val/acc" in (first / f"run-{run_id}.wandb").read_bytes()
    assert list((first / "files" / "media" / "images").rglob("*.png"))

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
