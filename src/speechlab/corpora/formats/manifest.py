"""A user's corpus as manifests, one file per split: JSON lines (NeMo), CSV/TSV (SpeechBrain).

Layout: ``<root>/<split file>`` for each split, found by name (``train.jsonl``, ``dev.csv``, ...:
:data:`~speechlab.corpora.formats.splits.SPLIT_NAMES` with the suffixes :data:`SUFFIXES`) or
named by the ``train``, ``validation`` and ``test`` options; a split not found is held out of
train by speaker (:class:`~speechlab.corpora.formats.splits.SplitSources`).

- ``.jsonl`` / ``.json``: one JSON object per line, NeMo's manifest keys by default:
  ``{"audio_filepath": "a.wav", "duration": 3.2, "text": "..."}`` and optionally ``offset``,
  ``speaker``, ``lang``, ``label``, ``translation``, ``id``. A ``.json`` file holding one object
  of objects (SpeechBrain's ``{"<id>": {"wav": ..., "length": ...}}``) is read too (whole, not
  streamed; ``{data_root}`` in its paths is the manifest's folder).
- ``.csv`` (commas) and ``.tsv`` (tabs): a header row naming the columns, then one row per
  utterance (quoted fields as the ``csv`` module reads them).

``columns`` maps each utterance field to its key or column (``data.reader.columns.audio=wav``);
``null`` leaves a field unread. Relative audio paths resolve against the manifest's folder.
``duration`` and ``offset`` are seconds: ``offset`` + ``duration`` select a segment of a long
recording (read by seeking, not by decoding the whole file); a missing duration is probed once
(the manifest cache keeps it). An entry without an ``id`` is named by its audio path as written
(suffix removed; ``-<offset in ms>`` appended for a segment).

Files are read line by line with the standard library's ``json`` and ``csv`` modules: they stream
(a million-line manifest is never held as a list), handle every quoting rule of the formats, and
bring no dependency. An entry that does not parse, lacks its audio, or fails
:class:`~speechlab.corpora.formats.entries.EntryCheck` is skipped and counted as
``<file>:<line>`` with its reason; a split file without the audio column (CSV/TSV) or key (first
JSON entry) is a :class:`~speechlab.data.reader.CorpusLayoutError` listing what it has.
"""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from speechlab.corpora.formats.entries import EntryCheck, resolve_audio
from speechlab.corpora.formats.splits import SplitSources
from speechlab.data.reader import CorpusLayoutError, ScanReport
from speechlab.data.utterance import Utterance
from speechlab.text.normalize import TextNormalizer

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
EXPECTED = "a manifest file (.jsonl, .json, .csv or .tsv)"


def _string(value: Any) -> str | None:
    """A field's value as text (numbers written as JSON numbers become strings), or ``None``."""
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


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

    # -- protocol ---------------------------------------------------------------------------------

    def check_layout(self) -> None:
        """Find each split's file and read its header (CSV/TSV) or first entry (JSON).

        Raises:
            CorpusLayoutError: the root is missing, a named file is missing, no train file is
                found, or a file lacks the audio column.
        """
        if not self.root.is_dir():
            raise CorpusLayoutError(
                f"the manifest folder {self.root} does not exist. Expected a folder of "
                f"{EXPECTED}s, one per split (train.jsonl, validation.jsonl, test.jsonl); set "
                "data.reader.root=<that folder> (`speechlab convert data=<corpus> --to manifest "
                "-o DIR` writes one)"
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
        path = self.root / name
        if path.is_file():
            return path
        return next((p for p in (self.root / f"{name}{s}" for s in SUFFIXES) if p.is_file()), None)

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
        with path.open(encoding="utf-8-sig", newline="") as f:
            header = next(csv.reader(f, delimiter=self._delimiter(path)), [])
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

    def _csv_records(self, path: Path, report: ScanReport) -> Iterator[tuple[str, dict]]:
        with path.open(encoding="utf-8-sig", newline="") as f:
            rows = csv.DictReader(f, delimiter=self._delimiter(path))
            rows.fieldnames = [name.strip() for name in rows.fieldnames or []]
            try:
                for row in rows:
                    where = f"{path}:{rows.line_num}"
                    if None in row:  # more fields than the header names
                        report.skip(
                            where,
                            f"has {len(rows.fieldnames) + len(row[None])} fields, the header "
                            f"{len(rows.fieldnames)}; fix or delete the row",
                        )
                        continue
                    if not any((value or "").strip() for value in row.values()):
                        continue
                    yield where, {k: v for k, v in row.items() if v not in (None, "")}
            except csv.Error as error:
                raise CorpusLayoutError(
                    f"{path}:{rows.line_num}: {error}; fix the quoting of that row"
                ) from error

    def _json_records(
        self, path: Path, report: ScanReport | None
    ) -> Iterator[tuple[str, dict | Any]]:
        """``(where, record)`` of each JSON line; a file of one object of objects is read whole
        (SpeechBrain). Lines that do not parse are reported (``report``) or passed over."""
        with path.open(encoding="utf-8-sig") as f:
            first = f.readline().strip()
            try:
                head = json.loads(first) if first else None
            except json.JSONDecodeError:
                head = None
            nested = (
                isinstance(head, dict) and head and all(isinstance(v, dict) for v in head.values())
            )
            if first.endswith("{") or nested:  # one object of objects, not one per line
                yield from self._speechbrain_records(path)
                return
            f.seek(0)
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{line_number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    if report is not None:
                        report.skip(where, f"is not valid JSON ({error.msg}); fix the line")
                    continue
                if not isinstance(record, dict):
                    if report is not None:
                        report.skip(where, "is not a JSON object {...}; fix the line")
                    continue
                yield where, record

    def _speechbrain_records(self, path: Path) -> Iterator[tuple[str, dict]]:
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as error:
            raise CorpusLayoutError(
                f"{path}:{error.lineno}: not valid JSON ({error.msg}). Expected JSON lines (one "
                "object per line) or one object of utterance objects; fix the file"
            ) from error
        if not isinstance(data, dict):
            raise CorpusLayoutError(
                f"{path} holds a JSON {type(data).__name__}; expected JSON lines or one object "
                'of utterance objects ({"<id>": {"wav": ...}})'
            )
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
            yield f"{path}:{uid}", record

    def _utterance(
        self, record: dict, where: str, base: Path, check: EntryCheck
    ) -> Utterance | None:
        if not isinstance(record, dict):
            check.skip(where, "is not an object of utterance fields; fix the entry")
            return None
        value = {field: record.get(key) if key else None for field, key in self.columns.items()}
        audio = value["audio"]
        if not isinstance(audio, str) or not audio.strip():
            check.skip(
                where,
                f"has no {self.columns['audio']!r} (the audio file); give every entry one",
            )
            return None
        uid = _string(value["id"])
        if uid is None:
            uid = str(Path(audio.strip()).with_suffix(""))
            offset = value["offset"]
            if offset not in (None, "", 0, "0"):
                with contextlib.suppress(TypeError, ValueError, OverflowError):
                    uid = f"{uid}-{round(float(offset) * 1000):08d}"  # a bad offset is reported
        strings = {field: _string(value[field]) for field in STRING_FIELDS}
        return check.utterance(
            where,
            uid,
            resolve_audio(audio.strip(), base),
            duration=value["duration"],
            offset=value["offset"] if value["offset"] is not None else 0.0,
            **strings,
        )
