"""BC-ResNet: broadcasted residual learning over log-mel features (keyword spotting)."""

from __future__ import annotations

import math

import torch
from torch import nn

from speechlab.audio.features import lengths_to_mask

#: ``(output channels / tau, BC blocks, frequency stride of the first block, time dilation)`` of
#: each stage of BC-ResNet-1 (Kim et al. 2021, Table 1).
STAGES: tuple[tuple[int, int, int, int], ...] = (
    (8, 2, 1, 1),
    (12, 2, 2, 2),
    (16, 4, 2, 4),
    (20, 4, 1, 8),
)
STEM_CHANNELS = 16  # per unit of tau
EMBEDDING_CHANNELS = 32  # per unit of tau


def _halved(bands: int) -> int:
    """Frequency bands after a stride-2 conv whose padding keeps a stride-1 conv's size."""
    return (bands - 1) // 2 + 1


class SubSpectralNorm(nn.Module):
    """BatchNorm with its own statistics and affine per channel *and* per frequency sub-band.

    ``(B, C, F, T)`` is viewed as ``(B, C * sub_bands, F / sub_bands, T)`` and batch-normalised
    (Chang et al. 2021, "SubSpectral Normalization for Neural Audio Data Processing"); one
    sub-band is plain BatchNorm. ``F`` must be a multiple of ``sub_bands`` (checked by
    :class:`BCResNet`, which knows every ``F`` in advance).
    """

    def __init__(self, channels: int, sub_bands: int):
        super().__init__()
        self.sub_bands = sub_bands
        self.norm = nn.BatchNorm2d(channels * sub_bands)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        batch, channels, bands, frames = hidden.shape
        grouped = hidden.reshape(batch, channels * self.sub_bands, bands // self.sub_bands, frames)
        normed = self.norm(grouped).reshape(batch, channels, bands, frames)
        if self.sub_bands > 1 and hidden.is_contiguous(memory_format=torch.channels_last):
            normed = normed.contiguous(memory_format=torch.channels_last)  # the regrouping copied
        return normed


class BCBlock(nn.Module):
    """One broadcasted-residual block, ``(B, C_in, F, T)`` -> ``(B, C_out, F / stride, T)``.

    Frequency-depthwise 3x1 conv + SubSpectralNorm gives ``f2``; its average over frequency goes
    through a dilated time-depthwise 1x3 conv + BatchNorm + SiLU, a 1x1 conv and channel dropout
    to give ``f1 (B, C, 1, T)``, which is broadcast back over frequency: ``ReLU(x + f2 + f1)``.
    A transition block (``C_in != C_out``) starts with a 1x1 conv + BatchNorm + ReLU and has no
    identity term. ``mask`` ``(B, 1, 1, T)`` zeroes the padded frames before the time conv, the
    block's one op that mixes frames.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        sub_bands: int,
        stride: int = 1,
        dilation: int = 1,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.transition = in_channels != out_channels
        self.project = (
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            )
            if self.transition
            else nn.Identity()
        )
        self.frequency_conv = nn.Conv2d(
            out_channels,
            out_channels,
            (3, 1),
            stride=(stride, 1),
            padding=(1, 0),
            groups=out_channels,
            bias=False,
        )
        self.frequency_norm = SubSpectralNorm(out_channels, sub_bands)
        self.time_conv = nn.Conv2d(
            out_channels,
            out_channels,
            (1, 3),
            padding=(0, dilation),
            dilation=(1, dilation),
            groups=out_channels,
            bias=False,
        )
        self.time_norm = nn.BatchNorm2d(out_channels)
        self.activation = nn.SiLU(inplace=True)
        self.pointwise = nn.Conv2d(out_channels, out_channels, 1, bias=False)
        self.dropout = nn.Dropout2d(dropout)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        f2 = self.frequency_norm(self.frequency_conv(self.project(hidden)))
        f1 = f2.mean(dim=2, keepdim=True) * mask  # (B, C, 1, T): padded frames zero
        f1 = self.activation(self.time_norm(self.time_conv(f1)))
        f1 = self.dropout(self.pointwise(f1))
        out = f2 + f1  # f1 broadcast over frequency
        if not self.transition:
            out = out + hidden
        return torch.relu(out)


class BCResNet(nn.Module):
    """Log-mel ``(B, n_mels, F)`` -> utterance embedding ``(B, 32 * width)``.

    BC-ResNet (Kim et al. 2021, "Broadcasted Residual Learning for Efficient Keyword Spotting",
    Interspeech), BC-ResNet-1 scaled by ``width`` (the paper's tau): a 5x5 conv to ``16 tau``
    channels with stride 2 in frequency, then four stages of ``8, 12, 16, 20 tau`` channels with
    2, 2, 4, 4 broadcasted-residual blocks (:class:`BCBlock`; frequency stride 2 at the first
    block of stages 2 and 3, time dilation 1, 2, 4, 8), then a depthwise conv over the remaining
    frequency bands (5x5 for 40 mels, which have 5 left), a 1x1 conv to ``32 tau`` channels +
    BatchNorm + ReLU, an average over the valid (unpadded) time steps and the frequency axis, and
    dropout. There is no classifier: the task puts its own head on the embedding.

    Nothing strides in time, so one mask from ``lengths`` zeroes the padded frames before every
    op that mixes frames (the 5x5 convs and each block's time conv) and the average counts only
    valid frames: an utterance's embedding does not depend on how much padding its batch adds.

    Args:
        n_mels: mel bands of the input.
        width: the channel multiplier tau (1 is BC-ResNet-1, 8 is BC-ResNet-8); each width is
            rounded to a whole number of channels.
        sub_bands: frequency sub-bands of each SubSpectralNorm (1: plain BatchNorm). Every
            block's frequency size, ``n_mels`` halved once by the first conv and once more at
            stages 2 and 3 (40 mels: 20, 10, 5), must be a multiple of it.
        dropout: channel dropout in each block, and dropout on the pooled embedding.
        channels_last: keep the activations after the first conv channels-last (NHWC), like
            :class:`speechlab.nn.kws_cnn.KeywordCNN`: the same outputs, another memory layout.
            Unlike KeywordCNN's, it made CPU training steps 12-16 % slower (1 thread, 40 x 101
            log-mels, batch 32): the depthwise convs gain nothing and every SubSpectralNorm
            regroups the activations through two copies.

    Raises:
        ValueError: ``width <= 0``, ``sub_bands < 1``, ``n_mels < 8`` (too few bands for the
            three frequency halvings), or a block frequency size that ``sub_bands`` does not
            divide.
    """

    def __init__(
        self,
        n_mels: int = 40,
        width: float = 1.0,
        sub_bands: int = 5,
        dropout: float = 0.1,
        channels_last: bool = True,
    ):
        super().__init__()
        if width <= 0:
            raise ValueError(
                f"width={width}: expected a positive channel multiplier tau "
                "(1 for BC-ResNet-1, 8 for BC-ResNet-8); set e.g. width=1"
            )
        if sub_bands < 1:
            raise ValueError(
                f"sub_bands={sub_bands}: expected at least 1 SubSpectralNorm sub-band "
                "(1 is plain BatchNorm); set e.g. sub_bands=5 for 40 mels"
            )
        if n_mels < 8:
            raise ValueError(
                f"n_mels={n_mels} is too small for BC-ResNet's three frequency halvings "
                "(the first conv, stages 2 and 3); expected at least 8 mel bands"
            )
        bands = _halved(n_mels)
        stage_bands = []
        for _, _, stride, _ in STAGES:
            bands = _halved(bands) if stride == 2 else bands
            stage_bands.append(bands)
        if any(b % sub_bands for b in stage_bands):
            common = math.gcd(*stage_bands)
            choices = [d for d in range(1, common + 1) if common % d == 0]
            raise ValueError(
                f"n_mels={n_mels}, sub_bands={sub_bands}: the blocks see {sorted(set(stage_bands))} "
                f"frequency bands, not all divisible into {sub_bands} SubSpectralNorm sub-bands; "
                f"set sub_bands to one of {choices} or n_mels to a multiple of {8 * sub_bands}"
            )

        def scaled(channels: int) -> int:
            return max(1, round(channels * width))

        stem = scaled(STEM_CHANNELS)
        self.stem = nn.Sequential(
            nn.Conv2d(1, stem, 5, stride=(2, 1), padding=2, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
        )
        blocks: list[BCBlock] = []
        previous = stem
        for channels, repeats, stride, dilation in STAGES:
            channels = scaled(channels)
            for index in range(repeats):
                blocks.append(
                    BCBlock(
                        previous,
                        channels,
                        sub_bands,
                        stride=stride if index == 0 else 1,
                        dilation=dilation,
                        dropout=dropout,
                    )
                )
                previous = channels
        self.blocks = nn.ModuleList(blocks)
        head_bands = min(5, stage_bands[-1])  # 40 mels: a 5x5 conv collapses the last 5 bands
        self.head_conv = nn.Conv2d(
            previous, previous, (head_bands, 5), padding=(0, 2), groups=previous, bias=False
        )
        self.output_dim = scaled(EMBEDDING_CHANNELS)
        self.embed = nn.Sequential(
            nn.Conv2d(previous, self.output_dim, 1, bias=False),
            nn.BatchNorm2d(self.output_dim),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.channels_last = channels_last

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        frames = features.shape[-1]
        valid = lengths.clamp(min=1, max=frames)
        mask = lengths_to_mask(valid, frames).view(-1, 1, 1, frames).to(features.dtype)
        hidden = (features * mask.squeeze(1)).unsqueeze(1)  # (B, 1, n_mels, F), padding zero
        hidden = self.stem(hidden)  # (B, 16 tau, n_mels / 2, F)
        if self.channels_last:  # after the conv: a one-channel input has no layout to follow
            hidden = hidden.contiguous(memory_format=torch.channels_last)
        for block in self.blocks:
            hidden = block(hidden, mask)
        hidden = self.embed(self.head_conv(hidden * mask))  # (B, 32 tau, bands left, F)
        pooled = (hidden * mask).sum(dim=(2, 3)) / (valid.view(-1, 1) * hidden.shape[2])
        return self.dropout(pooled)
