"""Duration-bucketing batch sampler: batches bounded by padded audio seconds, DDP-safe, resumable.

A batch costs what the padded tensor costs, ``max(duration) * len(batch)`` seconds of audio, so
utterances of similar length are batched together. Every rank builds the same plan for an epoch
(all randomness comes from ``seed + epoch``) and keeps every ``num_replicas``-th batch of it, so
each utterance is seen exactly once per epoch and every rank gets the same number of batches.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch.utils.data


def pack_greedily(
    durations: np.ndarray,
    order: Sequence[int] | np.ndarray,
    batch_seconds: float,
    max_batch_size: int | None = None,
) -> list[list[int]]:
    """Cut ``order`` into consecutive batches with ``max(duration) * len(batch) <= batch_seconds``.

    A batch is closed as soon as the next utterance would break the bound (or ``max_batch_size``),
    so an utterance longer than ``batch_seconds`` ends up alone in its batch.

    Vectorised per batch: a batch starting with an utterance of ``d`` seconds holds at most
    ``batch_seconds // d`` utterances, so its end is found with numpy in a window of that many
    (a running maximum times the running count), one step per batch rather than per utterance.
    """
    indices = np.asarray(order, dtype=np.int64).reshape(-1)
    seconds = np.asarray(durations, dtype=np.float64)[indices]
    cap = len(indices) if max_batch_size is None else max_batch_size
    cuts = [0]
    start = 0
    while start < len(indices):
        first = seconds[start]
        room = int(batch_seconds // first) + 1 if first <= batch_seconds else 1
        window = seconds[start : start + min(room, cap)]
        counts = np.arange(1, len(window) + 1)
        fits = counts * np.maximum.accumulate(window) <= batch_seconds
        size = max(1, len(window) if fits.all() else int(fits.argmin()))
        start += size
        cuts.append(start)
    bounds = np.asarray(cuts)
    flat = indices.tolist()
    return [flat[a:b] for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)]


def padding_efficiency(
    durations: Sequence[float] | np.ndarray, batches: Sequence[Sequence[int]]
) -> float:
    """Real seconds over padded seconds (sum over batches of ``max * len``); 1.0 is no padding."""
    if not batches or any(len(batch) == 0 for batch in batches):
        raise ValueError(
            "padding_efficiency needs a non-empty list of non-empty batches of indices."
        )
    seconds = np.asarray(durations, dtype=np.float64)
    real = sum(float(seconds[list(batch)].sum()) for batch in batches)
    padded = sum(float(seconds[list(batch)].max()) * len(batch) for batch in batches)
    return real / padded if padded > 0 else 1.0


def _audio_quantile_buckets(
    durations: np.ndarray, indices: np.ndarray, count: int
) -> list[np.ndarray]:
    """Split ``indices``, sorted by duration, at duration quantiles weighted by duration.

    Each bucket holds about the same seconds of audio, which keeps the sparse long tail (where
    padding costs the most) in narrower buckets than equal-count quantiles would. A cut never
    falls between two equal durations: utterances of the same length share a bucket, so a
    corpus of equal-length clips (Speech Commands) is one bucket, and batches mix its classes
    instead of following the manifest order.
    """
    order = indices[np.argsort(durations[indices], kind="stable")]
    sorted_durations = durations[order]
    cumulative = np.cumsum(sorted_durations)
    cuts = np.searchsorted(cumulative, cumulative[-1] * np.arange(1, count) / count)
    # Move each cut to the first utterance of its duration; drop cuts that become duplicates.
    cuts = np.searchsorted(sorted_durations, sorted_durations[np.minimum(cuts, len(order) - 1)])
    cuts = np.unique(cuts[(cuts > 0) & (cuts < len(order))])
    return [bucket for bucket in np.split(order, cuts) if len(bucket)]


def split_counts(sizes: Sequence[int], target: int) -> list[int]:
    """Into how many pieces to cut each of batches of ``sizes`` utterances so that there are
    ``target`` batches: always the batch whose pieces are largest is cut once more.

    Raises:
        ValueError: ``target`` is below ``len(sizes)`` or above ``sum(sizes)`` (no batch of
            one utterance can be cut).
    """
    if not len(sizes) <= target <= sum(sizes):
        raise ValueError(
            f"cannot cut {len(sizes)} batches of {sum(sizes)} utterances into {target}"
        )
    pieces = [1] * len(sizes)
    heap = [(-size, i) for i, size in enumerate(sizes)]
    heapq.heapify(heap)
    for _ in range(target - len(sizes)):
        _, i = heapq.heappop(heap)
        pieces[i] += 1
        heapq.heappush(heap, (-math.ceil(sizes[i] / pieces[i]), i))
    return pieces


def split_batch(batch: list[int], count: int) -> list[list[int]]:
    """``batch`` cut into ``count`` consecutive pieces, as ``np.array_split`` cuts (the first
    ``len(batch) % count`` one longer)."""
    size, longer = divmod(len(batch), count)
    out, start = [], 0
    for piece in range(count):
        stop = start + size + (piece < longer)
        out.append(batch[start:stop])
        start = stop
    return out


def _split_largest(batches: list[list[int]], target: int) -> list[list[int]]:
    """Split the largest batches until there are ``target``; pieces stay where their batch was."""
    counts = split_counts([len(batch) for batch in batches], target)
    return [
        piece for batch, n in zip(batches, counts, strict=True) for piece in split_batch(batch, n)
    ]


class DurationBucketSampler(torch.utils.data.Sampler[list[int]]):
    """Yield lists of dataset indices whose padded audio fits in ``batch_seconds``.

    With ``shuffle``, utterances are grouped into up to ``num_buckets`` duration buckets (each
    about the same seconds of audio; fewer for a small dataset), shuffled within each bucket and
    packed greedily, and the batches are shuffled. The batch count is the same every epoch (the
    largest batches are split up to a bound fixed at construction), so a ``len`` read once by a
    trainer stays right. Without ``shuffle``, batches follow ascending duration and are as few as
    the bound allows. An utterance longer than ``batch_seconds`` is a batch of its own;
    ``max_batch_size`` caps the utterances in a batch.

    For DDP, pass ``num_replicas`` and ``rank``: after the largest batches are split until the
    count divides evenly, the ranks take, at each step, batches of about the same padded length
    (consecutive in length order), so no rank waits on another's longer batch more than the
    bucketing makes necessary. Call ``set_epoch`` before each epoch: the order depends on
    ``seed + epoch`` only, so it is the same on every rank and every run.
    """

    def __init__(
        self,
        durations: Sequence[float],
        batch_seconds: float,
        num_buckets: int = 50,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        max_batch_size: int | None = None,
    ) -> None:
        seconds = np.asarray(durations, dtype=np.float64)
        _check_durations(seconds)
        if not (math.isfinite(batch_seconds) and batch_seconds > 0):
            raise ValueError(
                f"batch_seconds must be a positive number of seconds, got {batch_seconds}."
            )
        _check_int("num_buckets", num_buckets, minimum=1)
        _check_int("seed", seed, minimum=0)
        _check_int("num_replicas", num_replicas, minimum=1)
        _check_int("rank", rank, minimum=0)
        if rank >= num_replicas:
            raise ValueError(
                f"rank must be in [0, num_replicas={num_replicas}), got {rank}; pass the "
                "trainer's global_rank and world_size."
            )
        if max_batch_size is not None:
            _check_int("max_batch_size", max_batch_size, minimum=1)
        if len(seconds) < num_replicas:
            raise ValueError(
                f"{len(seconds)} utterances cannot give each of {num_replicas} ranks a batch "
                "without duplicating some; use fewer devices or a larger dataset."
            )
        self.durations = seconds
        self.batch_seconds = float(batch_seconds)
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.max_batch_size = max_batch_size
        self.epoch = 0
        self._long = np.flatnonzero(seconds > batch_seconds)
        regular = np.flatnonzero(seconds <= batch_seconds)
        count = 0
        if len(regular):
            by_audio = int(seconds[regular].sum() // batch_seconds)
            count = max(1, min(num_buckets, by_audio))
        self._buckets = _audio_quantile_buckets(seconds, regular, count) if count else []
        self._min_batches = self._fixed_batch_count() if shuffle else 0
        self._plan: tuple[int, list[list[int]]] | None = None
        self._skip = 0
        self._yielded = 0

    @property
    def sampler(self) -> DurationBucketSampler:
        """This sampler: Lightning calls ``set_epoch`` on ``batch_sampler.sampler`` only."""
        return self

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch the next ``__iter__`` yields; drops a pending resume of another."""
        _check_int("epoch", epoch, minimum=0)
        if epoch != self.epoch:
            self._skip = 0
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._rank_batches()
        start, self._skip = self._skip, 0
        self._yielded = start
        return self._iterate(batches, start)

    def __len__(self) -> int:
        return len(self._rank_batches()) - self._skip

    def state_dict(self) -> dict[str, int]:
        """The epoch and how many batches of it this rank has yielded so far."""
        return {"epoch": self.epoch, "batches_yielded": self._yielded}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: the next ``__iter__`` (once) skips the batches of ``epoch`` already yielded."""
        missing = {"epoch", "batches_yielded"} - set(state)
        if missing:
            raise ValueError(
                f"sampler state lacks {sorted(missing)}; expected what state_dict() returns."
            )
        _check_int("epoch", state["epoch"], minimum=0)
        _check_int("batches_yielded", state["batches_yielded"], minimum=0)
        self.epoch = state["epoch"]
        self._skip = 0
        total = len(self._rank_batches())
        if state["batches_yielded"] > total:
            raise ValueError(
                f"sampler state says {state['batches_yielded']} batches were yielded in epoch "
                f"{self.epoch}, but this rank has only {total}; the state comes from another "
                "dataset or sampler configuration."
            )
        self._skip = state["batches_yielded"]
        self._yielded = self._skip

    def _iterate(self, batches: list[list[int]], start: int) -> Iterator[list[int]]:
        for batch in batches[start:]:
            self._yielded += 1
            yield list(batch)

    def _rank_batches(self) -> list[list[int]]:
        if self._plan is None or self._plan[0] != self.epoch:
            self._plan = (self.epoch, self._global_batches()[self.rank :: self.num_replicas])
        return self._plan[1]

    def _global_batches(self) -> list[list[int]]:
        """The epoch's batches, the same on every rank, their count a multiple of num_replicas."""
        rng = np.random.default_rng(self.seed + self.epoch)
        batches = self._shuffled_batches(rng) if self.shuffle else self._fewest_batches()
        target = max(self._min_batches, self._round_up(len(batches)))
        if target > len(self.durations) and self.shuffle:
            batches = self._fewest_batches()  # a tiny epoch that shuffled packing cannot even out
            target = self._round_up(len(batches))
        if target > len(self.durations):
            raise ValueError(
                f"cannot give {self.num_replicas} ranks the same number of batches: the "
                f"{len(self.durations)} utterances fill at least {len(batches)} batches of "
                f"batch_seconds={self.batch_seconds}, and the next multiple of "
                f"{self.num_replicas} is more than one utterance per batch; raise batch_seconds "
                "or use fewer devices."
            )
        batches = _split_largest(batches, target)
        if not self.shuffle:
            return batches
        if self.num_replicas == 1:
            return [batches[i] for i in rng.permutation(len(batches))]
        return [batches[i] for i in self._rank_groups(batches, rng).reshape(-1)]

    def _rank_groups(self, batches: list[list[int]], rng: np.random.Generator) -> np.ndarray:
        """``(steps, num_replicas)`` batch indices: the batches the ranks take at each step.

        Under DDP every rank waits at each step for the slowest, so a step's batches should
        cost alike. Batches are ordered by their longest utterance (the padded length, which
        sets the cost of a batch of about ``batch_seconds``; then by padded seconds), cut into
        consecutive groups of ``num_replicas``, and the groups shuffled; within a group the
        ranks' order is shuffled too.
        """
        longest = np.array([self.durations[b].max() for b in batches])
        padded = longest * np.array([len(b) for b in batches])
        groups = np.lexsort((padded, longest)).reshape(-1, self.num_replicas)
        groups = groups[rng.permutation(len(groups))]
        return rng.permuted(groups, axis=1)

    def _shuffled_batches(self, rng: np.random.Generator) -> list[list[int]]:
        batches = [[int(i)] for i in self._long]
        for bucket in self._buckets:
            order = rng.permutation(bucket)
            batches += pack_greedily(self.durations, order, self.batch_seconds, self.max_batch_size)
        return batches

    def _fewest_batches(self) -> list[list[int]]:
        """Batches in ascending duration order, as few as the bound allows.

        Packing from the longest utterance down fills each batch with as many of the longest
        remaining utterances as fit, which no other packing beats in batch count.
        """
        longest_first = np.argsort(-self.durations, kind="stable")
        batches = pack_greedily(
            self.durations, longest_first, self.batch_seconds, self.max_batch_size
        )
        return [batch[::-1] for batch in reversed(batches)]

    def _round_up(self, count: int) -> int:
        return -(-count // self.num_replicas) * self.num_replicas

    def _fixed_batch_count(self) -> int:
        """A batch count no shuffled epoch exceeds, rounded up to a multiple of num_replicas.

        Greedy packing closes a batch only once it holds ``batch_seconds // bucket max``
        utterances (or ``max_batch_size``), which bounds each bucket's count. 0 when the bound
        exceeds the number of utterances: the count then varies by epoch.
        """
        bound = len(self._long)
        for bucket in self._buckets:
            per_batch = int(self.batch_seconds // self.durations[bucket].max())
            if self.max_batch_size is not None:
                per_batch = min(per_batch, self.max_batch_size)
            bound += -(-len(bucket) // max(1, per_batch))
        bound = self._round_up(bound)
        return bound if bound <= len(self.durations) else 0


def _check_durations(seconds: np.ndarray) -> None:
    if seconds.ndim != 1 or len(seconds) == 0:
        raise ValueError(
            f"durations must be a non-empty 1-D sequence of seconds, got shape {seconds.shape}."
        )
    bad = np.flatnonzero(~np.isfinite(seconds) | (seconds <= 0))
    if len(bad):
        raise ValueError(
            f"durations must be positive and finite; index {bad[0]} is {seconds[bad[0]]} "
            f"({len(bad)} such). Drop empty or unreadable utterances from the manifest."
        )


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
