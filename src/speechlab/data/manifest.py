"""JSONL manifests of :class:`Utterance` records, cached under the data dir.

A manifest is rebuilt only when the corpus changes: its cache key hashes the reader's name and
options and the name, size and modification time of every file the reader fingerprints.
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
from speechlab.data.utterance import Utterance

log = logging.getLogger(__name__)

MANIFEST_VERSION = 2  # 2: Speech Commands list spellings resolved, 0-byte clips called empty
SKIPPED_FILE = "skipped.tsv"


@dataclass
class Manifest:
    """The utterances of every split and the files the reader skipped (``path -> reason``)."""

    splits: dict[str, list[Utterance]]
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


def _read_jsonl(path: Path) -> list[Utterance]:
    with path.open(encoding="utf-8") as f:
        return [Utterance.from_dict(json.loads(line)) for line in f if line.strip()]


def _read_skipped(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    rows = (line.rstrip("\n").split("\t", 1) for line in path.open(encoding="utf-8"))
    return {row[0]: row[1] for row in rows if len(row) == 2}


def build_manifest(reader: CorpusReader) -> Manifest:
    """Scan every split of ``reader`` (no caching)."""
    reader.check_layout()
    report = ScanReport()
    splits = {split: list(reader.scan(split, report)) for split in SPLITS}
    return Manifest(splits=splits, skipped=dict(report.skipped))


def load_or_build_manifest(reader: CorpusReader, cache_dir: str | Path) -> Manifest:
    """Load the cached manifest of ``reader`` from ``cache_dir``, building it when stale.

    Layout: ``<cache_dir>/<reader name>-<fingerprint[:16]>/{train,validation,test}.jsonl`` and
    ``skipped.tsv`` (path, reason). Files are written atomically, so concurrent processes (DDP
    ranks) and interrupted builds never leave a half-written manifest behind.
    """
    reader.check_layout()
    key = corpus_fingerprint(reader)
    directory = Path(cache_dir) / f"{reader.name}-{key[:16]}"
    complete = directory / "manifest.json"
    if complete.exists():
        splits = {split: _read_jsonl(directory / f"{split}.jsonl") for split in SPLITS}
        skipped = _read_skipped(directory / SKIPPED_FILE)
        return Manifest(splits=splits, skipped=skipped, directory=directory)

    log.info("building the %s manifest from %s", reader.name, reader.root)
    manifest = build_manifest(reader)
    directory.mkdir(parents=True, exist_ok=True)
    for split, utterances in manifest.splits.items():
        lines = "".join(utterance.to_json() + "\n" for utterance in utterances)
        _write_atomically(directory / f"{split}.jsonl", lines)
    skipped = "".join(f"{path}\t{reason}\n" for path, reason in sorted(manifest.skipped.items()))
    _write_atomically(directory / SKIPPED_FILE, skipped)
    summary = {
        "reader": reader.name,
        "root": str(reader.root),
        "options": reader.options(),
        "fingerprint": key,
        "counts": {split: len(utts) for split, utts in manifest.splits.items()},
        "skipped": len(manifest.skipped),
    }
    _write_atomically(complete, json.dumps(summary, indent=2, default=str) + "\n")
    manifest.directory = directory
    return manifest
