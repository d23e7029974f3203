"""Vocoders: log-mel ``(B, n_mels, T)`` -> waveform ``(B, samples)`` at ``sample_rate``."""

from __future__ import annotations

from typing import Protocol

import torch


class Vocoder(Protocol):
    """What a synthesis task needs of a vocoder (Griffin-Lim, or a neural one given by config:
    ``model/vocoder=<name>``). ``hop_length`` samples per mel frame."""

    sample_rate: int
    hop_length: int

    def __call__(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Natural log-mel ``(B, n_mels, T)`` -> waveforms ``(B, T * hop_length)``."""
        ...
