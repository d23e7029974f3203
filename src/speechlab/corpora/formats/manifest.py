"""A user's corpus as manifests, one file per split: JSON lines (NeMo), CSV/TSV (SpeechBrain).

Layout: ``<root>/<split file>`` for each split, found by name (``train.jsonl``, ``dev.csv``, ...:
:data:`~speechlab.corpora.formats.splits.SPLIT_NAMES` with the suffixes :data:`SUFFIXES`) or
named by the ``train``, ``validation`` and ``test`` options; a split not found is held out of
train by speaker (:class:`~speechlab.corpora.formats.splits.SplitSources`). When one name has
files of several suffixes (``train.jsonl`` and ``train.tsv``), the first suffix of
:data:`SUFFIXES` is read and a warning names the others.

- ``.jsonl`` / ``.json``: one JSON object per line, NeMo's manifest keys by default:
  ``{"audio_filepath": "a.wav", "duration": 3.2, "text": "..."}`` and optionally ``offset``,
  ``speaker``, ``lang``, ``label``, ``translation``, ``id``. A ``.json`` file holding one JSON
  array of such objects (``json.dump(records, f)``; an entry is named ``<file>:<index>``, from
  0), or one object of objects (SpeechBrain's ``{"<id>": {"wav": ..., "length": ...}}``;
  ``{data_root}`` in its paths is the manifest's folder) is read too, whole, not streamed. The
  first lines decide: a file that is none of these is a
  :class:`~speechlab.data.reader.CorpusLayoutError` naming the line, not one skip per line.
- ``.csv`` (commas) and ``.tsv`` (tabs): a header row naming the columns, then one row per
  utterance (quoted fields as the ``csv`` module reads them).

``columns`` maps each utterance field to its key or column (``data.reader.columns.audio=wav``);
``null`` leaves a field unread. Relative audio paths resolve against the manifest's folder.
``duration`` and ``offset`` are seconds: ``offset`` + ``duration`` select a segment of a long
recording (read by seeking, not by decoding the whole file); a missing duration is probed once
(the manifest cache keeps it). An entry without an ``id`` is named by its audio path as written,
suffix removed; an entry with an ``offset`` (0 included) is a segment and gets its start and end
in milliseconds, 8 digits each (``long-00001250-00001750``; the start alone when it has no
duration), so no segment shares a name with its whole file or with a segment of the same start.
Text fields (``text``, ``translation``, ``label``, ``speaker``, ``language``, ``id``) take strings
or numbers (written as JSON writes them: ``3``, ``1.5``); a list, object or boolean there skips
the entry.

Files are read line by line with the standard library's ``json`` and ``csv`` modules: they stream
(a million-line manifest is never held as a list), handle every quoting rule of the formats, and
bring no dependency. An entry that does not parse, is not UTF-8 text, has a field of the wrong
JSON type, a CSV/TSV row with more or fewer fields than the header, an entry that lacks its audio
or fails :class:`~speechlab.corpora.formats.entries.EntryCheck` is skipped and counted as
``<file>:<line>`` with its reason; a split file without the audio column (CSV/TSV) or key (first
JSON entry), or with a header that is not UTF-8, is a
:class:`~speechlab.data.reader.CorpusLayoutError` saying what it has.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from speechlab.corpora.common_voice import is_utf8
from speechlab.corpora.formats.entries import EntryCheck, resolve_audio, seconds
from speechlab.corpora.formats.splits import SPLIT_NAMES, SplitSources
from speechlab.data.reader import CorpusLayoutError, ScanReport
from speechlab.data.utterance import Utterance
from speechlab.text.normalize import TextNormalizer

log = logging.getLogger(__name__)

#: Suffixes a split file is looked for with, in order.
SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")
#: The utterance fields ``columns`` may map.
FIELDS = (
    "audio",
    "duration",
    "offset",
    "text",
    "translation",
    "label",
    "speaker",
    "language",
    "id",
)
STRING_FIELDS = ("text", "translation", "label", "speaker", "language")
#: What one split's file is, for messages (no article: "no such {EXPECTED} in ...").
EXPECTED = "manifest file (.jsonl, .json, .csv or .tsv)"
#: The reason an entry with bytes that are not UTF-8 is skipped.
NOT_UTF8 = "is not UTF-8 text; re-save the file as UTF-8"
JSON_LAYOUTS = (
    "JSON lines (one utterance object per line), a JSON array of utterance objects, or one "
    'object of utterance objects ({"<id>": {"wav": ...}})'
)


class _FieldError(ValueError):
    """A field of an entry holds a JSON value of the wrong type (the message says which)."""


def _noun(value: Any) -> str:
    """The JSON type of ``value``: list, object, boolean, number, string or null."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    names = {list: "list", dict: "object", str: "string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _kind(value: Any) -> str:
    """The JSON type of ``value`` as messages name it: ``a number``, ``a JSON list``, ..."""
    noun = _noun(value)
    return "a number" if noun == "number" else f"a JSON {noun}"


def _string(value: Any, key: str) -> str | None:
    """A text field's value: a string as given, a number as JSON writes it, ``None`` when absent.

    Raises:
        _FieldError: the value is a list, an object or a boolean.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return json.dumps(value)
    raise _FieldError(f"{key} is {_kind(value)}; expected a string")


def _shown(value: Any, limit: int = 60) -> str:
    """``value`` as JSON for a message, cut at ``limit``; bytes that were not UTF-8 escaped."""
    text = json.dumps(value, ensure_ascii=False)
    if not is_utf8([text]):
        text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _milliseconds(value: float) -> str:
    return f"{round(value * 1000):08d}"


_NOT_JSON = object()


def _parses_as(line: str) -> Any:
    """The JSON value of one line, or :data:`_NOT_JSON`."""
    try:
        return json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        return _NOT_JSON


def _layout(first: str, second: str | None) -> str:
    """``lines`` (JSON lines), ``document`` (one JSON value: an array or an object of objects)
    or ``unknown``, from a file's first two non-blank lines (stripped)."""
    head = _parses_as(first)
    if isinstance(head, dict):
        nested = bool(head) and all(isinstance(v, dict) for v in head.values())
        return "document" if nested else "lines"
    if second is not None and isinstance(_parses_as(second), dict):
        return "lines"  # the first line is one bad entry of a JSON-lines file
    if first.startswith(("{", "[")):
        return "document"
    return "unknown"


class ManifestReader:
    """Reads a corpus from JSON-lines, JSON or CSV/TSV manifests; see the module docstring.

    Args:
        root: the folder of the manifests.
        columns: ``field -> key or column`` for the fields of :data:`FIELDS`; ``None`` (or a
            missing field) leaves the field unread (``conf/data/reader/manifest.yaml`` maps
            NeMo's keys).
        train, validation, test: a split's file, relative to ``root``; ``None`` looks for its
            usual names.
        holdout: the share of train's speakers held out for each split without a file.
        probe: open every audio file (true rates, unreadable files found up front).
        normalizer: a :class:`TextNormalizer` or its options, applied to texts and translations.

    Raises:
        ValueError: ``columns`` names a field that is not one of :data:`FIELDS`, or maps no
            audio.
    """

    name = "manifest"

    def __init__(
        self,
        root: str | Path,
        columns: Mapping[str, str | None],
        train: str | None = None,
        validation: str | None = None,
        test: str | None = None,
        holdout: float = 0.05,
        probe: bool = False,
        normalizer: TextNormalizer | Mapping | None = None,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.given = {"train": train, "validation": validation, "test": test}
        self.holdout = float(holdout)
        self.probe = bool(probe)
        columns = dict(columns)
        unknown = sorted(set(columns) - set(FIELDS))
        if unknown:
            raise ValueError(
                f"data.reader.columns has {unknown}: expected utterance fields among {FIELDS}"
            )
        if not columns.get("audio"):
            raise ValueError(
                "data.reader.columns.audio is empty: name the key or column that holds each "
                "utterance's audio file (NeMo: audio_filepath; SpeechBrain: wav)"
            )
        self.columns = {field: columns.get(field) for field in FIELDS}
        self.normalizer = TextNormalizer.coerce(normalizer)
        self._sources: SplitSources | None = None
        self._warned: set[str] = set()

    # -- protocol ---------------------------------------------------------------------------------

    def check_layout(self) -> None:
        """Find each split's file and read its header (CSV/TSV) or first entry (JSON).

        Raises:
            CorpusLayoutError: the root is missing, a named file is missing, no train file is
                found, a file lacks the audio column, a CSV/TSV header is not UTF-8, or a JSON
                file is neither JSON lines, an array nor an object of utterance objects.
        """
        if not self.root.is_dir():
            raise CorpusLayoutError(
                f"the manifest folder {self.root} does not exist. Expected a folder of manifest "
                "files (.jsonl, .json, .csv or .tsv), one per split (train.jsonl, "
                "validation.jsonl, test.jsonl); set data.reader.root=<that folder> (`speechlab "
                "convert data=<corpus> --to manifest -o DIR` writes one)"
            )
        self._sources = SplitSources(self.given, self._find, self.holdout, str(self.root), EXPECTED)
        for path in self._sources.paths():
            self._check_file(path)

    def options(self) -> dict:
        return {
            **self.given,
            "holdout": self.holdout,
            "probe": self.probe,
            "columns": self.columns,
            "normalizer": self.normalizer.options(),
        }

    def fingerprint_paths(self) -> Iterable[Path]:
        return sorted(set(self._split_sources().paths()))

    def scan(self, split: str, report: ScanReport) -> Iterator[Utterance]:
        """Yield the utterances of ``split``; skipped entries go to ``report``."""
        check = EntryCheck(report, self.normalizer, self.probe)
        yield from self._split_sources().scan(split, lambda path, _: self._read(path, check))

    # -- reading ----------------------------------------------------------------------------------

    def _split_sources(self) -> SplitSources:
        if self._sources is None:
            self.check_layout()
        assert self._sources is not None
        return self._sources

    def _find(self, name: str) -> Path | None:
        candidates = [self.root / name, *(self.root / f"{name}{s}" for s in SUFFIXES)]
        found = [path for path in candidates if path.is_file()]
        if len(found) > 1 and name not in self._warned:
            self._warned.add(name)
            split = next((s for s, names in SPLIT_NAMES.items() if name in names), None)
            split = split or next((s for s, g in self.given.items() if g == name), "train")
            log.warning(
                "%s: several files for %r; reading %s, ignoring %s. To read another, name it: "
                "data.reader.%s=<file> (e.g. %s)",
                self.root,
                name,
                found[0].name,
                ", ".join(path.name for path in found[1:]),
                split,
                found[1].name,
            )
        return found[0] if found else None

    def _check_file(self, path: Path) -> None:
        audio = self.columns["audio"]
        if path.suffix.lower() in (".csv", ".tsv"):
            found = self._header(path)
            what = "columns"
        else:
            first = next((record for _, record in self._json_records(path, None)), None)
            if first is None:
                return  # no entry: the split is empty, as the datamodule reports
            found = list(first) if isinstance(first, dict) else []
            what = "keys"
        if audio not in found:
            raise CorpusLayoutError(
                f"{path} has no {audio!r} {what[:-1]} for the audio file; its {what} are "
                f"{found}. Name the one holding the audio path: data.reader.columns.audio=<name> "
                "(and columns.text, columns.duration, ... likewise)"
            )

    def _header(self, path: Path) -> list[str]:
        with contextlib.closing(self._csv_rows(path)) as rows:
            return self._checked_header(path, next(rows, (0, []))[1])

    @staticmethod
    def _checked_header(path: Path, header: list[str]) -> list[str]:
        if not is_utf8(header):
            raise CorpusLayoutError(
                f"{path}: the header row is not UTF-8 text; re-save the file as UTF-8 (e.g. "
                f"`iconv -f latin1 -t utf-8 {path.name} > utf8.{path.suffix.lstrip('.')}`)"
            )
        return [name.strip() for name in header]

    @staticmethod
    def _delimiter(path: Path) -> str:
        return "\t" if path.suffix.lower() == ".tsv" else ","

    def _read(self, path: Path, check: EntryCheck) -> Iterator[Utterance]:
        if path.suffix.lower() in (".csv", ".tsv"):
            records = self._csv_records(path, check.report)
        else:
            records = self._json_records(path, check.report)
        for where, record in records:
            utterance = self._utterance(record, where, path.parent, check)
            if utterance is not None:
                yield utterance

    def _csv_rows(self, path: Path) -> Iterator[tuple[int, list[str]]]:
        """``(line, fields)`` of each row; bytes that are not UTF-8 come through as lone
        surrogates (:func:`~speechlab.corpora.common_voice.is_utf8` finds them)."""
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
            rows = csv.reader(f, delimiter=self._delimiter(path))
            try:
                for row in rows:
                    yield rows.line_num, row
            except csv.Error as error:
                raise CorpusLayoutError(
                    f"{path}:{rows.line_num}: {error}; fix the quoting of that row"
                ) from error

    def _csv_records(self, path: Path, report: ScanReport) -> Iterator[tuple[str, dict]]:
        rows = self._csv_rows(path)
        header = self._checked_header(path, next(rows, (0, []))[1])
        for line, row in rows:
            if not any(value.strip() for value in row):
                continue  # a blank row
            where = f"{path}:{line}"
            if not is_utf8(row):
                report.skip(where, NOT_UTF8)
                continue
            if len(row) != len(header):
                fields = f"{len(row)} field{'s' if len(row) != 1 else ''}"
                report.skip(where, f"has {fields}, the header {len(header)}; fix or delete the row")
                continue
            yield where, {key: value for key, value in zip(header, row, strict=True) if value != ""}

    def _json_records(
        self, path: Path, report: ScanReport | None
    ) -> Iterator[tuple[str, dict | Any]]:
        """``(where, record)`` of each JSON line; a file of one JSON array or one object of
        objects is read whole. Lines that do not parse, or are not UTF-8, are reported
        (``report``) or passed over.

        Raises:
            CorpusLayoutError: the file is neither JSON lines, an array of objects nor an
                object of objects (see :func:`_layout`), or such a document does not parse.
        """
        with path.open(encoding="utf-8-sig", errors="surrogateescape") as f:
            heads: list[tuple[int, str]] = []
            for line_number, line in enumerate(f, start=1):
                if line.strip():
                    heads.append((line_number, line.strip()))
                    if len(heads) == 2:
                        break
            if not heads:
                return
            second = heads[1][1] if len(heads) > 1 else None
            layout = _layout(heads[0][1], second)
            if layout == "document":
                yield from self._document_records(path, report)
                return
            if layout == "unknown":
                line_number, line = heads[0]
                raise CorpusLayoutError(
                    f"{path}:{line_number} is not a JSON object"
                    f"{' (nor UTF-8 text)' if not is_utf8([line]) else ''}: {_shown(line)}. "
                    f"Expected {JSON_LAYOUTS}; a CSV or TSV manifest needs the suffix .csv or "
                    ".tsv"
                )
            f.seek(0)
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{line_number}"
                if not is_utf8([line]):
                    if report is not None:
                        report.skip(where, NOT_UTF8)
                    continue
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, RecursionError) as error:
                    if report is not None:
                        reason = getattr(error, "msg", "nested too deeply")
                        report.skip(where, f"is not valid JSON ({reason}); fix the line")
                    continue
                if not isinstance(record, dict):
                    if report is not None:
                        report.skip(where, "is not a JSON object {...}; fix the line")
                    continue
                yield where, record

    def _document_records(self, path: Path, report: ScanReport | None) -> Iterator[tuple[str, Any]]:
        """The entries of a file holding one JSON array (``<file>:<index>``) or one object of
        utterance objects (``<file>:<id>``); entries that are not UTF-8 text are reported."""
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig", errors="surrogateescape"))
        except json.JSONDecodeError as error:
            several = (
                " (several JSON values one after another: write one object per line)"
                if error.msg == "Extra data"
                else ""
            )
            raise CorpusLayoutError(
                f"{path}:{error.lineno}: not valid JSON ({error.msg}){several}. Expected "
                f"{JSON_LAYOUTS}; fix the file"
            ) from error
        except RecursionError as error:
            raise CorpusLayoutError(
                f"{path}: JSON nested too deeply; expected {JSON_LAYOUTS}"
            ) from error
        if isinstance(data, list):
            entries: list[tuple[str, Any]] = [(f"{path}:{i}", r) for i, r in enumerate(data)]
        elif isinstance(data, dict):
            entries = list(self._speechbrain_entries(path, data))
        else:
            raise CorpusLayoutError(f"{path} holds one JSON {_noun(data)}: expected {JSON_LAYOUTS}")
        if entries and not any(isinstance(record, dict) for _, record in entries):
            raise CorpusLayoutError(
                f"{path} holds a JSON {_noun(data)} of {_noun(entries[0][1])}s, not of utterance "
                f"objects: expected {JSON_LAYOUTS}"
            )
        for where, record in entries:
            if not is_utf8([json.dumps(record, ensure_ascii=False)]):
                if report is not None:
                    report.skip(where, NOT_UTF8)
                continue
            yield where, record

    def _speechbrain_entries(self, path: Path, data: dict) -> Iterator[tuple[str, Any]]:
        root = str(path.parent)
        for uid, record in data.items():
            if isinstance(record, dict):
                record = {
                    k: v.replace("{data_root}", root).replace("$data_root", root)
                    if isinstance(v, str)
                    else v
                    for k, v in record.items()
                }
                record.setdefault(self.columns["id"] or "id", uid)
            shown = uid if is_utf8([uid]) else json.dumps(uid)  # escaped: the entry is skipped
            yield f"{path}:{shown}", record

    def _utterance(
        self, record: dict, where: str, base: Path, check: EntryCheck
    ) -> Utterance | None:
        if not isinstance(record, dict):
            check.skip(where, "is not an object of utterance fields; fix the entry")
            return None
        value = {field: record.get(key) if key else None for field, key in self.columns.items()}
        audio, audio_key = value["audio"], self.columns["audio"]
        if audio is None or (isinstance(audio, str) and not audio.strip()):
            check.skip(where, f"has no {audio_key!r} (the audio file); give every entry one")
            return None
        if not isinstance(audio, str):
            check.skip(
                where,
                f"{audio_key} is {_shown(audio)} ({_kind(audio)}); expected a path string; fix "
                "or delete the entry",
            )
            return None
        try:
            uid = _string(value["id"], str(self.columns["id"]))
            strings = {
                field: _string(value[field], str(self.columns[field])) for field in STRING_FIELDS
            }
        except _FieldError as error:
            check.skip(where, f"{error}; fix or delete the entry")
            return None
        if uid is None:
            uid = self._path_id(audio.strip(), value["offset"], value["duration"])
        return check.utterance(
            where,
            uid,
            resolve_audio(audio.strip(), base),
            duration=value["duration"],
            offset=value["offset"] if value["offset"] is not None else 0.0,
            **strings,
        )

    @staticmethod
    def _path_id(audio: str, offset: Any, duration: Any) -> str:
        """The id of an entry without one: its audio path without suffix, and for a segment
        (any offset given) ``-<start ms>-<end ms>`` (``-<start ms>`` without a duration)."""
        uid = str(Path(audio).with_suffix(""))
        start = seconds(offset, "offset")
        if not isinstance(start, float):
            return uid  # no offset: a whole file (a bad one is reported by the entry check)
        length = seconds(duration, "duration")
        if isinstance(length, float):
            return f"{uid}-{_milliseconds(start)}-{_milliseconds(start + length)}"
        return f"{uid}-{_milliseconds(start)}"
