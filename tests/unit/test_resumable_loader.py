"""Resume pieces: the stateful train loader, the empty-batch loss, checkpoint averaging."""

from __future__ import annotations

import hydra
import pytest
import torch

from speechlab.checkpoint.average import average_checkpoints
from speechlab.data.collate import collate_examples
from speechlab.data.loader import ResumableDataLoader
from speechlab.data.sampler import DurationBucketSampler
from speechlab.text.tokenizers import CharTokenizer
from tests.conftest import composed


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
    assert not resumed.at_epoch_start
    assert [batch.tolist() for batch in resumed] == full[4:]


def test_loader_saved_at_the_end_of_an_epoch_resumes_with_the_next_one():
    source = loader([0])
    source.batch_sampler.set_epoch(1)
    epoch_length = len(source.batch_sampler)
    resumed = loader([0])
    resumed.load_state_dict({"epoch": 1, "batches_yielded": epoch_length})
    assert resumed.at_epoch_start and resumed.batch_sampler.epoch == 2
    expected = loader([0])
    expected.batch_sampler.set_epoch(2)
    assert [b.tolist() for b in resumed] == [b.tolist() for b in expected]


def test_loader_needs_the_bucket_sampler():
    with pytest.raises(TypeError, match="DurationBucketSampler"):
        ResumableDataLoader([1, 2, 3], batch_size=2, batches_done=lambda: 0)


@pytest.mark.parametrize("model", ["kws_cnn", "ctc_lstm", "las"])
def test_an_empty_batch_gives_a_zero_loss_that_reaches_every_parameter(model, tmp_path):
    with composed("train", [f"model={model}"], tmp_path) as cfg:
        if model == "kws_cnn":
            inputs = {"labels": ["yes", "no", "_unknown_"]}
        else:
            inputs = {"tokenizer": CharTokenizer.train(["yes no up down"]).state()}
        task = hydra.utils.instantiate(cfg.model, **inputs)
    empty = collate_examples([])
    loss = task.training_step(empty, 0)
    assert float(loss) == 0.0
    loss.backward()
    assert all(p.grad is not None for p in task.parameters() if p.requires_grad)


def test_average_rejects_checkpoints_of_different_models(tmp_path):
    def save(name: str, shape: tuple[int, ...]) -> str:
        path = tmp_path / name
        torch.save({"speechlab": {}, "state_dict": {"w": torch.ones(shape)}}, path)
        return str(path)

    with pytest.raises(ValueError, match="same model"):
        average_checkpoints([save("a.ckpt", (2,)), save("b.ckpt", (3,))])
    averaged = average_checkpoints([save("c.ckpt", (2,)), save("d.ckpt", (2,))])
    assert torch.equal(averaged["state_dict"]["w"], torch.ones(2))
