"""The checks every entry of a user's manifest passes before it becomes an :class:`Utterance`.

One :class:`EntryCheck` per split scan: utterance ids unique within the split, durations and
offsets positive and finite, audio files present, segments inside their recordings. An entry
that fails is skipped and counted in the scan report under ``where`` (``file:line``), with what
was expected and what to do; nothing is raised mid-scan.

Files are opened only when needed: an entry without a duration is probed (the manifest cache
keeps the result, so once per corpus version); a segment (``offset > 0``) is checked against its
recording's length, each recording probed once per scan however many segments it holds; a whole
file with a duration is only stat-ed, unless ``probe`` asks for every file to be opened.
"""

from __future__ import annotations

import math
from pathlib import Path

from speechlab.audio.io import AudioError, AudioInfo, probe
from speechlab.data.reader import ScanReport
from speechlab.data.utterance import Utterance
from speechlab.text.normalize import TextNormalizer

#: A segment may end this many seconds past its recording's end (rounding in manifests).
END_SLACK = 0.02


def seconds(value: object, name: str) -> float | None | str:
    """``value`` as seconds: a float, ``None`` when empty, or the reason it is not a number."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return f"{name} {value!r} is not a number of seconds"
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"{name} {value!r} is not a number of seconds"
    if not math.isfinite(number):
        return f"{name} {value!r} is not a finite number of seconds"
    return number


class EntryCheck:
    """Turns the entries of one split into utterances; see the module docstring.

    Args:
        report: where skipped entries go (``where -> reason``).
        normalizer: applied to ``text`` and ``translation``; a text it rejects drops the entry.
        probe: open every audio file (true rates and lengths, unreadable files found up front),
            not only those without a duration and the recordings segments are cut from.
    """

    def __init__(
        self, report: ScanReport, normalizer: TextNormalizer | None = None, probe: bool = False
    ) -> None:
        self.report = report
        self.normalizer = normalizer
        self.probe = probe
        self.ids: set[str] = set()
        self._recordings: dict[str, AudioInfo | AudioError] = {}

    def skip(self, where: str, reason: str) -> None:
        self.report.skip(where, reason)

    def utterance(
        self,
        where: str,
        id: str | None,
        audio_path: Path,
        duration: object = None,
        offset: object = 0.0,
        sample_rate: int | None = None,
        text: str | None = None,
        translation: str | None = None,
        label: str | None = None,
        speaker: str | None = None,
        language: str | None = None,
    ) -> Utterance | None:
        """The utterance of one entry (``where`` names it, e.g. ``train.jsonl:12``), or ``None``
        with the reason in the report. ``duration`` and ``offset`` are seconds (numbers or
        strings); a missing duration is probed (the rest of the recording after ``offset``);
        ``sample_rate`` (Hz) is recorded as given when the file is not opened (0: unknown)."""
        uid = (id or "").strip()
        if not uid:
            return self._skip(where, "has no utterance id; give every entry one")
        if uid in self.ids:
            return self._skip(
                where,
                f"repeats utterance id {uid!r} of an earlier entry; ids must be unique within a "
                "split (the later entry is skipped): rename or delete one",
            )
        length = seconds(duration, "duration")
        start = seconds(offset, "offset")
        if isinstance(length, str) or isinstance(start, str):
            reason = length if isinstance(length, str) else start
            return self._skip(where, f"{reason}; fix or delete the entry")
        start = start or 0.0
        if start < 0:
            return self._skip(where, f"offset {start} s is negative; expected seconds >= 0")
        if length is not None and length <= 0:
            return self._skip(
                where,
                f"duration {length} s is not positive; expected seconds > 0 (or none: probed)",
            )
        if not audio_path.is_file():
            reason = "is a folder" if audio_path.is_dir() else "does not exist"
            return self._skip(where, f"audio {audio_path} {reason}; fix the path or the entry")
        if self.probe or length is None or start > 0:
            info = self._info(audio_path, cache=start > 0)
            if isinstance(info, AudioError):
                return self._skip(where, f"audio {audio_path}: {info}")
            if start >= info.duration:
                return self._skip(
                    where,
                    f"offset {start} s is at or beyond the end of {audio_path} "
                    f"({info.duration:.3f} s long)",
                )
            if length is None:
                length = info.duration - start
            elif start + length > info.duration + END_SLACK:
                return self._skip(
                    where,
                    f"segment {start}-{start + length:.3f} s ends past the end of {audio_path} "
                    f"({info.duration:.3f} s long); fix its offset or duration",
                )
            sample_rate = info.sample_rate
        texts = {"text": text, "translation": translation}
        for name, value in texts.items():
            if value is None or self.normalizer is None:
                continue
            normalized = self.normalizer(value)
            if normalized is None:
                return self._skip(where, f"{name} {value!r} " + self.normalizer.rejection(value))
            texts[name] = normalized or None  # nothing left: the entry has no such text
        self.ids.add(uid)
        return Utterance(
            id=uid,
            audio_path=str(audio_path),
            duration=float(length),
            sample_rate=int(sample_rate or 0),
            offset=float(start),
            text=texts["text"],
            translation=texts["translation"],
            label=label,
            speaker=speaker,
            language=language,
        )

    def _skip(self, where: str, reason: str) -> None:
        self.report.skip(where, reason)
        return None

    def _info(self, path: Path, cache: bool) -> AudioInfo | AudioError:
        key = str(path)
        found = self._recordings.get(key)
        if found is not None:
            return found
        try:
            info: AudioInfo | AudioError = probe(path)
        except AudioError as error:
            info = error
        if cache:  # a recording segments are cut from: probed once however many it holds
            self._recordings[key] = info
        return info


def resolve_audio(value: str, base: Path) -> Path:
    """The audio file ``value`` names: absolute as given, else relative to ``base``."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path
