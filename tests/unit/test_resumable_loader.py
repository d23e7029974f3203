"""The stateful train loader: it saves the batches training finished and resumes after them."""

from __future__ import annotations

import pytest

from speechlab.data.loader import ResumableDataLoader
from speechlab.data.sampler import DurationBucketSampler


def loader(done: list[int]) -> ResumableDataLoader:
    durations = [1.0 + (i % 7) * 0.3 for i in range(200)]
    sampler = DurationBucketSampler(durations, batch_seconds=12.0, shuffle=True, seed=3)
    return ResumableDataLoader(
        list(range(200)), batch_sampler=sampler, batches_done=lambda: done[0]
    )


def test_loader_state_is_the_batches_training_finished_not_those_prefetched():
    done = [0]
    source = loader(done)
    source.batch_sampler.set_epoch(2)
    full = list(source.batch_sampler)
    iterator = iter(source)
    for _ in range(6):  # six batches fetched, four of them trained on
        next(iterator)
    done[0] = 4
    state = source.state_dict()
    assert state == {"epoch": 2, "batches_yielded": 4}

    resumed = loader([0])
    resumed.load_state_dict(state)
    assert resumed.resume_epoch(2) is False  # the loop resumes the same epoch: mid-epoch
    assert [batch.tolist() for batch in resumed] == full[4:]


def epoch_batches(epoch: int) -> list[list[int]]:
    expected = loader([0])
    expected.batch_sampler.set_epoch(epoch)
    return [batch.tolist() for batch in expected]


def test_loader_saved_at_the_end_of_an_epoch_resumes_with_the_next_one():
    source = loader([0])
    source.batch_sampler.set_epoch(1)
    epoch_length = len(source.batch_sampler)
    resumed = loader([0])
    resumed.load_state_dict({"epoch": 1, "batches_yielded": epoch_length})
    assert resumed.resume_epoch(2) is True
    assert [b.tolist() for b in resumed] == epoch_batches(2)


def test_an_epoch_the_trainer_cut_short_resumes_with_the_next_epochs_first_batch():
    # limit_train_batches=3 (or max_steps) ended epoch 1 after 3 of its batches: the saved
    # position is not the sampler's end, but the loop goes on with epoch 2.
    resumed = loader([0])
    resumed.load_state_dict({"epoch": 1, "batches_yielded": 3})
    assert resumed.resume_epoch(2) is True
    assert [b.tolist() for b in resumed] == epoch_batches(2)
    # Asked once: a later epoch's iterator is the plain epoch, nothing skipped.
    assert resumed.resume_epoch(3) is None
    resumed.batch_sampler.set_epoch(3)
    assert [b.tolist() for b in resumed] == epoch_batches(3)


def test_a_loader_state_of_a_later_epoch_than_the_loop_is_refused():
    resumed = loader([0])
    resumed.load_state_dict({"epoch": 3, "batches_yielded": 1})
    with pytest.raises(ValueError, match="epoch 3 but its training loop resumes epoch 2"):
        resumed.resume_epoch(2)


def test_loader_needs_the_bucket_sampler():
    with pytest.raises(TypeError, match="DurationBucketSampler"):
        ResumableDataLoader([1, 2, 3], batch_size=2, batches_done=lambda: 0)
