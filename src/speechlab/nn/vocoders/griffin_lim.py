"""Griffin-Lim vocoder: mel -> linear spectrogram (least squares) -> phase by Griffin-Lim."""

from __future__ import annotations

import torch
import torchaudio
from torch import nn


class GriffinLimVocoder(nn.Module):
    """Natural log-mel ``(B, n_mels, T)`` (power mel, as :class:`LogMelFrontend` computes it)
    -> waveforms ``(B, T * hop_length)``, with torchaudio's ``InverseMelScale`` and
    ``GriffinLim``. Nothing is learned.

    Args:
        sample_rate, n_fft, win_length, hop_length, n_mels, f_min, f_max: those of the frontend.
        n_iter: Griffin-Lim iterations (more: fewer phase artefacts, slower).
        power: exponent applied to the magnitude before phase recovery; > 1 sharpens harmonics
            and lowers the noise floor Griffin-Lim leaves (1.0 = as predicted).
        eps: the frontend's log offset, subtracted after ``exp``.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_fft: int = 1024,
        hop_length: int = 256,
        n_mels: int = 80,
        win_length: int | None = None,
        f_min: float = 0.0,
        f_max: float | None = None,
        n_iter: int = 32,
        power: float = 1.3,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if n_iter < 1:
            raise ValueError(f"n_iter must be at least 1, got {n_iter}")
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.power = power
        self.eps = eps
        self.inverse_mel = torchaudio.transforms.InverseMelScale(
            n_stft=n_fft // 2 + 1,
            n_mels=n_mels,
            sample_rate=sample_rate,
            f_min=f_min,
            f_max=f_max,
        )
        self.griffin_lim = torchaudio.transforms.GriffinLim(
            n_fft=n_fft, win_length=win_length, hop_length=hop_length, power=1.0, n_iter=n_iter
        )

    @property
    def n_iter(self) -> int:
        return self.griffin_lim.n_iter

    @n_iter.setter
    def n_iter(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"n_iter must be at least 1, got {value}")
        self.griffin_lim.n_iter = int(value)

    @torch.no_grad()
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=log_mel.device.type, enabled=False):
            power_mel = (torch.exp(log_mel.float()) - self.eps).clamp(min=0.0)
            linear_power = self.inverse_mel(power_mel).clamp(min=0.0)
            magnitude = linear_power.sqrt() ** self.power
            return self.griffin_lim(magnitude)
