"""What every speech task shares: device features, SpecAugment in training, optimisation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import lightning as L
import torch
from torch import nn

from speechlab.data.collate import Batch

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class SpeechTask(L.LightningModule):
    """Base of the task modules: one level, no mixins.

    Subclasses set ``target_field`` (the :class:`Utterance` field they learn), optionally
    ``source_field`` (a second text field, e.g. the source transcript of a translation, batched
    as ``Batch.sources``), set ``metric_namespace`` (``asr``, ``kws``, ...: loggers draw
    ``<namespace>/val/loss``), and implement the steps. Features are computed here, on the device, after the batch is transferred.

    Args:
        frontend: waveform -> features module (e.g.
            :class:`speechlab.audio.features.LogMelFrontend`).
        optimizer: ``params -> Optimizer`` (a Hydra ``_partial_``).
        scheduler: ``(optimizer, total_steps) -> LRScheduler`` stepped every step, or ``None``.
        augment: feature augmentation applied in training only (e.g. torchaudio's SpecAugment).
        monitor: the validation metric that selects checkpoints and drives sweeps.
        monitor_mode: ``"max"`` or ``"min"`` for ``monitor``.
    """

    target_field: ClassVar[str]
    # The dashboards' namespace of the task's scalars (asr/val/cer): one chart per kind of task.
    metric_namespace: ClassVar[str]
    source_field: ClassVar[str | None] = None  # a second text field the task learns from

    def __init__(
        self,
        frontend: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        augment: nn.Module | None = None,
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__()
        if monitor_mode not in ("min", "max"):
            raise ValueError(f"monitor_mode must be 'min' or 'max', got {monitor_mode!r}")
        self.frontend = frontend
        self.augment = augment
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.monitor = monitor
        self.monitor_mode = monitor_mode

    def check_example(self, num_samples: int, target: torch.Tensor) -> str | None:
        """Why a training example of ``num_samples`` audio samples and ``target`` cannot be
        learned (a reason the datamodule counts when it drops it), or ``None``."""
        return None

    def empty_batch_loss(self) -> torch.Tensor:
        """The loss of a batch whose every file failed to decode: zero, yet touching every
        trainable parameter, so a DDP rank that got such a batch still joins the gradient
        all-reduce of the others (returning ``None`` there would hang the run)."""
        return sum((p.sum() * 0.0 for p in self.parameters() if p.requires_grad), torch.zeros(()))

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        if len(batch) == 0:
            return batch
        features, lengths = self.frontend(batch.audio, batch.audio_lengths)
        if self.training and self.augment is not None:
            features = self.augment(features)
        batch.features, batch.feature_lengths = features, lengths
        return batch

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
