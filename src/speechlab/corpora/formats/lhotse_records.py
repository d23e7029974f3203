"""The lines of Lhotse manifests and the audio files their recordings name.

Manifests are JSON lines, gzip-compressed when named ``.gz``, read one line at a time so that one
bad line is skipped and counted (``<manifest>:<line>``) instead of ending the scan; each record
is built by lhotse's own ``from_dict``. A recording's audio is used only when the channels an
utterance selects lie in one plain ``file`` source: shell commands are never run, URLs never
fetched, and in-memory or Shar sources and Lhotse's audio transforms are not applied.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from speechlab.data.reader import CorpusLayoutError, ScanReport

#: Lhotse audio transforms that keep the audio's timeline and content (speechlab resamples).
HARMLESS_TRANSFORMS = frozenset({"Resample"})
#: Why each other source type is not read (formatted with ``source``, the command or URL).
SOURCE_TYPES = {
    "command": "comes from a shell command ({source!r}), which speechlab never runs",
    "url": "is a URL ({source!r}) and speechlab reads no network at run time",
    "memory": "is held inside the manifest (a 'memory' source)",
    "shar": "is a Lhotse Shar placeholder (the audio lives in the Shar archive)",
}


def manifest_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` of a JSON-lines file, gzip-compressed when named ``.gz``.

    Raises:
        CorpusLayoutError: the file cannot be read, or its gzip stream is truncated or corrupt
            (naming the line that could not be read).
    """
    number = 0
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb") as f:
            for number, line in enumerate(f, start=1):  # noqa: B007 (named in the error)
                yield number, line
    except (OSError, EOFError, zlib.error) as error:
        raise CorpusLayoutError(
            f"{path}: cannot read line {number + 1} ({error}). Expected a JSON-lines Lhotse "
            "manifest (gzip-compressed when named .gz); the file is truncated or corrupt: "
            "re-create it (rerun the recipe's prepare step, or lhotse copy from its source)"
        ) from error


def manifest_records(path: Path, report: ScanReport) -> Iterator[tuple[int, dict]]:
    """``(line number, parsed record)`` of each line; a line that is not UTF-8 JSON of an
    object is skipped and counted under ``<path>:<line>``; blank lines are passed over."""
    for number, raw in manifest_lines(path):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            report.skip(f"{path}:{number}", f"is not a line of JSON ({error}); fix or delete it")
            continue
        if not isinstance(record, dict):
            report.skip(
                f"{path}:{number}",
                f"is JSON {type(record).__name__}, not an object; fix or delete the line",
            )
            continue
        yield number, record


def record_kind(record: Mapping) -> str:
    """What a Lhotse manifest line holds: ``cut``, ``recording``, ``supervision`` or ``other``."""
    if "type" in record and str(record["type"]).endswith("Cut"):
        return "cut"
    if "sources" in record:
        return "recording"
    if "recording_id" in record:
        return "supervision"
    return "other"


def first_kind(path: Path, patience: int = 100) -> str | None:
    """The kind (:func:`record_kind`) of the first record of ``path``; ``None`` for an empty file.

    Raises:
        CorpusLayoutError: none of the first ``patience`` lines (or of all) is a JSON object.
    """
    bad = last = 0
    for last, raw in manifest_lines(path):  # noqa: B007 (``last`` is named in the error)
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            record = None
        if isinstance(record, dict):
            return record_kind(record)
        bad += 1
        if bad >= patience:
            break
    if bad:
        raise CorpusLayoutError(
            f"{path}: none of the first {bad} lines read (to line {last}) is a JSON object. "
            "Expected a JSON-lines Lhotse manifest, gzip-compressed when named .gz"
        )
    return None


def parse(record: dict, kind: str) -> Any:
    """A lhotse object (``MonoCut``/``MultiCut``/``MixedCut``/..., ``Recording``,
    ``SupervisionSegment``) from a parsed line of ``kind`` (:func:`record_kind`), built by
    lhotse's own ``from_dict``; raises whatever lhotse raises on a malformed record."""
    from lhotse import Recording, SupervisionSegment
    from lhotse.serialization import deserialize_item

    if kind == "recording":
        return Recording.from_dict(record)
    if kind == "supervision":
        return SupervisionSegment.from_dict(record)
    return deserialize_item(record)


def channels_of(channel: object) -> frozenset[int]:
    """A cut's or supervision's ``channel`` (an int or a list of ints) as a set."""
    if isinstance(channel, (list, tuple)):
        return frozenset(int(c) for c in channel)
    return frozenset({int(channel)}) if channel is not None else frozenset()


@dataclass(frozen=True)
class Located:
    """The audio file of an utterance: ``path``, its number of ``channels`` (more than one:
    mixed down to mono when read) and whether it was found relative to the current folder."""

    path: Path
    channels: int
    from_cwd: bool = False


@dataclass(frozen=True)
class AudioFile:
    """What an utterance needs of a Lhotse recording (small: a pair's recordings stay in memory).

    ``sources`` holds ``(type, channels, source)`` per audio source, the source being the path,
    command or URL (``""`` for audio held in the manifest).
    """

    id: str
    sampling_rate: int
    sources: tuple[tuple[str, tuple[int, ...], str], ...]
    transforms: tuple[str, ...] = ()

    @classmethod
    def of(cls, recording: Any) -> AudioFile:
        """From a ``lhotse.Recording``."""
        sources = tuple(
            (
                s.type,
                tuple(int(c) for c in s.channels),
                s.source if isinstance(s.source, str) and s.type != "memory" else "",
            )
            for s in recording.sources
        )
        names = tuple(
            t.get("name", "?") if isinstance(t, dict) else type(t).__name__
            for t in recording.transforms or ()
        )
        return cls(str(recording.id), int(recording.sampling_rate), sources, names)

    def locate(self, channel: object, manifest: Path) -> Located | str:
        """The file holding ``channel`` (a cut's or supervision's), or why there is none to read.

        A relative path is taken relative to ``manifest``'s folder when the file is there, else
        to the current folder (as Lhotse itself opens it).
        """
        harmful = [name for name in self.transforms if name not in HARMLESS_TRANSFORMS]
        if harmful:
            return (
                f"recording {self.id!r} applies the Lhotse transform(s) {', '.join(harmful)}, "
                "which speechlab does not apply (it reads the file as it is); write the "
                "transformed audio to files, or the recording without its transforms"
            )
        wanted = channels_of(channel)
        sources = [s for s in self.sources if wanted & set(s[1])] if wanted else self.sources
        if not sources:
            have = sorted({c for s in self.sources for c in s[1]})
            return (
                f"selects channel(s) {sorted(wanted)} that recording {self.id!r} lacks (it has "
                f"{have}); fix the channel"
            )
        if len(sources) > 1:
            return (
                f"selects channels of recording {self.id!r} held in {len(sources)} sources (one "
                "file per channel), and speechlab reads one file per utterance; write one cut "
                "per channel file"
            )
        kind, channels, value = sources[0]
        if kind != "file":
            reason = SOURCE_TYPES.get(kind, "is of the unknown source type {kind!r}")
            return (
                f"the audio of recording {self.id!r} "
                + reason.format(source=value or kind, kind=kind)
                + "; speechlab reads audio files only: save the audio to files and write the "
                "recording with sources of type 'file'"
            )
        path = Path(value).expanduser()
        if path.is_absolute():
            return Located(path, len(channels))
        beside = manifest.parent / path
        if beside.exists():
            return Located(beside, len(channels))
        cwd = Path.cwd() / path
        if cwd.exists():
            return Located(cwd, len(channels), from_cwd=True)
        return (
            f"audio {value!r} of recording {self.id!r} is in neither {manifest.parent} (the "
            f"manifest's folder) nor {Path.cwd()} (the current folder); fix the path, or run "
            "from the folder the manifest's relative paths start at"
        )
