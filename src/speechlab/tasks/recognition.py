"""What the recognition tasks share: CTC feasibility of an example, and reference texts.

Used by the CTC, LAS and translation tasks; no task imports another for these.
"""

from __future__ import annotations

import torch
from torch import nn

from speechlab.audio.features import frame_lengths
from speechlab.data.collate import Batch
from speechlab.text.tokenizers import Tokenizer


def ctc_required_frames(target: torch.Tensor) -> int:
    """Fewest CTC frames that can emit ``target`` ``(L,)``: one per label, plus a blank between
    each pair of equal neighbours."""
    if target.numel() == 0:
        return 0
    return int(target.numel() + (target[1:] == target[:-1]).sum())


def ctc_length_problem(frames: int, target: torch.Tensor) -> str | None:
    """The reason to drop an example whose ``frames`` CTC frames cannot emit ``target``."""
    if frames < ctc_required_frames(target):
        return "subsampled length shorter than the label (CTC cannot emit it)"
    return None


def encoder_frames(frontend: nn.Module, encoder: nn.Module, num_samples: int) -> int:
    """Encoder frames ``encoder`` makes of a clip of ``num_samples`` samples."""
    frames = frame_lengths(torch.tensor([num_samples]), frontend.hop_length)
    return int(encoder.output_lengths(frames)[0])


def batch_references(tokenizer: Tokenizer, batch: Batch) -> list[str]:
    """The reference texts of ``batch``'s padded token targets."""
    return [
        tokenizer.decode(target[:length].tolist())
        for target, length in zip(batch.targets, batch.target_lengths, strict=True)
    ]
