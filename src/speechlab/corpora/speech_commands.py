"""Google Speech Commands v0.02 in its own layout.

``<root>/<word>/<speaker>_nohash_<n>.wav`` clips, ``validation_list.txt`` and ``testing_list.txt``
(paths relative to ``root``; every clip in neither list is train) and ``_background_noise_/*.wav``.

Two label sets:

* ``"all"``: the folder word is the label (35 words in v0.02); no silence.
* ``"commands12"``: the standard 12-class task. The ten command words keep their label, every
  other word becomes ``_unknown_`` and is subsampled per split to ``unknown_percentage`` % of the
  split's usable command-word clips (rounded up, as in TensorFlow's ``input_data.py``);
  ``_silence_`` utterances are ``silence_seconds``-long segments of the background-noise files,
  ``silence_percentage`` % of the same count (at least one when the split has clips). Each split
  draws from its own region of every noise file (:data:`NOISE_REGIONS`), so no noise is shared
  between splits.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from speechlab.audio.io import AudioError, AudioInfo, probe
from speechlab.corpora.download import download as download_file
from speechlab.corpora.download import extract_tar
from speechlab.data.reader import SPLITS, CorpusLayoutError, ScanReport
from speechlab.data.utterance import Utterance

log = logging.getLogger(__name__)

ARCHIVE_URL = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
ARCHIVE_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"

COMMAND_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE_LABEL = "_silence_"
UNKNOWN_LABEL = "_unknown_"
COMMANDS12_LABELS = (*COMMAND_WORDS, SILENCE_LABEL, UNKNOWN_LABEL)

NOISE_FOLDER = "_background_noise_"
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"

#: Fraction ``[start, end)`` of every background-noise file that each split cuts silence from.
NOISE_REGIONS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}

LabelSet = Literal["all", "commands12"]
LABEL_SETS = ("all", "commands12")

EXPECTED_LAYOUT = (
    "<root>/<word>/<speaker>_nohash_<n>.wav clips, <root>/validation_list.txt and "
    "<root>/testing_list.txt (clip paths relative to <root>), and <root>/_background_noise_/*.wav"
)


def split_by_lists(relative_path: str, validation: set[str], testing: set[str]) -> str:
    """The split of a clip (``"<word>/<file>.wav"``) by list membership; unlisted clips are train.

    A clip named in both lists counts as test.
    """
    if relative_path in testing:
        return "test"
    if relative_path in validation:
        return "validation"
    return "train"


def noise_region(split: str, frames: int) -> tuple[int, int]:
    """Frames ``[start, end)`` of a noise file of ``frames`` frames reserved for ``split``."""
    low, high = NOISE_REGIONS[split]
    return int(frames * low), int(frames * high)


def speaker_of(file_name: str) -> str | None:
    """``"<speaker>_nohash_<n>.wav"`` -> ``"<speaker>"`` (``None`` for other names)."""
    speaker, marker, _ = file_name.partition("_nohash_")
    return speaker if marker else None


@dataclass
class _Layout:
    """What is on disk: clips per word, the list files' entries, the noise recordings."""

    words: dict[str, list[str]] = field(default_factory=dict)  # word -> sorted "word/file.wav"
    validation: set[str] = field(default_factory=set)
    testing: set[str] = field(default_factory=set)
    list_files: list[Path] = field(default_factory=list)
    noise: list[Path] = field(default_factory=list)

    @property
    def clips(self) -> set[str]:
        return {clip for clips in self.words.values() for clip in clips}


def list_entry(line: str) -> str:
    """A list-file line as the clip it names, ``<word>/<file>.wav``: other spellings of the same
    clip (a corpus-folder prefix such as ``speech_commands_v0.02/yes/x.wav``, ``./``, an absolute
    path, Windows separators, a byte-order mark, surrounding space) name it too. Left as they
    were, those entries matched no clip and put validation or test clips into train."""
    parts = [
        p for p in line.strip().lstrip("\ufeff").replace("\\", "/").split("/") if p not in ("", ".")
    ]
    return "/".join(parts[-2:])


def _read_list(path: Path) -> set[str]:
    if not path.is_file():
        return set()
    entries = (list_entry(line) for line in path.read_text(encoding="utf-8").splitlines())
    return {entry for entry in entries if entry}


def _read_layout(root: Path) -> _Layout:
    layout = _Layout()
    if not root.is_dir():
        return layout
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name.startswith((".", "_")):
            continue
        clips = sorted(f"{folder.name}/{p.name}" for p in folder.glob("*.wav") if p.is_file())
        if clips:
            layout.words[folder.name] = clips
    for name, target in ((VALIDATION_LIST, layout.validation), (TESTING_LIST, layout.testing)):
        path = root / name
        if path.is_file():
            layout.list_files.append(path)
            target.update(_read_list(path))
    noise_dir = root / NOISE_FOLDER
    if noise_dir.is_dir():
        layout.noise = sorted(p for p in noise_dir.glob("*.wav") if p.is_file())
    return layout


class SpeechCommandsReader:
    """Reads Speech Commands v0.02; see the module docstring for the label sets.

    Args:
        root: the extracted corpus (the folder holding the word folders).
        label_set: ``"commands12"`` (12 classes) or ``"all"`` (every folder word).
        silence_percentage: commands12 ``_silence_`` count, in % of a split's command clips.
        unknown_percentage: commands12 ``_unknown_`` count, in % of a split's command clips;
            ``None`` or negative keeps every non-command clip.
        silence_seconds: length of each ``_silence_`` segment.
        seed: drives the unknown subsample and the silence offsets (with the split name).
        download: fetch and extract the public archive when ``root`` holds no corpus.
        url, sha256: the archive and its checksum (``None`` skips the check).
        cache_dir: where the archive is saved (default: ``root``'s parent).
    """

    name = "speech_commands"

    def __init__(
        self,
        root: str | Path,
        label_set: LabelSet = "commands12",
        silence_percentage: float = 10.0,
        unknown_percentage: float | None = 10.0,
        silence_seconds: float = 1.0,
        seed: int = 0,
        download: bool = False,
        url: str = ARCHIVE_URL,
        sha256: str | None = ARCHIVE_SHA256,
        cache_dir: str | Path | None = None,
    ) -> None:
        if label_set not in LABEL_SETS:
            raise ValueError(f"label_set must be one of {LABEL_SETS}, got {label_set!r}")
        if silence_seconds <= 0:
            raise ValueError(f"silence_seconds must be positive, got {silence_seconds}")
        self.root = Path(root).expanduser().resolve()
        self.label_set = label_set
        self.silence_percentage = silence_percentage
        self.unknown_percentage = unknown_percentage
        self.silence_seconds = float(silence_seconds)
        self.seed = seed
        self.download = download
        self.url = url
        self.sha256 = sha256
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else None
        self._layout: _Layout | None = None

    # -- protocol ---------------------------------------------------------------------------------

    def check_layout(self) -> None:
        """Raise :class:`CorpusLayoutError` unless ``root`` holds word folders with clips.

        With ``download=True`` a root without a corpus is fetched and extracted first.
        """
        layout = _read_layout(self.root)
        if not layout.words and self.download:
            self._fetch()
            layout = _read_layout(self.root)
        if not self.root.is_dir():
            raise self._layout_error(f"the Speech Commands root {self.root} does not exist")
        if not layout.words:
            raise self._layout_error(
                f"the Speech Commands root {self.root} has no word folders with .wav files"
            )
        if not layout.list_files:
            log.warning(
                "%s has no %s or %s: every clip goes to the train split",
                self.root,
                VALIDATION_LIST,
                TESTING_LIST,
            )
        if self.label_set == "commands12" and self._wants_silence() and not layout.noise:
            log.warning(
                "%s has no %s/*.wav: no %s utterances will be produced",
                self.root,
                NOISE_FOLDER,
                SILENCE_LABEL,
            )
        self._layout = layout

    def options(self) -> dict:
        """The options that change the output, as plain data."""
        options: dict = {"label_set": self.label_set}
        if self.label_set == "commands12":
            options |= {
                "silence_percentage": self.silence_percentage,
                "unknown_percentage": self.unknown_percentage,
                "silence_seconds": self.silence_seconds,
                "seed": self.seed,
                "noise_regions": {split: list(region) for split, region in NOISE_REGIONS.items()},
            }
        return options

    def fingerprint_paths(self) -> Iterable[Path]:
        """Every clip, list file and noise recording of the layout."""
        layout = self._current_layout()
        for clips in layout.words.values():
            yield from (self.root / clip for clip in clips)
        yield from layout.list_files
        yield from layout.noise

    def labels(self) -> list[str]:
        """commands12: the 10 words in TensorFlow's order, then ``_silence_``, ``_unknown_``.

        all: the folder words, sorted.
        """
        if self.label_set == "commands12":
            return list(COMMANDS12_LABELS)
        return sorted(self._current_layout().words)

    def scan(self, split: str, report: ScanReport) -> Iterator[Utterance]:
        """Yield the utterances of ``split``; unusable or missing files go to ``report``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        layout = self._current_layout()
        self._report_missing_entries(split, layout, report)
        in_split = {
            word: [
                c for c in clips if split_by_lists(c, layout.validation, layout.testing) == split
            ]
            for word, clips in layout.words.items()
        }
        if self.label_set == "all":
            for word, clips in in_split.items():
                yield from self._clips(clips, word, report)
            return
        commands = 0
        for word in COMMAND_WORDS:
            for utterance in self._clips(in_split.get(word, []), word, report):
                commands += 1
                yield utterance
        others = [c for word, clips in in_split.items() if word not in COMMAND_WORDS for c in clips]
        yield from self._unknowns(split, others, commands, report)
        any_clips = commands > 0 or bool(others)
        yield from self._silence(split, layout.noise, commands, any_clips, report)

    # -- helpers ----------------------------------------------------------------------------------

    def _current_layout(self) -> _Layout:
        if self._layout is None:
            self._layout = _read_layout(self.root)
        return self._layout

    def _wants_silence(self) -> bool:
        return self.silence_percentage is not None and self.silence_percentage > 0

    def _layout_error(self, problem: str) -> CorpusLayoutError:
        return CorpusLayoutError(
            f"{problem}. Expected the Speech Commands v0.02 layout: {EXPECTED_LAYOUT}. "
            f"Set data.reader.root=<folder> to an extracted copy, or data.reader.download=true to fetch "
            f"the public v0.02 archive ({self.url})."
        )

    def _fetch(self) -> None:
        """Download the archive next to ``root`` (or into ``cache_dir``) and extract it."""
        cache = self.cache_dir or self.root.parent
        archive_name = Path(urlparse(self.url).path).name or "speech_commands.tar.gz"
        log.info("downloading Speech Commands from %s into %s", self.url, cache)
        archive = download_file(self.url, cache / archive_name, self.sha256)
        extract_tar(archive, self.root)

    def _report_missing_entries(self, split: str, layout: _Layout, report: ScanReport) -> None:
        listed = {
            "validation": (layout.validation, VALIDATION_LIST),
            "test": (layout.testing, TESTING_LIST),
        }
        if split not in listed:
            return
        entries, list_name = listed[split]
        known = layout.clips
        unmatched = sorted(entries - known)
        for entry in unmatched:
            path = self.root / entry
            problem = "matches no clip" if path.exists() else "the file does not exist"
            report.skip(path, f"listed in {list_name} but {problem} (expected <word>/<file>.wav)")
        if unmatched:
            log.warning(
                "%d entr%s of %s match%s no clip under %s (each listed as skipped)",
                len(unmatched),
                "y" if len(unmatched) == 1 else "ies",
                list_name,
                "es" if len(unmatched) == 1 else "",
                self.root,
            )

    def _clips(self, clips: list[str], word: str, report: ScanReport) -> Iterator[Utterance]:
        label = word if self.label_set == "all" or word in COMMAND_WORDS else UNKNOWN_LABEL
        for clip in clips:
            utterance = self._clip(clip, word, label, report)
            if utterance is not None:
                yield utterance

    def _clip(self, clip: str, word: str, label: str, report: ScanReport) -> Utterance | None:
        path = self.root / clip
        try:
            info = probe(path)
        except AudioError as error:
            report.skip(path, str(error))
            return None
        return Utterance(
            id=clip.removesuffix(".wav"),
            audio_path=str(path),
            duration=info.duration,
            sample_rate=info.sample_rate,
            text=word,
            label=label,
            speaker=speaker_of(Path(clip).name),
            language="en",
        )

    def _unknowns(
        self, split: str, clips: list[str], commands: int, report: ScanReport
    ) -> Iterator[Utterance]:
        """A seeded subsample of the non-command clips; only the drawn clips are probed."""
        percentage = self.unknown_percentage
        wanted = (
            len(clips) if percentage is None or percentage < 0 else _share(commands, percentage)
        )
        order = sorted(clips)
        random.Random(f"{self.seed}:{split}:unknown").shuffle(order)
        kept = 0
        for clip in order:
            if kept >= wanted:
                return
            word = clip.split("/", 1)[0]
            utterance = self._clip(clip, word, UNKNOWN_LABEL, report)
            if utterance is not None:
                kept += 1
                yield utterance

    def _silence(
        self, split: str, noise: list[Path], commands: int, any_clips: bool, report: ScanReport
    ) -> Iterator[Utterance]:
        """``_silence_`` segments cut from ``split``'s region of the noise recordings."""
        if not self._wants_silence() or not any_clips:
            return
        count = max(1, _share(commands, self.silence_percentage))
        sources = self._noise_sources(split, noise, report)
        if not sources:
            if noise:
                log.warning(
                    "no %s recording is long enough to cut %.2f s of %s for the %s split",
                    NOISE_FOLDER,
                    self.silence_seconds,
                    SILENCE_LABEL,
                    split,
                )
            return
        rng = random.Random(f"{self.seed}:{split}:silence")
        rng.shuffle(sources)
        for index in range(count):
            path, info, (start, end), length = sources[index % len(sources)]
            first = rng.randint(start, end - length)
            yield Utterance(
                id=f"{SILENCE_LABEL}/{split}-{index:05d}-{path.stem}",
                audio_path=str(path),
                duration=length / info.sample_rate,
                sample_rate=info.sample_rate,
                offset=first / info.sample_rate,
                label=SILENCE_LABEL,
            )

    def _noise_sources(
        self, split: str, noise: list[Path], report: ScanReport
    ) -> list[tuple[Path, AudioInfo, tuple[int, int], int]]:
        """Usable noise files: (path, info, split's frame region, segment length in frames)."""
        sources = []
        for path in noise:
            try:
                info = probe(path)
            except AudioError as error:
                report.skip(path, str(error))
                continue
            start, end = noise_region(split, info.frames)
            length = round(self.silence_seconds * info.sample_rate)
            if end - start >= length:
                sources.append((path, info, (start, end), length))
        return sources


def _share(count: int, percentage: float) -> int:
    """``percentage`` % of ``count``, rounded up (TensorFlow's rule)."""
    return math.ceil(round(count * percentage / 100, 9))
