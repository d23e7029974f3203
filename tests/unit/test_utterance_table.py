"""The columnar utterance table behaves like the list of records it replaces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from speechlab.data.utterance import Utterance
from speechlab.data.utterance_table import TableFormatError, UtteranceTable

RECORDS = [
    Utterance("a", "/c/a.wav", 1.25, 16000, text="héllo wörld", label="yes", language="fr"),
    Utterance("b", "/c/b.mp3", 3.5, 48000, offset=0.5, text="", speaker="s1"),
    Utterance("c", "/c/c.flac", 0.75, 8000, translation="日本語", label=""),
]


def test_records_round_trip_through_memory_mapped_files(tmp_path: Path):
    table = UtteranceTable.from_utterances(iter(RECORDS))
    assert len(table) == 3 and list(table) == RECORDS and table[-1] == RECORDS[-1]
    table.save(tmp_path / "split")
    loaded = UtteranceTable.load(tmp_path / "split")
    assert list(loaded) == RECORDS and loaded == table
    # None and "" stay distinct; numbers keep their exact value and type.
    assert loaded.column("text") == ["héllo wörld", "", None]
    assert loaded.column("label") == ["yes", None, ""]
    assert loaded[1].sample_rate == 48000 and isinstance(loaded[1].sample_rate, int)
    np.testing.assert_array_equal(loaded.durations, [1.25, 3.5, 0.75])
    with pytest.raises(IndexError, match="out of range"):
        loaded[3]
    with pytest.raises(KeyError, match="not an utterance field"):
        loaded.column("transcript")


def test_take_and_mask_select_rows_in_order(tmp_path: Path):
    table = UtteranceTable.from_utterances(RECORDS)
    picked = table.take(np.array([2, 0]))
    assert list(picked) == [RECORDS[2], RECORDS[0]]
    assert list(picked.take([1])) == [RECORDS[0]]
    assert list(table.mask(np.array([False, True, True]))) == RECORDS[1:]
    np.testing.assert_array_equal(picked.durations, [0.75, 1.25])
    # A saved selection holds only its rows (strings gathered into a new buffer).
    picked.save(tmp_path / "picked")
    assert list(UtteranceTable.load(tmp_path / "picked")) == [RECORDS[2], RECORDS[0]]
    with pytest.raises(IndexError, match="indices must lie"):
        table.take([3])


def test_bad_records_and_files_raise_clear_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="'x' has no audio_path"):
        UtteranceTable.from_utterances([Utterance("x", None, 1.0, 16000)])  # type: ignore[arg-type]
    UtteranceTable.from_utterances(RECORDS).save(tmp_path / "split")
    (tmp_path / "split" / "speaker.valid.npy").unlink()
    with pytest.raises(TableFormatError, match="speaker.valid.npy"):
        UtteranceTable.load(tmp_path / "split")
