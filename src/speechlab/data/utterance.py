"""The one record every corpus reader yields and every task consumes."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Utterance:
    """One stretch of audio and what is known about it.

    Fields a corpus lacks stay ``None``. ``offset`` and ``duration`` are in seconds and select a
    segment of ``audio_path`` (``offset=0`` with the file's full duration for a whole file), so a
    segment cut from a long recording (Speech Commands' ``_silence_`` from background noise) is an
    utterance like any other.
    """

    id: str
    audio_path: str
    duration: float
    sample_rate: int
    offset: float = 0.0
    text: str | None = None
    translation: str | None = None
    label: str | None = None
    speaker: str | None = None
    language: str | None = None

    def to_json(self) -> str:
        """One JSONL line."""
        return json.dumps(dataclasses.asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Utterance:
        """Build from a parsed JSONL line; unknown keys are an error (a stale or foreign manifest)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(record) - names
        if unknown:
            raise ValueError(
                f"manifest record {record.get('id')!r} has unknown fields {sorted(unknown)}; "
                f"expected only {sorted(names)}. Delete the cached manifest to rebuild it."
            )
        return cls(**record)
