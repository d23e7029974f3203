"""A 1-D convolutional encoder in the style of Wav2Letter / QuartzNet (no recurrence)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from speechlab.nn.encoders.masking import MaskedBatchNorm, time_mask
from speechlab.nn.encoders.subsampling import conv_output_lengths


class _SeparableBlock(nn.Module):
    """``repeat`` x (depthwise conv, pointwise conv, batch norm, ReLU, dropout) + a residual.

    The residual (a 1x1 conv and batch norm of the block input, or the input itself when the
    widths match) is added before the last ReLU. Works on ``(B, C, T)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, repeat: int, dropout: float
    ) -> None:
        super().__init__()
        self.depthwise = nn.ModuleList()
        self.pointwise = nn.ModuleList()
        self.norms = nn.ModuleList()
        width = in_channels
        for _ in range(repeat):
            self.depthwise.append(
                nn.Conv1d(
                    width, width, kernel_size, padding=kernel_size // 2, groups=width, bias=False
                )
            )
            self.pointwise.append(nn.Conv1d(width, out_channels, 1, bias=False))
            self.norms.append(MaskedBatchNorm(out_channels))
            width = out_channels
        self.residual = (
            nn.Conv1d(in_channels, out_channels, 1, bias=False)
            if in_channels != out_channels
            else None
        )
        self.residual_norm = MaskedBatchNorm(out_channels) if self.residual is not None else None
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``hidden`` ``(B, C_in, T)`` with zero padding, ``mask`` ``(B, 1, T)`` -> ``(B, C_out, T)``."""
        residual = hidden
        if self.residual is not None and self.residual_norm is not None:
            residual = self.residual_norm(self.residual(hidden), mask)
        last = len(self.depthwise) - 1
        for index, (depthwise, pointwise, norm) in enumerate(
            zip(self.depthwise, self.pointwise, self.norms, strict=True)
        ):
            hidden = norm(pointwise(depthwise(hidden)), mask)
            if index == last:
                hidden = hidden + residual
            hidden = self.dropout(self.activation(hidden)) * mask
        return hidden


class ConvEncoder(nn.Module):
    """Log-mel ``(B, input_dim, T)`` -> frames ``(B, T', channels[-1])`` and lengths ``(B,)``.

    A strided "prologue" convolution (kernel ``stem_kernel_size``, stride ``stride``), then one
    residual block of ``repeat`` depthwise-separable convolutions per entry of ``channels``.
    Batch norm counts only valid frames and padded frames are zeroed before every convolution,
    so an utterance's output does not depend on the batch it is in. ``T' = ceil(T / stride)``.

    Args:
        input_dim: mel bands of the input.
        channels: output channels of each residual block.
        kernel_sizes: (odd) depthwise kernel of each block, in frames after subsampling.
        repeat: separable convolutions per block.
        stem_channels: output channels of the strided prologue convolution.
        stem_kernel_size: kernel of the prologue convolution, in input frames.
        stride: time reduction of the prologue convolution (the encoder's subsampling).
        dropout: dropout after every activation.
    """

    def __init__(
        self,
        input_dim: int,
        channels: Sequence[int] = (256,) * 6,
        kernel_sizes: Sequence[int] = (11, 11, 13, 13, 15, 15),
        repeat: int = 2,
        stem_channels: int = 256,
        stem_kernel_size: int = 11,
        stride: int = 2,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not channels or len(channels) != len(kernel_sizes):
            raise ValueError("channels and kernel_sizes must have the same, nonzero length")
        if any(k % 2 == 0 for k in (*kernel_sizes, stem_kernel_size)):
            raise ValueError("kernel sizes must be odd so that a block keeps the frame count")
        if repeat < 1 or stride < 1:
            raise ValueError("repeat and stride must be at least 1")
        self.stem_kernel_size = stem_kernel_size
        self.subsampling = stride
        self.stem = nn.Conv1d(
            input_dim, stem_channels, stem_kernel_size, stride, stem_kernel_size // 2, bias=False
        )
        self.stem_norm = MaskedBatchNorm(stem_channels)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        blocks = []
        previous = stem_channels
        for width, kernel in zip(channels, kernel_sizes, strict=True):
            blocks.append(_SeparableBlock(previous, width, kernel, repeat, dropout))
            previous = width
        self.blocks = nn.ModuleList(blocks)
        self.output_dim = previous

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames ``(B,)`` for input frame counts ``(B,)``."""
        kernel = self.stem_kernel_size
        return conv_output_lengths(lengths, kernel, self.subsampling, kernel // 2)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.stem(features * time_mask(lengths, features))  # (B, C, T')
        lengths = self.output_lengths(lengths)
        mask = time_mask(lengths, hidden)
        hidden = self.dropout(self.activation(self.stem_norm(hidden, mask))) * mask
        for block in self.blocks:
            hidden = block(hidden, mask)
        return hidden.transpose(1, 2), lengths
