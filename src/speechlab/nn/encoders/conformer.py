"""Conv subsampling + a projection + torchaudio's Conformer (Gulati et al., 2020)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchaudio
from torch import nn

from speechlab.nn.encoders.masking import time_mask
from speechlab.nn.encoders.subsampling import Conv2dSubsampling


class ConformerEncoder(nn.Module):
    """Log-mel ``(B, input_dim, T)`` -> frames ``(B, T', d_model)`` and lengths ``(B,)``.

    Two strided 3x3 convolutions (``ceil(T / 4)`` frames by default), a linear projection to
    ``d_model`` and :class:`torchaudio.models.Conformer`. The output holds
    ``T' = max(lengths')`` frames: torchaudio builds its attention padding mask from the lengths,
    so the frames are cut to the longest utterance first.

    torchaudio's convolution module does not mask padding, so padded frames are zeroed at the
    input of each depthwise convolution (a forward pre-hook): in eval, an utterance's output does
    not depend on its batch. (The batch norm after it still sees padded frames in training.)

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
        if d_model % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide d_model={d_model}")
        if depthwise_conv_kernel_size % 2 == 0:
            raise ValueError("depthwise_conv_kernel_size must be odd ('same' padding)")
        self.subsample = Conv2dSubsampling(
            input_dim,
            channels=subsampling_channels,
            kernel_sizes=[3] * len(subsampling_channels),
            strides=subsampling_strides,
        )
        self.projection = nn.Linear(self.subsample.output_dim, d_model)
        self.dropout = nn.Dropout(dropout)
        self.conformer = torchaudio.models.Conformer(
            input_dim=d_model,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            depthwise_conv_kernel_size=depthwise_conv_kernel_size,
            dropout=dropout,
        )
        self._padding_mask: torch.Tensor | None = None
        for layer in self.conformer.conformer_layers:
            depthwise = layer.conv_module.sequential[2]
            if not (isinstance(depthwise, nn.Conv1d) and depthwise.groups == d_model):
                raise RuntimeError("unexpected torchaudio Conformer layout: no depthwise conv")
            depthwise.register_forward_pre_hook(self._mask_padding)
        self.subsampling = self.subsample.subsampling
        self.output_dim = d_model

    def _mask_padding(self, module: nn.Module, args: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        """Zero the padded frames of a depthwise convolution's input ``(B, C, T')``."""
        if self._padding_mask is None:
            return args
        return (args[0] * self._padding_mask.to(args[0].dtype),)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames ``(B,)`` for input frame counts ``(B,)``."""
        return self.subsample.output_lengths(lengths)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        frames, lengths = self.subsample(features, lengths)  # (B, T', C * F')
        frames = frames[:, : int(lengths.max())]
        frames = self.dropout(self.projection(frames))  # (B, T', d_model)
        mask = time_mask(lengths, frames.transpose(1, 2))  # (B, 1, T')
        self._padding_mask = mask
        try:
            frames, lengths = self.conformer(frames, lengths)
        finally:
            self._padding_mask = None
        return frames * mask.transpose(1, 2), lengths
