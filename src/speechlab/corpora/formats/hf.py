"""A user's corpus as a Hugging Face ``datasets`` audio dataset.

Sources (:mod:`~speechlab.corpora.formats.hf_rows`): ``root``, a ``save_to_disk`` folder (a
``DatasetDict`` of splits, or one ``Dataset`` read as train) or a folder of Parquet files
(``<split>.parquet``, ``<split>-*.parquet``, the Hub's ``data/<split>-00000-of-00001.parquet``);
or ``name`` (and ``config``), a Hub dataset that ``datasets.load_dataset`` downloads where the
network allows. Each split is found under its usual names (train; validation, dev, valid, val;
test, eval) or named by the ``train``, ``validation`` and ``test`` options (in a Parquet
folder also a file); a split not found is held out of train by speaker
(:class:`~speechlab.corpora.formats.splits.SplitSources`).

``columns`` maps each utterance field to its column, checked against each split's columns:

- a column name: read it; a name the split lacks is a :class:`CorpusLayoutError` that lists
  the split's columns and what to write (``data.reader.columns.text=sentence``);
- ``null``: the column of the field's own name when the split has one (the layout
  ``speechlab convert --to hf`` writes), else the field stays empty;
- ``false``: not read.

The audio column is an ``Audio`` feature (stored as ``{"bytes", "path"}``), a column of paths or
one of encoded bytes. It is read undecoded (no torchcodec or FFmpeg): a row whose ``path`` is an
existing file and whose bytes are empty uses that file (relative paths resolve against
``root``); otherwise its bytes are written once to ``<extract_dir>/<dataset>-<hash>/<split>/<id>
.<ext>`` (the extension of the stored path, else sniffed from the bytes), a file already there
with the same size being kept, and that file becomes the utterance's audio. Every extracted file
is probed (its header read with soundfile), which finds undecodable bytes and gives the duration
(in seconds) unless a ``duration`` column is read. ``ClassLabel`` columns read as their names
(``-1``, no label, as ``None``), other values as text. Without an ``id`` column an utterance is
``<split>-<row index>`` (the split's name in the dataset, rows counted from 0).

A row is skipped and counted as ``<split> row <n>`` (``<file>.parquet row <n>``) with its reason
when it has no audio bytes and no existing file, its bytes do not decode, its ClassLabel value is
out of range, its id repeats an earlier row's, or :class:`~speechlab.corpora.formats.entries.
EntryCheck` refuses it (durations, texts). The manifest cache is keyed by the dataset's Arrow,
Parquet and state files (for a Hub dataset, its files in the Hugging Face cache) and a stamp in
the extraction folder, so deleting extracted audio rebuilds the manifest (and extracts again).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from datasets import Audio, ClassLabel, Value

from speechlab.audio.io import AudioError, AudioInfo, probe
from speechlab.corpora.formats.entries import EntryCheck, resolve_audio
from speechlab.corpora.formats.hf_rows import (
    RowSource,
    Splits,
    open_folder,
    open_hub,
)
from speechlab.corpora.formats.splits import SplitSources
from speechlab.data.reader import CorpusLayoutError, ScanReport
from speechlab.data.utterance import Utterance
from speechlab.text.normalize import TextNormalizer

log = logging.getLogger(__name__)

#: The utterance fields ``columns`` maps.
FIELDS = ("audio", "text", "translation", "label", "speaker", "language", "id", "duration")
STRING_FIELDS = ("text", "translation", "label", "speaker", "language")
#: Columns that often hold a field in Hub datasets, suggested when the mapped one is missing.
USUAL_COLUMNS = {
    "text": ("sentence", "transcription", "transcript", "normalized_text", "raw_transcription"),
    "speaker": ("client_id", "speaker_id", "speaker"),
    "language": ("locale", "language", "lang"),
    "id": ("id", "utterance_id", "path", "file"),
    "label": ("label", "labels", "intent_class"),
    "translation": ("translation",),
    "duration": ("duration",),
}
GIVE = (
    "give data.reader.root=<a save_to_disk folder or a folder of Parquet files> (`speechlab "
    "convert data=<corpus> --to hf -o DIR` writes one), or data.reader.name=<a Hub dataset, e.g. "
    "mozilla-foundation/common_voice_17_0> with data.reader.config=<its subset>, not both"
)
#: Written in each dataset's extraction folder; the manifest cache is keyed by it.
STAMP = ".speechlab-extracted"
MAGIC = ((b"RIFF", ".wav"), (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"))


def _file_name(uid: str) -> str:
    """A file name for utterance ``uid``: itself when safe, else made safe plus its hash."""
    safe = re.sub(r"[^\w.-]", "_", uid)[:120]
    if safe != uid or safe.startswith("."):
        safe = f"{safe}-{zlib.crc32(uid.encode('utf-8')):08x}"
    return safe


def _suffix(path: str | None, data: bytes) -> str:
    """The extension of the stored path, else one sniffed from the bytes (``.audio``: unknown;
    libsndfile recognises formats by content)."""
    suffix = Path(path or "").suffix.lower()
    if suffix and len(suffix) <= 6:
        return suffix
    for magic, found in MAGIC:
        if data.startswith(magic):
            return found
    if len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0:
        return ".mp3"
    return ".audio"


def _extract(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically, unless a file of that size is there."""
    if target.is_file() and target.stat().st_size == len(data):
        return
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class HFReader:
    """Reads a Hugging Face ``datasets`` audio dataset; see the module docstring.

    Args:
        columns: ``field -> column`` for :data:`FIELDS` (a name, ``None``: the field's own
            column if any, ``False``: not read); a field left out counts as ``None``.
        extract_dir: where audio bytes are written as files (a folder per dataset inside).
        root: a ``save_to_disk`` folder or a folder of Parquet files.
        name: a Hub dataset instead of ``root`` (``mozilla-foundation/common_voice_17_0``).
        config: the Hub dataset's config (subset), e.g. a locale.
        train, validation, test: a split's name (in a Parquet folder also a file, relative to
            ``root``); ``None`` looks for its usual names.
        holdout: the share of train's speakers held out for each split not found.
        probe: open every audio file, also those given by path with a duration.
        normalizer: a :class:`TextNormalizer` or its options, applied to texts and translations.

    Raises:
        ValueError: both ``root`` and ``name`` (neither: :meth:`check_layout` says what to
            give), a ``columns`` key that is not a
            field, a value that is not a name, null or false, or no audio column.
    """

    name = "hf"

    def __init__(
        self,
        columns: Mapping[str, str | bool | None],
        extract_dir: str | Path,
        root: str | Path | None = None,
        name: str | None = None,
        config: str | None = None,
        train: str | None = None,
        validation: str | None = None,
        test: str | None = None,
        holdout: float = 0.05,
        probe: bool = False,
        normalizer: TextNormalizer | Mapping | None = None,
    ) -> None:
        if root not in (None, "") and name not in (None, ""):
            raise ValueError(f"data.reader.root={root!r} and data.reader.name={name!r}: {GIVE}")
        columns = dict(columns)
        unknown = sorted(set(columns) - set(FIELDS))
        if unknown:
            raise ValueError(
                f"data.reader.columns has {unknown}: expected utterance fields among {FIELDS}"
            )
        for field, column in columns.items():
            if column is not None and column is not False and not isinstance(column, str):
                raise ValueError(
                    f"data.reader.columns.{field}={column!r}: expected a column name, null (the "
                    f"column {field!r} if the dataset has one) or false (not read)"
                )
        if not columns.get("audio"):
            raise ValueError(
                "data.reader.columns.audio is empty: name the column holding the audio "
                "(an Audio feature, file paths or bytes), e.g. data.reader.columns.audio=audio"
            )
        self.columns: dict[str, str | bool | None] = {f: columns.get(f) for f in FIELDS}
        self.hub = str(name) if name else None
        self.config = str(config) if config else None
        self.given = {"train": train, "validation": validation, "test": test}
        self.holdout = float(holdout)
        self.probe = bool(probe)
        self.normalizer = TextNormalizer.coerce(normalizer)
        self.extract_dir = Path(extract_dir).expanduser().resolve()
        self.folder = Path(root).expanduser().resolve() if root not in (None, "") else None
        if self.hub is not None:
            key = f"{self.hub}\0{self.config or ''}"
            slug = self.hub.replace("/", "_") + (f"_{self.config}" if self.config else "")
        else:
            key = str(self.folder)
            slug = self.folder.name if self.folder else "none"
        #: this dataset's extraction folder
        self.extracted = self.extract_dir / f"{_file_name(slug)}-{zlib.crc32(key.encode()):08x}"
        # A Hub dataset has no folder of its own: its audio's folder stands for it.
        self.root = self.folder or self.extracted
        self._splits: Splits | None = None
        self._sources: SplitSources | None = None
        self._mapped: dict[str, dict[str, str | None]] = {}

    # -- protocol ---------------------------------------------------------------------------------

    def check_layout(self) -> None:
        """Open the dataset, find each split and check the column map against its columns.

        Raises:
            CorpusLayoutError: no dataset is given, the folder is missing or in neither
                layout, the Hub dataset cannot be loaded, a named split is missing, no train
                split is found, or a mapped column is missing or cannot hold audio (listing the
                columns found and what to write).
        """
        if self.hub is not None:
            self._splits = open_hub(self.hub, self.config)
        elif self.folder is not None:
            self._splits = open_folder(self.folder)
        else:
            raise CorpusLayoutError(f"no dataset given (data=hf): {GIVE}")
        expected = "split of the Hub dataset" if self.hub else "split or Parquet file"
        where = f"{self._splits.where} (splits: {', '.join(self._splits.names()) or 'none'})"
        self._sources = SplitSources(self.given, self._splits.find, self.holdout, where, expected)
        self._mapped = {}
        for source in self._used():
            self._mapped[source.split] = self._map_columns(source)
        stamp = self.extracted / STAMP
        if not stamp.is_file():  # touched once: its time keys the manifest cache
            self.extracted.mkdir(parents=True, exist_ok=True)
            stamp.touch()

    def options(self) -> dict:
        return {
            "name": self.hub,
            "config": self.config,
            **self.given,
            "holdout": self.holdout,
            "probe": self.probe,
            "columns": self.columns,
            "extract_dir": str(self.extract_dir),
            "normalizer": self.normalizer.options(),
        }

    def fingerprint_paths(self) -> Iterable[Path]:
        """The dataset's Arrow/Parquet files and ``save_to_disk`` state files (not extracted
        audio), and the extraction stamp (present only while the extracted audio is)."""
        if self._splits is None:
            self.check_layout()
        assert self._splits is not None
        stamp = self.extracted / STAMP
        return sorted({*self._splits.paths(), *([stamp] if stamp.is_file() else [])})

    def scan(self, split: str, report: ScanReport) -> Iterator[Utterance]:
        """Yield the utterances of ``split``; skipped rows go to ``report``."""
        if self._sources is None:
            self.check_layout()
        assert self._sources is not None
        check = EntryCheck(report, self.normalizer, self.probe)
        yield from self._sources.scan(split, lambda source, _: self._read(source, check))

    # -- columns ----------------------------------------------------------------------------------

    def _used(self) -> list[RowSource]:
        assert self._sources is not None
        found = [s for s in self._sources.sources.values() if isinstance(s, RowSource)]
        return list({s.split: s for s in found}.values())

    def _map_columns(self, source: RowSource) -> dict[str, str | None]:
        """``field -> column`` of ``source`` (``None``: not read); raises for a missing one."""
        found = source.column_names
        mapped: dict[str, str | None] = {}
        for field, column in self.columns.items():
            if column is None:
                mapped[field] = field if field in found else None
            elif column is False:
                mapped[field] = None
            elif column in found:
                mapped[field] = str(column)
            else:
                raise CorpusLayoutError(
                    f"{source.where} has no column {column!r} for the {field} "
                    f"(data.reader.columns.{field}={column}); its columns are {found}. "
                    f"{self._advice(field, source)}"
                )
        audio = mapped["audio"]
        assert audio is not None
        feature = source.features[audio]
        bytes_or_path = isinstance(feature, Audio) or (
            isinstance(feature, Value)
            and feature.dtype in ("string", "large_string", "binary", "large_binary")
        )
        if not bytes_or_path:
            raise CorpusLayoutError(
                f"{source.where}: the audio column {audio!r} holds {feature}, expected an Audio "
                "feature ({bytes, path}), file paths or encoded bytes. "
                f"{self._advice('audio', source)}"
            )
        read = ", ".join(f"{f}={c}" for f, c in mapped.items() if c)
        log.info("%s: reading the columns %s", source.where, read)
        return mapped

    @staticmethod
    def _advice(field: str, source: RowSource) -> str:
        """What to write for ``field``, naming a likely column of ``source`` when there is one."""
        if field == "audio":
            likely = [n for n, f in source.features.items() if isinstance(f, Audio)]
        else:
            likely = [n for n in USUAL_COLUMNS.get(field, ()) if n in source.features]
        example = likely[0] if likely else "<one of them>"
        advice = f"Write data.reader.columns.{field}={example}"
        if field == "text":
            return advice + " (or null if the dataset has no transcripts, e.g. keyword spotting)"
        if field != "audio":
            return advice + " (or null to leave it empty)"
        return advice

    # -- rows -------------------------------------------------------------------------------------

    def _read(self, source: RowSource, check: EntryCheck) -> Iterator[Utterance]:
        mapped = self._mapped.get(source.split) or self._map_columns(source)
        self._mapped[source.split] = mapped
        labels = {
            field: feature.names
            for field, column in mapped.items()
            if column and isinstance(feature := source.features[column], ClassLabel)
        }
        columns = [column for column in mapped.values() if column]
        folder = self.extracted / _file_name(source.split)
        folder.mkdir(parents=True, exist_ok=True)
        for index, where, row in source.rows(columns):
            value = {field: row[column] if column else None for field, column in mapped.items()}
            strings = _strings(value, labels)
            if isinstance(strings, str):
                check.skip(where, strings)
                continue
            uid = strings.pop("id") or f"{source.split}-{index}"
            if uid in check.ids:
                check.skip(where, self._repeated(uid, mapped["id"]))
                continue
            audio = self._audio(value["audio"], uid, folder, source.base, where, check)
            if audio is None:
                continue
            path, info = audio
            duration = value["duration"]
            if duration is None and info is not None:
                duration = info.duration
            utterance = check.utterance(
                where,
                uid,
                path,
                duration=duration,
                sample_rate=info.sample_rate if info else None,
                **strings,
            )
            if utterance is not None:
                yield utterance

    @staticmethod
    def _repeated(uid: str, column: str | None) -> str:
        return (
            f"repeats utterance id {uid!r} (column {column!r}) of an earlier row; ids must be "
            "unique within a split (the later row is skipped): fix the column, or write "
            "data.reader.columns.id=false to name rows <split>-<row index>"
        )

    def _audio(
        self,
        audio: Any,
        uid: str,
        folder: Path,
        base: Path | None,
        where: str,
        check: EntryCheck,
    ) -> tuple[Path, AudioInfo | None] | None:
        """The file holding a row's audio and, for extracted bytes, its probed header; ``None``
        with the reason in the report when there is no usable audio."""
        if isinstance(audio, dict):
            data, path = audio.get("bytes"), audio.get("path")
        elif isinstance(audio, (bytes, bytearray)):
            data, path = bytes(audio), None
        else:
            data, path = None, audio if isinstance(audio, str) else None
        if not data:
            file = None if not path else resolve_audio(path, base) if base else Path(path)
            if file is not None and file.is_file():
                return file, None
            missing = f"its path {str(file)!r} is no file" if file else "no path"
            return check.skip(where, f"has no audio bytes and {missing}; fix or delete the row")
        target = folder / f"{_file_name(uid)}{_suffix(path, data)}"
        _extract(target, data)
        try:
            info = probe(target)
        except AudioError as error:
            target.unlink(missing_ok=True)
            return check.skip(where, f"its audio bytes do not decode ({error}); fix or delete it")
        return target, info


def _strings(value: Mapping[str, Any], labels: Mapping[str, list[str]]) -> dict | str:
    """The text fields and id of a row (``field -> str or None``), or why the row is skipped."""
    strings: dict[str, str | None] = {}
    for field in (*STRING_FIELDS, "id"):
        text = _text(value[field], labels.get(field))
        if isinstance(text, ValueError):
            return f"{field}: {text}; fix the row or the column's ClassLabel names"
        strings[field] = text
    return strings


def _text(value: Any, names: list[str] | None) -> str | None | ValueError:
    """A cell as text: a ``ClassLabel`` index as its name (``-1``: ``None``), other values as
    written; a :class:`ValueError` (returned) for an index outside ``names``."""
    if value is None:
        return None
    if names is not None and isinstance(value, int) and not isinstance(value, bool):
        if value == -1:
            return None
        if not 0 <= value < len(names):
            return ValueError(f"class index {value} is outside the {len(names)} ClassLabel names")
        return names[value]
    return value if isinstance(value, str) else str(value)
