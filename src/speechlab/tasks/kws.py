"""Keyword spotting: utterance classification over a label set."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from speechlab.data.collate import Batch
from speechlab.tasks.artifacts import log_figure
from speechlab.tasks.base import OptimizerFactory, SchedulerFactory, SpeechTask
from speechlab.tasks.encoder_compile import CompileOptions
from speechlab.tasks.step_guard import NonFiniteStepGuard


class KeywordSpottingTask(SpeechTask):
    """Frontend -> encoder embedding ``(B, D)`` -> linear head over ``labels``.

    Logs loss and top-1 accuracy per split; at test it also logs a confusion-matrix image and
    keeps ``(id, reference, hypothesis)`` rows in :attr:`predictions`.

    ``mixup_alpha > 0`` trains on mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk
    Minimization"): each training batch's features are mixed with a shuffled copy of the batch,
    ``lam * x + (1 - lam) * x[perm]`` with ``lam ~ Beta(alpha, alpha)`` (one draw per batch,
    folded to ``lam >= 0.5``), and the loss mixes the two targets' cross-entropies the same way.
    Training accuracy is counted against the dominant (``lam``) target.

    Raises:
        ValueError: fewer than two labels, or a negative ``mixup_alpha``.
    """

    target_field = "label"
    metric_namespace = "kws"

    def __init__(
        self,
        frontend: nn.Module,
        encoder: nn.Module,
        labels: Sequence[str],
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        augment: nn.Module | None = None,
        label_smoothing: float = 0.0,
        monitor: str = "val/acc",
        monitor_mode: str = "max",
        step_guard: NonFiniteStepGuard | None = None,
        waveform_augment: nn.Module | None = None,
        compile: CompileOptions | None = None,
        mixup_alpha: float = 0.0,
    ) -> None:
        super().__init__(
            frontend,
            optimizer,
            scheduler,
            augment,
            monitor,
            monitor_mode,
            step_guard,
            waveform_augment,
            compile,
        )
        if len(labels) < 2:
            raise ValueError(f"keyword spotting needs at least 2 labels, got {list(labels)}")
        self.labels = list(labels)
        self.encoder = encoder
        self.head = nn.Linear(encoder.output_dim, len(self.labels))
        self.label_smoothing = label_smoothing
        if mixup_alpha < 0:
            raise ValueError(
                f"mixup_alpha={mixup_alpha}: expected 0 (mixup off) or a positive Beta alpha; "
                "set model.mixup_alpha=0 or e.g. 0.2"
            )
        self.mixup_alpha = mixup_alpha
        classes = len(self.labels)
        self.accuracy = nn.ModuleDict(
            {
                f"{split}_acc": MulticlassAccuracy(classes, average="micro")
                for split in ("train", "val", "test")
            }
        )
        self.confusion = MulticlassConfusionMatrix(classes)
        self.predictions: list[tuple[str, str, str]] = []

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Features ``(B, n_mels, F)`` -> logits ``(B, num_labels)``."""
        return self.head(self.encoder(features, lengths))

    def _mixup(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """``(features, lengths, shuffled targets, lam)`` of a mixup batch (global torch RNG, so
        exact across resume)."""
        beta = torch.distributions.Beta(self.mixup_alpha, self.mixup_alpha)
        lam = float(beta.sample())
        lam = max(lam, 1.0 - lam)
        order = torch.randperm(len(batch)).to(batch.features.device)
        features = lam * batch.features + (1.0 - lam) * batch.features[order]
        lengths = torch.maximum(batch.feature_lengths, batch.feature_lengths[order])
        return features, lengths, batch.targets[order], lam

    def _step(self, batch: Batch, split: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        if len(batch) == 0:
            return None
        smoothing = self.label_smoothing if split == "train" else 0.0
        if split == "train" and self.mixup_alpha > 0:
            features, lengths, others, lam = self._mixup(batch)
            logits = self(features, lengths)
            loss = lam * F.cross_entropy(logits, batch.targets, label_smoothing=smoothing)
            loss = loss + (1.0 - lam) * F.cross_entropy(logits, others, label_smoothing=smoothing)
        else:
            logits = self(batch.features, batch.feature_lengths)
            loss = F.cross_entropy(logits, batch.targets, label_smoothing=smoothing)
        accuracy = self.accuracy[f"{split}_acc"]
        accuracy(logits, batch.targets)
        size = len(batch)
        self.log(
            f"{split}/loss",
            loss,
            batch_size=size,
            prog_bar=split == "train",
            sync_dist=split != "train",
        )
        self.log(f"{split}/acc", accuracy, batch_size=size, prog_bar=split != "train")
        return loss, logits

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        result = self._step(batch, "train")
        return self.empty_batch_loss() if result is None else result[0]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def on_test_epoch_start(self) -> None:
        self.predictions = []
        self.confusion.reset()

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        result = self._step(batch, "test")
        if result is None:
            return
        predicted = result[1].argmax(dim=-1)
        self.confusion.update(predicted, batch.targets)
        for utterance_id, target, guess in zip(
            batch.ids, batch.targets.tolist(), predicted.tolist(), strict=True
        ):
            self.predictions.append((utterance_id, self.labels[target], self.labels[guess]))

    def on_test_epoch_end(self) -> None:
        figure, _ = self.confusion.plot(labels=self.labels)
        figure.set_size_inches(1 + 0.5 * len(self.labels), 1 + 0.5 * len(self.labels))
        log_figure(self.trainer, "test/confusion_matrix", figure)
