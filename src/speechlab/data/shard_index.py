"""The index of a split's tar shards: which shards, how many utterances and seconds each.

A split written by ``speechlab shard`` is a folder ``<dir>/<split>/`` of ``shard-%06d.tar`` files
in WebDataset's layout (each utterance is a pair of members ``<key>.<audio ext>`` and
``<key>.json``) beside ``index.json``::

    {"format": "speechlab-shards", "version": 1, "split": "train", "corpus": "mini_voice",
     "utterances": 1280, "seconds": 3571.2, "skipped": 0,
     "shards": [{"name": "shard-000000.tar", "utterances": 213, "seconds": 600.1,
                 "bytes": 2871296, "durations": [2.81, 3.02, ...]}, ...]}

``durations`` lists the seconds of each utterance in the order the shard holds them, so every
rank and dataloader worker can plan the batches of an epoch (and how many each yields) without
reading a shard.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from braceexpand import braceexpand

INDEX_FILE = "index.json"
INDEX_FORMAT = "speechlab-shards"
INDEX_VERSION = 1
URL_SCHEMES = ("http://", "https://")


class ShardIndexError(ValueError):
    """A shard location with no usable index: missing, unreadable or in another format."""


@dataclass(frozen=True)
class ShardInfo:
    """One shard: its location (path or URL) and the seconds of each utterance it holds."""

    url: str
    durations: tuple[float, ...]
    bytes: int = 0

    @property
    def utterances(self) -> int:
        return len(self.durations)

    @property
    def seconds(self) -> float:
        return float(sum(self.durations))


@dataclass(frozen=True)
class ShardIndex:
    """The shards of one split, in the order they were written."""

    shards: tuple[ShardInfo, ...]
    split: str = "train"
    corpus: str = ""
    skipped: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def utterances(self) -> int:
        return sum(shard.utterances for shard in self.shards)

    @property
    def seconds(self) -> float:
        return sum(shard.seconds for shard in self.shards)

    def to_json(self) -> dict[str, Any]:
        """The ``index.json`` record (shard names relative to the index's folder)."""
        return {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "split": self.split,
            "corpus": self.corpus,
            "utterances": self.utterances,
            "seconds": round(self.seconds, 3),
            "skipped": self.skipped,
            **self.extra,
            "shards": [
                {
                    "name": _basename(shard.url),
                    "utterances": shard.utterances,
                    "seconds": round(shard.seconds, 3),
                    "bytes": shard.bytes,
                    "durations": [round(d, 4) for d in shard.durations],
                }
                for shard in self.shards
            ],
        }


def _basename(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def _is_url(location: str) -> bool:
    return location.startswith(URL_SCHEMES)


def _read_text(location: str, timeout: float) -> str:
    """The text at a local path or an http(s) URL (raises OSError)."""
    if _is_url(location):
        with urllib.request.urlopen(location, timeout=timeout) as response:
            return response.read().decode("utf-8")
    return Path(location).read_text(encoding="utf-8")


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if _is_url(base) else str(Path(base) / name)


def _parent(location: str) -> str:
    if _is_url(location):
        return location.rsplit("/", 1)[0]
    return str(Path(location).parent)


def load_shard_index(
    location: str | Path, split: str = "train", timeout: float = 60.0
) -> ShardIndex:
    """The shards of ``split`` at ``location``.

    ``location`` is either the folder ``speechlab shard -o`` wrote (local path or http(s) URL;
    the index is ``<location>/<split>/index.json``), a split's own folder (``.../train``, holding
    ``index.json``), or a brace pattern of shard files such as
    ``http://host/shards/train/shard-{000000..000011}.tar`` (the index is read from the
    pattern's folder, and only the shards the pattern names are kept, in its order).

    Raises:
        ShardIndexError: no ``index.json`` where expected, one in another format, or a pattern
            naming a shard the index does not list.
    """
    location = str(location)
    pattern = "{" in location or location.endswith(".tar")
    if pattern:
        candidates = [_join(_parent(location), INDEX_FILE)]
    else:
        candidates = [_join(_join(location, split), INDEX_FILE), _join(location, INDEX_FILE)]
    record = None
    errors = []
    for candidate in candidates:
        try:
            record = json.loads(_read_text(candidate, timeout))
            index_path = candidate
            break
        except (OSError, urllib.error.URLError, ValueError) as error:
            errors.append(f"{candidate}: {error}")
    if record is None:
        raise ShardIndexError(
            f"no shard index for the {split} split at {location}: expected "
            f"{' or '.join(candidates)} ({'; '.join(errors)}). Write the shards with "
            "`speechlab shard data=<corpus> -o <dir>` and pass data.shards=<dir>."
        )
    if record.get("format") != INDEX_FORMAT or record.get("version") != INDEX_VERSION:
        raise ShardIndexError(
            f"{index_path} is not a speechlab shard index of version {INDEX_VERSION} (format "
            f"{record.get('format')!r}, version {record.get('version')!r}); rewrite the shards "
            "with `speechlab shard`"
        )
    folder = _parent(index_path)
    by_name = {
        entry["name"]: ShardInfo(
            url=_join(folder, entry["name"]),
            durations=tuple(float(d) for d in entry["durations"]),
            bytes=int(entry.get("bytes", 0)),
        )
        for entry in record["shards"]
    }
    if pattern:
        names = [_basename(url) for url in braceexpand(location)]
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise ShardIndexError(
                f"{location} names shards that {index_path} does not list: {unknown[:5]}"
            )
        shards = tuple(by_name[name] for name in names)
    else:
        shards = tuple(by_name[entry["name"]] for entry in record["shards"])
    extra_keys = {"format", "version", "split", "corpus", "utterances", "seconds", "skipped"}
    return ShardIndex(
        shards=shards,
        split=str(record.get("split", split)),
        corpus=str(record.get("corpus", "")),
        skipped=int(record.get("skipped", 0)),
        extra={k: v for k, v in record.items() if k not in extra_keys | {"shards"}},
    )
