"""Faults users report, each kind fixed whole: the value that broke a run is a case here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechlab.run.train import run as train
from tests.conftest import composed
from tests.integration.test_train import QUICK, mini_commands  # noqa: F401  (session fixture)

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.usefixtures("mini_commands")]


@pytest.mark.parametrize("off", ["+trainer.limit_val_batches=0", "+trainer.limit_val_batches=0.0"])
def test_without_validation_training_runs_on_and_the_latest_epoch_is_tested(
    off: str, data_dir: Path, tmp_path: Path
):
    overrides = [
        *QUICK,
        f"paths.data_dir={data_dir}",
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=3",
        "+trainer.limit_test_batches=1",
        off,
    ]
    with composed("train", overrides, tmp_path) as cfg:
        metrics = train(cfg)
    assert "test/acc" in metrics  # early stopping did not stop it at epoch 0
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("epoch_*.ckpt")) == [
        "epoch_001.ckpt"
    ]
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "finished"


def test_an_optimized_metric_the_run_never_produces_stops_it_before_training(
    data_dir: Path, tmp_path: Path
):
    overrides = [
        *QUICK,
        f"paths.data_dir={data_dir}",
        "+trainer.limit_train_batches=3",
        "optimized_metric=val/acc_bets",  # a typo of val/acc_best
    ]
    with (
        composed("train", overrides, tmp_path) as cfg,
        pytest.raises(ValueError, match="optimized_metric='val/acc_bets' is not a metric") as error,
    ):
        train(cfg)
    assert "val/acc_best" in str(error.value) and "test/acc" in str(error.value)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed" and record["curve"] == []  # no epoch was trained
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()
