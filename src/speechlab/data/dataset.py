"""Decode the audio of manifest records and attach task targets."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from speechlab.audio.io import AudioError, read_audio
from speechlab.data.audio_cache import DecodedAudioCache
from speechlab.data.utterance import Utterance
from speechlab.data.utterance_table import UtteranceTable


@dataclass
class Example:
    """One decoded utterance: ``audio`` is ``(T,)`` float32 mono at the dataset's sample rate."""

    id: str
    audio: torch.Tensor
    target: torch.Tensor
    source: torch.Tensor | None = None  # (S,) source-text token ids (speech translation)


@dataclass
class SkippedExample:
    """An utterance whose audio could not be decoded; the collate drops it and reports it."""

    id: str
    audio_path: str
    reason: str


class SpeechDataset(Dataset):
    """Utterances decoded with soundfile, mixed to mono and resampled to ``sample_rate``.

    ``target`` makes each example's target; ``source`` (optional) a second token sequence, the
    source transcript of a translation pair.

    ``utterances`` is kept as an :class:`UtteranceTable` (a list of records is packed into one):
    an example's record is built when it is read, so forked dataloader workers share the
    table's arrays instead of copying millions of Python objects.

    A file that fails to decode yields a :class:`SkippedExample` instead of raising, so one bad
    file never ends an epoch. With ``cache``, a clip is decoded once and read back from the cache
    in later epochs (the same samples: the cache stores float32 exactly).
    """

    def __init__(
        self,
        utterances: UtteranceTable | Iterable[Utterance],
        sample_rate: int,
        target: Callable[[Utterance], torch.Tensor],
        source: Callable[[Utterance], torch.Tensor] | None = None,
        cache: DecodedAudioCache | None = None,
    ) -> None:
        self.utterances = (
            utterances
            if isinstance(utterances, UtteranceTable)
            else UtteranceTable.from_utterances(utterances)
        )
        self.sample_rate = sample_rate
        self.target = target
        self.source = source
        self.cache = cache

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def durations(self) -> np.ndarray:
        """``(N,)`` float64 seconds of every utterance, in dataset order."""
        return self.utterances.durations

    def __getitem__(self, index: int) -> Example | SkippedExample:
        utterance = self.utterances[index]
        audio = self.cache.get(utterance) if self.cache is not None else None
        if audio is None:
            try:
                audio = self._decode(utterance)
            except AudioError as error:
                return SkippedExample(utterance.id, utterance.audio_path, str(error))
            if self.cache is not None:
                self.cache.put(utterance, audio)
        source = self.source(utterance) if self.source is not None else None
        return Example(utterance.id, audio, self.target(utterance), source)

    def _decode(self, utterance: Utterance) -> torch.Tensor:
        """``(T,)`` float32 at ``sample_rate``; raises :class:`AudioError`."""
        # Always the recorded segment: a clip cut at offset 0 of a long recording (silence from
        # background noise) must not read the whole file.
        return read_audio(
            utterance.audio_path,
            self.sample_rate,
            offset=utterance.offset,
            duration=utterance.duration,
        )
