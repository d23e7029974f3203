"""The non-finite step guard as users meet it: a learning rate far too high on the embedded corpus
stops the run with the likely causes named, and last.ckpt keeps finite weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from speechlab.run.train import run as train
from speechlab.tasks.step_guard import NonFiniteTrainingError
from tests.conftest import composed
from tests.integration.test_train import QUICK, mini_commands  # noqa: F401  (session fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.usefixtures("mini_commands")
def test_a_diverging_run_skips_counts_and_stops_with_finite_weights(data_dir: Path, tmp_path: Path):
    overrides = [
        *QUICK,
        f"paths.data_dir={data_dir}",
        "+trainer.limit_train_batches=30",
        "model.optimizer.lr=1e6",
        "model.step_guard.max_consecutive=3",
        "callbacks.last_checkpoint.every_n_train_steps=1",
    ]
    with (
        composed("train", overrides, tmp_path) as cfg,
        pytest.raises(NonFiniteTrainingError) as stopped,
    ):
        train(cfg)
    message = str(stopped.value)
    assert "3 steps in a row" in message and "model.optimizer.lr" in message
    assert "bf16-mixed" in message and "model.step_guard.max_consecutive" in message

    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("NonFiniteTrainingError")
    assert record["skipped_steps"] == 3
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    weights = [v for v in checkpoint["state_dict"].values() if v.is_floating_point()]
    assert all(torch.isfinite(w).all() for w in weights)  # not the diverged ones
    assert checkpoint["global_step"] < 30 - record["skipped_steps"]
