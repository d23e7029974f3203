"""Stacked recurrent layers over packed sequences, shared by the LSTM and conv+RNN encoders."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

_RNNS = {"lstm": nn.LSTM, "gru": nn.GRU}


def reverse_within(frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``(B, T, C)`` with each sequence's first ``lengths[b]`` frames in reverse order; the
    padded frames after them stay where they are."""
    steps = torch.arange(frames.shape[1], device=frames.device).unsqueeze(0)  # (1, T)
    index = lengths.unsqueeze(1) - 1 - steps
    index = torch.where(index >= 0, index, steps)  # (B, T)
    return frames.gather(1, index.unsqueeze(-1).expand_as(frames))


class PackedRNN(nn.Module):
    """Frames ``(B, T, input_size)`` -> ``(B, T, hidden_size * directions)``, padding ignored.

    Padded frames never reach a valid frame's output; the output is zero on padded frames.
    Dropout is applied between layers and on the output. On CUDA the batch is packed by its
    lengths (cuDNN's packed kernels). On the CPU, where torch runs a packed LSTM one time step
    at a time (its backward 2.2x slower, benchmarks/RESULTS.md), each layer and direction runs
    on the padded batch through oneDNN's fused kernel instead: the forward direction never sees
    the padding of a sequence before its end, and the backward direction runs over each sequence
    reversed within its length. Same parameters (``rnn``'s), same outputs within float
    rounding.

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
        if frames.is_cuda:
            return self._packed(frames, lengths)
        return self._by_layer(frames, lengths)

    def _by_layer(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        rnn = self.rnn
        directions = 2 if rnn.bidirectional else 1
        per_direction = 4 if rnn.bias else 2  # w_ih, w_hh[, b_ih, b_hh]
        weights = rnn._flat_weights
        lengths = lengths.to(frames.device).clamp(min=1, max=frames.shape[1])
        batch = frames.shape[0]
        hidden = frames
        for layer in range(rnn.num_layers):
            outputs = []
            for direction in range(directions):
                first = (layer * directions + direction) * per_direction
                params = weights[first : first + per_direction]
                inputs = hidden if direction == 0 else reverse_within(hidden, lengths)
                h0 = inputs.new_zeros(1, batch, rnn.hidden_size)
                if isinstance(rnn, nn.LSTM):
                    output = torch.lstm(
                        inputs, (h0, h0), params, rnn.bias, 1, 0.0, self.training, False, True
                    )[0]
                else:
                    output = torch.gru(
                        inputs, h0, params, rnn.bias, 1, 0.0, self.training, False, True
                    )[0]
                outputs.append(output if direction == 0 else reverse_within(output, lengths))
            hidden = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
            if layer < rnn.num_layers - 1 and rnn.dropout > 0:
                hidden = nn.functional.dropout(hidden, rnn.dropout, self.training)
        steps = torch.arange(frames.shape[1], device=frames.device)
        valid = (steps.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
        return self.dropout(hidden * valid)

    def _packed(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            frames, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        output, _ = self.rnn(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=frames.shape[1])
        return self.dropout(output)
