"""The CTC loss as every recognizer here computes it: float32, outside autocast."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


def ctc_loss(
    log_probs: torch.Tensor,
    lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
    reduction: Literal["mean", "utterance"],
) -> torch.Tensor:
    """Connectionist temporal classification loss (Graves et al. 2006) with PyTorch's
    ``F.ctc_loss``, in float32 with autocast off (half precision overflows its sums).
    Utterances too short for their targets give 0 instead of inf (``zero_infinity``).

    Args:
        log_probs: ``(B, T, V)`` log-probabilities over the labels, ``blank`` among them.
        lengths: ``(B,)`` valid frames of each utterance.
        targets: ``(B, U)`` padded label ids (or ``(sum U,)`` concatenated).
        target_lengths: ``(B,)`` labels of each utterance.
        blank: the blank label's id.
        reduction: ``"mean"`` divides each utterance's loss by its label count, then averages
            (PyTorch's ``mean``: per token); ``"utterance"`` averages the per-utterance sums,
            the scale of a transducer or attention loss summed over an utterance's tokens.

    Returns:
        A scalar tensor (float32).

    Raises:
        ValueError: an unknown ``reduction``.
    """
    if reduction not in ("mean", "utterance"):
        raise ValueError(f"reduction={reduction!r}: expected 'mean' or 'utterance'")
    with torch.autocast(device_type=log_probs.device.type, enabled=False):
        loss = F.ctc_loss(
            log_probs.float().transpose(0, 1),
            targets,
            lengths,
            target_lengths,
            blank=blank,
            reduction="mean" if reduction == "mean" else "none",
            zero_infinity=True,
        )
    return loss if reduction == "mean" else loss.mean()
