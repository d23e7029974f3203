"""Conv subsampling + a deep bidirectional LSTM (Graves et al., 2013), for CTC or attention."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from speechlab.nn.encoders.rnn import PackedRNN
from speechlab.nn.encoders.subsampling import Conv2dSubsampling


class LSTMEncoder(nn.Module):
    """Log-mel ``(B, input_dim, T)`` -> frames ``(B, T', hidden_size * directions)``, lengths ``(B,)``.

    Two strided 3x3 convolutions over ``(freq, time)`` (``T' = ceil(T / 4)`` by default), then
    ``num_layers`` stacked (bi)LSTM layers over the packed sequence.

    Args:
        input_dim: mel bands of the input.
        hidden_size: LSTM units per direction.
        num_layers: stacked LSTM layers.
        dropout: dropout between LSTM layers and on the output.
        bidirectional: bidirectional LSTM layers.
        subsampling_channels: channels of each subsampling convolution (its length sets how many).
        subsampling_strides: stride (freq and time) of each subsampling convolution.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_size: int = 192,
        num_layers: int = 3,
        dropout: float = 0.2,
        bidirectional: bool = True,
        subsampling_channels: Sequence[int] = (32, 32),
        subsampling_strides: Sequence[int] = (2, 2),
    ) -> None:
        super().__init__()
        self.subsample = Conv2dSubsampling(
            input_dim,
            channels=subsampling_channels,
            kernel_sizes=[3] * len(subsampling_channels),
            strides=subsampling_strides,
        )
        self.rnn = PackedRNN(
            self.subsample.output_dim, hidden_size, num_layers, dropout, bidirectional, "lstm"
        )
        self.subsampling = self.subsample.subsampling
        self.output_dim = self.rnn.output_dim

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames ``(B,)`` for input frame counts ``(B,)``."""
        return self.subsample.output_lengths(lengths)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        frames, lengths = self.subsample(features, lengths)  # (B, T', C * F')
        return self.rnn(frames, lengths), lengths
