"""Stacked recurrent layers over packed sequences, shared by the LSTM and conv+RNN encoders."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

_RNNS = {"lstm": nn.LSTM, "gru": nn.GRU}


class PackedRNN(nn.Module):
    """Frames ``(B, T, input_size)`` -> ``(B, T, hidden_size * directions)``, padding ignored.

    The batch is packed by its lengths, so padded frames never enter the recurrence; the output
    is zero on padded frames. Dropout is applied between layers and on the output.

    Args:
        input_size: features per input frame.
        hidden_size: units per direction.
        num_layers: stacked layers.
        dropout: dropout between layers and on the output.
        bidirectional: run a backward layer beside each forward one.
        rnn_type: ``"lstm"`` or ``"gru"``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float = 0.0,
        bidirectional: bool = True,
        rnn_type: str = "lstm",
    ) -> None:
        super().__init__()
        if rnn_type not in _RNNS:
            raise ValueError(f"rnn_type must be one of {sorted(_RNNS)}, got {rnn_type!r}")
        if num_layers < 1:
            raise ValueError("num_layers must be at least 1")
        self.rnn = _RNNS[rnn_type](
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        self.dropout = nn.Dropout(dropout)
        self.output_dim = hidden_size * (2 if bidirectional else 1)

    def forward(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            frames, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        output, _ = self.rnn(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=frames.shape[1])
        return self.dropout(output)
