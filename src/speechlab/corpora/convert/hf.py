"""Write a corpus as a Hugging Face ``datasets`` audio dataset: ``save_to_disk`` of a
``DatasetDict`` with the splits ``train``, ``validation`` and ``test``.

Columns: ``id``, ``audio`` (an ``Audio`` feature holding each file's own bytes, so the folder is
self-contained and moves like a Hub dataset; its ``path`` is the file's name, whose extension
tells decoders the format), ``duration`` (seconds, float64), ``text``, ``translation``,
``label``, ``speaker`` and ``language`` (strings, ``None`` where the utterance has none). A
segment of a longer recording (``offset > 0``, or a duration more than
:data:`~speechlab.data.shard_writer.SEGMENT_SLACK` shorter than its file) is cut and stored as
a 16-bit FLAC of the segment alone, as ``speechlab shard`` stores it.

``data=hf data.reader.root=<out>`` reads it back with the reader's default columns;
``datasets.load_from_disk("<out>")`` opens it anywhere (decoding its audio there needs
``datasets``' own audio decoder, torchcodec).

Each split is written row batch by row batch into an Arrow file next to ``out`` and then saved
by ``DatasetDict.save_to_disk``, so no split is held in memory. The Arrow rows are built with
pyarrow rather than through the ``Audio`` feature's encoder, which would need torchcodec for
bytes we already have. An utterance whose audio is missing or does not decode is left out and
logged with its reason.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import pyarrow as pa
from datasets import Audio, Dataset, DatasetDict, Features, Value

from speechlab.audio.io import AudioError
from speechlab.data.shard_writer import encoded_audio
from speechlab.data.utterance import Utterance
from speechlab.data.utterance_table import UtteranceTable

log = logging.getLogger(__name__)

STRING_COLUMNS = ("text", "translation", "label", "speaker", "language")
FEATURES = Features(
    {
        "id": Value("string"),
        "audio": Audio(),
        "duration": Value("float64"),
        **{name: Value("string") for name in STRING_COLUMNS},
    }
)
#: Rows written to Arrow at a time (their audio bytes are held until then).
ROWS_PER_BATCH = 64


def row(utterance: Utterance) -> dict:
    """The dataset row of one utterance (its audio read, cut when it is a segment).

    Raises:
        AudioError: the audio is missing, unreadable or does not decode.
    """
    data, extension, _ = encoded_audio(utterance)
    source = Path(utterance.audio_path)
    whole = utterance.offset == 0 and source.suffix.lower() == f".{extension}"
    name = source.name if whole else f"{utterance.id.replace('/', '_')}.{extension}"
    return {
        "id": utterance.id,
        "audio": {"bytes": data, "path": name},
        "duration": float(utterance.duration),
        **{column: getattr(utterance, column) for column in STRING_COLUMNS},
    }


def _batches(table: UtteranceTable, skipped: dict[str, str]) -> Iterator[pa.RecordBatch]:
    schema = FEATURES.arrow_schema
    rows: list[dict] = []
    for utterance in table:
        try:
            rows.append(row(utterance))
        except AudioError as error:
            skipped[f"{utterance.id} ({utterance.audio_path})"] = str(error)
            continue
        if len(rows) == ROWS_PER_BATCH:
            yield pa.RecordBatch.from_pylist(rows, schema=schema)
            rows = []
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=schema)


def write(splits: Mapping[str, UtteranceTable], out: Path) -> None:
    """Save ``splits`` as a ``DatasetDict`` in ``out`` (see the module docstring); utterances
    whose audio cannot be read are left out and logged."""
    out = Path(out).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as temporary:
        parts = {}
        for split, table in splits.items():
            path = Path(temporary) / f"{split}.arrow"
            with (
                pa.OSFile(str(path), "wb") as sink,
                pa.ipc.new_stream(sink, FEATURES.arrow_schema) as stream,
            ):
                for batch in _batches(table, skipped):
                    stream.write_batch(batch)
            parts[split] = Dataset.from_file(str(path))
        # An empty split needs one (empty) shard: saved with none, load_from_disk fails on it.
        empty = {split: 1 for split, part in parts.items() if len(part) == 0}
        DatasetDict(parts).save_to_disk(str(out), num_shards=empty)
    for where, reason in sorted(skipped.items()):
        log.warning("left out utterance %s: %s", where, reason)
    if skipped:
        log.warning("%s: left out %d utterances whose audio could not be read", out, len(skipped))
