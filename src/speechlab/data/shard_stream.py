"""Stream tar shards (WebDataset's layout) as duration-bucketed batches, DDP- and worker-aware.

One epoch, on every rank and in every dataloader worker alike (all randomness comes from
``seed + epoch``):

1. The shard order is a permutation of the index's shards drawn from ``seed + epoch``.
2. The utterances of the shards in that order are cut into ``W`` contiguous runs of about
   equal seconds, one per rank, and each rank's run into one per dataloader worker
   (:func:`~speechlab.data.shard_split.split_epoch`): whatever the shard sizes, the ranks get
   the same seconds to within about an utterance. Readers are disjoint; a shard a cut falls in
   is read by the readers on both sides, each decoding only its own utterances.
3. Each reader's part of a shard is read in order through a buffer of ``buffer_size``
   utterances: the buffer is sorted by duration, packed into batches of at most
   ``batch_seconds`` padded seconds (:func:`~speechlab.data.sampler.pack_greedily`), and its
   batches are shuffled (``seed + epoch`` and the shard). Batches never span two shards, so a
   resumed epoch skips whole shards unread.
4. DDP needs every rank to run the same number of steps. The index lists every utterance's
   duration, so each worker plans the batches of every rank before it reads a byte. Ranks with
   fewer batches than the most split their largest batches until they have as many
   (:func:`~speechlab.data.sampler.split_counts`), so every utterance is seen once per epoch.
   Only when a rank has fewer utterances than another rank's batch count (a tiny epoch, or a
   few very long utterances against many short ones) do the other ranks leave out their
   surplus batches: counted in the plan, logged as a warning, and an error when they would
   hold more than ``max_dropped`` of the epoch's utterances (``data.shard_max_dropped``).

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
from speechlab.data.sampler import pack_greedily, split_batch, split_counts
from speechlab.data.shard_index import URL_SCHEMES, ShardIndex
from speechlab.data.shard_split import Piece, split_epoch
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
    left out on this rank so that every rank yields ``len(self)`` (see the module docstring);
    ``epoch_dropped_batches`` and ``epoch_dropped_utterances``: those left out on all ranks
    together, of the ``epoch_utterances`` the epoch's ranks were given.
    """

    workers: tuple[tuple[ShardBatch, ...], ...]
    dropped: int
    epoch_dropped_batches: int
    epoch_dropped_utterances: int
    epoch_utterances: int

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


def _piece_batches(
    index: ShardIndex,
    pieces: list[Piece],
    seed: int,
    epoch: int,
    batch: Callable[[np.ndarray, np.random.Generator], list[list[int]]],
) -> list[ShardBatch]:
    """The batches of one reader's pieces, in reading order."""
    batches: list[ShardBatch] = []
    for piece in pieces:
        positions = np.asarray(piece.positions)
        durations = np.asarray(index.shards[piece.shard].durations)[positions]
        rng = np.random.default_rng([seed, epoch, piece.shard, int(positions[0])])
        batches += [(piece.shard, positions[b].tolist()) for b in batch(durations, rng)]
    return batches


def _equalise(workers: list[list[ShardBatch]], target: int) -> tuple[int, int]:
    """Bring one rank's batches (per worker) to ``target``: split its largest batches when it
    has fewer, else leave out batches one at a time off the end of the worker with the most.
    Returns the batches and the utterances left out."""
    count = sum(len(batches) for batches in workers)
    if count < target:
        flat = [(k, batch) for k, batches in enumerate(workers) for batch in batches]
        pieces = split_counts([len(positions) for _, (_, positions) in flat], target)
        for batches in workers:
            batches.clear()
        for (k, (shard, positions)), n in zip(flat, pieces, strict=True):
            workers[k] += [(shard, piece) for piece in split_batch(positions, n)]
        return 0, 0
    utterances = 0
    for _ in range(count - target):
        longest = max(range(len(workers)), key=lambda k: (len(workers[k]), -k))
        utterances += len(workers[longest].pop()[1])
    return count - target, utterances


def plan_epoch(
    index: ShardIndex,
    epoch: int,
    seed: int,
    rank: int,
    world_size: int,
    num_workers: int,
    batch: Callable[[np.ndarray, np.random.Generator], list[list[int]]],
    max_duration: float | None = None,
    max_dropped: float | None = None,
) -> EpochPlan:
    """The :class:`EpochPlan` of ``rank`` for ``epoch``; ``batch(durations, rng)`` batches
    the utterances of one reader's part of a shard (``durations``: ``(n,)`` seconds; returns
    lists of indices into them; :func:`buffer_batches` with its options). Utterances longer
    than ``max_duration`` seconds are left out before the epoch is split.

    Raises:
        ValueError: fewer utterances than ranks (some rank would have nothing to train on), or
            equal batch counts would leave out more than ``max_dropped`` (a share, 0-1) of the
            epoch's utterances.
    """
    order = np.random.default_rng([seed, epoch]).permutation(len(index.shards)).tolist()
    ranks = [
        [_piece_batches(index, pieces, seed, epoch, batch) for pieces in readers]
        for readers in split_epoch(index, order, world_size, max(1, num_workers), max_duration)
    ]
    counts = [sum(len(batches) for batches in workers) for workers in ranks]
    sizes = [sum(len(b) for batches in workers for _, b in batches) for workers in ranks]
    target = min(max(counts), min(sizes))
    left_out = [_equalise(workers, target) for workers in ranks]
    dropped_batches = sum(batches for batches, _ in left_out)
    dropped_utterances = sum(utterances for _, utterances in left_out)
    total = sum(sizes)
    if max_dropped is not None and dropped_utterances > max_dropped * total:
        fewest = int(np.argmin(sizes))
        raise ValueError(
            f"epoch {epoch}: every rank must run the same number of batches, at most "
            f"{target} here (rank {fewest} has only {sizes[fewest]} utterance(s), against "
            f"{max(counts)} batches on another rank), which leaves out {dropped_batches} "
            f"batch(es) holding {dropped_utterances} of the epoch's {total} utterances "
            f"({dropped_utterances / total:.1%}), more than data.shard_max_dropped="
            f"{max_dropped:g} allows. Give each rank more utterances (more data, fewer "
            "devices) or make fewer, fuller batches (a larger data.batch_seconds); or raise "
            "data.shard_max_dropped to accept it."
        )
    return EpochPlan(
        workers=tuple(tuple(batches) for batches in ranks[rank]),
        dropped=left_out[rank][0],
        epoch_dropped_batches=dropped_batches,
        epoch_dropped_utterances=dropped_utterances,
        epoch_utterances=total,
    )


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
        max_dropped: the share (0-1) of an epoch's utterances that equal batch counts per rank
            may leave out before planning the epoch is an error; ``None``: no limit.

    Raises:
        ValueError: a rank outside ``[0, world_size)``, ``buffer_size < 1`` or
            ``batch_seconds <= 0``; when an epoch is planned (``len()``, iterating), fewer
            utterances than ranks or more left out than ``max_dropped``
            (:func:`plan_epoch`); when iterated, a loader with another ``num_workers``.
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
        max_dropped: float | None = None,
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
        self.max_dropped = max_dropped
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

    def plan(self, epoch: int | None = None) -> EpochPlan:
        """This rank's :class:`EpochPlan` of ``epoch`` (default: the current one), kept for the
        last epochs asked. Rank 0's main process logs a warning when it leaves batches out."""
        epoch = self.epoch if epoch is None else epoch
        if epoch not in self._plans:
            if len(self._plans) > 2:
                self._plans.clear()
            plan = plan_epoch(
                self.index,
                epoch,
                self.seed,
                self.rank,
                self.world_size,
                self.num_workers,
                self._batch,
                max_duration=self.max_duration,
                max_dropped=self.max_dropped,
            )
            self._plans[epoch] = plan
            if plan.epoch_dropped_batches and self.rank == 0 and get_worker_info() is None:
                log.warning(
                    "epoch %d: %d batch(es) holding %d of %d utterances (%.1f %%) left out so "
                    "that each of the %d ranks runs %d batches",
                    epoch,
                    plan.epoch_dropped_batches,
                    plan.epoch_dropped_utterances,
                    plan.epoch_utterances,
                    100 * plan.epoch_dropped_utterances / plan.epoch_utterances,
                    self.world_size,
                    len(plan),
                )
        return self._plans[epoch]

    def epoch_summary(self, epoch: int) -> dict[str, int]:
        """What ``epoch`` trains on over all ranks, for the run record: ``batches`` (per rank),
        ``utterances`` (given to the ranks), ``dropped_batches`` and ``dropped_utterances``
        (left out to give the ranks equal batch counts)."""
        plan = self.plan(epoch)
        return {
            "batches": len(plan),
            "utterances": plan.epoch_utterances,
            "dropped_batches": plan.epoch_dropped_batches,
            "dropped_utterances": plan.epoch_dropped_utterances,
        }

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
