"""The pyramidal bidirectional LSTM "listener" of Listen, Attend and Spell (Chan et al., 2016)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speechlab.audio.features import lengths_to_mask
from speechlab.nn.encoders.rnn import PackedRNN


def stack_pairs(frames: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate frames ``2t`` and ``2t + 1``: ``(B, T, C)`` -> ``(B, ceil(T / 2), 2C)``.

    ``frames`` must be zero on padded frames: an odd-length utterance pairs its last frame with a
    zero frame, whatever padding its batch has. Lengths become ``ceil(lengths / 2)``.
    """
    if frames.shape[1] % 2:
        frames = F.pad(frames, (0, 0, 0, 1))
    batch, steps, channels = frames.shape
    return frames.reshape(batch, steps // 2, 2 * channels), torch.div(
        lengths + 1, 2, rounding_mode="floor"
    )


class PyramidalLSTMEncoder(nn.Module):
    """Log-mel ``(B, input_dim, T)`` -> frames ``(B, ceil(T / reduction), 2 * hidden_size)``.

    A BiLSTM over the input frames, then ``num_layers`` pyramidal BiLSTM layers: the first
    ``log2(reduction)`` of them read pairs of adjacent frames of the layer below, concatenated, so
    each halves the frame rate; any further layers keep it. Every layer runs over the packed
    sequence, so padded frames never enter the recurrence and an utterance's output does not
    depend on the batch it is in (padded output frames are zero).

    Args:
        input_dim: mel bands of the input.
        hidden_size: LSTM units per direction, in every layer.
        num_layers: pyramidal layers after the first BiLSTM.
        reduction: time reduction, a power of two up to ``2 ** num_layers``.
        dropout: dropout on the output of every layer.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_size: int = 256,
        num_layers: int = 3,
        reduction: int = 8,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        halvings = reduction.bit_length() - 1
        if reduction < 1 or reduction != 2**halvings:
            raise ValueError(f"reduction must be a power of two, got {reduction}")
        if halvings > num_layers:
            raise ValueError(
                f"reduction={reduction} needs at least {halvings} pyramidal layers, "
                f"got num_layers={num_layers}"
            )
        width = 2 * hidden_size
        self.bottom = PackedRNN(input_dim, hidden_size, 1, dropout, True, "lstm")
        self.halves = [index < halvings for index in range(num_layers)]
        self.layers = nn.ModuleList(
            PackedRNN(2 * width if halve else width, hidden_size, 1, dropout, True, "lstm")
            for halve in self.halves
        )
        self.subsampling = reduction
        self.output_dim = width

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames ``(B,)`` for input frame counts ``(B,)``: ``ceil(lengths / reduction)``."""
        for halve in self.halves:
            if halve:
                lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
        return lengths

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        frames = features.transpose(1, 2)  # (B, T, input_dim)
        hidden = self.bottom(frames, lengths)  # (B, T, 2H), zero on padding
        for halve, layer in zip(self.halves, self.layers, strict=True):
            if halve:
                hidden, lengths = stack_pairs(hidden, lengths)
            hidden = layer(hidden, lengths)
        mask = lengths_to_mask(lengths, hidden.shape[1]).unsqueeze(-1)  # empty utterances too
        return hidden * mask.to(hidden.dtype), lengths
