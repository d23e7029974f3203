"""Splits a user's corpus lacks are held out of train: by speaker, at least one each, read once."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from speechlab.corpora.formats.splits import SplitSources
from speechlab.data.reader import SPLITS
from speechlab.data.utterance import Utterance


def corpus(speakers: int, per_speaker: int) -> list[Utterance]:
    return [
        Utterance(f"s{s}-u{u}", f"/a/s{s}-u{u}.wav", 1.0, 16000, speaker=f"s{s}")
        for s in range(speakers)
        for u in range(per_speaker)
    ]


def scan_all(utterances: list[Utterance], holdout: float = 0.05) -> tuple[dict, list]:
    """Every split of a corpus with only a train source; and the reads of that source."""
    reads: list[str] = []

    def read(source: object, split: str) -> Iterator[Utterance]:
        reads.append(split)
        yield from utterances

    sources = SplitSources(
        {}, lambda name: Path("train.jsonl") if name == "train" else None, holdout, "here", "file"
    )
    return {split: list(sources.scan(split, read)) for split in SPLITS}, reads


def test_each_missing_split_gets_whole_speakers_at_least_one_and_the_source_is_read_once():
    splits, reads = scan_all(corpus(speakers=6, per_speaker=5))
    speakers = {split: {u.speaker for u in found} for split, found in splits.items()}
    assert [len(speakers[s]) for s in SPLITS] == [4, 1, 1]  # 5 % of 6 speakers: still one each
    assert not speakers["train"] & (speakers["validation"] | speakers["test"])
    assert sum(len(found) for found in splits.values()) == 30
    assert reads == ["train"]


def test_the_share_follows_holdout_and_is_the_same_on_every_run():
    first, _ = scan_all(corpus(speakers=100, per_speaker=2), holdout=0.1)
    again, _ = scan_all(corpus(speakers=100, per_speaker=2), holdout=0.1)
    assert [len({u.speaker for u in first[s]}) for s in SPLITS] == [80, 10, 10]
    assert {s: [u.id for u in v] for s, v in first.items()} == {
        s: [u.id for u in v] for s, v in again.items()
    }


def test_one_speaker_holds_out_utterances_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        splits, _ = scan_all(corpus(speakers=1, per_speaker=40), holdout=0.1)
    assert [len(splits[s]) for s in SPLITS] == [32, 4, 4]
    assert "too few to hold validation and test out by speaker" in caplog.text


def test_too_few_utterances_leave_the_held_out_splits_empty_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        splits, _ = scan_all(corpus(speakers=1, per_speaker=2))
    assert [len(splits[s]) for s in SPLITS] == [2, 0, 0]
    assert "too few to hold a validation and a test split out of" in caplog.text
