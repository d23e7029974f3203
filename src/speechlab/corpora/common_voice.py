"""Mozilla Common Voice, one locale, in its own layout.

``<root>/clips/*.mp3``, ``<root>/train.tsv``, ``dev.tsv`` (the validation split), ``test.tsv``
and, in recent releases, ``clip_durations.tsv`` (columns ``clip`` and ``duration[ms]``); ``root``
is the locale folder of a release, e.g. ``cv-corpus-6.1-2020-12-11/en``. The split tsvs have a
header row; the columns read are ``client_id`` (the speaker), ``path`` (the clip, relative to
``clips/``), ``sentence`` and, when present, ``locale``. Fields are tab-separated and never
quoted: a ``"`` belongs to the sentence (``csv.QUOTE_NONE``), and the normalizer removes it.

Durations come from ``clip_durations.tsv`` when it lists the clip, otherwise the clip's header is
probed; the manifest cache keeps them, so either happens once per corpus version.

``Utterance.sample_rate`` is informational: :func:`speechlab.audio.io.read_audio` decodes at the
file's own rate and resamples to the datamodule's. A clip whose duration comes from
``clip_durations.tsv`` is not opened, so its ``sample_rate`` is the declared ``clip_sample_rate``
(48 kHz, the rate of the published Common Voice clips), not a measurement; ``probe=True`` opens
every clip (true rates, corrupt files found up front; slow over a million clips). Unprobed
corrupt clips are still never fatal: the dataset skips and reports them when they fail to decode.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from speechlab.audio.io import AudioError, probe
from speechlab.data.reader import SPLITS, CorpusLayoutError, ScanReport
from speechlab.data.utterance import Utterance
from speechlab.text.normalize import TextNormalizer

log = logging.getLogger(__name__)

CLIPS = "clips"
VALIDATION_TSV = "dev.tsv"
TEST_TSV = "test.tsv"
CLIP_DURATIONS = "clip_durations.tsv"
#: The columns of every release's split tsvs (6.1 onwards also ``locale`` and ``segment``).
REQUIRED_COLUMNS = ("client_id", "path", "sentence")
OFFICIAL_COLUMNS = (
    "client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent",
    "locale", "segment",
)  # fmt: skip
DURATION_COLUMNS = ("clip", "duration[ms]")
COMMON_VOICE_SAMPLE_RATE = 48000

EXPECTED_LAYOUT = (
    "<root>/clips/<clip>.mp3 with <root>/train.tsv, dev.tsv and test.tsv (tab-separated, header "
    f"row with at least the columns {' '.join(REQUIRED_COLUMNS)}) and optionally "
    f"<root>/{CLIP_DURATIONS} (columns {' '.join(DURATION_COLUMNS)})"
)


def tsv_rows(path: Path) -> Iterator[list[str]]:
    """The tab-separated rows of ``path``, quotes kept as text.

    Bytes that are not UTF-8 come through as lone surrogates (see :func:`is_utf8`).
    """
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        try:
            yield from reader
        except csv.Error as error:
            raise CorpusLayoutError(
                f"{path} line {reader.line_num}: {error}. Expected tab-separated Common Voice "
                "rows; restore the file from the Common Voice archive"
            ) from error


def is_utf8(fields: list[str]) -> bool:
    """False when a field holds bytes that were not UTF-8 (decoded as lone surrogates)."""
    return not any("\udc80" <= char <= "\udcff" for field in fields for char in field)


def _header(path: Path) -> list[str]:
    return next(tsv_rows(path), [])


class CommonVoiceReader:
    """Reads one locale of a Common Voice release; see the module docstring.

    Args:
        root: the locale folder (holding ``clips/`` and the tsv files).
        train_tsv: the file read as the train split, relative to ``root``. ``train.tsv`` is the
            official one (disjoint from dev and test in sentences and speakers);
            ``validated.tsv`` gives more data: clips listed in ``dev.tsv`` or ``test.tsv`` are
            then left out of train, but their speakers and sentences may recur in train.
        normalizer: a :class:`TextNormalizer` or its options; ``None`` uses its defaults (lower
            case, punctuation removed, NFKC). Rows whose sentence normalises to nothing, or
            holds characters outside the normalizer's alphabet, are skipped and counted.
        language: the language of rows without a ``locale`` value (older releases).
        clip_sample_rate: the ``sample_rate`` recorded for clips not probed.
        probe: probe every clip even when ``clip_durations.tsv`` lists it.
        speaker: keep only this ``client_id`` (one voice, e.g. for synthesis). Its clips are
            taken from ``train_tsv``, ``dev.tsv`` and ``test.tsv`` alike (the official splits
            never share a speaker) and split by a stable hash of the clip name:
            ``speaker_holdout`` of them each for validation and test.
        speaker_holdout: the share of the speaker's clips in each held-out split.
    """

    name = "common_voice"

    def __init__(
        self,
        root: str | Path,
        train_tsv: str = "train.tsv",
        normalizer: TextNormalizer | Mapping | None = None,
        language: str | None = None,
        clip_sample_rate: int = COMMON_VOICE_SAMPLE_RATE,
        probe: bool = False,
        speaker: str | None = None,
        speaker_holdout: float = 0.05,
    ) -> None:
        if str(train_tsv) in (VALIDATION_TSV, TEST_TSV):
            raise ValueError(
                f"train_tsv={train_tsv!r} is a held-out split; expected train.tsv or "
                "validated.tsv (or another tsv of the locale folder)"
            )
        if int(clip_sample_rate) <= 0:
            raise ValueError(f"clip_sample_rate must be positive, got {clip_sample_rate}")
        self.root = Path(root).expanduser().resolve()
        self.train_tsv = str(train_tsv)
        self.normalizer = TextNormalizer.coerce(normalizer)
        self.language = language
        self.clip_sample_rate = int(clip_sample_rate)
        self.probe = bool(probe)
        self.speaker = str(speaker) if speaker else None
        if not 0 < speaker_holdout < 0.5:
            raise ValueError(f"speaker_holdout must be in (0, 0.5), got {speaker_holdout}")
        self.speaker_holdout = float(speaker_holdout)
        self._durations: dict[str, float] | None = None

    @property
    def clips(self) -> Path:
        return self.root / CLIPS

    def split_tsv(self, split: str) -> Path:
        """The tsv file of ``split``."""
        names = {"train": self.train_tsv, "validation": VALIDATION_TSV, "test": TEST_TSV}
        if split not in names:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.root / names[split]

    # -- protocol ---------------------------------------------------------------------------------

    def check_layout(self) -> None:
        """Raise :class:`CorpusLayoutError` unless ``root`` has ``clips/`` and readable tsvs."""
        if not self.root.is_dir():
            raise self._layout_error(f"the Common Voice root {self.root} does not exist")
        if not self.clips.is_dir():
            raise self._layout_error(
                f"the Common Voice root {self.root} has no {CLIPS}/ folder{self._locale_hint()}"
            )
        missing = [p.name for p in map(self.split_tsv, SPLITS) if not p.is_file()]
        if missing:
            raise self._layout_error(
                f"the Common Voice root {self.root} lacks {', '.join(missing)}{self._locale_hint()}"
            )
        for split in SPLITS:
            self.columns(self.split_tsv(split), REQUIRED_COLUMNS)
        durations = self.root / CLIP_DURATIONS
        if durations.is_file():
            self.columns(durations, DURATION_COLUMNS)
        self._durations = None  # re-read: the files may have changed since the last scan

    def options(self) -> dict:
        """The options that change the output, as plain data."""
        return {
            "train_tsv": self.train_tsv,
            "normalizer": self.normalizer.options(),
            "language": self.language,
            "clip_sample_rate": self.clip_sample_rate,
            "probe": self.probe,
            **(
                {"speaker": self.speaker, "speaker_holdout": self.speaker_holdout}
                if self.speaker
                else {}
            ),
        }

    def fingerprint_paths(self) -> Iterable[Path]:
        """The split tsvs and ``clip_durations.tsv``; not the clips.

        A locale has up to a million clips, and Common Voice never edits a published clip, so
        stat-ing each on every run buys nothing. Replacing or adding clips under an unchanged
        tsv needs the cached manifest deleted by hand.
        """
        paths = [self.split_tsv(split) for split in SPLITS] + [self.root / CLIP_DURATIONS]
        return sorted({p for p in paths if p.is_file()})

    def scan(self, split: str, report: ScanReport) -> Iterator[Utterance]:
        """Yield the clips of ``split``; unusable rows and clips go to ``report``."""
        if self.speaker is None:
            yield from self._scan_tsv(self.split_tsv(split), split, report)
            return
        from speechlab.corpora.ljspeech import hash_split

        found: set[str] = set()
        for name in SPLITS:  # the speaker's clips of every tsv, re-split by clip name
            for utterance in self._scan_tsv(self.split_tsv(name), "speaker", report):
                if utterance.audio_path in found:  # validated.tsv also lists dev/test clips
                    continue
                found.add(utterance.audio_path)
                key = Path(utterance.audio_path).name
                if hash_split(key, self.speaker_holdout, self.speaker_holdout) == split:
                    yield utterance
        if not found:
            raise CorpusLayoutError(
                f"no clip of speaker (client_id) {self.speaker!r} in {self.root}; pick a "
                "client_id from train.tsv or validated.tsv, or leave data.speaker null"
            )

    def _scan_tsv(self, tsv: Path, split: str, report: ScanReport) -> Iterator[Utterance]:
        """The usable rows of ``tsv`` (of ``speaker`` only, when set)."""
        header = self.columns(tsv, REQUIRED_COLUMNS)
        column = {name: header.index(name) for name in header}
        held_out = self._held_out_paths() if split == "train" else set()
        durations = {} if self.probe else self.clip_durations()
        seen: set[str] = set()
        excluded = duplicates = 0
        rows = tsv_rows(tsv)
        next(rows, None)
        for line, row in enumerate(rows, start=2):
            if not any(field.strip() for field in row):
                continue
            if not is_utf8(row):
                report.skip(f"{tsv}:{line}", "is not valid UTF-8 text; fix or delete the row")
                continue
            if len(row) != len(header):
                report.skip(
                    f"{tsv}:{line}",
                    f"has {len(row)} tab-separated fields, expected {len(header)} "
                    f"({' '.join(header)}); fix or delete the row",
                )
                continue
            name = row[column["path"]].strip()
            if not name:
                report.skip(f"{tsv}:{line}", "has an empty path field; fix or delete the row")
                continue
            if name in held_out:
                excluded += 1
                continue
            if self.speaker is not None and row[column["client_id"]].strip() != self.speaker:
                continue
            if name in seen:
                duplicates += 1
                continue
            seen.add(name)
            utterance = self._utterance(
                row, column, name, durations, f"{tsv.name} line {line}", report
            )
            if utterance is not None:
                yield utterance
        if excluded:
            log.info("%s: left out %d clips listed in dev.tsv or test.tsv", tsv, excluded)
        if duplicates:
            log.warning("%s: ignored %d repeated rows of clips listed earlier", tsv, duplicates)

    # -- helpers ----------------------------------------------------------------------------------

    def _utterance(
        self,
        row: list[str],
        column: dict[str, int],
        name: str,
        durations: dict[str, float],
        where: str,
        report: ScanReport,
    ) -> Utterance | None:
        locale = row[column["locale"]].strip() if "locale" in column else ""
        return self.clip_utterance(
            name,
            row[column["sentence"]],
            row[column["client_id"]].strip() or None,
            locale or self.language,
            durations,
            where,
            report,
        )

    def clip_utterance(
        self,
        name: str,
        sentence: str,
        speaker: str | None,
        language: str | None,
        durations: dict[str, float],
        where: str,
        report: ScanReport,
    ) -> Utterance | None:
        """The record of clip ``name`` (relative to ``clips/``) reading ``sentence``, or
        ``None`` with the reason in ``report``: the clip is missing or unreadable, or the
        sentence normalises to nothing or leaves the alphabet. ``durations`` is
        :meth:`clip_durations` (or empty: probe); ``where`` names the row in messages.
        Shared by the readers of corpora built on Common Voice clips (CoVoST 2)."""
        path = self.clips / name
        if not path.is_file() and (self.clips / f"{name}.mp3").is_file():
            name, path = f"{name}.mp3", self.clips / f"{name}.mp3"  # early releases: no suffix
        if not path.is_file():
            report.skip(path, f"listed in {where} but the file does not exist")
            return None
        text = self.normalizer(sentence)
        if text is None:
            report.skip(path, f"sentence {sentence!r} " + self.normalizer.rejection(sentence))
            return None
        if not text:
            report.skip(path, f"sentence {sentence!r} ({where}) normalises to nothing")
            return None
        if name in durations:
            duration, sample_rate = durations[name], self.clip_sample_rate
        else:
            try:
                info = probe(path)
            except AudioError as error:
                report.skip(path, str(error))
                return None
            duration, sample_rate = info.duration, info.sample_rate
        return Utterance(
            id=Path(name).stem,
            audio_path=str(path),
            duration=duration,
            sample_rate=sample_rate,
            text=text,
            speaker=speaker,
            language=language,
        )

    def columns(self, path: Path, required: tuple[str, ...]) -> list[str]:
        """The header of ``path``; a :class:`CorpusLayoutError` when it lacks ``required``."""
        try:
            header = [name.strip() for name in _header(path)]
        except CorpusLayoutError:
            raise
        except OSError as error:
            raise self._layout_error(f"cannot read {path} ({error})") from error
        missing = [name for name in required if name not in header]
        if missing:
            raise CorpusLayoutError(
                f"{path} has the header {header!r}: expected tab-separated columns including "
                f"{list(required)} (missing {missing}). Check that the file is an unmodified "
                f"Common Voice tsv (tabs, not commas; the header row first)."
            )
        return header

    def clip_durations(self) -> dict[str, float]:
        """``clip -> seconds`` from ``clip_durations.tsv`` (empty when absent)."""
        if self._durations is None:
            self._durations = {}
            path = self.root / CLIP_DURATIONS
            if path.is_file():
                header = self.columns(path, DURATION_COLUMNS)
                clip, ms = header.index("clip"), header.index("duration[ms]")
                unusable = 0
                rows = tsv_rows(path)
                next(rows, None)
                for row in rows:
                    try:
                        seconds = float(row[ms]) / 1000.0
                    except (IndexError, ValueError):
                        unusable += 1
                        continue
                    if seconds > 0:
                        self._durations[row[clip].strip()] = seconds
                if unusable:
                    log.warning(
                        "%s: %d rows without a usable duration; probing those clips", path, unusable
                    )
        return self._durations

    def _held_out_paths(self) -> set[str]:
        """Clips of ``dev.tsv`` and ``test.tsv``, kept out of train."""
        paths: set[str] = set()
        for split in ("validation", "test"):
            tsv = self.split_tsv(split)
            index = self.columns(tsv, REQUIRED_COLUMNS).index("path")
            rows = tsv_rows(tsv)
            next(rows, None)
            paths.update(row[index].strip() for row in rows if len(row) > index)
        return paths

    def _locale_hint(self) -> str:
        if not self.root.is_dir():
            return ""
        locales = sorted(p.name for p in self.root.iterdir() if (p / CLIPS).is_dir())
        if locales:
            shown = ", ".join(locales[:5]) + (", ..." if len(locales) > 5 else "")
            return f" (it holds locale folders: {shown}; set root=<one of them>)"
        return ""

    def _layout_error(self, problem: str) -> CorpusLayoutError:
        return CorpusLayoutError(
            f"{problem}. Expected the Common Voice layout of one locale: {EXPECTED_LAYOUT}. Set "
            f"data.reader.root=<the locale folder, e.g. cv-corpus-6.1-2020-12-11/en>; Common "
            f"Voice is downloaded by hand from commonvoice.mozilla.org (after accepting its terms)."
        )
