"""Waveform augmentation of a padded training batch: speed, reverberation, noise, gain, shift.

Applied on the device to ``(B, T)`` waveforms with their ``(B,)`` lengths in samples, before the
frontend, in training only. Every random draw comes from torch's global generator, which
``seed`` sets and an exact resume restores, so a run is reproducible for its seed and a resumed
one draws what the uninterrupted one would have. The operations are torchaudio's
(``functional.speed``, ``functional.fftconvolve``, ``functional.add_noise``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torchaudio.functional as AF
from torch import nn

from speechlab.audio.io import AudioError, read_audio

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
# Below this RMS (-120 dBFS: under the last bit of 16-bit audio) a recording is silent: noise
# scaled to an SNR against it would be divided by (nearly) zero energy.
SILENT_RMS = 1e-6


def silent(audio: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Whether each ``(..., T)`` waveform (its first ``lengths`` samples) is silent: RMS below
    :data:`SILENT_RMS`. Returns a bool tensor of the leading shape."""
    if lengths is None:
        energy = audio.square().mean(dim=-1)
    else:
        valid = torch.arange(audio.shape[-1], device=audio.device) < lengths.unsqueeze(-1)
        energy = (audio.square() * valid).sum(dim=-1) / lengths.clamp(min=1)
    return energy < SILENT_RMS**2


def load_folder(folder: str | Path, sample_rate: int, what: str) -> list[torch.Tensor]:
    """Every audio file under ``folder`` (recursively) as a mono ``(T,)`` tensor at
    ``sample_rate``; unreadable and silent files (RMS below :data:`SILENT_RMS`: nothing to mix
    in, and an SNR against zero energy is not finite) are skipped with a warning each.

    Raises:
        FileNotFoundError: ``folder`` is missing or holds no readable, non-silent audio file.
    """
    root = Path(folder).expanduser()
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not root.is_dir() or not files:
        raise FileNotFoundError(
            f"{what} folder {root} is missing or holds no audio files ({', '.join(AUDIO_SUFFIXES)}); "
            f"point it at a folder of recordings or set it to null"
        )
    recordings = []
    for path in files:
        try:
            recording = read_audio(path, sample_rate)
        except AudioError as error:
            log.warning("%s file %s skipped: %s", what, path, error)
            continue
        if recording.numel() == 0 or bool(silent(recording)):
            log.warning(
                "%s file %s skipped: silent (RMS below %.0f dBFS): it holds no signal to mix in",
                what,
                path,
                20 * math.log10(SILENT_RMS),
            )
            continue
        recordings.append(recording)
    if not recordings:
        raise FileNotFoundError(
            f"no readable, non-silent audio in the {what} folder {root} ({len(files)} file(s), "
            "each skipped with its reason above); point it at a folder of recordings or set it "
            "to null"
        )
    if len(recordings) < len(files):
        log.warning(
            "%s folder %s: %d of %d file(s) skipped",
            what,
            root,
            len(files) - len(recordings),
            len(files),
        )
    return recordings


def _uniform(low: float, high: float, n: int, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device)


class WaveformAugment(nn.Module):
    """Training-time waveform augmentation, in this order: speed perturbation (one factor per
    batch, by resampling, as in Kaldi and ESPnet recipes), room impulse responses, background
    noise at a random SNR, random gain, random time shift.

    Args:
        sample_rate: of the waveforms, in Hz.
        speeds: factors to draw from per batch (``[0.9, 1.0, 1.1]``); ``[1.0]`` turns it off.
            Lengths change with the factor.
        noise_dir: a folder of noise recordings (Speech Commands' ``_background_noise_``,
            MUSAN's noise, ...), read on first use; ``None`` turns noise off.
        noise_prob: probability that an utterance gets noise.
        snr_db: ``[low, high]`` range of the signal-to-noise ratio in dB, drawn uniformly.
        rir_dir: a folder of room impulse responses; ``None`` turns reverberation off.
        rir_prob: probability that an utterance is convolved with one.
        gain_db: ``[low, high]`` gain range in dB; ``[0, 0]`` turns it off.
        shift_ms: the largest time shift in milliseconds, either way; the content moves inside
            the utterance's length and the emptied part is zero (as in the TensorFlow keyword
            spotting recipe, 100 ms).

    Shapes: ``forward(audio (B, T), lengths (B,))`` -> ``(B, T')``, ``(B,)``.

    Raises:
        ValueError: for a probability outside [0, 1], an empty, reversed or non-finite range,
            or a speed factor that is not positive.
        FileNotFoundError: at the first training batch, when a folder holds no audio.
    """

    def __init__(
        self,
        sample_rate: int,
        speeds: Sequence[float] = (1.0,),
        noise_dir: str | None = None,
        noise_prob: float = 0.0,
        snr_db: Sequence[float] = (0.0, 20.0),
        rir_dir: str | None = None,
        rir_prob: float = 0.0,
        gain_db: Sequence[float] = (0.0, 0.0),
        shift_ms: float = 0.0,
    ) -> None:
        super().__init__()
        for name, p in (("noise_prob", noise_prob), ("rir_prob", rir_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        for name, pair in (("snr_db", snr_db), ("gain_db", gain_db)):
            if len(pair) != 2 or not all(map(math.isfinite, pair)) or pair[0] > pair[1]:
                raise ValueError(
                    f"{name} must be [low, high] in dB with finite low <= high, got {list(pair)}"
                )
        if not speeds or not all(s > 0 and math.isfinite(s) for s in speeds):
            raise ValueError(f"speeds must be positive factors, got {list(speeds)}")
        if not (shift_ms >= 0 and math.isfinite(shift_ms)):
            raise ValueError(f"shift_ms must be a finite number >= 0, got {shift_ms}")
        self.sample_rate = sample_rate
        self.speeds = [float(s) for s in speeds]
        self.noise_dir, self.noise_prob, self.snr_db = noise_dir, noise_prob, tuple(snr_db)
        self.rir_dir, self.rir_prob = rir_dir, rir_prob
        self.gain_db = tuple(gain_db)
        self.max_shift = int(round(shift_ms * sample_rate / 1000))
        self._noises: list[torch.Tensor] | None = None
        self._rirs: list[torch.Tensor] | None = None

    def forward(
        self, audio: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if audio.numel() == 0:
            return audio, lengths
        audio, lengths = self._speed(audio, lengths)
        if self.rir_dir and self.rir_prob > 0:
            audio = self._reverberate(audio, lengths)
        if self.noise_dir and self.noise_prob > 0:
            audio = self._add_noise(audio, lengths)
        if self.gain_db != (0.0, 0.0):
            gain = _uniform(*self.gain_db, audio.shape[0], audio.device)
            audio = audio * torch.pow(10.0, gain / 20).unsqueeze(1)
        if self.max_shift:
            audio = self._shift(audio, lengths)
        return audio, lengths

    def _speed(
        self, audio: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if len(self.speeds) == 1 and self.speeds[0] == 1.0:
            return audio, lengths
        factor = self.speeds[int(torch.randint(len(self.speeds), ()))]
        if factor == 1.0:
            return audio, lengths
        audio, new_lengths = AF.speed(audio, self.sample_rate, factor, lengths)
        return audio, new_lengths.clamp(min=1).to(lengths.dtype)

    def _chosen(self, probability: float, n: int, device: torch.device) -> torch.Tensor:
        return torch.rand(n, device=device) < probability

    def _add_noise(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self._noises is None:
            self._noises = load_folder(self.noise_dir, self.sample_rate, "noise")
        batch, frames = audio.shape
        chosen = self._chosen(self.noise_prob, batch, audio.device)
        picks = torch.randint(len(self._noises), (batch,)).tolist()
        starts = torch.rand(batch).tolist()
        segments = []
        for pick, start in zip(picks, starts, strict=True):
            noise = self._noises[pick]
            if noise.numel() < frames:  # a short recording is tiled to cover the utterance
                noise = noise.repeat(frames // noise.numel() + 1)
            offset = int(start * (noise.numel() - frames))
            segments.append(noise[offset : offset + frames])
        noise = torch.stack(segments).to(audio.device, audio.dtype)
        # a silent stretch of a recording (digital silence inside a file) is not mixed in
        chosen = chosen & ~silent(noise, lengths.to(audio.device))
        snr = _uniform(*self.snr_db, batch, audio.device)
        noisy = AF.add_noise(audio, noise, snr, lengths)
        valid = torch.arange(frames, device=audio.device).unsqueeze(0) < lengths.unsqueeze(1)
        return torch.where(chosen.unsqueeze(1) & valid, noisy, audio)  # padding stays zero

    def _reverberate(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self._rirs is None:
            self._rirs = load_folder(self.rir_dir, self.sample_rate, "room impulse response")
        chosen = self._chosen(self.rir_prob, audio.shape[0], audio.device).tolist()
        picks = torch.randint(len(self._rirs), (audio.shape[0],)).tolist()
        rows = []
        for b, (use, pick) in enumerate(zip(chosen, picks, strict=True)):
            if not use:
                rows.append(audio[b])
                continue
            rir = self._rirs[pick].to(audio.device, audio.dtype)
            rir = rir[int(rir.abs().argmax()) :]  # the direct path at time zero
            rir = rir / rir.norm().clamp(min=1e-8)
            wet = AF.fftconvolve(audio[b], rir)[: audio.shape[1]]
            rows.append(wet * (torch.arange(audio.shape[1], device=audio.device) < lengths[b]))
        return torch.stack(rows)

    def _shift(self, audio: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch, frames = audio.shape
        shift = torch.randint(-self.max_shift, self.max_shift + 1, (batch, 1), device=audio.device)
        positions = torch.arange(frames, device=audio.device).unsqueeze(0)
        source, length = positions - shift, lengths.to(audio.device).unsqueeze(1)
        inside = (source >= 0) & (source < length) & (positions < length)
        return audio.gather(1, source.clamp(0, frames - 1)) * inside
