"""Conv subsampling + a deep bidirectional LSTM (Graves et al., 2013), for CTC or attention."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from speechlab.nn.encoders.rnn import PackedRNN
from speechlab.nn.encoders.subsampling import Conv2dSubsampling


class LSTMEncoder(nn.Module):
    """Log-mel ``(B, input_dim, T)`` -> frames ``(B, T', hidden_size * directions)``, lengths ``(B,)``.

    Two strided 3x3 convolutions over ``(freq, time)`` (``T' = ceil(T / 4)`` by default), a linear
    projection with layer norm (keeps the LSTM gates out of saturation: without it CTC training
    sat on a plateau for hundreds of steps), then ``num_layers`` stacked (bi)LSTM layers over the
    packed sequence.

    Args:
        input_dim: mel bands of the input.
        hidden_size: LSTM units per direction.
        num_layers: stacked LSTM layers.
        dropout: dropout between LSTM layers and on the output.
        bidirectional: bidirectional LSTM layers.
        subsampling_channels: channels of each subsampling convolution (its length sets how many).
        subsampling_strides: stride (freq and time) of each subsampling convolution.
        projection_dim: width of the projection before the LSTM; ``None`` feeds the flattened
            convolution output directly.
        skip: add a linear map of the LSTM's input to its output. Without it, CTC training on
            the embedded sentences sat on the all-blank plateau for 8 epochs (val CER 0.82);
            with it, val CER was 0.38 after 3 epochs, as fast as the convolutional encoder.
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
        projection_dim: int | None = 256,
        skip: bool = True,
    ) -> None:
        super().__init__()
        self.subsample = Conv2dSubsampling(
            input_dim,
            channels=subsampling_channels,
            kernel_sizes=[3] * len(subsampling_channels),
            strides=subsampling_strides,
        )
        rnn_input = self.subsample.output_dim
        self.projection: nn.Module = nn.Identity()
        if projection_dim is not None:
            self.projection = nn.Sequential(
                nn.Linear(rnn_input, projection_dim), nn.LayerNorm(projection_dim)
            )
            rnn_input = projection_dim
        self.rnn = PackedRNN(rnn_input, hidden_size, num_layers, dropout, bidirectional, "lstm")
        self.subsampling = self.subsample.subsampling
        self.output_dim = self.rnn.output_dim
        self.skip = nn.Linear(rnn_input, self.output_dim) if skip else None

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames ``(B,)`` for input frame counts ``(B,)``."""
        return self.subsample.output_lengths(lengths)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        frames, lengths = self.subsample(features, lengths)  # (B, T', C * F')
        frames = self.projection(frames)
        encoded = self.rnn(frames, lengths)
        if self.skip is not None:
            valid = torch.arange(frames.shape[1], device=frames.device) < lengths[:, None]
            encoded = encoded + self.skip(frames) * valid.unsqueeze(-1)
        return encoded, lengths
