"""A training epoch in which a rank trained on no example stops the run, naming the ranks."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from speechlab.run.callbacks import NothingTrainedCheck


class _Gathered:
    """A strategy whose ranks trained ``counts`` examples (what all_gather would return)."""

    def __init__(self, counts: list[int]) -> None:
        self.counts = counts

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.counts)


def _epoch(counts: list[int], mine: int, tmp_path) -> None:
    trainer = SimpleNamespace(
        strategy=_Gathered(counts), current_epoch=2, default_root_dir=str(tmp_path)
    )
    module = SimpleNamespace(device=torch.device("cpu"))
    check = NothingTrainedCheck()
    check.on_train_epoch_start(trainer, module)
    for _ in range(3):  # three batches, `mine` examples trained in all
        check.on_train_batch_start(trainer, module, [None] * (mine // 3), 0)
    check.on_train_epoch_end(trainer, module)


def test_a_rank_that_trained_nothing_stops_the_run_though_the_others_trained(tmp_path) -> None:
    with pytest.raises(RuntimeError, match=r"epoch 2: rank\(s\) \[1\] of 2 trained on nothing"):
        _epoch([12, 0], mine=12, tmp_path=tmp_path)  # rank 0 sees it from the gathered counts
    with pytest.raises(RuntimeError, match="epoch 2 trained on nothing"):
        _epoch([0, 0], mine=0, tmp_path=tmp_path)
    _epoch([12, 9], mine=12, tmp_path=tmp_path)  # every rank trained: the run goes on
