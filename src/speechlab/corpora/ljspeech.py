"""LJ Speech in its real layout: ``<root>/metadata.csv`` and ``<root>/wavs/<id>.wav``.

``metadata.csv`` has no header; each line is ``id|transcription|normalized transcription``
(pipe-separated, no quoting; the normalized column spells out numbers and abbreviations). The
normalized text (or the transcription when that column is empty) goes through the text
normalizer. LJ Speech ships no split: an utterance's split is decided by a stable hash of its
id (``validation_fraction`` and ``test_fraction`` of the ids, the same on every machine).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from speechlab.audio.io import AudioError, probe
from speechlab.data.reader import SPLITS, CorpusLayoutError, ScanReport
from speechlab.data.utterance import Utterance
from speechlab.text.normalize import TextNormalizer

log = logging.getLogger(__name__)

METADATA = "metadata.csv"
WAVS = "wavs"
EXPECTED_LAYOUT = (
    f"<root>/{METADATA} (lines 'id|transcription|normalized transcription', no header) and "
    f"<root>/{WAVS}/<id>.wav"
)


def hash_split(key: str, validation_fraction: float, test_fraction: float) -> str:
    """``train``, ``validation`` or ``test`` for ``key``, stable across machines and runs."""
    bucket = (zlib.crc32(key.encode("utf-8")) % 10_000) / 10_000
    if bucket < test_fraction:
        return "test"
    if bucket < test_fraction + validation_fraction:
        return "validation"
    return "train"


class LJSpeechReader:
    """Reads a single-speaker corpus in the LJ Speech layout; see the module docstring.

    Args:
        root: the folder holding ``metadata.csv`` and ``wavs/``.
        validation_fraction, test_fraction: shares of the ids held out (by hash).
        normalizer: a :class:`TextNormalizer` or its options (lower case, punctuation removed).
        speaker: the speaker name recorded in every utterance.
    """

    name = "ljspeech"

    def __init__(
        self,
        root: str | Path,
        validation_fraction: float = 0.02,
        test_fraction: float = 0.02,
        normalizer: TextNormalizer | Mapping | None = None,
        speaker: str = "LJ",
    ) -> None:
        if min(validation_fraction, test_fraction) < 0 or validation_fraction + test_fraction >= 1:
            raise ValueError(
                f"validation_fraction={validation_fraction}, test_fraction={test_fraction}: "
                "expected non-negative shares that leave some ids for training"
            )
        self.root = Path(root).expanduser().resolve()
        self.validation_fraction = float(validation_fraction)
        self.test_fraction = float(test_fraction)
        self.normalizer = TextNormalizer.coerce(normalizer)
        self.speaker = speaker

    @property
    def metadata(self) -> Path:
        return self.root / METADATA

    def check_layout(self) -> None:
        """Raise :class:`CorpusLayoutError` unless ``root`` has ``metadata.csv`` and ``wavs/``."""
        if not self.root.is_dir():
            raise self._layout_error(f"the LJ Speech root {self.root} does not exist")
        missing = [
            n for n, p in ((METADATA, self.metadata), (WAVS, self.root / WAVS)) if not p.exists()
        ]
        if missing:
            nested = sorted(p.parent.name for p in self.root.glob(f"*/{METADATA}"))
            hint = f" (a sub-folder has one: set root to {self.root}/{nested[0]})" if nested else ""
            raise self._layout_error(
                f"the LJ Speech root {self.root} lacks {', '.join(missing)}{hint}"
            )

    def options(self) -> dict:
        """The options that change the output, as plain data."""
        return {
            "validation_fraction": self.validation_fraction,
            "test_fraction": self.test_fraction,
            "normalizer": self.normalizer.options(),
            "speaker": self.speaker,
        }

    def fingerprint_paths(self) -> Iterable[Path]:
        """``metadata.csv`` (the wavs of a release never change)."""
        return [self.metadata] if self.metadata.is_file() else []

    def scan(self, split: str, report: ScanReport) -> Iterator[Utterance]:
        """Yield the utterances of ``split``; bad lines and unreadable wavs go to ``report``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        with self.metadata.open(encoding="utf-8-sig", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                fields = line.split("|")
                where = f"{self.metadata}:{number}"
                if len(fields) < 2 or not fields[0].strip():
                    report.skip(where, "expected 'id|transcription|normalized transcription'")
                    continue
                uid = fields[0].strip()
                if hash_split(uid, self.validation_fraction, self.test_fraction) != split:
                    continue
                raw = fields[2] if len(fields) > 2 and fields[2].strip() else fields[1]
                text = self.normalizer(raw)
                if not text:
                    report.skip(where, f"transcription {raw!r} normalises to nothing")
                    continue
                path = self.root / WAVS / f"{uid}.wav"
                try:
                    info = probe(path)
                except AudioError as error:
                    report.skip(path, str(error))
                    continue
                yield Utterance(
                    id=uid,
                    audio_path=str(path),
                    duration=info.duration,
                    sample_rate=info.sample_rate,
                    text=text,
                    speaker=self.speaker,
                    language="en",
                )

    def _layout_error(self, problem: str) -> CorpusLayoutError:
        return CorpusLayoutError(
            f"{problem}. Expected the LJ Speech layout: {EXPECTED_LAYOUT}. Set "
            "data.reader.root=<the LJSpeech-1.1 folder> (download it from "
            "keithito.com/LJ-Speech-Dataset), or use data=mini_speaker (embedded, offline)."
        )
