"""Operating runs: exact resume after SIGKILL, DDP on CPU, bf16 on CPU, loggers, secrets, EMA."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from speechlab.run.train import run as train
from tests.conftest import REPO, composed
from tests.integration.test_train import KWS, mini_commands  # noqa: F401  (session fixture)

# A tiny KWS recipe: 2 epochs of 24 batches, checkpoints every 4 steps.
TINY = [
    *KWS,
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "+trainer.limit_train_batches=24",
    "+trainer.limit_val_batches=4",
    "+trainer.limit_test_batches=4",
    "trainer.log_every_n_steps=1",
    "callbacks.progress_bar=null",
    "callbacks.last_checkpoint.every_n_train_steps=4",
]


def train_process(
    run_dir: Path, data_dir: Path, *overrides: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [
            sys.executable,
            "train.py",
            *TINY,
            f"paths.data_dir={data_dir}",
            f"hydra.run.dir={run_dir}",
            *overrides,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-5000:]
    return output


def checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True, map_location="cpu")["global_step"])
    except Exception:  # being replaced right now
        return -1


def kill_when_saved(process: subprocess.Popen, last: Path, after_step: int) -> int:
    """SIGKILL ``process`` once its ``last.ckpt`` is past ``after_step``; the saved step."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if last.is_file() and (step := checkpoint_step(last)) > after_step:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            return step
        time.sleep(0.05)
    raise AssertionError(f"the run ended or stalled before a checkpoint past step {after_step}")


def logged_losses(run_dir: Path) -> dict[int, str]:
    rows = csv.DictReader((run_dir / "csv" / "metrics.csv").open())
    return {int(row["step"]): row["train/loss"] for row in rows if row.get("train/loss")}


@pytest.mark.slow
@pytest.mark.usefixtures("mini_commands")
def test_sigkill_mid_epoch_then_resume_ends_where_an_uninterrupted_run_ends(data_dir, tmp_path):
    # The reference runs as the killed run does (its own process, one thread): float results
    # depend on the thread count.
    reference_dir = tmp_path / "reference"
    finish(train_process(reference_dir, data_dir))
    reference = json.loads((reference_dir / "metrics.json").read_text())

    run_dir = tmp_path / "killed"
    killed_at = kill_when_saved(
        train_process(run_dir, data_dir), run_dir / "checkpoints" / "last.ckpt", after_step=26
    )
    assert 24 < killed_at < 48, "the kill must land in the second epoch, between epoch ends"
    assert not (run_dir / "metrics.json").exists()

    output = finish(train_process(run_dir, data_dir, "ckpt_path=last"))
    assert "resuming from" in output
    resumed = json.loads((run_dir / "metrics.json").read_text())
    for name in ("val/acc", "val/loss", "test/acc", "test/loss"):
        assert resumed[name] == pytest.approx(reference[name], rel=1e-6, abs=1e-7), name
    # The CSV log continues: one row per step, and the resumed steps equal the reference's.
    assert logged_losses(run_dir) == logged_losses(reference_dir)


@pytest.mark.slow
@pytest.mark.usefixtures("mini_commands")
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGUSR1])
def test_stop_signal_saves_last_checkpoint_before_exit(data_dir, tmp_path, stop_signal):
    run_dir = tmp_path / "preempted"
    last = run_dir / "checkpoints" / "last.ckpt"
    process = train_process(run_dir, data_dir, "callbacks.last_checkpoint.every_n_train_steps=3")
    deadline = time.monotonic() + 300
    while not (last.is_file() and checkpoint_step(last) >= 3):
        assert time.monotonic() < deadline and process.poll() is None, "training did not start"
        time.sleep(0.05)
    process.send_signal(stop_signal)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, "a stopped run must not look finished"
    assert not (run_dir / "metrics.json").exists()
    assert "stopped by a signal" in output and "ckpt_path=last" in output, output[-3000:]
    step = checkpoint_step(last)
    assert 3 <= step < 24 and f"step {step}" in output, "saved where the signal stopped it"


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
def test_bf16_mixed_precision_trains_on_cpu(data_dir, tmp_path):
    overrides = [*TINY, f"paths.data_dir={data_dir}", "trainer.precision=bf16-mixed"]
    with composed("train", overrides, tmp_path) as cfg:
        metrics = train(cfg)
    assert metrics["test/acc"] > 1 / 12 and torch.isfinite(torch.tensor(metrics["val/loss"]))


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


@pytest.mark.slow
@pytest.mark.usefixtures("mini_commands")
def test_ema_run_then_checkpoint_average_evaluates(data_dir, tmp_path):
    from speechlab.checkpoint.recipe import load_checkpoint
    from speechlab.cli import main as speechlab
    from speechlab.run.evaluate import run as evaluate

    run_dir = tmp_path / "ema"
    overrides = [
        *TINY,
        f"paths.data_dir={data_dir}",
        "callbacks=ema",
        "callbacks.ema.decay=0.9",
        "callbacks.progress_bar=null",
        "callbacks.last_checkpoint.every_n_train_steps=4",
        "callbacks.model_checkpoint.save_top_k=-1",
    ]
    with composed("train", overrides, run_dir) as cfg:
        metrics = train(cfg)
    assert metrics["test/acc"] > 1 / 12
    epochs = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    assert len(epochs) == 2
    # The EMA callback keeps the running average; checkpoints hold the averaged weights.
    saved = load_checkpoint(epochs[-1])
    assert any("Averaging" in key for key in saved["callbacks"])

    averaged_path = tmp_path / "average.ckpt"
    assert speechlab(["average", *map(str, epochs), "-o", str(averaged_path)]) == 0
    averaged = load_checkpoint(averaged_path)
    first, second = (load_checkpoint(p)["state_dict"] for p in epochs)
    name = next(n for n, t in first.items() if t.is_floating_point() and t.numel() > 10)
    assert torch.allclose(averaged["state_dict"][name], (first[name] + second[name]) / 2)
    with composed(
        "evaluate", [f"ckpt_path={averaged_path}", "trainer.accelerator=cpu"], tmp_path / "e"
    ) as cfg:
        assert 0.0 <= evaluate(cfg)["test/acc"] <= 1.0

    with pytest.raises(SystemExit, match="at least two"):
        speechlab(["average", str(epochs[0]), "-o", str(tmp_path / "x.ckpt")])
