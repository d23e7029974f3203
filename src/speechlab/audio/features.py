"""Acoustic features computed on the device, in batches: log-mel with per-utterance normalisation
(recognition) or a fixed global one that a vocoder can undo (synthesis).

SpecAugment is torchaudio's ``torchaudio.transforms.SpecAugment``, configured in the model config
and applied by the task in training only.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

NORMALIZE_KINDS = ("utterance", "global", "none")


def frame_lengths(sample_lengths: torch.Tensor, hop_length: int) -> torch.Tensor:
    """Frames a centred STFT yields for ``(B,)`` sample counts."""
    return torch.div(sample_lengths, hop_length, rounding_mode="floor") + 1


def lengths_to_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, max_length)`` bool mask, True on valid positions."""
    positions = torch.arange(max_length, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


class LogMelFrontend(nn.Module):
    """Waveforms ``(B, T)`` -> log-mel features ``(B, n_mels, F)`` and frame counts ``(B,)``.

    Always computed in float32 (autocast is disabled inside), so mixed precision never touches
    the STFT or the log. With ``normalize="utterance"`` each mel band is standardised over the
    valid frames of its own utterance (recognition); with ``"global"`` every value becomes
    ``(log_mel - mean) / std`` with fixed constants, which :meth:`denormalize` undoes (synthesis
    targets a vocoder inverts); ``"none"`` keeps the natural log. Padded frames are zero.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 400,
        win_length: int | None = None,
        hop_length: int = 160,
        n_mels: int = 40,
        f_min: float = 20.0,
        f_max: float | None = None,
        normalize: str = "utterance",
        eps: float = 1e-6,
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        super().__init__()
        if normalize not in NORMALIZE_KINDS:
            raise ValueError(f"normalize must be one of {NORMALIZE_KINDS}, got {normalize!r}")
        if std <= 0:
            raise ValueError(f"std must be positive, got {std}")
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.normalize = normalize
        self.eps = eps
        self.n_fft = n_fft
        self.win_length = win_length or n_fft
        self.f_min = f_min
        self.f_max = f_max
        self.mean = mean
        self.std = std
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            n_mels=n_mels,
            f_min=f_min,
            f_max=f_max,
            center=True,
            power=2.0,
        )

    def forward(
        self, audio: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # The centred STFT reflect-pads n_fft // 2 samples at each end, which needs a longer
        # input: a batch of clips shorter than that (100 samples, say) is zero-padded to one
        # window, and its frame count still comes from the true lengths.
        shortfall = self.n_fft // 2 + 1 - audio.shape[-1]
        if shortfall > 0:
            audio = torch.nn.functional.pad(audio, (0, shortfall))
        with torch.autocast(device_type=audio.device.type, enabled=False):
            features = torch.log(self.mel(audio.float()) + self.eps)
        frames = frame_lengths(lengths, self.hop_length).clamp(max=features.shape[-1])
        mask = lengths_to_mask(frames, features.shape[-1]).unsqueeze(1)  # (B, 1, F)
        if self.normalize == "utterance":
            count = frames.clamp(min=1).view(-1, 1, 1).to(features.dtype)
            mean = (features * mask).sum(-1, keepdim=True) / count
            variance = (((features - mean) * mask) ** 2).sum(-1, keepdim=True) / count
            features = (features - mean) / torch.sqrt(variance + 1e-5)
        elif self.normalize == "global":
            features = (features - self.mean) / self.std
        return features.masked_fill(~mask, 0.0), frames

    def denormalize(self, features: torch.Tensor) -> torch.Tensor:
        """Natural log-mel of ``global``/``none`` features ``(B, n_mels, F)``."""
        if self.normalize == "utterance":
            raise ValueError("per-utterance normalised features cannot be inverted to log-mel")
        if self.normalize == "global":
            return features * self.std + self.mean
        return features
