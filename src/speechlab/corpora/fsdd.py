"""Free Spoken Digit Dataset in its own layout: ``<root>/recordings/{digit}_{speaker}_{take}.wav``.

Label and text are the digit's English word. The dataset's own split puts takes 0-4 in test;
``validation_takes`` (5-9 by default) are held out for validation and the rest is train.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from speechlab.audio.io import AudioError, probe
from speechlab.data.reader import SPLITS, CorpusLayoutError, ScanReport
from speechlab.data.utterance import Utterance

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEST_TAKES = frozenset(range(5))
DEFAULT_VALIDATION_TAKES = (5, 6, 7, 8, 9)
RECORDINGS = "recordings"
FILE_PATTERN = re.compile(r"^(?P<digit>\d)_(?P<speaker>[^_]+)_(?P<take>\d+)\.wav$")
EXPECTED_LAYOUT = "<root>/recordings/{digit}_{speaker}_{take}.wav (e.g. recordings/7_george_12.wav)"


def split_by_take(take: int, validation_takes: Iterable[int] = DEFAULT_VALIDATION_TAKES) -> str:
    """Takes 0-4 are test (the dataset's split), ``validation_takes`` validation, the rest train."""
    if take in TEST_TAKES:
        return "test"
    if take in set(validation_takes):
        return "validation"
    return "train"


class FSDDReader:
    """Reads the Free Spoken Digit Dataset (8 kHz mono WAV, 6 speakers, 50 takes per digit).

    Args:
        root: the folder that contains ``recordings/``.
        validation_takes: takes held out for validation; must not overlap test takes 0-4.
    """

    name = "fsdd"

    def __init__(
        self, root: str | Path, validation_takes: Iterable[int] = DEFAULT_VALIDATION_TAKES
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.validation_takes = tuple(sorted({int(take) for take in validation_takes}))
        overlap = TEST_TAKES.intersection(self.validation_takes)
        if overlap:
            raise ValueError(
                f"validation_takes {sorted(overlap)} are FSDD's test takes (0-4); choose takes "
                f"of 5 or more"
            )

    @property
    def recordings(self) -> Path:
        return self.root / RECORDINGS

    def check_layout(self) -> None:
        """Raise :class:`CorpusLayoutError` unless ``root/recordings`` holds digit recordings."""
        if not self.root.is_dir():
            raise self._layout_error(f"the FSDD root {self.root} does not exist")
        if not any(self._recordings()):
            hint = ""
            if self.root.name == RECORDINGS and any(
                FILE_PATTERN.match(p.name) for p in self.root.glob("*.wav")
            ):
                hint = (
                    f" (it looks like recordings/ itself: set data.reader.root={self.root.parent})"
                )
            raise self._layout_error(
                f"the FSDD root {self.root} has no {RECORDINGS}/ folder with digit recordings{hint}"
            )

    def options(self) -> dict:
        """The options that change the output, as plain data."""
        return {"validation_takes": list(self.validation_takes), "test_takes": sorted(TEST_TAKES)}

    def fingerprint_paths(self) -> Iterable[Path]:
        """Every WAV file in ``recordings/``."""
        if self.recordings.is_dir():
            yield from sorted(p for p in self.recordings.glob("*.wav") if p.is_file())

    def labels(self) -> list[str]:
        """The ten digit words, zero to nine."""
        return list(DIGIT_WORDS)

    def scan(self, split: str, report: ScanReport) -> Iterator[Utterance]:
        """Yield the recordings of ``split``; misnamed or unusable files go to ``report``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        for path in self.fingerprint_paths():
            match = FILE_PATTERN.match(path.name)
            if match is None:
                report.skip(path, "name is not {digit}_{speaker}_{take}.wav")
                continue
            if split_by_take(int(match["take"]), self.validation_takes) != split:
                continue
            try:
                info = probe(path)
            except AudioError as error:
                report.skip(path, str(error))
                continue
            word = DIGIT_WORDS[int(match["digit"])]
            yield Utterance(
                id=path.stem,
                audio_path=str(path),
                duration=info.duration,
                sample_rate=info.sample_rate,
                text=word,
                label=word,
                speaker=match["speaker"],
                language="en",
            )

    def _recordings(self) -> Iterator[Path]:
        return (p for p in self.fingerprint_paths() if FILE_PATTERN.match(p.name))

    def _layout_error(self, problem: str) -> CorpusLayoutError:
        return CorpusLayoutError(
            f"{problem}. Expected the Free Spoken Digit Dataset layout: {EXPECTED_LAYOUT}. Set "
            f"data.reader.root=<folder containing recordings/> (get the data from "
            f"github.com/Jakobovski/free-spoken-digit-dataset)."
        )
