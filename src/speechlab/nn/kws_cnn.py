"""A small 2-D CNN that turns log-mel features into an utterance embedding (keyword spotting)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from speechlab.audio.features import lengths_to_mask


class KeywordCNN(nn.Module):
    """Log-mel ``(B, n_mels, F)`` -> utterance embedding ``(B, channels[-1])``.

    Blocks of ``convs_per_block`` 3x3 Conv-BatchNorm-ReLU layers (two make a VGG block,
    Simonyan and Zisserman 2015), each block followed by 2x2 max pooling, then an average over
    the valid (unpadded) time steps and the frequency axis. Padded frames are zeroed after every
    layer, so the embedding of an utterance does not depend on how much padding its batch adds.

    Args:
        n_mels: mel bands of the input.
        channels: output channels of each conv block.
        dropout: dropout on the pooled embedding.
        convs_per_block: conv layers in each block, before its pooling.
        mask_every_layer: zero the padded frames after every ReLU as well as after every pooling.
            Without it (checkpoints written before 2026-12-04) a pooling window over the last
            valid frame and a padded one lets an odd-length utterance's embedding depend on its
            batch's padding.
        channels_last: keep the activations after the first conv channels-last (NHWC), the layout
            oneDNN and cuDNN convolve fastest: the same outputs, a fifth to a third less time per
            CPU training step (``benchmarks/kws_step.py``).

    Raises:
        ValueError: no blocks, fewer than one conv per block, or ``n_mels`` too small to halve
            once per block.
    """

    def __init__(
        self,
        n_mels: int = 40,
        channels: Sequence[int] = (32, 64, 128),
        dropout: float = 0.1,
        convs_per_block: int = 1,
        mask_every_layer: bool = True,
        channels_last: bool = True,
    ):
        super().__init__()
        if not channels:
            raise ValueError("channels must name at least one conv block")
        if convs_per_block < 1:
            raise ValueError(f"convs_per_block={convs_per_block}: expected at least 1")
        if n_mels < 2 ** len(channels):
            raise ValueError(f"n_mels={n_mels} is too small for {len(channels)} 2x pooling blocks")
        blocks: list[nn.Module] = []
        previous = 1
        for width in channels:
            layers: list[nn.Module] = []
            for _ in range(convs_per_block):
                layers += [
                    nn.Conv2d(previous, width, kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                previous = width
            blocks.append(nn.Sequential(*layers, nn.MaxPool2d(2, ceil_mode=True)))
        self.blocks = nn.ModuleList(blocks)
        self.mask_every_layer = mask_every_layer
        self.channels_last = channels_last
        self.dropout = nn.Dropout(dropout)
        self.output_dim = previous

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        hidden = features.unsqueeze(1)  # (B, 1, n_mels, F)
        reduced = lengths
        mask = lengths_to_mask(reduced, hidden.shape[-1]).view(hidden.shape[0], 1, 1, -1)
        for block in self.blocks:
            for layer in block:
                hidden = layer(hidden)
                if self.channels_last and isinstance(layer, nn.Conv2d):
                    # after the conv: a one-channel input has no layout for the conv to follow
                    hidden = hidden.contiguous(memory_format=torch.channels_last)
                if isinstance(layer, nn.MaxPool2d):  # (B, C, n_mels / 2^k, F / 2^k)
                    reduced = torch.div(reduced + 1, 2, rounding_mode="floor").clamp(
                        min=1, max=hidden.shape[-1]
                    )
                    mask = lengths_to_mask(reduced, hidden.shape[-1])
                    mask = mask.view(hidden.shape[0], 1, 1, -1)
                if isinstance(layer, nn.MaxPool2d) or (
                    self.mask_every_layer and isinstance(layer, nn.ReLU)
                ):
                    hidden = hidden * mask  # padded frames stay zero for the next conv
        pooled = hidden.sum(dim=(2, 3)) / (reduced.view(-1, 1) * hidden.shape[2])
        return self.dropout(pooled)
