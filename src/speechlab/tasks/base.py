"""What every speech task shares: device features, SpecAugment in training, optimisation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from speechlab.data.collate import Batch
from speechlab.tasks.encoder_compile import CompileOptions, EncoderCompiler
from speechlab.tasks.step_guard import (
    NonFiniteStepGuard,
    NonFiniteTrainingError,
    RunningStatsSnapshot,
    gradients_finite,
)

STEP_GUARD_KEY = "step_guard"  # the guard's state in a checkpoint
OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


def refuse_feature_augment(augment: nn.Module | None, task: str) -> None:
    """Synthesis tasks learn their features as targets, so they take ``augment`` only as ``None``
    (what ``model.augment=null``, e.g. from ``debug=overfit``, gives every task).

    Raises:
        ValueError: ``augment`` is a module.
    """
    if augment is not None:
        raise ValueError(
            f"{task} learns the log-mel features as its targets, so it takes no feature "
            "augmentation: set model.augment=null (or leave model/augment out)"
        )


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
        waveform_augment: waveform augmentation of the training batch before the frontend
            (e.g. :class:`speechlab.audio.augment.WaveformAugment`: speed, noise, gain, shift).
        step_guard: skips training steps whose loss or gradients are not finite (counted as
            ``train/skipped_steps``) and stops a run that diverged; ``None`` trains every step.
        compile: ``model.compile`` (``enabled``, ``backend``, ``mode``, ``frames``): compile the
            task's ``encoder`` with ``torch.compile`` when a trainer starts fitting it, and from
            then on pad each batch's features to one of ``frames`` for it (see
            :mod:`speechlab.tasks.encoder_compile`); ``None`` or ``enabled: false`` runs eager.

    Raises:
        ValueError: an unknown ``monitor_mode``, or invalid ``compile`` options.
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
        step_guard: NonFiniteStepGuard | None = None,
        waveform_augment: nn.Module | None = None,
        compile: CompileOptions | None = None,
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
        self.step_guard = step_guard
        self.waveform_augment = waveform_augment
        if step_guard is not None and waveform_augment is not None:
            step_guard.extra_causes.append(
                "the waveform augmentation (model.waveform_augment: a noise or impulse-response "
                "file that is silent or not finite, an SNR range that is not finite)"
            )
        self._loss_finite = torch.tensor(True)
        self._skip_scheduler_step = False
        self._running_stats: RunningStatsSnapshot | None = None  # before the step: see the guard
        self._first_step = 0  # the global step this fit started from
        # (value, algorithm) a manually optimised task clips its gradients with before each
        # optimizer step: the trainer's gradient_clip_val, handed over by the runner, since
        # Lightning clips automatically optimised modules only (see on_before_optimizer_step).
        self.manual_gradient_clip: tuple[float, str] | None = None
        self.encoder_compiler = EncoderCompiler.from_config(compile)

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
        if self.training and self.waveform_augment is not None:
            batch.audio, batch.audio_lengths = self.waveform_augment(
                batch.audio, batch.audio_lengths
            )
        features, lengths = self.frontend(batch.audio, batch.audio_lengths)
        if self.training and self.augment is not None:
            features = self.augment(features)
        if self.encoder_compiler is not None and self.encoder_compiler.compiled:
            features = self.encoder_compiler.prepare(features, lengths, self.training)
        batch.features, batch.feature_lengths = features, lengths
        return batch

    def configure_model(self) -> None:
        """Compile the encoder (``compile.enabled``) once, when a trainer starts fitting the task
        (or when called outside a trainer). A task evaluated or tested on its own (evaluate.py)
        stays eager: no wait for compilation, the same results.

        Raises:
            ValueError: compilation is on but the task has no ``encoder`` module.
        """
        if self.encoder_compiler is None:
            return
        if self._trainer is not None and self._trainer.state.fn != TrainerFn.FITTING:
            return
        encoder = getattr(self, "encoder", None)
        if not isinstance(encoder, nn.Module):
            raise ValueError(
                f"model.compile.enabled=true compiles the task's encoder, but "
                f"{type(self).__name__} has none; set model.compile.enabled=false"
            )
        self.encoder_compiler.compile(encoder)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.step_guard is not None:  # a resumed run counts a run of skips on
            checkpoint[STEP_GUARD_KEY] = self.step_guard.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.step_guard is not None and STEP_GUARD_KEY in checkpoint:
            self.step_guard.load_state_dict(checkpoint[STEP_GUARD_KEY])

    def on_train_start(self) -> None:
        self._first_step = self.trainer.global_step  # 0 unless resumed

    def on_train_end(self) -> None:
        """A fresh run whose every step the guard skipped made no optimizer step at all: its
        weights are the initial ones, so the run stops as failed instead of testing and saving
        them as trained (fewer skips in a row than the guard's limit do not stop it earlier).

        Raises:
            NonFiniteTrainingError: no step of a run started from scratch was finite.
        """
        guard = self.step_guard
        if guard is None or guard.taken or not guard.skipped or self._first_step:
            return
        raise NonFiniteTrainingError(
            f"no optimizer step was taken: all {guard.skipped} training step(s) of this run had "
            "a non-finite loss, gradient norm or batch-norm statistics and were skipped, so the "
            f"weights are untrained. Likely causes: {guard.likely_causes}."
        )

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.step_guard is not None and self.automatic_optimization:
            self._running_stats = RunningStatsSnapshot(self)  # a skipped step puts them back

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.encoder_compiler is not None:
            self.encoder_compiler.step_done(self.device)

    def on_validation_batch_end(
        self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.encoder_compiler is not None:
            self.encoder_compiler.step_done(self.device)

    def on_test_batch_end(
        self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if self.encoder_compiler is not None:
            self.encoder_compiler.step_done(self.device)

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

    def clip_gradients(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Lightning's gradient clipping, also for an optimizer that unscales in its own step (a
        ``fused`` AdamW), which Lightning's mixed-precision plugin refuses to clip.

        Under ``16-mixed`` the gradient scaler unscales the gradients before they are clipped
        (``GradScaler.unscale_``; the fused step then leaves them as they are and still skips a
        step whose gradients are not finite); under ``bf16-mixed`` and ``32-true`` there is
        nothing to unscale. The clip value and algorithm are the trainer's
        (``trainer.gradient_clip_val``, ``gradient_clip_algorithm``) unless given.
        """
        if not getattr(optimizer, "_step_supports_amp_scaling", False):
            super().clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        value = gradient_clip_val
        if value is None:
            value = self.trainer.gradient_clip_val or 0.0
        if value <= 0:
            return
        parameters = [
            p for group in optimizer.param_groups for p in group["params"] if p.grad is not None
        ]
        if not parameters:  # no backward this step: nothing to unscale or clip
            return
        algorithm = gradient_clip_algorithm or self.trainer.gradient_clip_algorithm or "norm"
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            scaler.unscale_(optimizer)
        if algorithm.lower() == "value":
            torch.nn.utils.clip_grad_value_(parameters, value)
        else:
            torch.nn.utils.clip_grad_norm_(parameters, value)

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        self._loss_finite = torch.isfinite(loss.detach())  # read before the step (no sync here)
        super().backward(loss, *args, **kwargs)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """The non-finite step guard, after backward (and the gradient all-reduce under DDP, so
        every rank decides alike) and before the optimizer: a skipped step's gradients are
        dropped, or, under ``16-mixed``, left to the gradient scaler, which skips it itself.

        Under manual optimisation the gradients are clipped here as :attr:`manual_gradient_clip`
        says (Lightning calls this hook inside ``optimizer.step()``, after the gradient scaler
        unscaled them, so the clip value means the same under every precision)."""
        if not self.automatic_optimization and self.manual_gradient_clip is not None:
            value, algorithm = self.manual_gradient_clip
            self.clip_gradients(optimizer, value, algorithm)
        if self.step_guard is None:
            return
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        finite = gradients_finite(self.parameters())
        if scaler is None:  # with a scaler, a finite-gradient step is taken whatever the loss
            finite = finite & self._loss_finite.to(finite.device)
        if self._running_stats is not None:
            finite = finite & self._running_stats.finite().to(finite.device)
        finite = self.trainer.strategy.reduce_boolean_decision(bool(finite), all=True)
        if not finite:  # undone before the guard may stop the run: last.ckpt then saves them
            if scaler is None:
                optimizer.zero_grad(set_to_none=True)  # nothing to apply: the step changes nothing
            if self._running_stats is not None:
                self._running_stats.restore()  # nor do the statistics its forward pass moved
        skip = self.step_guard.record(finite, self.trainer.global_step)
        self._skip_scheduler_step = skip
        self.log("train/skipped_steps", float(self.step_guard.skipped), on_step=True)

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if self._skip_scheduler_step:  # a skipped step does not advance the schedule either
            return
        super().lr_scheduler_step(scheduler, metric)
