"""Decoded, resampled waveforms kept for the next epoch, in memory or on disk beside the manifest.

Decoding an MP3 clip and resampling it costs more than the rest of a small model's step; an
epoch-after-epoch corpus pays it once with a cache. The disk cache lives in the manifest's own
folder (``<manifest dir>/decoded-<rate>Hz/``), so it is invalidated with the manifest: a changed
corpus (new files, sizes or modification times) gets a new manifest folder and a new cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from speechlab.data.utterance import Utterance

log = logging.getLogger(__name__)

AUDIO_CACHE_KINDS = ("memory", "disk")


def cache_key(utterance: Utterance, sample_rate: int) -> str:
    """What identifies a decoded segment: its file, offset, duration and the output rate."""
    spec = f"{utterance.audio_path}\0{utterance.offset!r}\0{utterance.duration!r}\0{sample_rate}"
    return hashlib.sha1(spec.encode()).hexdigest()


class DecodedAudioCache:
    """A cache of ``(T,)`` float32 waveforms at ``sample_rate``, exact (no re-encoding).

    Args:
        sample_rate: the rate the waveforms were resampled to (Hz); part of every key.
        directory: where ``.npy`` files go (``disk``); ``None`` keeps them in this process's
            memory (``memory``: each dataloader worker then holds its own copy, so prefer
            ``disk`` with workers). A write that fails (disk full, read-only folder) turns the
            disk cache off with one warning; training goes on decoding as before.
    """

    def __init__(self, sample_rate: int, directory: Path | None = None) -> None:
        self.sample_rate = sample_rate
        self.directory = directory
        self._memory: dict[str, torch.Tensor] = {}
        self._disabled = False

    @classmethod
    def for_manifest(
        cls, kind: str | None, sample_rate: int, manifest_dir: Path | None
    ) -> DecodedAudioCache | None:
        """The cache ``data.audio_cache`` asks for (``None``, ``memory`` or ``disk``).

        Raises:
            ValueError: for another kind.
        """
        if kind is None:
            return None
        if kind not in AUDIO_CACHE_KINDS:
            raise ValueError(
                f"data.audio_cache must be null, memory or disk, got {kind!r}; set "
                "data.audio_cache=disk to keep decoded audio beside the manifest"
            )
        if kind == "memory" or manifest_dir is None:
            return cls(sample_rate)
        return cls(sample_rate, Path(manifest_dir) / f"decoded-{sample_rate}Hz")

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, utterance: Utterance) -> torch.Tensor | None:
        """The cached waveform of ``utterance``, or ``None`` when it was not decoded yet."""
        key = cache_key(utterance, self.sample_rate)
        if self.directory is None:
            return self._memory.get(key)
        try:
            audio = np.load(self._path(key), allow_pickle=False)
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001  a damaged entry (empty, cut, garbage): decode again
            return None
        if audio.dtype != np.float32 or audio.ndim != 1 or audio.size == 0:
            return None  # not what this cache writes: decode again and overwrite it
        return torch.from_numpy(audio)

    def put(self, utterance: Utterance, audio: torch.Tensor) -> None:
        """Keep ``audio`` (``(T,)`` float32) for ``utterance``."""
        key = cache_key(utterance, self.sample_rate)
        if self.directory is None:
            self._memory[key] = audio
            return
        if self._disabled:
            return
        path = self._path(key)
        temporary = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".npy")
            with os.fdopen(handle, "wb") as f:
                np.save(f, audio.numpy(), allow_pickle=False)
            os.replace(temporary, path)  # atomic: workers and ranks may write the same entry
        except OSError as error:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)
            self._disabled = True
            log.warning(
                "decoded-audio cache off: cannot write %s (%s); decoding every epoch instead. "
                "Free space there or set data.audio_cache=null",
                path.parent,
                error,
            )
