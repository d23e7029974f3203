"""Invariants of the duration-bucketing batch sampler."""

from __future__ import annotations

import math

import numpy as np
import pytest
from torch.utils.data import DataLoader

from speechlab.data.sampler import DurationBucketSampler, pack_greedily, padding_efficiency


def common_voice_like(count: int, seed: int = 0) -> np.ndarray:
    """Lognormal clip lengths, median 5 s (5-95 %: 2.6-9.7 s), clipped to 1-15 s."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(math.log(5.0), 0.4, count), 1.0, 15.0)


def all_ranks(durations, num_replicas: int, epoch: int = 0, **kwargs) -> list[list[list[int]]]:
    """Each rank's batches for ``epoch``, checking that ``len`` matches what iteration yields."""
    out = []
    for rank in range(num_replicas):
        sampler = DurationBucketSampler(durations, num_replicas=num_replicas, rank=rank, **kwargs)
        sampler.set_epoch(epoch)
        expected = len(sampler)
        batches = list(sampler)
        assert len(batches) == expected == len(sampler)
        out.append(batches)
    return out


def assert_once_each(durations, per_rank: list[list[list[int]]]) -> None:
    seen = [i for batches in per_rank for batch in batches for i in batch]
    assert sorted(seen) == list(range(len(durations)))


def assert_fits(durations, batches, batch_seconds: float) -> None:
    for batch in batches:
        assert batch, "empty batch"
        longest = max(durations[i] for i in batch)
        if len(batch) > 1:
            assert longest * len(batch) <= batch_seconds
        if longest > batch_seconds:
            assert len(batch) == 1, "an over-long utterance must be alone"


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("num_replicas", [1, 2, 3])
def test_every_utterance_once_per_epoch_and_equal_batch_counts(shuffle, num_replicas):
    durations = common_voice_like(1000)
    for epoch in (0, 1):
        per_rank = all_ranks(
            durations, num_replicas, epoch, batch_seconds=60.0, shuffle=shuffle, num_buckets=10
        )
        assert_once_each(durations, per_rank)
        assert len({len(batches) for batches in per_rank}) == 1
        for batches in per_rank:
            assert_fits(durations, batches, 60.0)


def test_awkward_sizes_cover_everything_with_equal_counts():
    rng = np.random.default_rng(1)
    for size in range(1, 41):
        durations = rng.uniform(1.0, 15.0, size)
        for num_replicas in range(1, min(size, 4) + 1):
            for batch_seconds in (200.0, 40.0, 30.0):  # any two fit: never infeasible
                for shuffle in (True, False):
                    per_rank = all_ranks(
                        durations,
                        num_replicas,
                        epoch=size,
                        batch_seconds=batch_seconds,
                        shuffle=shuffle,
                        num_buckets=5,
                    )
                    assert_once_each(durations, per_rank)
                    assert len({len(batches) for batches in per_rank}) == 1
                    for batches in per_rank:
                        assert_fits(durations, batches, batch_seconds)


def test_seven_utterances_on_three_ranks():
    durations = [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]  # one batch of 56 s before splitting
    per_rank = all_ranks(durations, 3, batch_seconds=100.0)
    assert_once_each(durations, per_rank)
    assert [len(batches) for batches in per_rank] == [1, 1, 1]


def test_over_long_utterances_on_several_ranks():
    durations = np.concatenate([np.full(10, 25.0), np.linspace(1.0, 3.0, 25)])
    for shuffle in (True, False):
        per_rank = all_ranks(durations, 3, batch_seconds=20.0, shuffle=shuffle)
        assert_once_each(durations, per_rank)
        assert len({len(batches) for batches in per_rank}) == 1
        for batches in per_rank:
            assert_fits(durations, batches, 20.0)


def test_tiny_epoch_falls_back_to_the_fewest_batches():
    # Shuffled, 6 s and 1 s clips can alternate into 5 single batches: no multiple of 4 fits
    # between 5 and 5 utterances; packing the 1 s clips together leaves 3 batches, split to 4.
    durations = [6.0, 6.0, 1.0, 1.0, 1.0]
    for epoch in range(20):
        per_rank = all_ranks(durations, 4, epoch, batch_seconds=10.0)
        assert_once_each(durations, per_rank)
        assert [len(batches) for batches in per_rank] == [1, 1, 1, 1]


def test_over_long_utterances_are_alone_and_kept():
    durations = np.array([1.0, 50.0, 2.0, 3.0, 70.0, 1.5, 2.5] * 5)
    for shuffle in (True, False):
        (batches,) = all_ranks(durations, 1, batch_seconds=20.0, shuffle=shuffle)
        assert_once_each(durations, [batches])
        assert_fits(durations, batches, 20.0)
        assert sum(len(b) == 1 and durations[b[0]] > 20.0 for b in batches) == 10


def test_too_few_utterances_for_ranks_is_an_error():
    with pytest.raises(ValueError, match="cannot give each of 3 ranks"):
        DurationBucketSampler([1.0, 2.0], batch_seconds=10.0, num_replicas=3, rank=0)


def test_batches_that_cannot_be_evened_out_are_an_error():
    sampler = DurationBucketSampler([5.0] * 7, batch_seconds=4.0, num_replicas=3, rank=0)
    with pytest.raises(ValueError, match="same number of batches"):
        list(sampler)


def test_same_seed_and_epoch_give_the_same_order_other_epochs_differ():
    durations = common_voice_like(2000)

    def order(epoch: int, seed: int = 0) -> list[list[int]]:
        sampler = DurationBucketSampler(durations, batch_seconds=100.0, seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(3) == order(3)
    assert order(3) != order(4)
    assert order(3, seed=1) != order(3)


def test_shuffled_batch_count_is_the_same_every_epoch():
    # Wide buckets: greedy packing alone gives 182 or 183 batches depending on the shuffle.
    durations = np.random.default_rng(0).uniform(1.0, 15.0, 1000)
    sampler = DurationBucketSampler(durations, batch_seconds=60.0, num_buckets=4, num_replicas=2)
    counts = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        counts.add(len(sampler))
        assert len(list(sampler)) == len(sampler)
    assert len(counts) == 1


@pytest.mark.parametrize("shuffle", [True, False])
def test_max_batch_size_is_respected(shuffle):
    durations = common_voice_like(1000)
    (batches,) = all_ranks(durations, 1, batch_seconds=400.0, max_batch_size=16, shuffle=shuffle)
    assert max(len(batch) for batch in batches) == 16
    assert_once_each(durations, [batches])


def test_without_shuffle_batches_follow_ascending_duration():
    durations = common_voice_like(500)
    (batches,) = all_ranks(durations, 1, batch_seconds=80.0, shuffle=False)
    flat = [durations[i] for batch in batches for i in batch]
    assert flat == sorted(flat)
    assert all_ranks(durations, 1, epoch=5, batch_seconds=80.0, shuffle=False) == [batches]
    for rank_batches in all_ranks(durations, 3, batch_seconds=80.0, shuffle=False):
        flat = [durations[i] for batch in rank_batches for i in batch]
        assert flat == sorted(flat)


def test_resume_skips_the_batches_already_yielded_once():
    durations = common_voice_like(1500)
    sampler = DurationBucketSampler(durations, batch_seconds=100.0, num_replicas=2, rank=1)
    sampler.set_epoch(2)
    full = list(sampler)
    iterator = iter(sampler)
    consumed = [next(iterator) for _ in range(5)]
    assert consumed == full[:5]
    state = sampler.state_dict()
    assert state == {"epoch": 2, "batches_yielded": 5}

    resumed = DurationBucketSampler(durations, batch_seconds=100.0, num_replicas=2, rank=1)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # what Lightning does at the start of the resumed epoch
    assert len(resumed) == len(full) - 5
    assert list(resumed) == full[5:]
    assert resumed.state_dict() == {"epoch": 2, "batches_yielded": len(full)}
    assert list(resumed) == full  # the skip applies once
    assert len(resumed) == len(full)


def test_resume_state_for_another_epoch_is_dropped_and_bad_state_rejected():
    durations = common_voice_like(300)
    sampler = DurationBucketSampler(durations, batch_seconds=100.0)
    sampler.load_state_dict({"epoch": 1, "batches_yielded": 3})
    sampler.set_epoch(2)
    assert len(list(sampler)) == len(sampler)
    sampler.set_epoch(1)
    assert len(list(sampler)) == len(sampler)
    with pytest.raises(ValueError, match="lacks"):
        sampler.load_state_dict({"epoch": 1})
    with pytest.raises(ValueError, match="another dataset"):
        sampler.load_state_dict({"epoch": 1, "batches_yielded": 10**6})


def test_lightning_finds_set_epoch_through_the_dataloader():
    from lightning.fabric.utilities.data import _set_sampler_epoch

    sampler = DurationBucketSampler(common_voice_like(100), batch_seconds=50.0)
    loader = DataLoader(list(range(100)), batch_sampler=sampler)
    _set_sampler_epoch(loader, 7)
    assert sampler.epoch == 7


def test_bucketing_pads_far_less_than_random_batching():
    durations = common_voice_like(5000)
    sampler = DurationBucketSampler(durations, batch_seconds=200.0, num_buckets=50)
    bucketed = padding_efficiency(durations, list(sampler))
    permutation = np.random.default_rng(0).permutation(len(durations))
    random = padding_efficiency(durations, pack_greedily(durations, permutation, 200.0))
    assert bucketed >= 0.97
    assert bucketed >= random + 0.3
    default = DurationBucketSampler(durations, batch_seconds=200.0)  # num_buckets=50
    assert padding_efficiency(durations, list(default)) >= 0.97


def test_padding_efficiency_by_hand():
    assert padding_efficiency([1.0, 2.0, 3.0, 4.0], [[0, 1], [2, 3]]) == pytest.approx(10 / 12)
    with pytest.raises(ValueError, match="non-empty"):
        padding_efficiency([1.0], [])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"durations": []}, "non-empty"),
        ({"durations": [1.0, 0.0]}, "positive and finite"),
        ({"durations": [1.0, float("nan")]}, "positive and finite"),
        ({"batch_seconds": 0.0}, "batch_seconds"),
        ({"num_buckets": 0}, "num_buckets"),
        ({"num_replicas": 0}, "num_replicas"),
        ({"rank": 2, "num_replicas": 2}, "rank must be in"),
        ({"rank": -1}, "rank"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    arguments = {"durations": [1.0, 2.0, 3.0], "batch_seconds": 10.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        DurationBucketSampler(**arguments)


def test_equal_durations_share_one_bucket_so_batches_mix_the_manifest_order():
    # Speech Commands: every clip lasts 1 s and the manifest is ordered by word. Batches must
    # not be runs of one word.
    durations = [1.0] * 768
    words = [i // 64 for i in range(768)]
    sampler = DurationBucketSampler(durations, batch_seconds=64, num_buckets=30, seed=0)
    for batch in sampler:
        assert len({words[i] for i in batch}) >= 6, "a batch must mix the classes"


def test_ddp_ranks_take_batches_of_about_the_same_length_at_each_step():
    """Under DDP a step lasts as long as its slowest rank: the ranks' batches at one step
    should have about the same padded length (plain round-robin of shuffled batches spread
    them over the whole range: a median spread of 56 % of the longest on this corpus)."""
    durations = common_voice_like(4000, seed=3)
    num_replicas = 4
    per_rank = all_ranks(durations, num_replicas, epoch=1, batch_seconds=200.0, seed=5)
    assert_once_each(durations, per_rank)
    longest = np.array(
        [[durations[batch].max() for batch in batches] for batches in per_rank]
    ).T  # (steps, ranks)
    spread = (longest.max(axis=1) - longest.min(axis=1)) / longest.max(axis=1)
    assert np.median(spread) < 0.1
    # The steps still come in random length order, not sorted: shuffling is kept.
    step_lengths = longest.max(axis=1)
    assert not np.all(np.diff(step_lengths) >= 0)
    assert abs(np.corrcoef(np.arange(len(step_lengths)), step_lengths)[0, 1]) < 0.5
