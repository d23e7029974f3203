"""Conv subsampling + a projection + Conformer layers (Gulati et al., 2020) on fused attention."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from speechlab.audio.features import lengths_to_mask
from speechlab.nn.encoders.conformer_layers import Conformer
from speechlab.nn.encoders.subsampling import Conv2dSubsampling


class ConformerEncoder(nn.Module):
    """Log-mel ``(B, input_dim, T)`` -> frames ``(B, T', d_model)`` and lengths ``(B,)``.

    Two strided 3x3 convolutions (``ceil(T / 4)`` frames by default), a linear projection to
    ``d_model`` and a :class:`~speechlab.nn.encoders.conformer_layers.Conformer`: torchaudio's
    Conformer layers (same parameter names, same outputs) on
    :func:`torch.nn.functional.scaled_dot_product_attention`, with the attention and convolution
    padding masks built once per batch. ``T'`` is the subsampled length of the padded input
    (``max(lengths')`` for a batch padded to its longest utterance); padded output frames are 0.

    Padded frames are zeroed at the input of each depthwise convolution, so in eval an
    utterance's output does not depend on its batch. (The batch norm after it still sees padded
    frames in training, as in torchaudio.)

    Args:
        input_dim: mel bands of the input.
        d_model: model width.
        num_heads: attention heads (must divide ``d_model``).
        ffn_dim: hidden units of the feed-forward modules.
        num_layers: Conformer layers.
        depthwise_conv_kernel_size: (odd) kernel of the convolution modules, in output frames.
        dropout: dropout inside the layers and after the projection.
        subsampling_channels: channels of each subsampling convolution (its length sets how many).
        subsampling_strides: stride (freq and time) of each subsampling convolution.

    Raises:
        ValueError: ``num_heads`` does not divide ``d_model``, or the kernel size is even.
    """

    def __init__(
        self,
        input_dim: int,
        d_model: int = 144,
        num_heads: int = 4,
        ffn_dim: int = 576,
        num_layers: int = 4,
        depthwise_conv_kernel_size: int = 15,
        dropout: float = 0.1,
        subsampling_channels: Sequence[int] = (64, 64),
        subsampling_strides: Sequence[int] = (2, 2),
    ) -> None:
        super().__init__()
        self.subsample = Conv2dSubsampling(
            input_dim,
            channels=subsampling_channels,
            kernel_sizes=[3] * len(subsampling_channels),
            strides=subsampling_strides,
        )
        self.projection = nn.Linear(self.subsample.output_dim, d_model)
        self.dropout = nn.Dropout(dropout)
        self.conformer = Conformer(
            input_dim=d_model,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            depthwise_conv_kernel_size=depthwise_conv_kernel_size,
            dropout=dropout,
        )
        self.subsampling = self.subsample.subsampling
        self.output_dim = d_model

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames ``(B,)`` for input frame counts ``(B,)``."""
        return self.subsample.output_lengths(lengths)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        frames, lengths = self.subsample(features, lengths)  # (B, T', C * F')
        frames = self.dropout(self.projection(frames))  # (B, T', d_model)
        frames, lengths = self.conformer(frames, lengths)
        valid = lengths_to_mask(lengths, frames.shape[1]).unsqueeze(-1)  # (B, T', 1)
        return frames.masked_fill(~valid, 0.0), lengths
