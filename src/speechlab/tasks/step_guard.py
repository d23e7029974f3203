"""Skip training steps whose loss or gradients are not finite, and stop a run that diverged."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_only

log = logging.getLogger(__name__)

LIKELY_CAUSES = (
    "a learning rate too high (model.optimizer.lr), audio with non-finite samples, or fp16 "
    "overflow (trainer.precision=bf16-mixed or 32)"
)


class NonFiniteTrainingError(RuntimeError):
    """Too many consecutive training steps had a non-finite loss or gradient norm."""


def gradients_finite(parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """Whether every gradient is finite, as a 0-dim bool tensor on the gradients' device (the
    L2 norm of all gradients is finite exactly when each one is)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(True)
    return torch.isfinite(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))


class NonFiniteStepGuard:
    """Counts and skips non-finite training steps; raises after ``max_consecutive`` in a row.

    A skipped step updates nothing: the task drops every gradient (the optimizer then has
    nothing to apply) and does not step the LR scheduler. Under ``16-mixed`` the gradient
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
        self.consecutive = 0
        self.last_good_step: int | None = None

    def record(self, finite: bool, step: int) -> bool:
        """Record whether the step ``step`` (the optimizer step about to happen) is finite;
        True when it must be skipped. Raises :class:`NonFiniteTrainingError` when it is the
        ``max_consecutive``-th skipped step in a row."""
        if finite:
            self.consecutive = 0
            self.last_good_step = step
            return False
        self.skipped += 1
        self.consecutive += 1
        if rank_zero_only.rank == 0:  # every rank decides alike; one line in the log is enough
            log.warning(
                "step %d skipped: its loss or gradient norm is not finite (%d in a row, %d in all)",
                step,
                self.consecutive,
                self.skipped,
            )
        if self.consecutive >= self.max_consecutive:
            good = "none" if self.last_good_step is None else f"step {self.last_good_step}"
            raise NonFiniteTrainingError(
                f"training diverged: {self.consecutive} steps in a row (up to step {step}) had "
                f"a non-finite loss or gradient norm and were skipped; last finite step: {good}. "
                f"Likely causes: {LIKELY_CAUSES}. checkpoints/last.ckpt keeps the last finite "
                f"weights. To tolerate longer runs of bad steps, raise "
                f"model.step_guard.max_consecutive (now {self.max_consecutive})."
            )
        return True
