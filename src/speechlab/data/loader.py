"""A train loader whose position in the epoch is saved in checkpoints and restored from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import DataLoader

from speechlab.data.sampler import DurationBucketSampler


class ResumableDataLoader(DataLoader):
    """A :class:`DataLoader` over a :class:`DurationBucketSampler` that Lightning checkpoints.

    Lightning stores ``state_dict()`` of every loader that has one in each checkpoint and calls
    ``load_state_dict`` before it first iterates a resumed run. The state is the sampler's epoch
    and the number of its batches the training loop has finished (not the number the sampler has
    handed to prefetching workers), so the resumed epoch continues with the next unseen batch.

    Args:
        batches_done: returns how many batches of the current epoch training has finished.
        **kwargs: as for :class:`DataLoader`; ``batch_sampler`` must be a ``DurationBucketSampler``.
    """

    def __init__(self, *args: Any, batches_done: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.batch_sampler, DurationBucketSampler):
            raise TypeError(
                "ResumableDataLoader needs batch_sampler=DurationBucketSampler(...), got "
                f"{type(self.batch_sampler).__name__}"
            )
        self.batches_done = batches_done
        self.at_epoch_start = False  # set by load_state_dict: the next batch begins an epoch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.batch_sampler.epoch, "batches_yielded": int(self.batches_done())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.load_state_dict(state)
        finished = len(self.batch_sampler) == 0
        if finished:  # saved at the end of the epoch: go on with the next
            self.batch_sampler.set_epoch(state["epoch"] + 1)
        self.at_epoch_start = finished or state["batches_yielded"] == 0
