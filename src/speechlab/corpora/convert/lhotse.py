"""Write a corpus as Lhotse cut manifests (``data=lhotse`` reads them back), with ``lhotse``.

``<out>/cuts_<split>.jsonl.gz`` for ``train``, ``validation`` and ``test`` (an empty file for an
empty split), streamed with ``CutSet.open_writer``. Each audio file becomes one ``Recording``
(id: the file's name without suffix, made unique with a hash of its path when two files share a
name; one ``file`` source by absolute path with all its channels; the file's own sampling rate and
number of samples, probed once per file whatever the number of utterances cut from it), each
utterance one ``MonoCut`` of it (id, ``start`` = offset, ``duration``, channel 0, or all
channels of a multi-channel file) with one ``SupervisionSegment`` covering the cut: ``text``,
``speaker``, ``language`` and ``custom`` ``{"label", "translation"}`` when set (the keys the
reader's ``data.reader.custom`` reads by default). An utterance whose audio cannot be probed is
left out, with a warning counting them and naming the first few files.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from speechlab.audio.io import AudioError, probe
from speechlab.data.reader import SPLITS
from speechlab.data.utterance import Utterance
from speechlab.data.utterance_table import UtteranceTable

log = logging.getLogger(__name__)

#: The ``custom`` keys written, which ``conf/data/reader/lhotse.yaml``'s ``custom`` reads.
CUSTOM_KEYS = {"label": "label", "translation": "translation"}


class Recordings:
    """One ``lhotse.Recording`` per audio file, probed once, with ids unique across splits."""

    def __init__(self) -> None:
        self.by_path: dict[str, Any] = {}
        self.ids: set[str] = set()
        self.unreadable: dict[str, str] = {}

    def of(self, audio_path: str) -> Any | None:
        """The recording of ``audio_path`` (made absolute), or ``None`` when it cannot be probed."""
        from lhotse import AudioSource, Recording

        path = str(Path(audio_path).expanduser().resolve())
        if path in self.by_path:
            return self.by_path[path]
        if path in self.unreadable:
            return None
        try:
            info = probe(path)
        except AudioError as error:
            self.unreadable[path] = str(error)
            return None
        rid = Path(path).stem or "recording"
        if rid in self.ids:
            rid = f"{rid}-{zlib.crc32(path.encode('utf-8')):08x}"
        self.ids.add(rid)
        recording = Recording(
            id=rid,
            sources=[AudioSource(type="file", channels=list(range(info.channels)), source=path)],
            sampling_rate=info.sample_rate,
            num_samples=info.frames,
            duration=info.duration,
        )
        self.by_path[path] = recording
        return recording


def cut_of(utterance: Utterance, recording: Any) -> Any:
    """The ``MonoCut`` of ``utterance`` cut from ``recording``, with one supervision covering it."""
    from lhotse import MonoCut, SupervisionSegment

    channel: int | list[int] = 0 if recording.num_channels == 1 else list(recording.channel_ids)
    custom = {
        key: getattr(utterance, name)
        for name, key in CUSTOM_KEYS.items()
        if getattr(utterance, name) is not None
    }
    supervision = SupervisionSegment(
        id=utterance.id,
        recording_id=recording.id,
        start=0.0,
        duration=utterance.duration,
        channel=channel,
        text=utterance.text,
        speaker=utterance.speaker,
        language=utterance.language,
        custom=custom or None,
    )
    return MonoCut(
        id=utterance.id,
        start=utterance.offset,
        duration=utterance.duration,
        channel=channel,
        recording=recording,
        supervisions=[supervision],
    )


def write(splits: Mapping[str, UtteranceTable], out: Path) -> None:
    """Write ``<out>/cuts_<split>.jsonl.gz`` for every split (see the module docstring).

    Raises:
        OSError: ``out`` cannot be created or written.
    """
    from lhotse import CutSet

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    recordings = Recordings()
    left_out = 0
    for split in SPLITS:
        with CutSet.open_writer(out / f"cuts_{split}.jsonl.gz", overwrite=True) as writer:
            for utterance in splits.get(split, ()):
                recording = recordings.of(utterance.audio_path)
                if recording is None:
                    left_out += 1
                    continue
                writer.write(cut_of(utterance, recording))
    if left_out:
        shown = "; ".join(f"{p}: {r}" for p, r in list(recordings.unreadable.items())[:5])
        log.warning(
            "%s: left out %d utterances of %d audio files that cannot be read (%s)",
            out,
            left_out,
            len(recordings.unreadable),
            shown,
        )
