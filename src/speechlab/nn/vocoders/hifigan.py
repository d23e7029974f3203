"""HiFi-GAN: a GAN vocoder, log-mel -> waveform (Kong, Kim and Bae, 2020, "HiFi-GAN: Generative
Adversarial Networks for Efficient and High Fidelity Speech Synthesis", NeurIPS).

The generator upsamples mel frames to samples with transposed convolutions, each followed by a
multi-receptive-field fusion (MRF) of residual blocks; two discriminators judge the waveform: the
multi-period discriminator (MPD, the signal folded into 2-D by periods 2, 3, 5, 7, 11) and the
multi-scale discriminator (MSD, MelGAN's, on the raw signal and two average-pooled copies).
Losses are the paper's: least-squares GAN, feature matching, and the L1 of log-mels (weighted
by the task). Weight normalisation through ``torch.nn.utils.parametrizations.weight_norm``
(spectral normalisation for the first MSD scale, as in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

__all__ = [
    "HiFiGANGenerator",
    "HiFiGANVocoder",
    "MultiPeriodDiscriminator",
    "MultiScaleDiscriminator",
    "discriminator_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
]

LRELU_SLOPE = 0.1

# Discriminator outputs: one score map per sub-discriminator, and its intermediate feature maps.
DiscriminatorOutput = tuple[list[torch.Tensor], list[list[torch.Tensor]]]


def _padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
        nn.init.normal_(module.weight, 0.0, 0.01)


def _dilated_convs(channels: int, kernel_size: int, dilations: Sequence[int]) -> nn.ModuleList:
    """One weight-normalised, length-keeping convolution per dilation."""
    return nn.ModuleList(
        weight_norm(
            nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_padding(kernel_size, d))
        )
        for d in dilations
    )  # fmt: skip


class _ResBlock1(nn.Module):
    """The paper's ResBlock type 1 (V1): pairs of a dilated and an undilated convolution."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs1 = _dilated_convs(channels, kernel_size, dilations)
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, padding=_padding(kernel_size)))
            for _ in dilations
        )
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            y = c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
            x = x + y
        return x


class _ResBlock2(nn.Module):
    """The paper's ResBlock type 2 (V3): one dilated convolution per residual step."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs = _dilated_convs(channels, kernel_size, dilations)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x


_RESBLOCKS = {"1": _ResBlock1, "2": _ResBlock2}


class HiFiGANGenerator(nn.Module):
    """Log-mel ``(B, n_mels, T)`` -> waveform ``(B, 1, T * hop_length)`` in [-1, 1], where
    ``hop_length`` is the product of ``upsample_rates``.

    ``conv_pre`` (kernel 7) -> for each rate: leaky ReLU, a transposed convolution that
    multiplies the time axis by it and halves the channels, then the mean of the residual
    blocks (multi-receptive-field fusion) -> leaky ReLU -> ``conv_post`` (kernel 7) -> tanh.
    The paper's V1 is ``upsample_initial_channel=512, resblock="1"``, V2 the same with 128
    channels, V3 ``upsample_initial_channel=256, resblock="2"`` with three upsampling layers.

    Args:
        n_mels: mel bands of the input.
        upsample_rates: time factor of each transposed convolution (product: the hop length,
            in samples per mel frame).
        upsample_kernel_sizes: their kernel sizes (usually twice the rate).
        upsample_initial_channel: channels after ``conv_pre``, halved at each upsampling.
        resblock: ``"1"`` or ``"2"``, the paper's residual block types.
        resblock_kernel_sizes: one residual block per kernel size, in every MRF.
        resblock_dilation_sizes: the dilations of each of those blocks.

    Raises:
        ValueError: mismatched list lengths, an unknown ``resblock``, a rate below 1, a kernel
            size that is not the rate plus an even number, or too few channels for the number
            of upsampling layers.
    """

    def __init__(
        self,
        n_mels: int,
        upsample_rates: Sequence[int],
        upsample_kernel_sizes: Sequence[int],
        upsample_initial_channel: int,
        resblock: str,
        resblock_kernel_sizes: Sequence[int],
        resblock_dilation_sizes: Sequence[Sequence[int]],
    ) -> None:
        super().__init__()
        resblock = str(resblock)
        if resblock not in _RESBLOCKS:
            raise ValueError(f"resblock must be '1' or '2' (the paper's types), got {resblock!r}")
        if len(upsample_rates) != len(upsample_kernel_sizes) or not upsample_rates:
            raise ValueError(
                f"upsample_rates {list(upsample_rates)} and upsample_kernel_sizes "
                f"{list(upsample_kernel_sizes)} must be non-empty and of the same length"
            )
        if any(int(r) < 1 for r in upsample_rates):
            raise ValueError(f"upsample_rates must be >= 1, got {list(upsample_rates)}")
        odd = [
            (k, r)
            for k, r in zip(upsample_kernel_sizes, upsample_rates, strict=True)
            if k < r or (k - r) % 2
        ]
        if odd:
            raise ValueError(
                f"each upsample kernel size must be at least its rate and differ from it by an "
                f"even number (so the output is exactly rate x the input), got (kernel, rate) {odd}"
            )
        if len(resblock_kernel_sizes) != len(resblock_dilation_sizes):
            raise ValueError(
                "resblock_kernel_sizes and resblock_dilation_sizes need one entry per residual "
                f"block, got {len(resblock_kernel_sizes)} and {len(resblock_dilation_sizes)}"
            )
        if upsample_initial_channel // 2 ** len(upsample_rates) < 1:
            raise ValueError(
                f"upsample_initial_channel={upsample_initial_channel} is halved "
                f"{len(upsample_rates)} times; give at least {2 ** len(upsample_rates)}"
            )
        self.n_mels = n_mels
        self.upsample_rates = [int(r) for r in upsample_rates]
        self.hop_length = int(torch.tensor(self.upsample_rates).prod())
        self.num_kernels = len(resblock_kernel_sizes)
        block = _RESBLOCKS[resblock]
        self.conv_pre = weight_norm(nn.Conv1d(n_mels, upsample_initial_channel, 7, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        channels = upsample_initial_channel
        for rate, kernel in zip(self.upsample_rates, upsample_kernel_sizes, strict=True):
            self.ups.append(
                weight_norm(
                    nn.ConvTranspose1d(
                        channels, channels // 2, kernel, rate, padding=(kernel - rate) // 2
                    )
                )
            )  # fmt: skip
            channels //= 2
            for k, d in zip(resblock_kernel_sizes, resblock_dilation_sizes, strict=True):
                self.resblocks.append(block(channels, k, d))
        self.conv_post = weight_norm(nn.Conv1d(channels, 1, 7, padding=3))
        self.ups.apply(_init_weights)
        self.conv_post.apply(_init_weights)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(log_mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        x = self.conv_post(F.leaky_relu(x))  # torch's default slope 0.01 here, as the paper's code
        return torch.tanh(x)


class HiFiGANVocoder(nn.Module):
    """A trained :class:`HiFiGANGenerator` as a synthesis vocoder: natural log-mel
    ``(B, n_mels, T)`` (as :class:`speechlab.audio.features.LogMelFrontend` computes it before
    normalisation) -> waveforms ``(B, T * hop_length)`` at ``sample_rate`` Hz.

    Args:
        generator: the generator.
        sample_rate: its sampling rate in Hz (the frontend's it was trained on).
        hop_length: samples per mel frame of the frontend.

    Raises:
        ValueError: ``hop_length`` differs from the product of the generator's upsampling rates.
    """

    def __init__(self, generator: HiFiGANGenerator, sample_rate: int, hop_length: int) -> None:
        super().__init__()
        if generator.hop_length != hop_length:
            raise ValueError(
                f"the HiFi-GAN generator upsamples by {generator.upsample_rates} = "
                f"{generator.hop_length} samples per frame, but the frontend's hop_length is "
                f"{hop_length}; choose upsample_rates whose product is {hop_length}"
            )
        self.generator = generator
        self.sample_rate = int(sample_rate)
        self.hop_length = int(hop_length)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=log_mel.device.type, enabled=False):
            return self.generator(log_mel.float()).squeeze(1)


class _PeriodDiscriminator(nn.Module):
    """One MPD sub-discriminator: ``(B, 1, T)`` folded into ``(B, 1, T / p, p)``, 2-D
    convolutions with kernels ``(5, 1)`` along the folded time axis."""

    def __init__(self, period: int, channels: Sequence[int]) -> None:
        super().__init__()
        self.period = period
        layers = []
        previous = 1
        for i, width in enumerate(channels):
            stride = 3 if i < len(channels) - 1 else 1
            layers.append(
                weight_norm(nn.Conv2d(previous, width, (5, 1), (stride, 1), padding=(2, 0)))
            )
            previous = width
        self.convs = nn.ModuleList(layers)
        self.conv_post = weight_norm(nn.Conv2d(previous, 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), "reflect")
            t = x.shape[-1]
        x = x.view(b, c, t // self.period, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        x = self.conv_post(x)
        features.append(x)
        return x.flatten(1), features


class MultiPeriodDiscriminator(nn.Module):
    """The MPD: one :class:`_PeriodDiscriminator` per period.

    Args:
        periods: the periods (the paper: 2, 3, 5, 7, 11, primes so they overlap little).
        channels: the output channels of the strided 2-D convolutions (the paper: 32, 128,
            512, 1024, 1024; the last with stride 1).

    Input: waveforms ``(B, 1, T)``. Output: per period, scores ``(B, N_p)`` and the feature maps.

    Raises:
        ValueError: no periods, or a period below 1.
    """

    def __init__(self, periods: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__()
        if not periods or any(int(p) < 1 for p in periods):
            raise ValueError(f"periods must be a non-empty list of integers >= 1, got {periods}")
        self.discriminators = nn.ModuleList(_PeriodDiscriminator(int(p), channels) for p in periods)

    def forward(self, waveform: torch.Tensor) -> DiscriminatorOutput:
        outputs = [d(waveform) for d in self.discriminators]
        return [o[0] for o in outputs], [o[1] for o in outputs]


class _ScaleDiscriminator(nn.Module):
    """One MSD sub-discriminator (MelGAN's): strided, grouped 1-D convolutions."""

    # (kernel, stride, groups) of each convolution before conv_post, as in MelGAN and HiFi-GAN.
    LAYOUT = ((15, 1, 1), (41, 2, 4), (41, 2, 16), (41, 4, 16), (41, 4, 16), (41, 1, 16), (5, 1, 1))

    def __init__(self, channels: Sequence[int], spectral: bool) -> None:
        super().__init__()
        if len(channels) != len(self.LAYOUT):
            raise ValueError(
                f"the scale discriminator has {len(self.LAYOUT)} convolutions; give "
                f"{len(self.LAYOUT)} channel counts, got {list(channels)}"
            )
        norm = spectral_norm if spectral else weight_norm
        layers = []
        previous = 1
        for width, (kernel, stride, groups) in zip(channels, self.LAYOUT, strict=True):
            if previous % groups or width % groups:
                raise ValueError(
                    f"scale discriminator channels {list(channels)}: {previous} -> {width} "
                    f"must both be divisible by the {groups} groups of that convolution"
                )
            layers.append(
                norm(nn.Conv1d(previous, width, kernel, stride, groups=groups, padding=kernel // 2))
            )
            previous = width
        self.convs = nn.ModuleList(layers)
        self.conv_post = norm(nn.Conv1d(previous, 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        x = self.conv_post(x)
        features.append(x)
        return x.flatten(1), features


class MultiScaleDiscriminator(nn.Module):
    """The MSD: ``scales`` scale discriminators on the waveform and on copies average-pooled
    (kernel 4, stride 2) once, twice, ...; the first with spectral normalisation.

    Args:
        scales: number of scales (the paper: 3).
        channels: output channels of the 7 convolutions of each (the paper: 128, 128, 256, 512,
            1024, 1024, 1024).

    Input: waveforms ``(B, 1, T)``. Output: per scale, scores ``(B, N_s)`` and the feature maps.

    Raises:
        ValueError: ``scales`` below 1, or channels that do not fit the grouped convolutions.
    """

    def __init__(self, scales: int, channels: Sequence[int]) -> None:
        super().__init__()
        if scales < 1:
            raise ValueError(f"scales must be at least 1, got {scales}")
        self.discriminators = nn.ModuleList(
            _ScaleDiscriminator(channels, spectral=(i == 0)) for i in range(scales)
        )
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, waveform: torch.Tensor) -> DiscriminatorOutput:
        scores, features = [], []
        x = waveform
        for i, d in enumerate(self.discriminators):
            if i > 0:
                x = self.pool(x)
            score, maps = d(x)
            scores.append(score)
            features.append(maps)
        return scores, features


def discriminator_loss(
    real_scores: Sequence[torch.Tensor], fake_scores: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Least-squares GAN loss of the discriminators: ``sum_k E[(D_k(x) - 1)^2] + E[D_k(G(s))^2]``
    (Mao et al. 2017, as HiFi-GAN uses it)."""
    return sum(
        (torch.mean((1 - r) ** 2) + torch.mean(f**2) for r, f in zip(real_scores, fake_scores, strict=True)),
        torch.zeros((), device=real_scores[0].device),
    )  # fmt: skip


def generator_adversarial_loss(fake_scores: Sequence[torch.Tensor]) -> torch.Tensor:
    """Least-squares GAN loss of the generator: ``sum_k E[(D_k(G(s)) - 1)^2]``."""
    return sum(
        (torch.mean((1 - f) ** 2) for f in fake_scores),
        torch.zeros((), device=fake_scores[0].device),
    )


def feature_matching_loss(
    real_features: Sequence[Sequence[torch.Tensor]],
    fake_features: Sequence[Sequence[torch.Tensor]],
) -> torch.Tensor:
    """Feature matching (Larsen et al. 2016): the L1 distance between the discriminators'
    feature maps of real and generated audio, meaned per layer and summed over layers and
    sub-discriminators; the real side is detached."""
    total = torch.zeros((), device=real_features[0][0].device)
    for real_maps, fake_maps in zip(real_features, fake_features, strict=True):
        for r, f in zip(real_maps, fake_maps, strict=True):
            total = total + torch.mean(torch.abs(r.detach() - f))
    return total
