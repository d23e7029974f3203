"""Lhotse manifests (https://github.com/lhotse-speech/lhotse), read with the ``lhotse`` library.

Layout: one folder (``data.reader.root``) of JSON-lines manifests, gzip-compressed or not. Each
split is either

- a cut manifest (a ``CutSet``): ``cuts_<split>.jsonl.gz``, or ``<corpus>_cuts_<split>.jsonl.gz``
  as Lhotse recipes and icefall name theirs (``.jsonl`` too); one utterance per cut; or
- a recordings + supervisions pair, as Lhotse recipes write them:
  ``<corpus>_recordings_<split>.jsonl.gz`` with ``<corpus>_supervisions_<split>.jsonl.gz``; one
  utterance per supervision segment (the cuts ``CutSet.from_manifests(...)
  .trim_to_supervisions()`` gives), a recording no supervision refers to is skipped and counted,
  as is a supervision whose recording is not listed.

When both exist for one split, the cut manifest is read. A split is found by its usual names
(``train``; ``validation``/``dev``/``valid``/``val``; ``test``/``eval``, see
:class:`~speechlab.corpora.formats.splits.SplitSources`; one missing is held out of train by
speaker), or named with ``data.reader.<split>=``: a manifest file under ``root``
(``librispeech_cuts_dev-clean.jsonl.gz``; a recordings or supervisions file brings its partner)
or a recipe's split name (``dev-clean``). Several train parts are one manifest:
``lhotse combine a.jsonl.gz b.jsonl.gz train.jsonl.gz``. Only JSON lines are read (``.json`` and
``.yaml`` manifests: ``lhotse copy in.json out.jsonl.gz``), and Lhotse Shar archives are not.

An utterance: ``id`` = the cut id (the supervision id for a pair), ``audio_path`` = the recording's
``file`` source, ``offset`` = ``cut.start`` (``supervision.start``), ``duration`` in seconds as
the manifest gives it, ``sample_rate`` = the recording's ``sampling_rate`` (Hz; the file's own
rate when it is opened), ``text``, ``speaker`` and ``language`` from the supervision, ``label``
and ``translation`` from the supervision's ``custom`` dict under the keys ``custom`` names. A
relative source path is resolved against the manifest's folder when the file is there, else
against the current directory (where Lhotse itself would open it). A recording with several
channels in one file is mixed down to mono by speechlab's audio reader, whichever channel the cut
selects; a recording of one file per channel is read when the cut or supervision selects the
channels of one file.

A cut's supervisions lying wholly outside it are ignored; one that crosses the cut's edge skips
the cut (its text does not match the audio: trim the supervisions to the cut). Several
supervisions in one cut follow ``several_supervisions``:

- ``join``: their texts (and translations) joined in time order with a space, when they do not
  overlap and agree in speaker, language and label (or all lack one); otherwise the cut is
  skipped with that reason. Joined cuts are counted and logged once per manifest read.
- ``first``: the earliest supervision's fields (the audio still holds the others' speech).
- ``skip``: the cut is skipped and counted.

A cut without supervision is kept without text (a task that needs text or a label drops it
later, counted).

Skipped and counted, each under ``<manifest>:<line>`` with the reason: a line that is not JSON
or not a Lhotse record; a mixed or padding cut (several tracks: not one file segment); a cut
without a recording (features only); audio that is not a plain file: a ``command`` source (a
shell pipe, never run), a ``url`` (no network at run time), a ``memory`` or ``shar`` source; a
recording transformed by Lhotse (speed, tempo, volume, reverberation ...: speechlab reads the
file as it is; a ``Resample`` is harmless and allowed); a label or translation that is not text;
and what :class:`~speechlab.corpora.formats.entries.EntryCheck` refuses (repeated ids, missing
audio, durations that are not positive, segments beyond the end of their file).

Memory: cut manifests and supervisions are streamed line by line; for a pair, the recordings
file is held in memory (its file sources and rates only, a few hundred bytes per recording).

Raises:
    CorpusLayoutError: ``root`` missing; no train manifest (the message lists the manifests
        found); a named manifest missing, in another format, or holding other records (a
        recordings file given as cuts); a recordings file without its supervisions; a gzip
        file that is truncated or corrupt (naming the last line read).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechlab.corpora.formats.entries import END_SLACK, EntryCheck
from speechlab.corpora.formats.lhotse_layout import EXPECTED, ManifestFolder, Source
from speechlab.corpora.formats.lhotse_records import (
    AudioFile,
    Located,
    first_kind,
    manifest_records,
    parse,
    record_kind,
)
from speechlab.corpora.formats.splits import SplitSources
from speechlab.data.reader import CorpusLayoutError, ScanReport
from speechlab.data.utterance import Utterance
from speechlab.text.normalize import TextNormalizer

log = logging.getLogger(__name__)

SEVERAL_SUPERVISIONS = ("join", "first", "skip")
CUSTOM_FIELDS = ("label", "translation")


@dataclass
class Fields:
    """The utterance fields of one cut's supervision(s)."""

    text: str | None = None
    translation: str | None = None
    label: str | None = None
    speaker: str | None = None
    language: str | None = None


@dataclass
class Counts:
    """What one scan of one manifest did beyond keeping or skipping, logged once at its end."""

    joined: int = 0
    first: int = 0
    unsupervised: int = 0
    mixed_down: int = 0
    cwd: set[str] = field(default_factory=set)


def _text(value: object, name: str) -> str | None:
    """A custom field as text; raises ``ValueError`` for a value that is not a string or number."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"custom {name} {value!r} is a {type(value).__name__}, expected text")


class LhotseReader:
    """Reads a folder of Lhotse manifests; see the module docstring.

    Args:
        root: the folder holding the manifests.
        train, validation, test: a manifest file under ``root`` or a split name of its manifests
            (``train-clean-100``); ``None`` looks for the split's usual names.
        holdout: the share of train's speakers held out for each split not found (0-0.5).
        probe: open every audio file (true rates and lengths, unreadable files found up front).
        several_supervisions: ``join``, ``first`` or ``skip`` (see the module docstring).
        custom: utterance field (``label``, ``translation``) -> its key in a supervision's
            ``custom`` dict; a key ``None`` reads no such field.
        normalizer: a :class:`TextNormalizer` or its options, applied to texts and translations.

    Raises:
        ValueError: an option out of its range (named with the value and what it takes).
    """

    name = "lhotse"

    def __init__(
        self,
        root: str | Path,
        *,
        train: str | None,
        validation: str | None,
        test: str | None,
        holdout: float,
        probe: bool,
        several_supervisions: str,
        custom: Mapping[str, str | None],
        normalizer: TextNormalizer | Mapping | None,
    ) -> None:
        if several_supervisions not in SEVERAL_SUPERVISIONS:
            raise ValueError(
                f"data.reader.several_supervisions={several_supervisions!r}: expected one of "
                f"{'|'.join(SEVERAL_SUPERVISIONS)}"
            )
        unknown = sorted(set(custom) - set(CUSTOM_FIELDS))
        if unknown:
            raise ValueError(
                f"data.reader.custom has the keys {unknown}: expected only {list(CUSTOM_FIELDS)} "
                "(utterance field -> its key in a supervision's custom dict)"
            )
        self.root = Path(root).expanduser().resolve()
        self.folder = ManifestFolder(self.root)
        self.given = {"train": train, "validation": validation, "test": test}
        self.holdout = float(holdout)
        self.probe = bool(probe)
        self.several_supervisions = str(several_supervisions)
        self.custom = {name: (str(custom[name]) if custom.get(name) else None) for name in custom}
        self.normalizer = TextNormalizer.coerce(normalizer)
        self._sources: SplitSources | None = None

    # -- protocol ---------------------------------------------------------------------------------

    def check_layout(self) -> None:
        """Find each split's manifest(s) and check that each holds the records it should.

        Raises:
            CorpusLayoutError: see the module docstring.
        """
        if not self.root.is_dir():
            raise CorpusLayoutError(
                f"the Lhotse manifest folder {self.root} does not exist. Expected a {EXPECTED} "
                "per split in it; set data.reader.root=<the folder of your Lhotse manifests>"
            )
        self._sources = None
        found = self.sources().sources
        for index, (split, source) in enumerate(found.items()):
            if source is None:
                continue
            shared = [other for other in list(found)[:index] if found[other] == source]
            if shared:
                log.warning(
                    "%s is read as both %s and %s: the two splits hold the same utterances",
                    source,
                    shared[0],
                    split,
                )
            assert isinstance(source, Source)
            wanted = (
                {source.cuts: "cut"}
                if source.cuts
                else {source.recordings: "recording", source.supervisions: "supervision"}
            )
            for path, kind in wanted.items():
                held = first_kind(path)
                if held not in (kind, None):
                    raise CorpusLayoutError(
                        f"{path} holds Lhotse {held}s, not {kind}s: expected a {EXPECTED}. Name "
                        "a cut manifest, or a recordings file (its supervisions file is found "
                        "by name), in data.reader.<split>="
                    )

    def options(self) -> dict:
        """The options that change the output, as plain data."""
        return {
            **self.given,
            "holdout": self.holdout,
            "probe": self.probe,
            "several_supervisions": self.several_supervisions,
            "custom": dict(self.custom),
            "normalizer": self.normalizer.options(),
        }

    def fingerprint_paths(self) -> Iterable[Path]:
        """Every manifest read (not the audio files)."""
        sources = self.sources().sources.values()
        return sorted({p for s in sources if isinstance(s, Source) for p in s.files()})

    def scan(self, split: str, report: ScanReport) -> Iterator[Utterance]:
        """Yield the utterances of ``split``; unusable lines and cuts go to ``report``."""

        def read(source: object, name: str) -> Iterator[Utterance]:
            assert isinstance(source, Source)
            check = EntryCheck(report, self.normalizer, probe=self.probe)
            counts = Counts()
            if source.cuts is not None:
                yield from self._read_cuts(source.cuts, check, counts)
            else:
                assert source.recordings is not None and source.supervisions is not None
                yield from self._read_pair(source.recordings, source.supervisions, check, counts)
            if self.sources().sources[name] == source:  # once per manifest, not per share
                self._log(source, counts)

        yield from self.sources().scan(split, read)

    # -- finding the manifests --------------------------------------------------------------------

    def sources(self) -> SplitSources:
        """Each split's :class:`Source`, found once per :meth:`check_layout`."""
        if self._sources is None:
            self._sources = SplitSources(
                self.given, self.folder.find, self.holdout, self.folder.where(), EXPECTED
            )
        return self._sources

    # -- reading ----------------------------------------------------------------------------------

    def _read_cuts(self, path: Path, check: EntryCheck, counts: Counts) -> Iterator[Utterance]:
        from lhotse.cut import MonoCut, MultiCut

        report = check.report
        for line, record in manifest_records(path, report):
            where = f"{path}:{line}"
            cut_id = record.get("id")
            kind = record_kind(record)
            if kind != "cut":
                check.skip(where, f"is a Lhotse {kind}, not a cut; a cut manifest holds cuts only")
                continue
            try:
                cut = parse(record, kind)
            except Exception as error:  # lhotse's own checks, whatever they raise
                check.skip(where, self._unparsed(error, "cut"))
                continue
            if not isinstance(cut, (MonoCut, MultiCut)):
                check.skip(
                    where,
                    f"cut {cut_id!r} is a {type(cut).__name__} (several tracks mixed or padded), "
                    "not one stretch of one recording; write its tracks as MonoCuts, or save its "
                    "audio to a file (cut.save_audio) and write a cut of that file",
                )
                continue
            if cut.recording is None:
                check.skip(
                    where,
                    f"cut {cut_id!r} has no recording (features only): speechlab reads audio; "
                    "write cuts with their recordings",
                )
                continue
            fields = self._cut_fields(cut, where, check, counts)
            if fields is None:
                continue
            audio = self._audio(AudioFile.of(cut.recording), cut.channel, path, counts)
            if isinstance(audio, str):
                check.skip(where, f"cut {cut_id!r}: {audio}")
                continue
            utterance = check.utterance(
                where,
                str(cut.id),
                audio,
                duration=cut.duration,
                offset=cut.start,
                sample_rate=int(cut.recording.sampling_rate),
                **vars(fields),
            )
            if utterance is not None:
                yield utterance

    def _read_pair(
        self, recordings_path: Path, supervisions_path: Path, check: EntryCheck, counts: Counts
    ) -> Iterator[Utterance]:
        recordings: dict[str, tuple[int, AudioFile]] = {}
        for line, record in manifest_records(recordings_path, check.report):
            where = f"{recordings_path}:{line}"
            try:
                audio = AudioFile.of(parse(record, "recording"))
            except Exception as error:  # lhotse's own checks, whatever they raise
                check.skip(where, self._unparsed(error, "recording"))
                continue
            if audio.id in recordings:
                earlier = recordings[audio.id][0]
                check.skip(
                    where,
                    f"repeats recording id {audio.id!r} of line {earlier}; ids must be unique "
                    "(the later one is skipped): rename or delete one",
                )
                continue
            recordings[audio.id] = (line, audio)
        used: set[str] = set()
        for line, record in manifest_records(supervisions_path, check.report):
            where = f"{supervisions_path}:{line}"
            try:
                supervision = parse(record, "supervision")
            except Exception as error:  # lhotse's own checks, whatever they raise
                check.skip(where, self._unparsed(error, "supervision"))
                continue
            found = recordings.get(str(supervision.recording_id))
            if found is None:
                check.skip(
                    where,
                    f"supervision {supervision.id!r} refers to recording "
                    f"{supervision.recording_id!r}, which {recordings_path.name} does not list; "
                    "add the recording or delete the supervision",
                )
                continue
            used.add(found[1].id)
            try:
                fields = self._fields(supervision)
            except ValueError as error:
                check.skip(where, f"supervision {supervision.id!r}: {error}; fix the manifest")
                continue
            audio = self._audio(found[1], supervision.channel, recordings_path, counts)
            if isinstance(audio, str):
                check.skip(where, f"supervision {supervision.id!r}: {audio}")
                continue
            utterance = check.utterance(
                where,
                str(supervision.id),
                audio,
                duration=supervision.duration,
                offset=supervision.start,
                sample_rate=found[1].sampling_rate,
                **vars(fields),
            )
            if utterance is not None:
                yield utterance
        for rid, (line, _) in recordings.items():
            if rid not in used:
                check.skip(
                    f"{recordings_path}:{line}",
                    f"recording {rid!r} has no supervision in {supervisions_path.name}, so no "
                    "utterance; add its supervision or delete the recording",
                )

    def _unparsed(self, error: Exception, kind: str) -> str:
        return (
            f"is not a Lhotse {kind} ({type(error).__name__}: {error}); expected a record as "
            f"lhotse writes it: fix or delete the line"
        )

    # -- one cut ----------------------------------------------------------------------------------

    def _cut_fields(self, cut: Any, where: str, check: EntryCheck, counts: Counts) -> Fields | None:
        """The fields of ``cut``'s supervisions by ``several_supervisions``, or ``None`` (skipped)."""
        inside = []
        for s in cut.supervisions:
            if s.end <= 0 or s.start >= cut.duration:
                continue  # wholly outside the cut: not its audio
            if s.start < -END_SLACK or s.end > cut.duration + END_SLACK:
                check.skip(
                    where,
                    f"cut {cut.id!r}: supervision {s.id!r} ({s.start:.3f}-{s.end:.3f} s) crosses "
                    f"the cut's edge (0-{cut.duration:.3f} s), so its text does not match the "
                    "audio; trim the supervisions to the cut or the cut to them "
                    "(cut.trim_to_supervisions)",
                )
                return None
            inside.append(s)
        inside.sort(key=lambda s: (s.start, s.end))
        try:
            if not inside:
                counts.unsupervised += 1
                return Fields()
            if len(inside) == 1:
                return self._fields(inside[0])
            if self.several_supervisions == "skip":
                check.skip(
                    where,
                    f"cut {cut.id!r} has {len(inside)} supervisions and "
                    "data.reader.several_supervisions=skip; set it to join or first to read them",
                )
                return None
            if self.several_supervisions == "first":
                counts.first += 1
                return self._fields(inside[0])
            joined = self._join(inside)
        except ValueError as error:
            check.skip(where, f"cut {cut.id!r}: {error}")
            return None
        if isinstance(joined, str):
            check.skip(
                where,
                f"cut {cut.id!r} has {len(inside)} supervisions that cannot be joined ({joined}); "
                "split the cut at its supervisions (cut.trim_to_supervisions), or set "
                "data.reader.several_supervisions=first or skip",
            )
            return None
        counts.joined += 1
        return joined

    def _fields(self, supervision: Any) -> Fields:
        custom = supervision.custom or {}
        values = {
            name: _text(custom.get(key), name) if key else None for name, key in self.custom.items()
        }
        return Fields(
            text=supervision.text,
            translation=values.get("translation"),
            label=values.get("label"),
            speaker=supervision.speaker,
            language=supervision.language,
        )

    def _join(self, supervisions: list[Any]) -> Fields | str:
        """The supervisions' fields joined, or why they cannot be (in time order already)."""
        for before, after in zip(supervisions, supervisions[1:], strict=False):
            if after.start < before.end - 1e-6:
                return f"{before.id!r} and {after.id!r} overlap"
        parts = [self._fields(s) for s in supervisions]
        for name in ("speaker", "language", "label"):
            values = {getattr(p, name) for p in parts}
            if len(values) > 1:
                shown = ", ".join(sorted(repr(v) for v in values))
                return f"they differ in {name}: {shown}"

        def joined(name: str) -> str | None:
            texts = [getattr(p, name) for p in parts if getattr(p, name)]
            return " ".join(texts) if texts else None

        return Fields(
            text=joined("text"),
            translation=joined("translation"),
            label=parts[0].label,
            speaker=parts[0].speaker,
            language=parts[0].language,
        )

    def _audio(
        self, audio: AudioFile, channel: object, manifest: Path, counts: Counts
    ) -> Path | str:
        """The file holding ``channel`` of ``audio`` (counted when mixed down or found from the
        current folder), or why there is none to read."""
        located = audio.locate(channel, manifest)
        if not isinstance(located, Located):
            return located
        if located.channels > 1:
            counts.mixed_down += 1
        if located.from_cwd:
            counts.cwd.add(str(Path.cwd()))
        return located.path

    def _log(self, source: Source, counts: Counts) -> None:
        notes = {
            "cuts' several supervisions joined in time order": counts.joined,
            "cuts read by the first of several supervisions": counts.first,
            "cuts without supervision (no text)": counts.unsupervised,
            "utterances of multi-channel files, mixed down to mono when read": counts.mixed_down,
        }
        for what, count in notes.items():
            if count:
                log.info("%s: %d %s", source, count, what)
        for folder in sorted(counts.cwd):
            log.info(
                "%s: relative audio paths resolved against the current folder %s", source, folder
            )
