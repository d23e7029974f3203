"""Audio file I/O through soundfile (WAV, FLAC, OGG, MP3): probe, read, resample, mix down.

``torchaudio.load`` needs torchcodec and FFmpeg, which speechlab does not depend on; torchaudio is
used for resampling only.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
import torchaudio


class AudioError(ValueError):
    """A file that cannot be used as audio: unreadable, empty, truncated or corrupt."""


def _audio_error(what: str, path: Path, error: Exception) -> AudioError:
    """An :class:`AudioError` with libsndfile's reason, without the path it repeats.

    The file is looked for only once a read has failed, so the decode path pays no extra stat.
    """
    if not path.is_file():
        return AudioError("missing: no such file")
    if path.stat().st_size == 0:  # libsndfile says "does not exist" or "not recognised" here
        return AudioError("empty: the file is 0 bytes")
    reason = str(getattr(error, "error_string", None) or error).strip().rstrip(".")
    if "does not exist" in reason:  # libsndfile's words for bytes no decoder recognises
        reason = (
            f"the {path.stat().st_size}-byte file is not audio libsndfile can read "
            "(corrupt, or not a WAV, FLAC, OGG or MP3 file)"
        )
    return AudioError(f"{what}: {reason}")


@dataclass(frozen=True)
class AudioInfo:
    frames: int
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def _wav_truncation(path: Path) -> str | None:
    """For a RIFF/WAVE file, say why it is truncated, or ``None`` when its data chunk is whole.

    libsndfile silently clamps a short data chunk to the bytes present, so a clip cut off in a
    copy would otherwise pass as a shorter clip.
    """
    with path.open("rb") as f:
        return _wav_truncation_of(f, path.stat().st_size)


def _wav_truncation_of(f: BinaryIO, size: int) -> str | None:
    """:func:`_wav_truncation` of an open binary file of ``size`` bytes."""
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    position = 12
    while position + 8 <= size:
        f.seek(position)
        chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
        if chunk_id == b"data":
            available = size - position - 8
            if chunk_size != 0xFFFFFFFF and chunk_size > available:
                return (
                    f"truncated: the WAV header declares {chunk_size} bytes of audio "
                    f"but the file holds {available}"
                )
            return None
        position += 8 + chunk_size + (chunk_size & 1)
    return None


def probe(path: str | Path) -> AudioInfo:
    """Read the header of ``path``; raise :class:`AudioError` for an unusable file."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise _audio_error("cannot read audio header", path, error) from error
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError("empty: the file holds no audio frames")
    reason = _wav_truncation(path)
    if reason:
        raise AudioError(reason)
    return AudioInfo(
        frames=int(info.frames), sample_rate=int(info.samplerate), channels=info.channels
    )


@lru_cache(maxsize=16)
def _resampler(orig_freq: int, new_freq: int) -> torchaudio.transforms.Resample:
    # The windowed-sinc kernel is built once per rate pair, not once per file.
    return torchaudio.transforms.Resample(orig_freq, new_freq)


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Resample ``(..., T)`` from ``orig_freq`` to ``new_freq`` (no-op when equal)."""
    if orig_freq == new_freq:
        return waveform
    return _resampler(orig_freq, new_freq)(waveform)


def read_audio(
    path: str | Path,
    sample_rate: int,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Decode ``path`` (or the segment ``offset``..``offset+duration`` seconds) to mono float32.

    Returns a ``(T,)`` tensor at ``sample_rate``. Raises :class:`AudioError` when the file cannot
    be decoded, is a truncated WAV, holds no samples in the requested segment, or holds samples
    that are not finite
    (NaN or infinity, possible in float WAV files): they would make every loss of its batch NaN.
    """
    path = Path(path)
    try:
        data, native_rate = _read_segment(str(path), offset, duration)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise _audio_error("cannot decode audio", path, error) from error
    truncated = _wav_truncation(path)  # libsndfile reads a cut-off WAV as a shorter one
    if truncated:
        raise AudioError(truncated)
    return _to_mono(data, native_rate, sample_rate)


def read_audio_bytes(
    data: bytes,
    sample_rate: int,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """:func:`read_audio` of an encoded file held in memory (a member of a tar shard).

    ``data`` is the file's bytes in its own encoding (WAV, FLAC, OGG or MP3). Returns a ``(T,)``
    float32 tensor at ``sample_rate`` (Hz); ``offset`` and ``duration`` are seconds. Raises
    :class:`AudioError` as :func:`read_audio` does.
    """
    if not data:
        raise AudioError("empty: the file is 0 bytes")
    try:
        samples, native_rate = _read_segment(io.BytesIO(data), offset, duration)
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        reason = str(getattr(error, "error_string", None) or error).strip().rstrip(".")
        raise AudioError(f"cannot decode audio: {reason}") from error
    truncated = _wav_truncation_of(io.BytesIO(data), len(data))
    if truncated:
        raise AudioError(truncated)
    return _to_mono(samples, native_rate, sample_rate)


def _read_segment(
    source: str | io.BytesIO, offset: float, duration: float | None
) -> tuple[np.ndarray, int]:
    """``(frames, channels)`` float32 samples of the segment and the file's own rate (Hz)."""
    with sf.SoundFile(source) as f:
        native_rate = f.samplerate
        start = int(round(offset * native_rate))
        frames = -1 if duration is None else int(round(duration * native_rate))
        if start:
            f.seek(start)
        data = f.read(frames=frames, dtype="float32", always_2d=True)
    return data, native_rate


def _to_mono(data: np.ndarray, native_rate: int, sample_rate: int) -> torch.Tensor:
    """Check ``(frames, channels)`` samples, mix them down and resample to ``sample_rate``."""
    if data.shape[0] == 0:
        raise AudioError("empty: no audio samples in the requested segment")
    bad = int(np.size(data) - np.isfinite(data).sum())
    if bad:
        raise AudioError(f"{bad} of {data.size} samples are not finite (NaN or infinity)")
    mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    return resample(mono, native_rate, sample_rate)
