"""Train loaders whose position in the epoch is saved in checkpoints and restored from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import DataLoader

from speechlab.data.sampler import DurationBucketSampler
from speechlab.data.shard_stream import ShardStreamDataset


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


class StreamingDataLoader(DataLoader):
    """A :class:`DataLoader` over a :class:`ShardStreamDataset` that Lightning checkpoints.

    Each ``iter()`` starts the epoch ``epoch()`` says (the trainer's current epoch), unless a
    restored state is pending. The state is the stream's epoch and the batches of it training
    has finished; a resumed epoch skips the shards those batches used up, unread, and the done
    batches of the shard it stopped in, undecoded. Workers are never persistent: each epoch's
    workers are started with the dataset's epoch.

    Args:
        dataset: the train split's shard stream (its ``num_workers`` is the loader's).
        epoch: returns the epoch to stream next.
        batches_done: returns how many batches of the current epoch training has finished.
        **kwargs: as for :class:`DataLoader` (``collate_fn``, ``pin_memory``); batches come
            from the dataset, so ``batch_size`` is ``None``.
    """

    def __init__(
        self,
        dataset: ShardStreamDataset,
        *,
        epoch: Callable[[], int],
        batches_done: Callable[[], int],
        **kwargs: Any,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=None,
            num_workers=dataset.num_workers,
            persistent_workers=False,
            **kwargs,
        )
        self.epoch = epoch
        self.batches_done = batches_done
        self.restored = False
        self.at_epoch_start = False

    def __iter__(self) -> Any:
        if not self.restored:
            self.dataset.set_epoch(self.epoch())
        self.restored = False
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.dataset.epoch, "batches_done": int(self.batches_done())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)
        finished = int(state["batches_done"]) >= len(self.dataset)
        if finished:  # saved at the end of the epoch: go on with the next
            self.dataset.set_epoch(int(state["epoch"]) + 1)
        self.restored = True
        self.at_epoch_start = finished or int(state["batches_done"]) == 0
