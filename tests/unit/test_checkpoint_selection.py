"""The best checkpoint when the monitored metric ties (a validation CER at its floor): the lower
validation loss wins, then the later epoch; a real improvement wins as before."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from speechlab.checkpoint.selection import TieBreakingCheckpoint


class Scripted(L.LightningModule):
    """Logs scripted val/cer and val/loss values, one pair per epoch."""

    def __init__(self, cer: Sequence[float], loss: Sequence[float | None]) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.cer, self.loss = cer, loss

    def training_step(self, batch, index):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, index):
        epoch = self.current_epoch
        self.log("val/cer", self.cer[epoch])
        if self.loss[epoch] is not None:
            self.log("val/loss", self.loss[epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def best_epoch(
    tmp_path: Path, cer: Sequence[float], loss: Sequence[float | None], **options
) -> int:
    return fit(tmp_path, cer, loss, **options)[0]


def fit(
    tmp_path: Path, cer: Sequence[float], loss: Sequence[float | None], **options
) -> tuple[int, list[int], TieBreakingCheckpoint]:
    """The best epoch, the epochs whose checkpoints are kept, and the callback."""
    checkpoint = TieBreakingCheckpoint(
        dirpath=tmp_path,
        filename="epoch_{epoch:03d}",
        auto_insert_metric_name=False,
        monitor="val/cer",
        mode="min",
        **options,
    )
    loader = DataLoader(TensorDataset(torch.ones(2, 1)), batch_size=2)
    trainer = L.Trainer(
        max_epochs=len(cer), callbacks=[checkpoint], logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(Scripted(cer, loss), loader, loader)
    saved = sorted(int(p.stem.split("_")[1]) for p in tmp_path.glob("*.ckpt"))
    assert Path(checkpoint.best_model_path).exists()
    return int(Path(checkpoint.best_model_path).stem.split("_")[1]), saved, checkpoint


def test_a_tie_at_the_floor_goes_to_the_lowest_validation_loss(tmp_path: Path):
    cer = [0.3, 0.0, 0.0, 0.0, 0.0]
    assert best_epoch(tmp_path / "a", cer, [2.0, 1.0, 0.6, 0.4, 0.5]) == 3
    # Lightning's own ModelCheckpoint keeps epoch 1, the least trained of the tied ones.


def test_a_tie_without_a_tie_breaker_goes_to_the_later_epoch(tmp_path: Path):
    cer = [0.3, 0.1, 0.1, 0.2]
    assert best_epoch(tmp_path / "a", cer, [None] * 4) == 2
    assert best_epoch(tmp_path / "b", cer, [2.0, 1.0, 0.9, 0.5], tie_breaker=None) == 2


def test_the_monitored_metric_still_decides_first(tmp_path: Path):
    assert best_epoch(tmp_path / "a", [0.3, 0.1, 0.2, 0.15], [2.0, 1.0, 0.1, 0.05]) == 1


def test_ties_are_ranked_with_several_kept(tmp_path: Path):
    best, kept, _ = fit(tmp_path / "a", [0.3, 0.0, 0.0, 0.0], [2.0, 0.5, 0.3, 0.4], save_top_k=2)
    assert (best, kept) == (2, [2, 3])
    # Without a tie breaker the later epochs are kept and the latest is the best.
    best, kept, _ = fit(tmp_path / "b", [1.0] * 4, [None] * 4, save_top_k=3, tie_breaker=None)
    assert (best, kept) == (3, [1, 2, 3])


def test_each_best_checkpoint_holds_its_own_tie_breaker_value(tmp_path: Path):
    _, _, callback = fit(tmp_path, [0.3, 0.0, 0.0], [2.0, 1.0, 0.5])
    state = torch.load(callback.best_model_path, weights_only=True)["callbacks"]
    (own,) = [v for k, v in state.items() if k.startswith("TieBreakingCheckpoint")]
    assert own["tie_values"] == {callback.best_model_path: 0.5}


def test_a_tie_breaker_the_run_does_not_log_is_said(tmp_path: Path, caplog):
    with caplog.at_level("WARNING", logger="speechlab.checkpoint.selection"):
        best = best_epoch(tmp_path, [0.3, 0.1, 0.1], [2.0, 1.0, 0.5], tie_breaker="val/los")
    assert best == 2
    assert "tie_breaker=val/los is not logged" in caplog.text and "val/loss" in caplog.text


def test_a_bad_mode_is_refused():
    with pytest.raises(ValueError, match="tie_breaker_mode must be 'min' or 'max'"):
        TieBreakingCheckpoint(tie_breaker_mode="lowest")
