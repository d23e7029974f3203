"""Stream tar shards (WebDataset's layout) as duration-bucketed batches, DDP- and worker-aware.

One epoch, on every rank and in every dataloader worker alike (all randomness comes from
``seed + epoch``):

1. The shard order is a permutation of the index's shards drawn from ``seed + epoch``.
2. Rank ``r`` of ``W`` takes shards ``r, r + W, ...`` of that order; its dataloader worker ``k``
   of ``K`` takes every ``K``-th of those. Shards are disjoint across ranks and workers.
3. Each shard is read in order through a buffer of ``buffer_size`` utterances: the buffer is
   sorted by duration, packed into batches of at most ``batch_seconds`` padded seconds
   (:func:`~speechlab.data.sampler.pack_greedily`), and its batches are shuffled
   (``seed + epoch`` and the shard). Batches never span two shards, so a resumed epoch skips
   whole shards unread.
4. DDP needs every rank to run the same number of steps. The index lists every utterance's
   duration, so each worker plans the batches of every rank before it reads a byte; each rank
   then yields the smallest rank's count, leaving out the surplus batches of the others (from
   its workers with the most batches). Every utterance is seen exactly once per epoch when the
   ranks' plans come out equal (shards of equal durations, a shard count divisible by ``W``);
   otherwise the left-out batches (``plan.dropped``, logged) are not seen that epoch, and the
   next epoch's reshuffle leaves out others.

Unreadable audio, a target the task cannot learn, or a shard that breaks off mid-stream each
yields a :class:`~speechlab.data.dataset.SkippedExample` in its batch slot (the collate drops
and reports it), so the planned batch count always holds.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.gopen import gopen
from webdataset.tariterators import group_by_keys, tar_file_iterator

from speechlab.audio.io import AudioError, read_audio_bytes
from speechlab.data.dataset import Example, SkippedExample
from speechlab.data.sampler import pack_greedily
from speechlab.data.shard_index import URL_SCHEMES, ShardIndex
from speechlab.data.utterance import Utterance

log = logging.getLogger(__name__)

# A batch: (shard position in the index, utterance positions within that shard).
ShardBatch = tuple[int, list[int]]


def buffer_batches(
    durations: np.ndarray,
    buffer_size: int,
    batch_seconds: float,
    max_batch_size: int | None,
    rng: np.random.Generator,
    max_duration: float | None = None,
) -> list[list[int]]:
    """Batches of positions ``0..len(durations)-1`` formed through a buffer, in stream order.

    Consecutive windows of ``buffer_size`` utterances are each sorted by duration, packed
    greedily into batches with ``max(duration) * len(batch) <= batch_seconds`` (seconds) and at
    most ``max_batch_size`` utterances, and shuffled with ``rng``. Utterances longer than
    ``max_duration`` seconds are left out. ``durations``: ``(N,)`` seconds.
    """
    durations = np.asarray(durations, dtype=np.float64)
    batches: list[list[int]] = []
    for start in range(0, len(durations), buffer_size):
        window = np.arange(start, min(start + buffer_size, len(durations)))
        if max_duration is not None:
            window = window[durations[window] <= max_duration]
        if len(window) == 0:
            continue
        order = window[np.argsort(durations[window], kind="stable")]
        packed = pack_greedily(durations, order, batch_seconds, max_batch_size)
        batches += [packed[i] for i in rng.permutation(len(packed)).tolist()]
    return batches


@dataclass(frozen=True)
class EpochPlan:
    """The batches of one rank's dataloader workers for one epoch.

    ``workers[k]``: worker ``k``'s batches in the order it yields them; ``dropped``: batches
    left out on this rank so that every rank yields ``len(self)`` (see the module docstring).
    """

    workers: tuple[tuple[ShardBatch, ...], ...]
    dropped: int

    def __len__(self) -> int:
        return sum(len(batches) for batches in self.workers)

    def remaining(self, batches_done: int) -> tuple[tuple[ShardBatch, ...], ...]:
        """What each worker of a fresh loader yields to continue the epoch after its first
        ``batches_done`` batches, in the same order.

        A :class:`~torch.utils.data.DataLoader` takes one batch from each worker in turn,
        passing over workers that have ended, and a fresh one starts at worker 0; so worker
        ``j`` takes over the rest of the worker that was ``j`` turns after the last one served.
        """
        workers = len(self.workers)
        done = [0] * workers
        turn, left = 0, min(batches_done, len(self))
        while left:
            if done[turn] < len(self.workers[turn]):
                done[turn] += 1
                left -= 1
            turn = (turn + 1) % workers
        rest = [self.workers[k][done[k] :] for k in range(workers)]
        return tuple(rest[(turn + j) % workers] for j in range(workers))


def plan_epoch(
    index: ShardIndex,
    epoch: int,
    seed: int,
    rank: int,
    world_size: int,
    num_workers: int,
    batch: Callable[[np.ndarray, np.random.Generator], list[list[int]]],
) -> EpochPlan:
    """The :class:`EpochPlan` of ``rank`` for ``epoch``; ``batch(durations, rng)`` batches the
    utterances of one shard (:func:`buffer_batches` with its options).

    Raises:
        ValueError: fewer shards than ranks (some rank would have nothing to train on).
    """
    shards = len(index.shards)
    if shards < world_size:
        raise ValueError(
            f"{shards} shard(s) cannot be split across {world_size} ranks: every rank needs at "
            "least one. Write smaller shards (speechlab shard --shard-seconds ...)."
        )
    order = np.random.default_rng([seed, epoch]).permutation(shards).tolist()
    workers = max(1, num_workers)

    def slot_batches(r: int, k: int) -> list[ShardBatch]:
        batches: list[ShardBatch] = []
        for shard in order[r::world_size][k::workers]:
            rng = np.random.default_rng([seed, epoch, shard])
            durations = np.asarray(index.shards[shard].durations)
            batches += [(shard, positions) for positions in batch(durations, rng)]
        return batches

    mine = [slot_batches(rank, k) for k in range(workers)]
    counts = [
        sum(len(slot_batches(r, k)) for k in range(workers)) if r != rank else 0
        for r in range(world_size)
    ]
    counts[rank] = sum(len(batches) for batches in mine)
    surplus = counts[rank] - min(counts)
    dropped = surplus
    while surplus:  # one batch at a time off the end of the worker with the most
        longest = max(range(workers), key=lambda k: (len(mine[k]), -k))
        mine[longest].pop()
        surplus -= 1
    return EpochPlan(workers=tuple(tuple(batches) for batches in mine), dropped=dropped)


def open_shard(url: str, timeout: float) -> IO[bytes]:
    """A binary stream of the shard at ``url``: a local path, an http(s) URL (read with the
    standard library, no ``curl`` needed) or any other URL WebDataset's ``gopen`` takes
    (``pipe:...``). Raises OSError (``urllib.error.URLError`` is one) when it cannot be opened."""
    if url.startswith(URL_SCHEMES):
        return urllib.request.urlopen(url, timeout=timeout)
    if "://" in url or url.startswith("pipe:"):
        return gopen(url, "rb")
    return open(url, "rb")


class ShardStreamDataset(IterableDataset):
    """Batches of :class:`~speechlab.data.dataset.Example` streamed from the shards of ``index``.

    Each item is one batch: a list of ``Example`` (``audio`` ``(T,)`` float32 at
    ``sample_rate`` Hz, decoded with soundfile as :class:`~speechlab.data.dataset.SpeechDataset`
    does) and ``SkippedExample``; use it with ``DataLoader(batch_size=None,
    collate_fn=collate_examples, num_workers=num_workers)``. Call :meth:`set_epoch` before each
    epoch (the loader's workers must not be persistent, so they see it). ``len()`` is the
    number of batches of the epoch, the same on every rank.

    Args:
        index: the split's shards (:func:`~speechlab.data.shard_index.load_shard_index`).
        sample_rate: rate every clip is resampled to (Hz).
        target, source: as for ``SpeechDataset``; a target with a ``problem(utterance)`` method
            (``ClassLabels``, ``TokenTargets``) turns what it rejects into skipped examples.
        batch_seconds: padded seconds of audio per batch.
        buffer_size: utterances sorted together before packing (the bucketing window).
        max_batch_size: optional cap on utterances per batch.
        max_duration: utterances longer than this (seconds) are left out; ``None`` keeps all.
        seed: the shuffles depend on ``seed`` and the epoch only.
        rank, world_size: this process's DDP rank and the number of ranks.
        num_workers: the worker processes of the loader that iterates it (0: none); a loader
            with another count is an error, since the plan splits shards by it.
        timeout: seconds to wait on a shard's server.
        check: optional ``check(num_samples, target) -> reason or None`` (a task's
            admissibility test, e.g. enough frames for CTC); a rejected example is skipped.

    Raises:
        ValueError: a rank outside ``[0, world_size)``, ``buffer_size < 1`` or
            ``batch_seconds <= 0``; when iterated, a loader with another ``num_workers``.
    """

    def __init__(
        self,
        index: ShardIndex,
        sample_rate: int,
        target: Callable[[Utterance], torch.Tensor],
        batch_seconds: float,
        buffer_size: int,
        source: Callable[[Utterance], torch.Tensor] | None = None,
        max_batch_size: int | None = None,
        max_duration: float | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 0,
        timeout: float = 60.0,
        check: Callable[[int, torch.Tensor], str | None] | None = None,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if buffer_size < 1 or batch_seconds <= 0:
            raise ValueError(
                f"buffer_size must be >= 1 and batch_seconds > 0, got {buffer_size}, "
                f"{batch_seconds}"
            )
        self.index = index
        self.sample_rate = sample_rate
        self.target = target
        self.source = source
        self.batch_seconds = batch_seconds
        self.buffer_size = buffer_size
        self.max_batch_size = max_batch_size
        self.max_duration = max_duration
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.timeout = timeout
        self.check = check
        self._plans: dict[int, EpochPlan] = {}
        self.epoch = 0
        self.batches_done = 0  # batches of this epoch already trained on (resume)

    # -- epochs and resume ---------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch."""
        self.epoch = epoch
        self.batches_done = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue ``state["epoch"]`` after its first ``state["batches_done"]`` batches: shards
        whose batches were all trained on are not read again, and the done batches of a shard
        begun are passed over without decoding."""
        self.epoch = int(state["epoch"])
        self.batches_done = int(state["batches_done"])

    def plan(self) -> EpochPlan:
        """This rank's :class:`EpochPlan` of the current epoch (kept for the last epochs asked)."""
        if self.epoch not in self._plans:
            if len(self._plans) > 2:
                self._plans.clear()
            self._plans[self.epoch] = plan_epoch(
                self.index,
                self.epoch,
                self.seed,
                self.rank,
                self.world_size,
                self.num_workers,
                self._batch,
            )
        return self._plans[self.epoch]

    def __len__(self) -> int:
        """Batches of the current epoch on this rank (the same on every rank), including those
        a resumed epoch skips: Lightning counts a resumed epoch's batches from its start."""
        return len(self.plan())

    def _batch(self, durations: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        return buffer_batches(
            durations,
            self.buffer_size,
            self.batch_seconds,
            self.max_batch_size,
            rng,
            self.max_duration,
        )

    # -- reading -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[list[Example | SkippedExample]]:
        info = get_worker_info()
        worker, workers = (0, 0) if info is None else (info.id, info.num_workers)
        if workers != self.num_workers:
            raise ValueError(
                f"this shard stream was planned for num_workers={self.num_workers} but is read "
                f"by a loader with {workers}; pass the loader's num_workers to it"
            )
        plan = self.plan()
        if plan.dropped and worker == 0:
            log.info(
                "epoch %d, rank %d: %d batch(es) left out to match the other ranks' count",
                self.epoch,
                self.rank,
                plan.dropped,
            )
        batches = plan.remaining(self.batches_done)[worker]
        shard_order: list[int] = []
        by_shard: dict[int, list[list[int]]] = {}
        for shard, positions in batches:
            if shard not in by_shard:
                shard_order.append(shard)
                by_shard[shard] = []
            by_shard[shard].append(positions)
        for shard in shard_order:
            yield from self._shard_batches(shard, by_shard[shard])

    def _shard_batches(
        self, shard: int, batches: list[list[int]]
    ) -> Iterator[list[Example | SkippedExample]]:
        """Read shard ``shard`` once, yielding ``batches`` (positions within it) in order as
        soon as all their utterances have been read; only what a batch holds is decoded."""
        url = self.index.shards[shard].url
        wanted = {position for batch in batches for position in batch}
        samples: dict[int, dict[str, Any]] = {}
        pending = list(batches)
        failure = None
        try:
            with open_shard(url, self.timeout) as stream:
                files = ({**f, "__url__": url} for f in tar_file_iterator(stream))
                for position, sample in enumerate(group_by_keys(files)):
                    if position in wanted:
                        samples[position] = sample
                    while pending and all(p in samples for p in pending[0]):
                        yield [self._example(url, samples.pop(p)) for p in pending.pop(0)]
                    if not pending:
                        return
        except Exception as error:  # a broken shard or connection: its rest is skipped
            failure = f"shard unreadable: {type(error).__name__}: {error}"
            log.warning("%s: %s", url, failure)
        reason = failure or "shard ended before this utterance (fewer than its index lists)"
        for batch in pending:
            yield [
                self._example(url, samples.pop(p))
                if p in samples
                else SkippedExample(f"{url}#{p}", f"{url}#{p}", reason)  # one per utterance
                for p in batch
            ]

    def _example(self, url: str, sample: dict[str, Any]) -> Example | SkippedExample:
        key = sample["__key__"]
        where = f"{url}#{key}"
        try:
            record = json.loads(sample["json"])
            data = sample[record["audio"]]
            utterance = Utterance(
                id=record["id"],
                audio_path=where,
                duration=float(record["duration"]),
                sample_rate=int(record["sample_rate"]),
                text=record.get("text"),
                translation=record.get("translation"),
                label=record.get("label"),
                speaker=record.get("speaker"),
                language=record.get("language"),
            )
        except (KeyError, TypeError, ValueError) as error:
            return SkippedExample(key, where, f"malformed shard record: {error!r}")
        problem = getattr(self.target, "problem", None)
        reason = problem(utterance) if problem is not None else None
        if reason is None and self.source is not None and hasattr(self.source, "problem"):
            reason = self.source.problem(utterance)
        if reason is not None:
            return SkippedExample(utterance.id, where, reason)
        try:
            audio = read_audio_bytes(data, self.sample_rate, 0.0, utterance.duration)
        except AudioError as error:
            return SkippedExample(utterance.id, where, str(error))
        target = self.target(utterance)
        reason = self.check(audio.numel(), target) if self.check is not None else None
        if reason is not None:
            return SkippedExample(utterance.id, where, reason)
        source = self.source(utterance) if self.source is not None else None
        return Example(utterance.id, audio, target, source)
