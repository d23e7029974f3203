"""Write a corpus as Kaldi data dirs: ``<out>/train/``, ``<out>/validation/``, ``<out>/test/``.

Each dir holds, sorted by id in Kaldi's ``LC_ALL=C`` order (Python's string order: code points,
which is UTF-8 byte order), the files ``utils/validate_data_dir.sh`` expects:

- ``wav.scp``: ``<id> <absolute audio path>``; the ids are recording ids when the dir has
  ``segments`` (the file's name without its suffix, made unique), else utterance ids.
- ``segments``: ``<utterance> <recording> <start> <end>`` (seconds), only when some utterance
  is a segment: it starts after its file's start, shares its file with another utterance, or
  ends more than :data:`~speechlab.corpora.formats.entries.END_SLACK` before the file does
  (each such file's header is read once to know). Then every utterance of the split is listed.
- ``text`` (when some utterance has a transcript; ``<utt>`` alone for one without), ``utt2spk``
  and ``spk2utt`` (an utterance without a speaker is its own speaker, Kaldi's convention, which
  the reader reads back as no speaker), ``utt2dur`` (seconds), and ``translation``,
  ``utt2label``, ``utt2lang`` when some utterance has a translation, label or language.

Utterance ids are kept as the corpus has them, so the folder reads back with the same ids.
Kaldi's ``utils/validate_data_dir.sh`` also wants ``utt2spk`` sorted by speaker, which holds when
each speaker id begins its utterances' ids (``<speaker>-<utterance>``); a corpus whose ids do
not will need them renamed before Kaldi's own scripts split it by speaker.

A file of an earlier conversion that this one does not write (``segments``, ``translation``, ...)
is deleted, so that the folder holds this corpus alone. Every file is written atomically.
``data=kaldi data.reader.root=<out>`` reads the folder back.

Raises ``ValueError`` for an utterance or speaker id that holds whitespace or is empty (Kaldi ids
cannot), naming it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from speechlab.audio.io import AudioError, probe
from speechlab.corpora.formats.entries import END_SLACK
from speechlab.data.utterance import Utterance
from speechlab.data.utterance_table import UtteranceTable

#: Utterance field -> the file it is written to, when some utterance has it.
OPTIONAL_FILES = {"translation": "translation", "label": "utt2label", "language": "utt2lang"}
#: Every file this writer may write (the others of a split dir are left alone).
WRITTEN = ("wav.scp", "segments", "text", "utt2spk", "spk2utt", "utt2dur", *OPTIONAL_FILES.values())

_WHITESPACE = re.compile(r"\s")


def seconds(value: float) -> str:
    """Seconds as written: to the microsecond, without trailing zeros."""
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def _kaldi_id(value: str, what: str, split: str) -> str:
    if not value or _WHITESPACE.search(value):
        raise ValueError(
            f"{split}: {what} {value!r} cannot be a Kaldi id (ids are one word, without "
            "spaces); rename it in the corpus, or convert to another format (--to manifest)"
        )
    return value


def _one_line(value: str) -> str:
    """A value on one line: line breaks inside it become spaces."""
    return " ".join(value.splitlines()).strip()


def _is_segmented(utterances: list[Utterance]) -> bool:
    """Whether the split needs ``segments``: some utterance is not a whole file."""
    lengths: dict[str, float] = {}
    shared: set[str] = set()
    for utterance in utterances:
        if utterance.offset > 0 or utterance.audio_path in shared:
            return True
        shared.add(utterance.audio_path)
    for utterance in utterances:
        path = utterance.audio_path
        if path not in lengths:
            try:
                lengths[path] = probe(path).duration
            except AudioError:
                continue  # unreadable here: written as a whole file, as listed
        if lengths[path] - utterance.duration > END_SLACK:
            return True
    return False


def _recording_ids(paths: Iterable[str]) -> dict[str, str]:
    """``audio path -> recording id``: the file's name without its suffix (whitespace made
    ``_``), with a hash of the path where two files share a name."""
    names: dict[str, list[str]] = defaultdict(list)
    for path in dict.fromkeys(paths):
        names[_WHITESPACE.sub("_", Path(path).stem) or "recording"].append(path)
    ids: dict[str, str] = {}
    for name, holders in names.items():
        for path in holders:
            suffix = hashlib.sha1(path.encode()).hexdigest()[:8]
            ids[path] = name if len(holders) == 1 else f"{name}-{suffix}"
    return ids


def _write_lines(path: Path, lines: Iterable[str]) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_split(table: UtteranceTable, directory: Path, split: str) -> None:
    """Write one split's data dir (see the module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    utterances = sorted(table, key=lambda u: u.id)
    for utterance in utterances:
        _kaldi_id(utterance.id, "utterance id", split)
        if utterance.speaker is not None:
            _kaldi_id(utterance.speaker, f"speaker of {utterance.id!r}", split)
    audio = {u.id: str(Path(u.audio_path).absolute()) for u in utterances}
    files: dict[str, list[str]] = {}
    if _is_segmented(utterances):
        recordings = _recording_ids(audio.values())
        by_id = sorted((rid, path) for path, rid in recordings.items())
        files["wav.scp"] = [f"{rid} {path}" for rid, path in by_id]
        files["segments"] = [
            f"{u.id} {recordings[audio[u.id]]} {seconds(u.offset)} {seconds(u.offset + u.duration)}"
            for u in utterances
        ]
    else:
        files["wav.scp"] = [f"{u.id} {audio[u.id]}" for u in utterances]
    if any(u.text is not None for u in utterances):
        files["text"] = [f"{u.id} {_one_line(u.text or '')}".rstrip() for u in utterances]
    speakers = {u.id: u.speaker or u.id for u in utterances}
    files["utt2spk"] = [f"{uid} {speaker}" for uid, speaker in speakers.items()]
    spk2utt: dict[str, list[str]] = defaultdict(list)
    for uid, speaker in speakers.items():
        spk2utt[speaker].append(uid)  # in id order: the utterances are sorted
    files["spk2utt"] = [f"{spk} {' '.join(spk2utt[spk])}" for spk in sorted(spk2utt)]
    files["utt2dur"] = [f"{u.id} {seconds(u.duration)}" for u in utterances]
    for name, filename in OPTIONAL_FILES.items():
        if any(getattr(u, name) is not None for u in utterances):
            files[filename] = [
                f"{u.id} {_one_line(getattr(u, name))}"
                for u in utterances
                if getattr(u, name) is not None
            ]
    for filename in WRITTEN:
        if filename in files:
            _write_lines(directory / filename, files[filename])
        else:
            (directory / filename).unlink(missing_ok=True)  # an earlier conversion's


def write(splits: Mapping[str, UtteranceTable], out: Path) -> None:
    """Write ``<out>/<split>/`` for each split (an empty split too: its empty dir keeps the
    reader from holding that split out of train)."""
    out = Path(out)
    for split, table in splits.items():
        write_split(table, out / split, split)
