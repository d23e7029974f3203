"""The callbacks every run gets besides the checkpoint ones (the report of skipped audio, a
logging interval that short runs can reach), and the metric-driven callbacks adapted to a run
without validation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

log = logging.getLogger(__name__)


class SkippedAudioReport(Callback):
    """List each audio file that failed to decode once in the run log, and in ``skipped_audio.tsv``."""

    def __init__(self) -> None:
        self.skipped: dict[str, str] = {}

    def _collect(self, trainer: L.Trainer, batch: Any) -> None:
        for path, reason in getattr(batch, "skipped", ()):
            if path not in self.skipped:
                self.skipped[path] = reason
                if trainer.is_global_zero:
                    log.warning("skipped audio file %s: %s", path, reason)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._collect(trainer, batch)

    def on_validation_batch_start(
        self, trainer, pl_module, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._collect(trainer, batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, batch)

    def _write(self, trainer: L.Trainer) -> None:
        if not self.skipped or not trainer.is_global_zero:
            return
        path = Path(trainer.default_root_dir) / "skipped_audio.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{p}\t{r}\n" for p, r in sorted(self.skipped.items())))
        log.warning(
            "%d audio file(s) could not be decoded and were skipped: %s", len(self.skipped), path
        )

    def on_fit_end(self, trainer, pl_module) -> None:
        self._write(trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        self._write(trainer)


class NothingTrainedCheck(Callback):
    """Stop the run when a rank trained on no example in a whole training epoch.

    Every example of a batch may be skipped (unreadable audio, a lost shard, a target the task
    rejects); the step then trains nothing and the run goes on, as it should for a few bad files.
    An epoch in which that happened to every batch of a rank trained nothing on that rank's
    share of the data (on every rank: nothing at all), and a run that went on would test and
    save a model trained on part of the data, or none, as if it were done. The count is of
    examples trained on each rank, gathered from every rank.

    Raises:
        RuntimeError: at the end of such an epoch, naming the epoch, the ranks, and where the
            skipped files are listed.
    """

    def __init__(self) -> None:
        self.batches = 0
        self.examples = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.batches = self.examples = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches += 1
        self.examples += len(batch)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.batches == 0:  # a resumed epoch already finished, or limit_train_batches=0
            return
        count = torch.tensor(self.examples, device=pl_module.device)
        examples = trainer.strategy.all_gather(count).reshape(-1).tolist()
        idle = [rank for rank, n in enumerate(examples) if n == 0]
        if not idle:
            return
        skipped = Path(trainer.default_root_dir) / "skipped_audio.tsv"
        if len(idle) == len(examples):
            raise RuntimeError(
                f"epoch {trainer.current_epoch} trained on nothing: every example of its "
                f"{self.batches} batch(es) was skipped (unreadable audio, a shard that could not "
                f"be read, or targets the task rejects; see the warnings above and {skipped}). "
                "Expected readable training data: check data.reader.root or data.shards and "
                "the files there."
            )
        raise RuntimeError(
            f"epoch {trainer.current_epoch}: rank(s) {idle} of {len(examples)} trained on "
            f"nothing (examples trained per rank: {examples}): every example of their "
            f"{self.batches} batch(es) was skipped (unreadable audio, shards that could not be "
            f"read, or targets the task rejects; see the warnings above and {skipped}), so the "
            "epoch left out their share of the data. Expected readable training data for every "
            "rank: check data.reader.root or data.shards and the files there."
        )


class ShortRunLogInterval(Callback):
    """Log training scalars at least once per epoch: ``trainer.log_every_n_steps`` is lowered to
    the number of training batches when an epoch has fewer (a short run, ``limit_train_batches``),
    which would otherwise draw no training curve at all."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        batches = trainer.num_training_batches
        if trainer.log_every_n_steps > 0 and 0 < batches < trainer.log_every_n_steps:
            log.info(
                "logging every %d steps (an epoch has %d batches; log_every_n_steps was %d)",
                batches,
                batches,
                trainer.log_every_n_steps,
            )
            trainer.log_every_n_steps = int(batches)


#: Fewer training batches an epoch than this is a warning: a batch size sized for a larger corpus.
FEW_UPDATES = 20


class TrainingPlanLog(Callback):
    """Say at the start what the run will do: training batches per epoch (per process) and the
    optimizer updates in all, from Lightning's own count
    (``trainer.estimated_stepping_batches``: epochs or ``max_steps``, gradient accumulation,
    devices). A corpus that gives fewer than :data:`FEW_UPDATES` batches an epoch (a small
    corpus under a batch size meant for a large one) is a warning that names the setting to
    lower, unless ``limit_train_batches`` asked for the short epoch."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        seconds = getattr(getattr(trainer, "datamodule", None), "batch_seconds_used", None)
        batches = trainer.num_training_batches
        if not 0 < batches < float("inf"):
            return  # a streamed epoch of unknown length
        total = trainer.estimated_stepping_batches
        budget = f", {int(total)} optimizer updates in all" if total < float("inf") else ""
        size = f" of {seconds:g} s of audio" if seconds else ""
        log.info("training: %d batches%s per epoch%s", batches, size, budget)
        limit = trainer.limit_train_batches  # an int counts batches; the float 1.0 is "all"
        if batches < FEW_UPDATES and (limit is None or (isinstance(limit, float) and limit == 1)):
            log.warning(
                "only %d training batches per epoch: the corpus is small for this batch size"
                "%s; lower data.batch_seconds (or data.batch_seconds=auto with data.updates_per_epoch) "
                "for more updates per epoch, or train more epochs",
                batches,
                f" ({seconds:g} s)" if seconds else "",
            )


def clipping_for_manual_optimisation(
    task: L.LightningModule, trainer_cfg: Mapping[str, Any]
) -> dict[str, Any]:
    """The trainer arguments that let a manually optimised task (HiFi-GAN's two optimizers) run
    with ``trainer.gradient_clip_val`` set: Lightning refuses to clip such a task itself
    ("Automatic gradient clipping is not supported for manual optimization"), so the value and
    ``gradient_clip_algorithm`` go to the task (:attr:`SpeechTask.manual_gradient_clip`, applied
    before each of its optimizer steps) and the trainer gets ``gradient_clip_val=None``. Empty
    for an automatically optimised task, or when no clipping is asked for."""
    value = trainer_cfg.get("gradient_clip_val")
    if getattr(task, "automatic_optimization", True) or not value:
        return {}
    algorithm = trainer_cfg.get("gradient_clip_algorithm") or "norm"
    task.manual_gradient_clip = (float(value), str(algorithm))
    log.info(
        "%s optimises manually: it clips its gradients itself (%s %s, trainer.gradient_clip_val)",
        type(task).__name__,
        algorithm,
        value,
    )
    return {"gradient_clip_val": None}


def adapt_to_no_validation(trainer: L.Trainer) -> None:
    """With validation off (``trainer.limit_val_batches=0``) no monitored metric ever exists:
    early stopping is dropped and the best-checkpoint callback keeps the latest epoch instead
    (test then uses it), each said once in the run log, before training starts. Lightning would
    otherwise stop at the end of the first epoch, before any checkpoint was written."""
    if trainer.limit_val_batches != 0:
        return
    for callback in list(trainer.callbacks):
        if isinstance(callback, EarlyStopping):
            trainer.callbacks.remove(callback)
            log.warning(
                "validation is off (limit_val_batches=0): early stopping on %s is dropped; "
                "training runs for trainer.max_epochs",
                callback.monitor,
            )
        elif isinstance(callback, ModelCheckpoint) and callback.monitor is not None:
            log.warning(
                "validation is off (limit_val_batches=0): checkpoints keep the latest epoch, "
                "not the best %s, and test uses it",
                callback.monitor,
            )
            callback.monitor = None
            callback.save_top_k = 1
            callback._save_on_train_epoch_end = True  # no validation end to save at


class OptimizedMetricCheck(Callback):
    """Fail fast when ``optimized_metric`` (what train.py returns to a sweeper) names a metric
    this run never produces: checked on the real metric names right after the sanity-check
    validation, before the first training step (or after the first validation when the sanity
    check is off), instead of a sweep that trains every job and then crashes.

    Valid names: the validation metrics, their test counterparts (``test/x`` for ``val/x``)
    and ``<monitor>_best``.
    """

    def __init__(self, optimized_metric: str | None, monitor: str) -> None:
        self.name = optimized_metric
        self.monitor = monitor
        self.checked = False

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        if self.checked or not self.name:
            return
        self.checked = True
        produced = sorted(k for k in trainer.callback_metrics if k.startswith("val/"))
        valid = {f"{self.monitor}_best", *produced, *("test/" + k[4:] for k in produced)}
        if self.name not in valid:
            raise ValueError(
                f"optimized_metric={self.name!r} is not a metric this run produces, so a sweep "
                f"would have nothing to optimise. Set optimized_metric to one of: "
                f"{', '.join(sorted(valid))}"
            )
