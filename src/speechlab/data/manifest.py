"""Manifests of :class:`Utterance` records, cached under the data dir as columnar tables.

A manifest is rebuilt only when the corpus changes: its cache key hashes the reader's name and
options and the name, size and modification time of every file the reader fingerprints, and the
manifest version, so a cache written in an older format is never read (it lives in another
folder). Each split is an :class:`~speechlab.data.utterance_table.UtteranceTable` saved as
``.npy`` columns and memory-mapped on load: loading costs no parsing, and dataloader workers and
DDP ranks on one machine share its pages instead of each holding a copy of millions of records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from speechlab.data.reader import SPLITS, CorpusReader, ScanReport
from speechlab.data.utterance_table import TableFormatError, UtteranceTable

log = logging.getLogger(__name__)

# 2: Speech Commands list spellings resolved, 0-byte clips called empty.
# 3: columnar .npy tables per split instead of JSONL.
MANIFEST_VERSION = 3
MANIFEST_FORMAT = "utterance-table-npy"
SUMMARY_FILE = "manifest.json"
SKIPPED_FILE = "skipped.tsv"


@dataclass
class Manifest:
    """The utterances of every split (one table each) and the files the reader skipped
    (``path -> reason``)."""

    splits: dict[str, UtteranceTable]
    skipped: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None


def corpus_fingerprint(reader: CorpusReader) -> str:
    """A hash that changes when the reader's options or any fingerprinted file changes."""
    digest = hashlib.sha1()
    header = {
        "version": MANIFEST_VERSION,
        "reader": reader.name,
        "root": str(Path(reader.root).resolve()),
        "options": reader.options(),
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    root = Path(reader.root)
    for path in sorted(reader.fingerprint_paths()):
        stat = path.stat()
        relative = os.path.relpath(path, root)
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(temporary, path)


def _read_skipped(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    rows = (line.rstrip("\n").split("\t", 1) for line in path.open(encoding="utf-8"))
    return {row[0]: row[1] for row in rows if len(row) == 2}


def build_manifest(reader: CorpusReader) -> Manifest:
    """Scan every split of ``reader`` (no caching) into columnar tables."""
    reader.check_layout()
    report = ScanReport()
    splits = {split: UtteranceTable.from_utterances(reader.scan(split, report)) for split in SPLITS}
    return Manifest(splits=splits, skipped=dict(report.skipped))


def _read_cached(directory: Path) -> Manifest | None:
    """The manifest cached in ``directory``, or ``None`` when it is absent, incomplete or in
    another format (written by an older version, or damaged): the caller rebuilds it then."""
    try:
        summary = json.loads((directory / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if summary.get("format") != MANIFEST_FORMAT or summary.get("version") != MANIFEST_VERSION:
        log.warning(
            "manifest cache %s is in another format (%s, version %s); rebuilding it",
            directory,
            summary.get("format", "jsonl"),
            summary.get("version"),
        )
        return None
    try:
        splits = {split: UtteranceTable.load(directory / split) for split in SPLITS}
    except TableFormatError as error:
        log.warning("manifest cache %s is damaged (%s); rebuilding it", directory, error)
        return None
    counts = {split: len(table) for split, table in splits.items()}
    if counts != summary.get("counts"):
        log.warning("manifest cache %s disagrees with its summary; rebuilding it", directory)
        return None
    changed = [
        folder for folder, time in summary.get("folders", {}).items() if _mtime(folder) != time
    ]
    if changed:
        log.info(
            "the corpus's folder %s changed since its manifest was built (files added, removed "
            "or renamed); rebuilding it",
            changed[0],
        )
        return None
    return Manifest(
        splits=splits, skipped=_read_skipped(directory / SKIPPED_FILE), directory=directory
    )


def _mtime(folder: str) -> int | None:
    """The modification time of ``folder`` (ns), or ``None`` when it does not exist."""
    try:
        return os.stat(folder).st_mtime_ns
    except OSError:
        return None


def audio_folders(reader: CorpusReader, manifest: Manifest) -> dict[str, int | None]:
    """``folder -> modification time (ns)`` of the corpus root and of every folder holding an
    utterance's audio: a folder's time changes when a file in it is added, removed or renamed,
    so a clip copied in after a build (one the build skipped as missing) rebuilds the manifest."""
    folders = {str(Path(reader.root))}
    for table in manifest.splits.values():
        folders.update(map(os.path.dirname, table.column("audio_path")))
    return {folder: _mtime(folder) for folder in sorted(folders)}


def load_or_build_manifest(reader: CorpusReader, cache_dir: str | Path) -> Manifest:
    """Load the cached manifest of ``reader`` from ``cache_dir``, building it when stale: when
    a fingerprinted file changed (another cache folder), or when the corpus root or a folder of
    its audio gained, lost or renamed a file (:func:`audio_folders`; rebuilt in place).

    Layout: ``<cache_dir>/<reader name>-<fingerprint[:16]>/``: ``manifest.json`` (reader, root,
    options, fingerprint, format, version, the utterance count of each split and the audio
    folders' modification times; written last,
    so its presence marks a complete cache), ``skipped.tsv`` (path, reason) and one folder per
    split of ``.npy`` columns (see :meth:`UtteranceTable.save`), memory-mapped on load. Files are
    written atomically, so concurrent processes (DDP ranks) and interrupted builds never leave a
    half-written manifest behind. A folder in an older format or damaged is rebuilt in place.

    Raises:
        CorpusLayoutError: from the reader, when the corpus is missing or in the wrong layout.
    """
    reader.check_layout()
    key = corpus_fingerprint(reader)
    directory = Path(cache_dir) / f"{reader.name}-{key[:16]}"
    cached = _read_cached(directory)
    if cached is not None:
        return cached

    log.info("building the manifest of %s (%s reader)", reader.root, reader.name)
    manifest = build_manifest(reader)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.jsonl"):  # an older version's splits, should any be here
        stale.unlink(missing_ok=True)
    for split, table in manifest.splits.items():
        table.save(directory / split)
    skipped = "".join(f"{path}\t{reason}\n" for path, reason in sorted(manifest.skipped.items()))
    _write_atomically(directory / SKIPPED_FILE, skipped)
    summary = {
        "reader": reader.name,
        "root": str(reader.root),
        "options": reader.options(),
        "fingerprint": key,
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "counts": {split: len(table) for split, table in manifest.splits.items()},
        "hours": {
            split: round(float(table.durations.sum()) / 3600, 3)
            for split, table in manifest.splits.items()
        },
        "skipped": len(manifest.skipped),
        "folders": audio_folders(reader, manifest),
    }
    _write_atomically(directory / SUMMARY_FILE, json.dumps(summary, indent=2, default=str) + "\n")
    # Serve the mapped files, as a later load would: the built columns are freed, and every
    # process that forks from here shares the page cache instead of private copies.
    return _read_cached(directory) or Manifest(manifest.splits, manifest.skipped, directory)
