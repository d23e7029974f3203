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
    Whether the saved epoch was finished is the training loop's to say (``limit_train_batches``
    or ``max_steps`` end an epoch before the sampler runs out): :meth:`resume_epoch` takes the
    epoch the loop resumes.

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
        self._restored: tuple[int, int] | None = None  # (epoch, batches done) of a checkpoint

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.batch_sampler.epoch, "batches_yielded": int(self.batches_done())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batch_sampler.load_state_dict(state)
        self._restored = (int(state["epoch"]), int(state["batches_yielded"]))
        if len(self.batch_sampler) == 0:  # the whole epoch was done: go on with the next
            self.batch_sampler.set_epoch(state["epoch"] + 1)

    def resume_epoch(self, epoch: int) -> bool | None:
        """Make the next iterator yield the training loop's ``epoch``: after the batches a
        restored state says were done if it was saved in that epoch, else from its first batch.

        Returns whether that iterator starts at the epoch's first batch; None (and nothing
        changes) when no state was restored.

        Raises:
            ValueError: the restored state is of a later epoch than ``epoch``.
        """
        if self._restored is None:
            return None
        skip = batches_to_skip(self._restored, epoch)
        self._restored = None
        self.batch_sampler.load_state_dict({"epoch": epoch, "batches_yielded": skip})
        return skip == 0


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
        self._restored: tuple[int, int] | None = None  # (epoch, batches done) of a checkpoint

    def __iter__(self) -> Any:
        if not self.restored:
            self.dataset.set_epoch(self.epoch())
        self.restored = False
        return super().__iter__()

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.dataset.epoch, "batches_done": int(self.batches_done())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state)
        self._restored = (int(state["epoch"]), int(state["batches_done"]))
        if int(state["batches_done"]) >= len(self.dataset):  # the whole epoch was done
            self.dataset.set_epoch(int(state["epoch"]) + 1)
        self.restored = True

    def resume_epoch(self, epoch: int) -> bool | None:
        """As :meth:`ResumableDataLoader.resume_epoch`: the next iterator streams the training
        loop's ``epoch``, after the restored state's done batches if it was saved in it."""
        if self._restored is None:
            return None
        skip = batches_to_skip(self._restored, epoch)
        self._restored = None
        self.dataset.load_state_dict({"epoch": epoch, "batches_done": skip})
        self.restored = True
        return skip == 0


def batches_to_skip(restored: tuple[int, int], epoch: int) -> int:
    """Batches of the training loop's ``epoch`` a resumed iterator passes over: those a state
    saved in ``epoch`` says were done, none if it was saved in an earlier (finished) epoch.

    Raises:
        ValueError: ``restored`` is of a later epoch than ``epoch``.
    """
    saved_epoch, done = restored
    if saved_epoch > epoch:
        raise ValueError(
            f"the checkpoint's train loader is in epoch {saved_epoch} but its training loop "
            f"resumes epoch {epoch}; the file mixes two runs' states. Resume from a last.ckpt "
            "written by one run (ckpt_path=last)."
        )
    return done if saved_epoch == epoch else 0
