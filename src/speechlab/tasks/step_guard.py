"""Skip training steps whose loss or gradients are not finite, and stop a run that diverged."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from speechlab.checkpoint.last import StopWithFiniteWeights

log = logging.getLogger(__name__)

LIKELY_CAUSES = (
    "a learning rate too high (model.optimizer.lr), audio with non-finite samples, or fp16 "
    "overflow (trainer.precision=bf16-mixed or 32)"
)


class NonFiniteTrainingError(StopWithFiniteWeights):
    """Too many consecutive training steps were not finite (loss, gradients or batch-norm
    statistics); the weights
    are still those of the last finite step (saved to ``last.ckpt`` at the stop)."""


def gradients_finite(parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """Whether every gradient is finite, as a 0-dim bool tensor on the gradients' device (the
    L2 norm of all gradients is finite exactly when each one is)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(True)
    return torch.isfinite(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))


def running_stats(module: torch.nn.Module) -> list[torch.Tensor]:
    """The buffers a training forward pass changes: the running statistics of every batch norm
    (``running_mean``, ``running_var``, ``num_batches_tracked``)."""
    return [
        buffer
        for norm in module.modules()
        if isinstance(norm, torch.nn.modules.batchnorm._NormBase) and norm.track_running_stats
        for buffer in (norm.running_mean, norm.running_var, norm.num_batches_tracked)
        if buffer is not None
    ]


class RunningStatsSnapshot:
    """The batch-norm running statistics of ``module`` as they were before a training step, put
    back when the step is skipped: a forward pass through weights that overflow writes
    non-finite values into them, and a skipped step must change nothing."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.saved = [(buffer, buffer.detach().clone()) for buffer in running_stats(module)]

    def finite(self) -> torch.Tensor:
        """Whether the statistics are finite now, after the step's forward pass (a 0-dim bool
        tensor): a forward through overflowing weights can leave a finite loss (a batch norm
        with an infinite variance outputs zeros) and an infinite running variance."""
        floating = [buffer for buffer, _ in self.saved if buffer.is_floating_point()]
        if not floating:
            return torch.tensor(True)
        return torch.stack([torch.isfinite(buffer).all() for buffer in floating]).all()

    def restore(self) -> None:
        with torch.no_grad():
            for buffer, value in self.saved:
                buffer.copy_(value)


class NonFiniteStepGuard:
    """Counts and skips non-finite training steps; raises after ``max_consecutive`` in a row.

    A skipped step updates nothing: the task drops every gradient (the optimizer then has
    nothing to apply), puts back the batch norms' running statistics its forward pass moved
    (:class:`RunningStatsSnapshot`) and does not step the LR scheduler. Under ``16-mixed`` the gradient
    scaler sees the same non-finite gradients and skips the step itself (lowering its scale),
    as it always does; the step is counted here all the same.

    Args:
        max_consecutive: stop the run (:class:`NonFiniteTrainingError`) after this many skipped
            steps in a row; the weights are then still those of the last finite step.
    """

    def __init__(self, max_consecutive: int = 20) -> None:
        if max_consecutive < 1:
            raise ValueError(f"max_consecutive must be >= 1, got {max_consecutive}")
        self.max_consecutive = max_consecutive
        self.skipped = 0  # in this run (this attempt)
        self.taken = 0  # finite steps, in this attempt
        self.consecutive = 0
        self.last_good_step: int | None = None
        # causes this run adds to LIKELY_CAUSES (the task names its waveform augmentation)
        self.extra_causes: list[str] = []

    def state_dict(self) -> dict[str, int | None]:
        """What a resumed run needs to decide as the uninterrupted one would: the skipped steps
        in a row so far and the last finite step (the per-attempt counts start afresh)."""
        return {"consecutive": self.consecutive, "last_good_step": self.last_good_step}

    def load_state_dict(self, state: dict[str, int | None]) -> None:
        self.consecutive = int(state.get("consecutive") or 0)
        self.last_good_step = state.get("last_good_step")

    @property
    def likely_causes(self) -> str:
        """What to check, in the words of the error message."""
        return "; ".join([*self.extra_causes, LIKELY_CAUSES])

    def record(self, finite: bool, step: int) -> bool:
        """Record whether the step ``step`` (the optimizer step about to happen) is finite;
        True when it must be skipped. Raises :class:`NonFiniteTrainingError` when it is the
        ``max_consecutive``-th skipped step in a row."""
        if finite:
            self.consecutive = 0
            self.taken += 1
            self.last_good_step = step
            return False
        self.skipped += 1
        self.consecutive += 1
        if rank_zero_only.rank == 0:  # every rank decides alike; one line in the log is enough
            log.warning(
                "step %d skipped: its loss, gradient norm or batch-norm statistics are not "
                "finite (%d in a row, %d in all)",
                step,
                self.consecutive,
                self.skipped,
            )
        if self.consecutive >= self.max_consecutive:
            good = "none" if self.last_good_step is None else f"step {self.last_good_step}"
            raise NonFiniteTrainingError(
                f"training diverged: {self.consecutive} steps in a row (up to step {step}) had "
                f"a non-finite loss, gradient norm or batch-norm statistics and were skipped; last "
                f"finite step: {good}. Likely causes: {self.likely_causes}. To tolerate longer "
                "runs of bad steps, raise "
                f"model.step_guard.max_consecutive (now {self.max_consecutive})."
            )
        return True
