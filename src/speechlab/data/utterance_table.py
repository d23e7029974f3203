"""A columnar table of :class:`Utterance` records: one numpy array per field, no object per row.

A corpus of millions of utterances held as a Python list costs hundreds of bytes of objects per
record, and every forked dataloader worker (and every DDP rank) that reads the list touches the
objects' reference counts and garbage-collector headers, so the pages holding them are copied into
each process (copy-on-read). This table keeps each field in one array instead:

- ``duration`` and ``offset`` as float64 seconds, ``sample_rate`` as int64 Hz;
- each string field (``id``, ``audio_path``, ``text``, ``translation``, ``label``, ``speaker``,
  ``language``) as one UTF-8 byte buffer (uint8) plus int64 offsets, ``(N + 1,)``; the optional
  fields also keep a bool ``valid`` mask, so ``None`` stays distinct from ``""``.

A record is built on demand (``table[i]``), a selection is an index array over the same columns
(``table.take(indices)`` copies no string), and a saved table is read back memory-mapped
(``np.load(mmap_mode="r")``): its pages live in the page cache, shared by every process that maps
them. The layout is Arrow's variable-length binary column (offsets + data + validity), kept in
plain ``.npy`` files so that numpy alone reads it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from speechlab.data.utterance import Utterance

NUMBER_FIELDS: dict[str, type] = {
    "duration": np.float64,
    "sample_rate": np.int64,
    "offset": np.float64,
}
STRING_FIELDS = ("id", "audio_path", "text", "translation", "label", "speaker", "language")
REQUIRED_STRINGS = ("id", "audio_path")  # never None
FIELD_ORDER = tuple(f.name for f in dataclasses.fields(Utterance))


class TableFormatError(ValueError):
    """A saved table is missing a file or its columns disagree in length."""


class StringColumn:
    """``N`` optional strings: ``data`` ``(B,)`` uint8 UTF-8 bytes, ``offsets`` ``(N + 1,)`` int64
    (row ``i`` is ``data[offsets[i]:offsets[i + 1]]``), ``valid`` ``(N,)`` bool or ``None`` (a
    column that never holds ``None``)."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray, valid: np.ndarray | None) -> None:
        self.data, self.offsets, self.valid = data, offsets, valid
        # Views that index to plain Python values (a numpy scalar costs ~10x more per row).
        self._data = memoryview(data)
        self._offsets = memoryview(offsets)
        self._valid = None if valid is None else memoryview(valid)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, row: int) -> str | None:
        if self._valid is not None and not self._valid[row]:
            return None
        return str(self._data[self._offsets[row] : self._offsets[row + 1]], "utf-8")

    def values(self, rows: np.ndarray | None) -> list[str | None]:
        """The strings of ``rows`` (all rows when ``None``), decoded in one pass."""
        starts = self.offsets[:-1] if rows is None else self.offsets[rows]
        ends = self.offsets[1:] if rows is None else self.offsets[rows + 1]
        raw = self.data.tobytes()
        out: list[str | None] = [
            raw[a:b].decode("utf-8") for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
        ]
        if self.valid is not None:
            valid = self.valid if rows is None else self.valid[rows]
            for row in np.flatnonzero(~valid).tolist():
                out[row] = None
        return out


class _StringBuilder:
    """Appends strings into a byte buffer and offsets without keeping a Python object per row."""

    def __init__(self, nullable: bool) -> None:
        self.data = bytearray()
        self.offsets = array("q", [0])
        self.valid = array("b") if nullable else None

    def append(self, value: str | None, field: str, uid: object) -> None:
        if value is None:
            if self.valid is None:
                raise ValueError(f"utterance {uid!r} has no {field}; every utterance needs one")
            self.valid.append(0)
        else:
            if not isinstance(value, str):
                raise TypeError(
                    f"utterance {uid!r}: {field} must be a str or None, got {type(value).__name__}"
                )
            self.data += value.encode("utf-8")
            if self.valid is not None:
                self.valid.append(1)
        self.offsets.append(len(self.data))

    def finish(self) -> StringColumn:
        valid = (
            None if self.valid is None else np.frombuffer(self.valid, dtype=np.int8).astype(bool)
        )
        return StringColumn(
            np.frombuffer(self.data, dtype=np.uint8),  # the buffer itself, not a copy of it
            np.frombuffer(self.offsets, dtype=np.int64).copy(),
            valid,
        )


class UtteranceTable:
    """An immutable sequence of :class:`Utterance` stored by column.

    ``len(table)``, ``table[i]`` (an :class:`Utterance`, built on demand), iteration and ``==``
    behave as for a list of records; ``durations`` is the ``(N,)`` float64 array of seconds,
    ``column(name)`` one field for all rows and ``take(indices)`` a selection. Build one with
    :meth:`from_utterances`, write it with :meth:`save`, map it back with :meth:`load`.
    """

    def __init__(
        self,
        numbers: dict[str, np.ndarray],
        strings: dict[str, StringColumn],
        rows: np.ndarray | None = None,
    ) -> None:
        if set(numbers) != set(NUMBER_FIELDS) or set(strings) != set(STRING_FIELDS):
            raise TableFormatError(
                f"an utterance table needs the columns {FIELD_ORDER}, got "
                f"{sorted({*numbers, *strings})}"
            )
        sizes = {name: len(column) for name, column in {**numbers, **strings}.items()}
        if len(set(sizes.values())) > 1:
            raise TableFormatError(f"the columns of an utterance table differ in length: {sizes}")
        self._numbers = numbers
        self._number_views = {name: memoryview(values) for name, values in numbers.items()}
        self._strings = strings
        self._rows = rows
        self._size = sizes["id"] if rows is None else len(rows)

    # -- building, saving, loading -----------------------------------------------------------
    @classmethod
    def from_utterances(cls, utterances: Iterable[Utterance]) -> UtteranceTable:
        """Pack ``utterances`` (consumed once, never held as a list) into columns.

        Raises:
            ValueError: an utterance lacks its ``id`` or ``audio_path``.
            TypeError: a string field holds something other than a str or None.
        """
        numbers = {
            name: array("d" if dtype is np.float64 else "q")
            for name, dtype in NUMBER_FIELDS.items()
        }
        strings = {name: _StringBuilder(name not in REQUIRED_STRINGS) for name in STRING_FIELDS}
        for utterance in utterances:
            for name, values in numbers.items():
                values.append(getattr(utterance, name))
            for name, builder in strings.items():
                builder.append(getattr(utterance, name), name, utterance.id)
        return cls(
            {
                name: np.frombuffer(values, dtype=NUMBER_FIELDS[name]).copy()
                for name, values in numbers.items()
            },
            {name: builder.finish() for name, builder in strings.items()},
        )

    def save(self, directory: str | Path) -> None:
        """Write one ``.npy`` file per array into ``directory``, each atomically.

        Files: ``<number field>.npy``; ``<string field>.utf8.npy`` (bytes),
        ``<string field>.offsets.npy`` and, for optional fields, ``<string field>.valid.npy``.
        """
        table = self.compact()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, values in table._numbers.items():
            _save_array(directory / f"{name}.npy", values)
        for name, column in table._strings.items():
            _save_array(directory / f"{name}.utf8.npy", column.data)
            _save_array(directory / f"{name}.offsets.npy", column.offsets)
            if name not in REQUIRED_STRINGS:
                valid = column.valid if column.valid is not None else np.ones(len(column), bool)
                _save_array(directory / f"{name}.valid.npy", valid)

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> UtteranceTable:
        """Read a table :meth:`save` wrote; memory-mapped read-only unless ``mmap=False``.

        Raises:
            TableFormatError: a file is missing or unreadable, or the columns disagree.
        """
        directory = Path(directory)
        mode = "r" if mmap else None

        def read(name: str) -> np.ndarray:
            path = directory / f"{name}.npy"
            try:
                values = np.load(path, mmap_mode=mode, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise TableFormatError(f"cannot read {path}: {error}") from error
            return values.view(np.ndarray)  # the plain array over the same (mapped) memory

        numbers = {name: read(name) for name in NUMBER_FIELDS}
        strings = {
            name: StringColumn(
                read(f"{name}.utf8"),
                read(f"{name}.offsets"),
                None if name in REQUIRED_STRINGS else read(f"{name}.valid"),
            )
            for name in STRING_FIELDS
        }
        for name, column in strings.items():
            if len(column.offsets) == 0 or column.offsets[-1] != len(column.data):
                raise TableFormatError(
                    f"{directory}: the offsets of {name} do not end at its byte count"
                )
        return cls(numbers, strings)

    def compact(self) -> UtteranceTable:
        """The same rows in fresh contiguous columns (a selection's strings gathered)."""
        if self._rows is None:
            return self
        rows = self._rows
        numbers = {name: values[rows] for name, values in self._numbers.items()}
        strings = {name: _gather(column, rows) for name, column in self._strings.items()}
        return UtteranceTable(numbers, strings)

    # -- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._size

    def _row(self, index: int) -> int:
        if not -self._size <= index < self._size:
            raise IndexError(f"utterance index {index} out of range for a table of {self._size}")
        index = index % self._size
        return index if self._rows is None else int(self._rows[index])

    def __getitem__(self, index: int) -> Utterance:
        if isinstance(index, slice):
            return self.take(np.arange(self._size)[index])  # type: ignore[return-value]
        row = self._row(int(index))
        values = {name: column.get(row) for name, column in self._strings.items()}
        numbers = self._number_views
        return Utterance(
            duration=float(numbers["duration"][row]),
            sample_rate=int(numbers["sample_rate"][row]),
            offset=float(numbers["offset"][row]),
            **values,
        )

    def __iter__(self) -> Iterator[Utterance]:
        for index in range(self._size):
            yield self[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UtteranceTable):
            return NotImplemented
        if len(self) != len(other):
            return False
        return all(
            np.array_equal(self.column(name), other.column(name))
            if name in NUMBER_FIELDS
            else self.column(name) == other.column(name)
            for name in FIELD_ORDER
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"UtteranceTable({self._size} utterances)"

    @property
    def durations(self) -> np.ndarray:
        """``(N,)`` float64 seconds (a read-only view of the mapped column when nothing is
        selected, a copy otherwise)."""
        return self.column("duration")

    def column(self, name: str) -> np.ndarray | list[str | None]:
        """Field ``name`` of every row: an ``(N,)`` array for ``duration``, ``offset`` (seconds)
        and ``sample_rate`` (Hz); a list of ``str | None`` for a string field.

        Raises:
            KeyError: ``name`` is not an :class:`Utterance` field.
        """
        if name in self._numbers:
            values = self._numbers[name]
            return values if self._rows is None else values[self._rows]
        if name in self._strings:
            return self._strings[name].values(self._rows)
        raise KeyError(f"{name!r} is not an utterance field; expected one of {FIELD_ORDER}")

    def take(self, indices: np.ndarray | Iterable[int]) -> UtteranceTable:
        """The rows at ``indices`` (positions in this table, in that order), sharing its columns.

        Raises:
            IndexError: an index is outside ``[0, len(self))``.
        """
        positions = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(positions) and (positions.min() < 0 or positions.max() >= self._size):
            raise IndexError(f"take: indices must lie in [0, {self._size}), got {positions}")
        rows = positions if self._rows is None else self._rows[positions]
        return UtteranceTable(self._numbers, self._strings, rows)

    def mask(self, keep: np.ndarray) -> UtteranceTable:
        """The rows where the ``(N,)`` bool array ``keep`` is true, in order."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self._size,):
            raise ValueError(
                f"mask: expected a bool array of shape ({self._size},), got {keep.shape}"
            )
        return self.take(np.flatnonzero(keep))


def _gather(column: StringColumn, rows: np.ndarray) -> StringColumn:
    """The strings at ``rows`` in a fresh contiguous buffer (no Python object per row)."""
    starts = column.offsets[rows]
    lengths = column.offsets[rows + 1] - starts
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    # Byte positions: each row's start repeated over its length, plus a running count in it.
    positions = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
    valid = None if column.valid is None else column.valid[rows]
    return StringColumn(column.data[positions], offsets, valid)


def _save_array(path: Path, values: np.ndarray) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as f:
            np.save(f, np.ascontiguousarray(values), allow_pickle=False)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
