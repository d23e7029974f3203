"""Write the utterances of a split as tar shards in WebDataset's layout, with their index.

Each utterance becomes two tar members under one key (``%09d``, its position in the split's
shuffled write order, since ids may hold dots or slashes, which WebDataset reads as key
separators): ``<key>.<ext>``, the audio file's own bytes in its own encoding (``mp3``, ``wav``,
``flac``, ``ogg``), and ``<key>.json``, its :class:`~speechlab.data.utterance.Utterance`
fields without ``audio_path`` and ``offset``, plus ``audio`` (the member's extension) and
``source`` (the file it came from). A segment of a longer recording (``offset > 0``, or a
duration at least ``SEGMENT_SLACK`` seconds shorter than its file) is stored as a 16-bit FLAC of
the segment alone, so a shard never carries a whole recording for a one-second cut.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from webdataset import TarWriter

from speechlab.audio.io import AudioError, probe, read_audio, read_audio_bytes
from speechlab.data.shard_index import INDEX_FILE, ShardIndex, ShardInfo
from speechlab.data.utterance import Utterance

log = logging.getLogger(__name__)

SHARD_PATTERN = "shard-%06d.tar"
SEGMENT_SLACK = 0.5  # seconds: a file longer than its utterance by more is cut to the segment
RECORD_FIELDS = (
    "id",
    "duration",
    "sample_rate",
    "text",
    "translation",
    "label",
    "speaker",
    "language",
)


@dataclass
class ShardReport:
    """What :func:`write_shards` wrote: the index and the utterances it skipped
    (``audio path -> reason``)."""

    index: ShardIndex
    skipped: dict[str, str] = field(default_factory=dict)


def encoded_audio(utterance: Utterance) -> tuple[bytes, str, int]:
    """The bytes to store for ``utterance``, their extension and the audio's own rate (Hz).

    Raises:
        AudioError: the audio is missing, unreadable or does not decode.
    """
    path = Path(utterance.audio_path)
    info = probe(path)
    segment = utterance.offset > 0 or info.duration - utterance.duration > SEGMENT_SLACK
    if segment:
        samples = read_audio(path, info.sample_rate, utterance.offset, utterance.duration)
        buffer = io.BytesIO()
        sf.write(buffer, samples.numpy(), info.sample_rate, format="FLAC", subtype="PCM_16")
        return buffer.getvalue(), "flac", info.sample_rate
    try:
        data = path.read_bytes()
    except OSError as error:
        raise AudioError(f"cannot read: {error.strerror or error}") from error
    # Decode what is stored, as training will: a file that does not decode is skipped here.
    read_audio_bytes(data, info.sample_rate, 0.0, utterance.duration)
    extension = path.suffix.lower().lstrip(".") or "wav"
    return data, extension, info.sample_rate


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(temporary, 0o644)  # readable by whoever serves the shards, as the tar files are
    os.replace(temporary, path)


def write_shards(
    utterances: Sequence[Utterance],
    directory: str | Path,
    split: str,
    shard_seconds: float | None = None,
    shard_bytes: int | None = None,
    seed: int = 0,
    corpus: str = "",
) -> ShardReport:
    """Write ``utterances`` (in an order shuffled with ``seed``) to ``<directory>/<split>/``.

    A shard is closed once it holds ``shard_seconds`` seconds of audio or ``shard_bytes`` bytes
    (whichever comes first; at least one must be given), so shards are about that size, each
    but the last. Shards of an earlier write (``shard-*.tar``) in that folder are removed first;
    ``index.json`` (see :mod:`speechlab.data.shard_index`) is written last and atomically.

    Audio that is missing or does not decode (see :func:`speechlab.audio.io.read_audio`) is
    skipped and counted in the report and the index, never written.

    Raises:
        ValueError: neither or a non-positive ``shard_seconds`` / ``shard_bytes``.
    """
    if shard_seconds is None and shard_bytes is None:
        raise ValueError("write_shards needs shard_seconds or shard_bytes to size the shards")
    if (shard_seconds is not None and not 0 < shard_seconds < math.inf) or (
        shard_bytes is not None and shard_bytes <= 0
    ):
        raise ValueError(
            f"shard sizes must be positive and finite, got shard_seconds={shard_seconds}, "
            f"shard_bytes={shard_bytes}"
        )
    folder = Path(directory) / split
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("shard-*.tar"):
        stale.unlink()
    order = np.random.default_rng(seed).permutation(len(utterances)).tolist()
    skipped: dict[str, str] = {}
    shards: list[ShardInfo] = []
    writer: TarWriter | None = None
    durations: list[float] = []
    size = 0

    def close() -> None:
        nonlocal writer
        if writer is None:
            return
        writer.close()
        name = SHARD_PATTERN % len(shards)
        shards.append(ShardInfo(name, tuple(durations), (folder / name).stat().st_size))
        writer = None

    for position in order:
        utterance = utterances[position]
        try:
            data, extension, rate = encoded_audio(utterance)
        except AudioError as error:
            skipped[utterance.audio_path] = str(error)
            continue
        if writer is None:
            durations, size = [], 0
            writer = TarWriter(str(folder / (SHARD_PATTERN % len(shards))), encoder=False, mtime=0)
        record = {name: getattr(utterance, name) for name in RECORD_FIELDS}
        record.update(sample_rate=rate, audio=extension, source=utterance.audio_path)
        key = f"{sum(s.utterances for s in shards) + len(durations):09d}"
        size += writer.write(
            {
                "__key__": key,
                extension: data,
                "json": json.dumps(record, ensure_ascii=False).encode("utf-8"),
            }
        )
        durations.append(float(utterance.duration))
        if (shard_seconds is not None and sum(durations) >= shard_seconds) or (
            shard_bytes is not None and size >= shard_bytes
        ):
            close()
    close()
    index = ShardIndex(shards=tuple(shards), split=split, corpus=corpus, skipped=len(skipped))
    _write_atomically(folder / INDEX_FILE, json.dumps(index.to_json(), ensure_ascii=False) + "\n")
    for path, reason in sorted(skipped.items()):
        log.warning("skipped %s: %s", path, reason)
    return ShardReport(index=index, skipped=skipped)
