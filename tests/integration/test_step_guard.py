"""The non-finite step guard as users meet it: a learning rate far too high on the embedded corpus
stops the run with the likely causes named, and last.ckpt keeps finite weights, in fp32 and under
``16-mixed`` with its gradient scaler (run on the CPU through torch's CPU ``GradScaler``: Lightning
takes ``16-mixed`` on CUDA only, but the scaler and the guard's path through it are the same)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from speechlab.run.train import run as train
from speechlab.tasks.step_guard import NonFiniteTrainingError
from tests.conftest import composed
from tests.integration.test_train import QUICK, mini_commands  # noqa: F401  (session fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


# Lightning's 16-mixed precision plugin with torch's CPU gradient scaler.
FP16_WITH_SCALER = {
    "_target_": "lightning.pytorch.plugins.MixedPrecision",
    "precision": "16-mixed",
    "device": "cpu",
    "scaler": {"_target_": "torch.amp.GradScaler", "device": "cpu"},
}


@pytest.mark.usefixtures("mini_commands")
@pytest.mark.parametrize("precision", ["32", "16-mixed"])
def test_a_diverging_run_skips_counts_and_stops_with_finite_weights(
    precision: str, data_dir: Path, tmp_path: Path
):
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
        if precision == "16-mixed":
            with open_dict(cfg.trainer):
                cfg.trainer.plugins = [FP16_WITH_SCALER]
                cfg.trainer.precision = None  # the plugin sets it
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
    if precision == "16-mixed":  # the gradient scaler ran the steps (its state is checkpointed)
        assert checkpoint["MixedPrecision"]["scale"] > 0


@pytest.mark.usefixtures("mini_commands")
def test_a_run_that_diverges_before_its_first_save_leaves_last_ckpt_and_says_where(
    data_dir: Path, tmp_path: Path
):
    """`model=kws_cnn data=mini_commands model.optimizer.lr=1e6` stops within its first 100 steps,
    before last.ckpt's first periodic save: the stop writes it, with finite weights and batch-norm
    statistics (a forward through the overflowing weights had made the running variances
    infinite while the loss stayed finite), and the message says where it is."""
    overrides = [*QUICK, f"paths.data_dir={data_dir}", "model.optimizer.lr=1e6"]
    with (
        composed("train", overrides, tmp_path) as cfg,
        pytest.raises(NonFiniteTrainingError) as stopped,
    ):
        assert cfg.callbacks.last_checkpoint.every_n_train_steps == 100
        train(cfg)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert f"The weights of the last finite step are saved in {last}." in str(stopped.value)
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] < 100
    tensors = {k: v for k, v in checkpoint["state_dict"].items() if v.is_floating_point()}
    assert any(k.endswith("running_var") for k in tensors)
    assert all(torch.isfinite(v).all() for v in tensors.values()), [
        k for k, v in tensors.items() if not torch.isfinite(v).all()
    ]
