"""A user's corpus as Kaldi/ESPnet data dirs: ``wav.scp``, ``text``, ``utt2spk``, ...

Layout: ``<root>/<split dir>/`` for each split, a folder holding ``wav.scp``; ``root`` is the
folder of the data dirs (a recipe's ``data/``). A split's dir is found by name (``train``;
``validation``, ``dev``, ``valid`` or ``val``; ``test`` or ``eval``) or named by the ``train``,
``validation`` and ``test`` options (relative to ``root``, e.g. ``train=train_clean_100``); a split
not found is held out of train by speaker
(:class:`~speechlab.corpora.formats.splits.SplitSources`).

Files of a data dir, as Kaldi writes them (``utils/validate_data_dir.sh``): one entry per line,
``<id> <value>``, the id running to the first space or tab, the value being the rest of the line;
UTF-8; blank lines are passed over.

- ``wav.scp``: ``<recording-id> <audio path>``. Without ``segments`` each recording is one
  utterance and the ids are utterance ids. A relative path is looked up under ``audio_root``, or,
  when that is ``None``, under ``root`` and then under its parent (Kaldi recipes write paths
  relative to the recipe folder, the parent of ``data/``; some corpora, relative to ``root``).
- ``segments`` (optional): ``<utterance-id> <recording-id> <start> <end>`` in seconds; ``end``
  ``-1`` runs to the end of the recording. Each recording is opened once per scan to check that
  its segments lie inside it.
- The per-utterance files named by ``files`` (``field -> file name``; ``None`` leaves a field
  unread): ``text`` (the transcript; ``<utt>`` alone is an empty one), ``translation``,
  ``utt2label`` (``label``), ``utt2lang`` (``language``), ``utt2spk`` (``speaker``) and
  ``utt2dur`` (``duration``, seconds of a whole file; a file not listed there is probed once,
  the manifest cache keeping the result). ESPnet's ``text.tc.en`` is
  ``files.translation=text.tc.en``. A data dir whose ``wav.scp`` lists anything must hold at
  least one of the transcript files (text, translation, label).
- Other files (``spk2utt``, ``spk2gender``, ``utt2num_frames``, ``feats.scp``, ...) are not
  read. An utterance's speaker equal to its own id is Kaldi's way of writing "speaker unknown"
  (``utt2spk`` mapping each utterance to itself): it is read as no speaker, so that a held-out
  split keeps a recording's segments together, as it does without ``utt2spk``.

The per-utterance files are read into dictionaries (they are small: an id and a short value per
utterance); ``wav.scp``, or ``segments`` when present, is streamed (with ``segments``,
``wav.scp``'s recordings are held instead). Skipped and counted as ``<file>:<line>`` with the
reason: a line that does not split into an id and a value, a repeated id (the first is kept), an
utterance of ``wav.scp``/``segments`` without a line in ``text`` (when ``text`` is read) and a
line of any per-utterance file whose utterance is in neither ``wav.scp`` nor ``segments``, a
segment whose recording is not in ``wav.scp`` or that ends before it starts, an ``utt2dur``
value that is not a positive number (ignored: the file is probed), missing audio (the message
says where it looked), and what :class:`~speechlab.corpora.formats.entries.EntryCheck` refuses.
Utterances that ``utt2spk``, ``utt2lang``, ``translation`` or ``utt2label`` has no line for keep
that field unknown (counted in the log). A train dir read again for a held-out split opens no
file a second time.

``wav.scp`` entries that are shell commands (``sox a.sph -t wav - |``) are refused unless
``allow_commands`` is true: a data dir from elsewhere must not run programs when it is read.
When allowed, each command runs once at scan time (``/bin/sh``, in ``audio_root`` or else the
parent of ``root``, as Kaldi recipes run them) and its output is kept in
``commands_dir/<hash of folder and command>.wav``, which becomes the audio file; a later scan
reuses it (the cached manifest names those files: deleting ``commands_dir`` needs the manifest
cache deleted too). A command runs without a time limit. Kaldi's other extended filenames (``ark:...``/``scp:...`` table specifiers, standard
input ``-`` and ``archive.ark:<byte offset>``) are refused: speechlab reads audio files.

Raises :class:`~speechlab.data.reader.CorpusLayoutError` (from ``check_layout`` and ``scan``):
the root or a named data dir is missing, no train dir is found, a data dir has no transcript
file, or ``wav.scp`` holds a command (not allowed) or an extended filename.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from speechlab.corpora.formats.entries import EntryCheck
from speechlab.corpora.formats.splits import SplitSources
from speechlab.data.reader import CorpusLayoutError, ScanReport
from speechlab.data.utterance import Utterance
from speechlab.text.normalize import TextNormalizer

log = logging.getLogger(__name__)

WAV_SCP = "wav.scp"
SEGMENTS = "segments"
#: The per-utterance files ``files`` may name, by the utterance field each fills.
FIELDS = ("text", "translation", "label", "language", "speaker", "duration")
#: A data dir listing audio must hold at least one of these.
TRANSCRIPTS = ("text", "translation", "label")
#: Files whose lines may hold an id alone (an empty transcript).
MAY_BE_EMPTY = ("text", "translation")
EXPECTED = "Kaldi data dir (a folder holding wav.scp, text, utt2spk)"

_SEPARATOR = re.compile(r"[ \t]+")
_TABLE_SPECIFIER = re.compile(r"^(ark|scp)(,[a-z]+)*:")
_ARCHIVE_OFFSET = re.compile(r":\d+(\[[^\]]*\])?$")


def kaldi_lines(path: Path, report: ScanReport) -> Iterator[tuple[int, str, str]]:
    """``(line number, id, value)`` of each non-blank line of a Kaldi file: the id runs to the
    first space or tab, the value is the rest of the line (``""`` when the line holds an id
    alone). Lines that are not UTF-8 are reported as ``<path>:<line>`` and passed over."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.strip(" \t\r\n")
            if not line:
                continue
            if any("\udc80" <= char <= "\udcff" for char in line):
                report.skip(f"{path}:{number}", "is not UTF-8 text; fix or delete the line")
                continue
            parts = _SEPARATOR.split(line, maxsplit=1)
            yield number, parts[0], parts[1] if len(parts) > 1 else ""


def seconds_value(value: str) -> float | None:
    """``value`` as a positive, finite number of seconds, or ``None``."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if 0 < number < float("inf") else None


@dataclass
class UtteranceFile:
    """One per-utterance file read into ``id -> (line, value)``. ``rejected`` holds the ids
    whose line was skipped (``id -> line``), so that the utterance's own skip can point at it;
    ``missing`` counts the utterances of ``wav.scp``/``segments`` it has no line for."""

    path: Path
    values: dict[str, tuple[int, str]] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    missing: int = 0


@dataclass(frozen=True)
class Entry:
    """One utterance as ``wav.scp`` or ``segments`` lists it, or the ``problem`` of its line.
    ``audio()`` gives the audio file or the reason it is unusable (called only for entries that
    pass the other checks, so that a skipped entry runs no command); ``offset`` and
    ``duration`` are seconds (``duration`` ``None``: from ``utt2dur`` for a whole file, else
    probed)."""

    number: int
    uid: str
    audio: Callable[[], Path | str] | None = None
    offset: float = 0.0
    duration: float | None = None
    segment: bool = False
    problem: str | None = None


class KaldiReader:
    """Reads a corpus from Kaldi/ESPnet data dirs; see the module docstring.

    Args:
        root: the folder holding one data dir per split (a recipe's ``data/``).
        files: ``field -> file name`` in each data dir for the fields of :data:`FIELDS`;
            ``None`` (or a missing field) leaves the field unread.
        train, validation, test: a split's data dir, relative to ``root``; ``None`` looks for
            its usual names.
        holdout: the share of train's speakers held out for each split without a data dir.
        probe: open every audio file (true rates, unreadable files found up front).
        normalizer: a :class:`TextNormalizer` or its options, applied to texts and translations.
        audio_root: the folder relative ``wav.scp`` paths are relative to; ``None``: ``root``,
            then its parent.
        allow_commands: run the ``wav.scp`` entries that are shell commands (once; see the
            module docstring); false refuses them.
        commands_dir: where the commands' output is kept (needed with ``allow_commands``).

    Raises:
        ValueError: ``files`` names a field outside :data:`FIELDS`, or ``allow_commands`` is
            true without ``commands_dir``.
    """

    name = "kaldi"

    def __init__(
        self,
        root: str | Path,
        files: Mapping[str, str | None],
        train: str | None = None,
        validation: str | None = None,
        test: str | None = None,
        holdout: float = 0.05,
        probe: bool = False,
        normalizer: TextNormalizer | Mapping | None = None,
        audio_root: str | Path | None = None,
        allow_commands: bool = False,
        commands_dir: str | Path | None = None,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.given = {"train": train, "validation": validation, "test": test}
        self.holdout = float(holdout)
        self.probe = bool(probe)
        files = dict(files)
        unknown = sorted(set(files) - set(FIELDS))
        if unknown:
            raise ValueError(
                f"data.reader.files has {unknown}: expected utterance fields among {FIELDS}, "
                "each the name of its file in a data dir (e.g. files.translation=text.tc.en)"
            )
        self.files = {name: str(files[name]) if files.get(name) else None for name in FIELDS}
        self.normalizer = TextNormalizer.coerce(normalizer)
        self.audio_root = _folder(audio_root)
        self.allow_commands = bool(allow_commands)
        self.commands_dir = _folder(commands_dir)
        if self.allow_commands and self.commands_dir is None:
            raise ValueError(
                "data.reader.allow_commands=true needs data.reader.commands_dir: the folder "
                "where the output of each wav.scp command is kept"
            )
        self._sources: SplitSources | None = None
        # audio path -> (seconds, Hz) of the whole files probed in this build: a train dir read
        # again for a held-out split opens none of them twice
        self._probed: dict[str, tuple[float, int]] = {}

    # -- protocol ---------------------------------------------------------------------------------

    def check_layout(self) -> None:
        """Find each split's data dir and check that it holds a transcript file.

        Raises:
            CorpusLayoutError: the root or a named data dir is missing, no train dir is found,
                or a data dir listing audio has none of the transcript files.
        """
        if not self.root.is_dir():
            raise CorpusLayoutError(
                f"the Kaldi data folder {self.root} does not exist. Expected a folder of data "
                "dirs, one per split (train/, dev/, test/, each holding wav.scp, text, utt2spk), "
                "such as a Kaldi or ESPnet recipe's data/; set data.reader.root=<that folder> "
                "(`speechlab convert data=<corpus> --to kaldi -o DIR` writes one)"
            )
        self._probed = {}
        self._sources = SplitSources(
            self.given, self._find, self.holdout, self._describe_root(), EXPECTED
        )
        for path in self._sources.paths():
            self._check_dir(path)

    def options(self) -> dict:
        return {
            **self.given,
            "holdout": self.holdout,
            "probe": self.probe,
            "files": self.files,
            "normalizer": self.normalizer.options(),
            "audio_root": None if self.audio_root is None else str(self.audio_root),
            "allow_commands": self.allow_commands,
            "commands_dir": None if self.commands_dir is None else str(self.commands_dir),
        }

    def fingerprint_paths(self) -> Iterable[Path]:
        """Each data dir's ``wav.scp``, ``segments`` and the files of ``files``; not the audio
        (replacing audio files under unchanged lists needs the cached manifest deleted)."""
        paths: set[Path] = set()
        names = [WAV_SCP, SEGMENTS, *(name for name in self.files.values() if name)]
        for directory in self._split_sources().paths():
            paths.update(p for p in (directory / name for name in names) if p.is_file())
        return sorted(paths)

    def scan(self, split: str, report: ScanReport) -> Iterator[Utterance]:
        """Yield the utterances of ``split``; skipped entries go to ``report``.

        Raises:
            CorpusLayoutError: ``wav.scp`` holds a command (``allow_commands`` false) or an
                extended filename.
        """
        check = EntryCheck(report, self.normalizer, self.probe)
        yield from self._split_sources().scan(split, lambda path, _: self._read(path, check))

    # -- layout -----------------------------------------------------------------------------------

    def _split_sources(self) -> SplitSources:
        if self._sources is None:
            self.check_layout()
        assert self._sources is not None
        return self._sources

    def _find(self, name: str) -> Path | None:
        path = self.root / name
        return path if (path / WAV_SCP).is_file() else None

    def _describe_root(self) -> str:
        """The root and the folders it holds, for the messages about a missing data dir."""
        shown = [
            f"{p.name}/" + ("" if (p / WAV_SCP).is_file() else " (no wav.scp)")
            for p in sorted(self.root.iterdir())
            if p.is_dir()
        ]
        if not shown:
            return f"{self.root} (which holds no folder)"
        more = ", ..." if len(shown) > 12 else ""
        return f"{self.root} (which holds {', '.join(shown[:12])}{more})"

    def _check_dir(self, directory: Path) -> None:
        if (directory / WAV_SCP).stat().st_size == 0:
            return  # nothing listed: the split is empty, as the datamodule reports
        wanted = {name: self.files[name] for name in TRANSCRIPTS if self.files[name]}
        if any((directory / name).is_file() for name in wanted.values()):
            return
        looked = ", ".join(f"{name} ({field})" for field, name in wanted.items()) or "none"
        found = ", ".join(sorted(p.name for p in directory.iterdir()))
        raise CorpusLayoutError(
            f"the Kaldi data dir {directory} has no transcript file: looked for {looked} and "
            f"found {found}. Name the file that holds each utterance's transcript, translation "
            "or label: data.reader.files.text=<file name> (or files.translation, files.label)"
        )

    # -- reading ----------------------------------------------------------------------------------

    def _read(self, directory: Path, check: EntryCheck) -> Iterator[Utterance]:
        """The utterances of one data dir."""
        report = check.report
        files = {
            name: self._read_utterance_file(directory / filename, name, report)
            for name, filename in self.files.items()
            if filename and (directory / filename).is_file()
        }
        segments = directory / SEGMENTS
        source = segments if segments.is_file() else directory / WAV_SCP
        entries = (
            self._segments(segments, directory / WAV_SCP, report)
            if segments.is_file()
            else self._wavs(source, report)
        )
        seen: dict[str, int] = {}
        for entry in entries:
            where = f"{source}:{entry.number}"
            if entry.uid in seen:
                check.skip(
                    where,
                    f"repeats utterance id {entry.uid!r} of line {seen[entry.uid]}; ids must be "
                    "unique within a data dir (the later line is skipped): rename or delete one",
                )
                continue
            seen[entry.uid] = entry.number
            value = self._values_of(entry.uid, files)
            if entry.problem is not None or entry.audio is None:
                check.skip(where, entry.problem or "has no audio")
                continue
            if "text" in files and "text" not in value:
                rejected = files["text"].rejected.get(entry.uid)
                check.skip(
                    where,
                    f"utterance {entry.uid!r} has no line in {files['text'].path}"
                    + (f" (its line {rejected} was skipped)" if rejected else "")
                    + "; add its transcript or delete the entry",
                )
                continue
            audio = entry.audio()
            if isinstance(audio, str):
                check.skip(where, audio)
                continue
            duration, sample_rate = entry.duration, None
            if not entry.segment and "duration" in value:
                duration = seconds_value(value["duration"])
            elif not entry.segment and str(audio) in self._probed:
                duration, sample_rate = self._probed[str(audio)]
            speaker = value.get("speaker")
            utterance = check.utterance(
                where,
                entry.uid,
                audio,
                duration=duration,
                offset=entry.offset,
                sample_rate=sample_rate,
                text=value.get("text"),
                translation=value.get("translation"),
                label=value.get("label"),
                speaker=None if speaker == entry.uid else speaker,  # Kaldi's "unknown"
                language=value.get("language"),
            )
            if utterance is None:
                continue
            if not entry.segment and duration is None:
                self._probed[utterance.audio_path] = (utterance.duration, utterance.sample_rate)
            yield utterance
        self._report_leftovers(files, source, report)

    @staticmethod
    def _values_of(uid: str, files: dict[str, UtteranceFile]) -> dict[str, str]:
        """``field -> value`` of utterance ``uid`` in the per-utterance files (its lines taken
        out, so that the lines left at the end are those of no utterance)."""
        values: dict[str, str] = {}
        for name, file in files.items():
            found = file.values.pop(uid, None)
            if found is not None:
                values[name] = found[1]
            elif uid not in file.rejected:
                file.missing += 1
        return values

    def _read_utterance_file(self, path: Path, name: str, report: ScanReport) -> UtteranceFile:
        file = UtteranceFile(path)
        for number, uid, value in kaldi_lines(path, report):
            where = f"{path}:{number}"
            if uid in file.values or uid in file.rejected:
                first = file.values[uid][0] if uid in file.values else file.rejected[uid]
                report.skip(
                    where,
                    f"repeats utterance id {uid!r} of line {first}; ids must be unique (the "
                    "later line is skipped): delete one",
                )
                continue
            problem = None
            if not value and name not in MAY_BE_EMPTY:
                problem = f"has the id {uid!r} alone; expected `<utterance-id> <{name}>`"
            elif name == "duration" and seconds_value(value) is None:
                problem = (
                    f"duration {value!r} of {uid!r} is not a positive number of seconds; the "
                    "line is ignored and the audio file probed instead: fix or delete it"
                )
            if problem is not None:
                report.skip(where, problem)
                file.rejected[uid] = number
                continue
            file.values[uid] = (number, value)
        return file

    def _report_leftovers(
        self, files: dict[str, UtteranceFile], source: Path, report: ScanReport
    ) -> None:
        """Skip the lines of utterances ``source`` does not list; log the counts of utterances
        a file of an optional field has no line for."""
        for name, file in files.items():
            for uid, (number, _) in file.values.items():
                report.skip(
                    f"{file.path}:{number}",
                    f"utterance {uid!r} is not in {source}; add its entry there or delete the line",
                )
            if file.missing and name not in ("text", "duration"):
                log.log(
                    logging.WARNING if name == "speaker" else logging.INFO,
                    "%s: no line for %d utterances of %s; their %s is unknown",
                    file.path,
                    file.missing,
                    source,
                    name,
                )

    def _wavs(self, wav_scp: Path, report: ScanReport) -> Iterator[Entry]:
        """The entries of a ``wav.scp`` without ``segments``: one utterance per recording."""
        for number, uid, value in kaldi_lines(wav_scp, report):
            if not value:
                yield Entry(number, uid, problem=_no_path(uid))
                continue
            where = f"{wav_scp}:{number}"
            yield Entry(number, uid, lambda value=value, where=where: self._audio(value, where))

    def _segments(self, segments: Path, wav_scp: Path, report: ScanReport) -> Iterator[Entry]:
        """The entries of ``segments``, their recordings looked up in ``wav.scp`` (held as
        ``recording id -> (line, value)``; each resolved once)."""
        recordings: dict[str, tuple[int, str]] = {}
        for number, rid, value in kaldi_lines(wav_scp, report):
            where = f"{wav_scp}:{number}"
            if rid in recordings:
                report.skip(
                    where,
                    f"repeats recording id {rid!r} of line {recordings[rid][0]}; ids must be "
                    "unique (the later line is skipped): rename or delete one",
                )
            elif not value:
                report.skip(where, _no_path(rid))
            else:
                recordings[rid] = (number, value)
        resolved: dict[str, Path | str] = {}
        referenced: set[str] = set()

        def audio(rid: str) -> Path | str:
            if rid not in resolved:
                number, value = recordings[rid]
                found = self._audio(value, f"{wav_scp}:{number}")
                resolved[rid] = (
                    found
                    if isinstance(found, Path)
                    else f"recording {rid!r} ({wav_scp}:{number}): {found}"
                )
            return resolved[rid]

        for number, uid, value in kaldi_lines(segments, report):
            fields = value.split()
            if len(fields) != 3:
                yield Entry(
                    number,
                    uid,
                    problem=f"has {len(fields) + 1} fields; expected `<utterance-id> "
                    "<recording-id> <start> <end>` (seconds; end -1: the end of the recording)",
                )
                continue
            rid, start, end = fields
            referenced.add(rid)
            times = seconds_or_none(start), seconds_or_none(end)
            if rid not in recordings:
                problem = f"recording {rid!r} is not in {wav_scp}; add it or delete the segment"
            elif times[0] is None or times[1] is None:
                problem = (
                    f"start {start!r} or end {end!r} is not a number of seconds; expected "
                    "`<utterance-id> <recording-id> <start> <end>` (end -1: to the end)"
                )
            elif times[1] != -1 and times[1] <= times[0]:
                problem = (
                    f"ends at {end} s, at or before its start ({start} s); expected end > start "
                    "(or -1: the end of the recording): fix or delete the segment"
                )
            else:
                offset, stop = times
                yield Entry(
                    number,
                    uid,
                    lambda rid=rid: audio(rid),
                    offset=offset,
                    duration=None if stop == -1 else stop - offset,
                    segment=True,
                )
                continue
            yield Entry(number, uid, problem=problem)
        unused = len(recordings.keys() - referenced)
        if unused:
            log.info("%s: %d recordings have no segment in %s", wav_scp, unused, segments)

    # -- audio ------------------------------------------------------------------------------------

    def _audio(self, value: str, where: str) -> Path | str:
        """The audio file a ``wav.scp`` value names, or why it is unusable.

        Raises:
            CorpusLayoutError: the value is a command (``allow_commands`` false) or a Kaldi
                extended filename other than a command.
        """
        if value.endswith("|"):
            if not self.allow_commands:
                raise CorpusLayoutError(
                    f"{where}: {value!r} is a shell command; wav.scp commands are not run "
                    "unless data.reader.allow_commands=true (a data dir from elsewhere must not "
                    "run programs when read). Set it if you trust this data dir (each command "
                    "runs once, its output kept in data.reader.commands_dir), or write the "
                    "audio to files and list those"
                )
            return self._command_output(value[:-1].strip(), where)
        if value == "-" or _TABLE_SPECIFIER.match(value):
            raise CorpusLayoutError(
                f"{where}: {value!r} is a Kaldi table specifier or standard input, not an audio "
                "file; speechlab reads audio files: write each recording to a file (e.g. with "
                "ESPnet's scripts/audio/format_wav_scp.sh) and list those"
            )
        candidates = self._candidates(value)
        found = next((path for path in candidates if path.is_file()), None)
        if found is not None:
            return found
        if _ARCHIVE_OFFSET.search(value):
            raise CorpusLayoutError(
                f"{where}: {value!r} is an offset into a Kaldi archive (<file>:<byte offset>), "
                "not an audio file; speechlab reads audio files: write each recording to a file "
                "(e.g. with ESPnet's scripts/audio/format_wav_scp.sh) and list those"
            )
        if Path(value).expanduser().is_absolute():
            kind = "is a folder" if candidates[0].is_dir() else "does not exist"
            return f"audio {candidates[0]} {kind}; fix the path or delete the entry"
        looked = " nor under ".join(str(path.parent) for path in candidates)
        how = (
            "relative paths are taken under data.reader.audio_root"
            if self.audio_root is not None
            else "relative paths are looked up under data.reader.root, then its parent (a "
            "Kaldi recipe's folder)"
        )
        return (
            f"audio {value!r} is not a file under {looked} ({how}); fix the path, or set "
            "data.reader.audio_root=<the folder wav.scp's paths are relative to>"
        )

    def _candidates(self, value: str) -> list[Path]:
        path = Path(value).expanduser()
        if path.is_absolute():
            return [path]
        if self.audio_root is not None:
            return [self.audio_root / path]
        return [self.root / path, self.root.parent / path]

    def _command_output(self, command: str, where: str) -> Path | str:
        """The file holding ``command``'s output (run once, then reused), or why it failed."""
        assert self.commands_dir is not None
        cwd = self.audio_root or self.root.parent
        key = hashlib.sha1(f"{cwd}\0{command}".encode()).hexdigest()[:20]
        out = self.commands_dir / f"{key}.wav"
        if out.is_file() and out.stat().st_size > 0:
            return out
        self.commands_dir.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.{os.getpid()}")
        try:
            with partial.open("wb") as f:
                done = subprocess.run(
                    command, shell=True, cwd=cwd, stdout=f, stderr=subprocess.PIPE, check=False
                )
            if done.returncode != 0 or partial.stat().st_size == 0:
                said = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
                status = f"exit status {done.returncode}" if done.returncode else "no output"
                return (
                    f"command {command!r} (run in {cwd}) failed: {status}"
                    + (f" ({' / '.join(said)})" if said else "")
                    + "; fix the command or delete the entry"
                )
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
        return out


def seconds_or_none(value: str) -> float | None:
    """``value`` as a finite number, or ``None``."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if abs(number) < float("inf") else None


def _no_path(uid: str) -> str:
    return f"has the id {uid!r} alone; expected `<id> <audio path>`: fix or delete the line"


def _folder(value: str | Path | None) -> Path | None:
    return None if value in (None, "") else Path(value).expanduser().resolve()
