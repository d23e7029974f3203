"""What every corpus reader provides."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from speechlab.data.utterance import Utterance

SPLITS = ("train", "validation", "test")


class CorpusLayoutError(FileNotFoundError):
    """The corpus root is missing or is not in the layout its reader expects."""


@dataclass
class ScanReport:
    """Files a reader skipped while scanning, with the reason for each (``path -> reason``)."""

    skipped: dict[str, str] = field(default_factory=dict)

    def skip(self, path: str | Path, reason: str) -> None:
        self.skipped[str(path)] = reason


class CorpusReader(Protocol):
    """Knows one on-disk layout and nothing about tasks.

    ``name`` and ``options`` (plain data) identify the reader's output for manifest caching;
    ``fingerprint_paths`` lists the files whose names, sizes and modification times decide when
    a cached manifest is stale; ``scan`` yields the utterances of one split.
    """

    name: str
    root: Path

    def check_layout(self) -> None:
        """Raise :class:`CorpusLayoutError` naming what was expected where, if the root is wrong."""

    def options(self) -> dict:
        """Reader options that change its output (label set, seeds, ...), as plain data."""

    def fingerprint_paths(self) -> Iterable[Path]:
        """Every file whose change must rebuild the manifest."""

    def scan(self, split: str, report: ScanReport) -> Iterable[Utterance]:
        """Yield the utterances of ``split`` (one of :data:`SPLITS`); record skipped files."""
