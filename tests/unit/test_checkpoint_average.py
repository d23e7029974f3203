"""Checkpoint averaging: only checkpoints of one model average."""

from __future__ import annotations

import pytest
import torch

from speechlab.checkpoint.average import average_checkpoints


def test_average_rejects_checkpoints_of_different_models(tmp_path):
    def save(name: str, shape: tuple[int, ...]) -> str:
        path = tmp_path / name
        recipe = {"model": {"_target_": "m"}, "data": {}, "task_inputs": {}}
        torch.save({"speechlab": recipe, "state_dict": {"w": torch.ones(shape)}}, path)
        return str(path)

    with pytest.raises(ValueError, match="same model"):
        average_checkpoints([save("a.ckpt", (2,)), save("b.ckpt", (3,))])
    averaged = average_checkpoints([save("c.ckpt", (2,)), save("d.ckpt", (2,))])
    assert torch.equal(averaged["state_dict"]["w"], torch.ones(2))
