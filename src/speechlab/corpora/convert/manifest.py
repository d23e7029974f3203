"""Write a corpus as NeMo-style JSON-lines manifests: ``<out>/<split>.jsonl``.

One object per utterance with NeMo's keys (``audio_filepath`` absolute, ``duration`` and, for a
segment, ``offset`` in seconds, ``text``, ``lang``) and the other fields speechlab reads
(``id``, ``speaker``, ``label``, ``translation``); a field the utterance lacks is left out.
``data=manifest data.reader.root=<out>`` reads it back.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from speechlab.data.utterance import Utterance
from speechlab.data.utterance_table import UtteranceTable

#: Utterance field -> manifest key (the reader's default ``columns``).
KEYS = {
    "id": "id",
    "text": "text",
    "translation": "translation",
    "label": "label",
    "speaker": "speaker",
    "language": "lang",
}


def record(utterance: Utterance) -> dict:
    """The manifest object of one utterance."""
    entry: dict = {
        "id": utterance.id,
        "audio_filepath": str(Path(utterance.audio_path).resolve()),
        "duration": utterance.duration,
    }
    if utterance.offset:
        entry["offset"] = utterance.offset
    for field, key in KEYS.items():
        value = getattr(utterance, field)
        if value is not None:
            entry[key] = value
    return entry


def write(splits: Mapping[str, UtteranceTable], out: Path) -> None:
    """Write ``<out>/<split>.jsonl`` for each split, each file atomically (a run reading the
    folder never sees half a manifest)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for split, table in splits.items():
        path = out / f"{split}.jsonl"
        handle, temporary = tempfile.mkstemp(dir=out, prefix=f".{path.name}.")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as f:
                for utterance in table:
                    f.write(json.dumps(record(utterance), ensure_ascii=False) + "\n")
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
