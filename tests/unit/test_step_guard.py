"""The non-finite step guard's bookkeeping: consecutive skips, the limit, the message."""

from __future__ import annotations

import pytest
import torch

from speechlab.tasks.step_guard import NonFiniteStepGuard, NonFiniteTrainingError, gradients_finite


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
