"""Deep Speech 2 style encoder: 2-D convolutions over (freq, time), then bidirectional RNNs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from speechlab.nn.encoders.rnn import PackedRNN
from speechlab.nn.encoders.subsampling import Conv2dSubsampling


class ConvLSTMEncoder(nn.Module):
    """Log-mel ``(B, input_dim, T)`` -> frames ``(B, T', hidden_size * directions)``, lengths ``(B,)``.

    Convolutions over ``(freq, time)`` with batch norm (over valid frames) and a clipped ReLU,
    as in Deep Speech 2 (Amodei et al., 2016), then ``num_layers`` stacked GRU or LSTM layers
    over the packed sequence. The time reduction is the product of the time strides.

    Args:
        input_dim: mel bands of the input.
        conv_channels: output channels of each convolution.
        conv_kernel_sizes: ``(freq, time)`` kernel of each convolution.
        conv_strides: ``(freq, time)`` stride of each convolution.
        activation: ``"hardtanh"`` (ReLU clipped at 20, as in Deep Speech 2) or ``"relu"``.
        rnn_type: ``"gru"`` or ``"lstm"``.
        hidden_size: RNN units per direction.
        num_layers: stacked RNN layers.
        dropout: dropout between RNN layers and on the output.
        bidirectional: bidirectional RNN layers.
    """

    def __init__(
        self,
        input_dim: int,
        conv_channels: Sequence[int] = (32, 32),
        conv_kernel_sizes: Sequence[Sequence[int]] = ((11, 5), (11, 5)),
        conv_strides: Sequence[Sequence[int]] = ((2, 2), (2, 2)),
        activation: str = "hardtanh",
        rnn_type: str = "gru",
        hidden_size: int = 256,
        num_layers: int = 3,
        dropout: float = 0.2,
        bidirectional: bool = True,
    ) -> None:
        super().__init__()
        self.conv = Conv2dSubsampling(
            input_dim,
            channels=conv_channels,
            kernel_sizes=conv_kernel_sizes,
            strides=conv_strides,
            batch_norm=True,
            activation=activation,
        )
        self.rnn = PackedRNN(
            self.conv.output_dim, hidden_size, num_layers, dropout, bidirectional, rnn_type
        )
        self.subsampling = self.conv.subsampling
        self.output_dim = self.rnn.output_dim

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames ``(B,)`` for input frame counts ``(B,)``."""
        return self.conv.output_lengths(lengths)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        frames, lengths = self.conv(features, lengths)  # (B, T', C * F')
        return self.rnn(frames, lengths), lengths
