"""The non-finite step guard's bookkeeping: consecutive skips, the limit, the message."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from speechlab.tasks.step_guard import (
    NonFiniteStepGuard,
    NonFiniteTrainingError,
    RunningStatsSnapshot,
    gradients_finite,
)


def test_skips_are_counted_and_a_finite_step_resets_the_run_of_them():
    guard = NonFiniteStepGuard(max_consecutive=3)
    assert guard.record(True, 0) is False
    assert guard.record(False, 1) and guard.record(False, 2)
    assert guard.record(True, 3) is False
    assert (guard.skipped, guard.consecutive, guard.last_good_step) == (2, 0, 3)
    guard.record(False, 4)
    guard.record(False, 5)
    with pytest.raises(NonFiniteTrainingError, match="3 steps in a row.*last finite step: step 3"):
        guard.record(False, 6)


def test_the_limit_must_be_positive():
    with pytest.raises(ValueError, match="max_consecutive must be >= 1"):
        NonFiniteStepGuard(max_consecutive=0)


def test_gradients_are_finite_only_when_every_one_is():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    assert bool(gradients_finite([a, b]))  # no gradients yet
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    assert bool(gradients_finite([a, b]))
    b.grad[1] = float("nan")
    assert not bool(gradients_finite([a, b]))
    b.grad[1] = float("inf")
    assert not bool(gradients_finite([a, b]))


def test_a_skipped_step_puts_back_the_batch_norm_statistics_its_forward_moved():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    model.train()
    model(torch.randn(8, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    snapshot = RunningStatsSnapshot(model)
    model(torch.randn(8, 3) * 1e30)  # overflows: an infinite running variance
    assert not bool(snapshot.finite())
    snapshot.restore()
    assert bool(snapshot.finite())
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def composed_task(tmp_path, overrides=()):
    from speechlab.checkpoint.recipe import build_task
    from tests.conftest import composed

    with composed("train", ["model=kws_cnn", *overrides], tmp_path) as cfg:
        return build_task(cfg.model, {"labels": ["yes", "no"]})


def test_a_fresh_run_whose_every_step_was_skipped_is_not_reported_as_trained(tmp_path):
    task = composed_task(tmp_path)
    task._trainer = SimpleNamespace(global_step=0)
    task.on_train_start()
    for step in range(3):  # fewer in a row than the guard stops at
        task.step_guard.record(False, step)
    with pytest.raises(NonFiniteTrainingError, match="no optimizer step was taken"):
        task.on_train_end()


@pytest.mark.parametrize(("first_step", "finite_steps"), [(0, 1), (40, 0)])
def test_a_run_that_took_a_step_or_resumed_trained_ends_as_usual(
    tmp_path, first_step, finite_steps
):
    task = composed_task(tmp_path)
    task._trainer = SimpleNamespace(global_step=first_step)
    task.on_train_start()
    for step in range(finite_steps):
        task.step_guard.record(True, step)
    task.step_guard.record(False, 5)
    task.on_train_end()


def test_a_run_with_waveform_augmentation_names_it_among_the_causes(tmp_path):
    task = composed_task(
        tmp_path, ["model/waveform_augment=noise_only", "model.waveform_augment.noise_dir=noise"]
    )
    guard = task.step_guard
    with pytest.raises(NonFiniteTrainingError) as stopped:
        for step in range(guard.max_consecutive):
            guard.record(False, step)
    assert "model.waveform_augment" in str(stopped.value)
    assert "model.waveform_augment" not in composed_task(tmp_path).step_guard.likely_causes


def test_a_resumed_run_counts_a_run_of_skips_on_from_where_the_checkpoint_left_it(tmp_path):
    task = composed_task(tmp_path)
    task.step_guard.record(True, 0)
    for step in (1, 2):
        task.step_guard.record(False, step)
    checkpoint: dict = {}
    task.on_save_checkpoint(checkpoint)
    resumed = composed_task(tmp_path)
    resumed.on_load_checkpoint(checkpoint)
    guard = resumed.step_guard
    assert (guard.consecutive, guard.last_good_step) == (2, 0)
    for step in range(3, guard.max_consecutive):  # 19 in a row
        guard.record(False, step)
    with pytest.raises(NonFiniteTrainingError, match="20 steps in a row"):  # as it would have
        guard.record(False, guard.max_consecutive)
