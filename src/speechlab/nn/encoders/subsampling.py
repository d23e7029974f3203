"""Strided convolutions over ``(freq, time)`` that shorten the frame sequence, and their lengths.

All the length arithmetic of the encoders goes through :func:`conv_output_lengths`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from speechlab.nn.encoders.masking import MaskedBatchNorm, time_mask

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "hardtanh": lambda: nn.Hardtanh(0.0, 20.0),  # Deep Speech 2's clipped ReLU
}


def conv_output_lengths(
    lengths: torch.Tensor, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> torch.Tensor:
    """Output sizes ``(B,)`` of a convolution along one axis, for input sizes ``(B,)``.

    ``floor((L + 2 * padding - dilation * (kernel_size - 1) - 1) / stride) + 1``, as
    :class:`torch.nn.Conv1d` computes it, clamped at 0.
    """
    span = dilation * (kernel_size - 1) + 1
    reduced = torch.div(lengths + 2 * padding - span, stride, rounding_mode="floor") + 1
    return reduced.clamp(min=0)


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    freq, time = value
    return int(freq), int(time)


class Conv2dSubsampling(nn.Module):
    """Log-mel ``(B, input_dim, T)`` -> frames ``(B, T', channels[-1] * F')`` and lengths ``(B,)``.

    A stack of 2-D convolutions over ``(freq, time)``, each followed by an optional batch norm
    (over valid frames only) and an activation, with "same"-style padding ``kernel // 2``.
    Padded frames are zeroed before every convolution, so valid outputs do not depend on the
    padding of the batch.

    Args:
        input_dim: mel bands ``F`` of the input.
        channels: output channels of each convolution.
        kernel_sizes: kernel of each convolution, an int or a ``(freq, time)`` pair.
        strides: stride of each convolution, an int or a ``(freq, time)`` pair.
        batch_norm: batch norm after each convolution (the convolutions then have no bias).
        activation: ``"relu"``, ``"silu"`` or ``"hardtanh"`` (clipped to ``[0, 20]``).
    """

    def __init__(
        self,
        input_dim: int,
        channels: Sequence[int] = (32, 32),
        kernel_sizes: Sequence[int | Sequence[int]] = (3, 3),
        strides: Sequence[int | Sequence[int]] = (2, 2),
        batch_norm: bool = False,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if not channels or not len(channels) == len(kernel_sizes) == len(strides):
            raise ValueError(
                "channels, kernel_sizes and strides must have the same, nonzero length"
            )
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}"
            )
        self.kernels = [_pair(k) for k in kernel_sizes]
        self.strides = [_pair(s) for s in strides]
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList() if batch_norm else None
        self.activation = _ACTIVATIONS[activation]()
        previous, freq = 1, torch.tensor([input_dim])
        for width, kernel, stride in zip(channels, self.kernels, self.strides, strict=True):
            padding = (kernel[0] // 2, kernel[1] // 2)
            self.convs.append(
                nn.Conv2d(previous, width, kernel, stride, padding, bias=not batch_norm)
            )
            if self.norms is not None:
                self.norms.append(MaskedBatchNorm(width))
            freq = conv_output_lengths(freq, kernel[0], stride[0], padding[0])
            previous = width
        if int(freq) < 1:
            raise ValueError(f"input_dim={input_dim} is too small for the frequency strides")
        self.output_dim = previous * int(freq)
        self.subsampling = math.prod(stride[1] for stride in self.strides)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames ``(B,)`` for input frame counts ``(B,)``."""
        for kernel, stride in zip(self.kernels, self.strides, strict=True):
            lengths = conv_output_lengths(lengths, kernel[1], stride[1], kernel[1] // 2)
        return lengths

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = features.unsqueeze(1)  # (B, 1, F, T)
        for index, (kernel, stride) in enumerate(zip(self.kernels, self.strides, strict=True)):
            hidden = self.convs[index](hidden * time_mask(lengths, hidden))
            lengths = conv_output_lengths(lengths, kernel[1], stride[1], kernel[1] // 2)
            if self.norms is not None:
                hidden = self.norms[index](hidden, time_mask(lengths, hidden))
            hidden = self.activation(hidden)
        hidden = hidden * time_mask(lengths, hidden)  # (B, C, F', T')
        batch, channels, freq, frames = hidden.shape
        return hidden.permute(0, 3, 1, 2).reshape(batch, frames, channels * freq), lengths
