"""Listen, Attend and Spell assembly: a speller sized for a vocabulary and an encoder, and the
CTC head of joint CTC-attention models.

The task holds the pieces under their own names (``encoder``, ``speller``, ``ctc_head``), which
are the tensor names of its checkpoints and the prefixes ``model.init_from`` selects by.

Token convention (see :mod:`speechlab.nn.speller`): id 0 is the CTC blank and the speller's
``<sos>``/``<eos>``, so the CTC head and the speller share the tokenizer's vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

SpellerFactory = Callable[..., nn.Module]


def build_speller(
    speller: SpellerFactory | Mapping[str, Any] | nn.Module, vocab_size: int, encoder_dim: int
) -> nn.Module:
    """The speller for ``vocab_size`` tokens over ``encoder_dim``-wide encoder frames, from a
    factory ``(vocab_size=, encoder_dim=) -> module`` (e.g. a partial of
    :class:`speechlab.nn.speller.Speller`), its Hydra config, or a built module (returned as is)."""
    if isinstance(speller, nn.Module):
        return speller
    if isinstance(speller, Mapping) or hasattr(speller, "_target_"):
        import hydra

        return hydra.utils.instantiate(speller, vocab_size=vocab_size, encoder_dim=encoder_dim)
    return speller(vocab_size=vocab_size, encoder_dim=encoder_dim)


class CTCHead(nn.Linear):
    """A linear CTC head over encoder frames that predicts ``upsampling`` token distributions per
    frame.

    CTC needs a frame per label (plus one between repeated labels), which a heavily subsampled
    encoder (8x: 80 ms frames) does not have for fast speech; ``upsampling=2`` gives 40 ms CTC
    frames there. Its parameters are those of ``nn.Linear(input_dim, vocab_size * upsampling)``.

    Args:
        input_dim: the encoder's ``output_dim``.
        vocab_size: tokens, blank (id 0) included.
        upsampling: CTC frames per encoder frame, at least 1.
    """

    def __init__(self, input_dim: int, vocab_size: int, upsampling: int = 1) -> None:
        if upsampling < 1:
            raise ValueError(f"ctc_upsampling must be at least 1, got {upsampling}")
        super().__init__(input_dim, vocab_size * upsampling)
        self.upsampling = upsampling

    def forward(  # type: ignore[override]
        self, encoded: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames ``(B, T, D)`` and their lengths ``(B,)`` -> float32 log-probabilities
        ``(B, T * upsampling, V)`` (computed in float32 under autocast too) and their lengths."""
        logits = super().forward(encoded)
        batch, frames, _ = logits.shape
        logits = logits.reshape(batch, frames * self.upsampling, -1)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            log_probs = logits.float().log_softmax(dim=-1)
        return log_probs, lengths * self.upsampling
