"""Collate: pad audio and targets, keep lengths, list skipped examples."""

import torch

from speechlab.data.collate import collate_examples
from speechlab.data.dataset import Example, SkippedExample


def test_collate_pads_audio_and_keeps_lengths():
    batch = collate_examples([example("a", 1000, 1), example("b", 1600, 0), example("c", 10, 2)])
    assert batch.audio.shape == (3, 1600)
    assert batch.audio_lengths.tolist() == [1000, 1600, 10]
    assert batch.targets.tolist() == [1, 0, 2]
    assert torch.all(batch.audio[0, 1000:] == 0) and torch.all(batch.audio[2, 10:] == 0)
    assert batch.ids == ["a", "b", "c"]


def test_collate_pads_token_targets():
    batch = collate_examples([example("a", 100, [3, 4, 5]), example("b", 80, [7])], pad_id=0)
    assert batch.targets.tolist() == [[3, 4, 5], [7, 0, 0]]
    assert batch.target_lengths.tolist() == [3, 1]


def test_collate_drops_and_lists_skipped_examples():
    batch = collate_examples([example("a", 100, 0), SkippedExample("b", "/x/b.wav", "truncated")])
    assert batch.ids == ["a"] and batch.skipped == [("/x/b.wav", "truncated")]
    empty = collate_examples([SkippedExample("b", "/x/b.wav", "empty")])
    assert len(empty) == 0 and empty.skipped == [("/x/b.wav", "empty")]


def example(name: str, samples: int, target) -> Example:
    return Example(id=name, audio=torch.randn(samples), target=torch.as_tensor(target))
