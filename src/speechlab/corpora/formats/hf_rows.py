"""Where the rows of a Hugging Face ``datasets`` corpus come from, one split at a time.

Three kinds of source, each giving a :class:`RowSource` per split:

- a ``save_to_disk`` folder (:func:`open_folder`): a ``DatasetDict`` (``dataset_dict.json`` and one
  folder per split) or a single ``Dataset`` (``state.json``, read as the train split), opened
  with ``datasets.load_from_disk`` (memory-mapped Arrow files);
- a folder of Parquet files (:func:`open_folder`): ``<split>.parquet``, ``<split>-*.parquet`` or
  the Hub's ``data/<split>-00000-of-00001.parquet``, read with ``pyarrow.parquet`` row group by
  row group; the features (``Audio``, ``ClassLabel``) come from the ``huggingface`` metadata
  ``datasets`` writes into every Parquet file it saves. Parquet is read directly rather than
  through ``load_dataset("parquet")``, which would first copy the whole corpus, audio included,
  into Arrow files under ``~/.cache/huggingface``;
- a Hub dataset (:func:`open_hub`): ``datasets.load_dataset(name, config)``, which downloads it
  into the Hugging Face cache where the network allows.

Rows stream in batches of :data:`ROWS_PER_BATCH` (Arrow record batches converted one at a time),
only the columns asked for, so no split is ever held as a Python list. Nothing here decodes
audio: an ``Audio`` column comes as its stored ``{"bytes", "path"}`` struct, so neither
``datasets``' decoders (torchcodec) nor FFmpeg are needed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datasets import Dataset, DatasetDict, Features, load_dataset, load_from_disk

from speechlab.data.reader import CorpusLayoutError

#: Rows converted to Python values at a time (audio bytes included: a few MB per batch).
ROWS_PER_BATCH = 64

EXPECTED_LAYOUT = (
    "a folder written by datasets' save_to_disk (a DatasetDict: dataset_dict.json and one "
    "folder per split; or one Dataset: state.json), or a folder of Parquet files "
    "(<split>.parquet, <split>-*.parquet, or the Hub's data/<split>-00000-of-00001.parquet)"
)


class RowSource:
    """The rows of one split: a ``Dataset`` or a list of Parquet files.

    Args:
        split: the split's name in the dataset (``train``, ``dev``, ...).
        where: the split as messages name it (a folder, a Hub name and split).
        features: the split's columns and their ``datasets`` features.
        dataset: the split as a ``Dataset`` (``save_to_disk`` folders, the Hub).
        files: the split's Parquet files, read in this order.
        base: the folder relative audio paths resolve against (``None``: no such folder).
    """

    def __init__(
        self,
        split: str,
        where: str,
        features: Features,
        dataset: Dataset | None = None,
        files: Sequence[Path] = (),
        base: Path | None = None,
    ) -> None:
        self.split = split
        self.where = where
        self.features = features
        self.dataset = dataset
        self.files = tuple(files)
        self.base = base

    def __str__(self) -> str:
        return self.where

    @property
    def column_names(self) -> list[str]:
        return list(self.features)

    def paths(self) -> list[Path]:
        """The files holding the split (Arrow, Parquet and the ``save_to_disk`` state files)."""
        if self.dataset is None:
            return list(self.files)
        paths: list[Path] = []
        for cache in self.dataset.cache_files:
            arrow = Path(cache["filename"])
            paths.append(arrow)
            paths += [arrow.parent / n for n in ("state.json", "dataset_info.json")]
        return sorted({p for p in paths if p.is_file()})

    def rows(self, columns: Sequence[str]) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """``(index, where, row)`` for every row: its index in the split (from 0), where it is
        for messages (``<split folder> row 12``, ``<file>.parquet row 3``) and ``column ->
        value`` for ``columns`` (an ``Audio`` column: ``{"bytes": ..., "path": ...}``).

        Raises:
            CorpusLayoutError: a Parquet file that cannot be read.
        """
        columns = list(dict.fromkeys(columns))
        index = 0
        if self.dataset is not None:
            table = self.dataset.select_columns(columns).with_format("arrow")
            for batch in table.iter(batch_size=ROWS_PER_BATCH):
                for row in _rows(batch, columns):
                    yield index, f"{self.where} row {index}", row
                    index += 1
            return
        for path in self.files:
            try:
                batches = pq.ParquetFile(path).iter_batches(ROWS_PER_BATCH, columns=columns)
                row_in_file = 0
                for batch in batches:
                    for row in _rows(batch, columns):
                        yield index, f"{path} row {row_in_file}", row
                        index += 1
                        row_in_file += 1
            except (OSError, pa.ArrowException) as error:
                raise CorpusLayoutError(
                    f"{path}: cannot read it as Parquet ({error}); expected a Parquet file "
                    "(datasets' to_parquet or the Hub's data/*.parquet): replace or remove it"
                ) from error


def _rows(batch: pa.Table | pa.RecordBatch, columns: list[str]) -> Iterator[dict[str, Any]]:
    values = [batch.column(name).to_pylist() for name in columns]
    for row in zip(*values, strict=True):
        yield dict(zip(columns, row, strict=True))


class DatasetSplits:
    """The splits of a ``DatasetDict`` (or of one ``Dataset``, read as ``train``).

    Args:
        splits: ``split name -> Dataset``.
        where: the dataset as messages name it.
        base: the folder relative audio paths resolve against.
        folders: whether each split is a folder under ``where`` (``save_to_disk``).
    """

    def __init__(
        self, splits: Mapping[str, Dataset], where: str, base: Path | None, folders: bool
    ) -> None:
        self.splits = dict(splits)
        self.where = where
        self.base = base
        self.folders = folders

    def names(self) -> list[str]:
        return sorted(self.splits)

    def find(self, name: str) -> RowSource | None:
        dataset = self.splits.get(name)
        if dataset is None:
            return None
        where = f"{self.where}/{name}" if self.folders else f"{self.where} split {name}"
        return RowSource(name, where, dataset.features, dataset=dataset, base=self.base)

    def paths(self) -> list[Path]:
        """Every file of every split, and ``dataset_dict.json``."""
        paths = [Path(self.where) / "dataset_dict.json"] if self.folders else []
        for name in self.splits:
            source = self.find(name)
            if source is not None:
                paths += source.paths()
        return sorted({p for p in paths if p.is_file()})


class ParquetSplits:
    """The splits of a folder of Parquet files (see the module docstring for the names)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)
        self.base = root
        self.files = sorted(p for p in (*root.glob("*.parquet"), *root.glob("data/*.parquet")))

    def names(self) -> list[str]:
        return [str(p.relative_to(self.root)) for p in self.files]

    def find(self, name: str) -> RowSource | None:
        given = Path(name).expanduser()
        path = given if given.is_absolute() else self.root / given
        if path.is_file():  # named by its path: two files of one name stay apart
            files = [path]
            inside = path.is_relative_to(self.root)
            split = str(path.relative_to(self.root) if inside else path).removesuffix(".parquet")
        else:
            patterns = (f"{name}.parquet", f"{name}-*.parquet")
            files = [
                p
                for p in self.files
                if p.parent in (self.root, self.root / "data")
                and any(fnmatch.fnmatchcase(p.name, pattern) for pattern in patterns)
            ]
            split = name
        if not files:
            return None
        try:
            schema = pq.read_schema(files[0])
        except (OSError, pa.ArrowException) as error:
            raise CorpusLayoutError(
                f"{files[0]}: cannot read it as Parquet ({error}); expected a Parquet file "
                "(datasets' to_parquet or the Hub's data/*.parquet): replace or remove it"
            ) from error
        where = str(files[0]) if len(files) == 1 else f"{self.root} {split}-*.parquet"
        features = Features.from_arrow_schema(schema)
        return RowSource(split, where, features, files=files, base=self.root)

    def paths(self) -> list[Path]:
        return list(self.files)


Splits = DatasetSplits | ParquetSplits


def open_folder(root: Path) -> Splits:
    """The splits of a ``save_to_disk`` folder or a folder of Parquet files.

    Raises:
        CorpusLayoutError: ``root`` is not a folder, is neither layout (the message lists what
            it holds), or is a ``save_to_disk`` folder ``datasets`` cannot load.
    """
    if not root.is_dir():
        raise CorpusLayoutError(
            f"the dataset folder {root} does not exist. Expected {EXPECTED_LAYOUT}; set "
            "data.reader.root=<that folder> (`speechlab convert data=<corpus> --to hf -o DIR` "
            "writes one), or data.reader.name=<a Hub dataset> where the network allows"
        )
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        try:
            loaded = load_from_disk(str(root))
        except (OSError, ValueError, KeyError, IndexError, pa.ArrowException) as error:
            raise CorpusLayoutError(
                f"{root} looks like a save_to_disk folder but datasets cannot load it ({error}); "
                "write it again with save_to_disk, or point data.reader.root at another folder"
            ) from error
        if isinstance(loaded, DatasetDict):
            return DatasetSplits(loaded, str(root), root, folders=True)
        return DatasetSplits({"train": loaded}, str(root), root, folders=False)
    parquet = ParquetSplits(root)
    if parquet.files:
        return parquet
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    shown = ", ".join(found[:10]) + (", ..." if len(found) > 10 else "") or "nothing"
    raise CorpusLayoutError(
        f"{root} holds {shown}: expected {EXPECTED_LAYOUT}. Point data.reader.root at such a folder"
    )


def open_hub(name: str, config: str | None) -> DatasetSplits:
    """Every split of the Hub dataset ``name`` (``config``: its subset), downloaded into the
    Hugging Face cache by ``datasets.load_dataset`` (or read from it).

    Raises:
        CorpusLayoutError: the dataset cannot be loaded (no network, a gated dataset without
            access, a wrong name or config), with what to do instead.
    """
    shown = name + (f" (config {config})" if config else "")
    try:
        loaded = load_dataset(name, config)
    except Exception as error:  # network, access and name errors of datasets and the Hub
        raise CorpusLayoutError(
            f"cannot load the Hugging Face dataset {shown}: {type(error).__name__}: {error}. "
            "Without network, load it once where there is network and write it with "
            "save_to_disk (or download its Parquet files), then pass data.reader.root=<that "
            "folder> instead of data.reader.name; a gated dataset (Common Voice) needs its terms "
            "accepted on huggingface.co and `hf auth login`; check the name and "
            "data.reader.config"
        ) from error
    if not isinstance(loaded, DatasetDict):
        raise CorpusLayoutError(
            f"datasets.load_dataset({name!r}, {config!r}) gave a {type(loaded).__name__}, "
            "expected a DatasetDict of splits; save it with save_to_disk and pass "
            "data.reader.root=<that folder>"
        )
    return DatasetSplits(loaded, shown, None, folders=False)
