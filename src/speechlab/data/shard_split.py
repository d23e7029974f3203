"""Split one epoch of a shard stream over DDP ranks and dataloader workers, balanced by seconds.

The epoch's shards, in their shuffled order, make one stream of utterances (those longer than
``max_duration`` left out). It is cut into ``world_size`` contiguous runs of about equal seconds,
one per rank, each of at least one utterance; each rank's run is cut into ``num_workers`` runs
the same way (a worker's may be empty when its rank has fewer utterances than workers). A run
is read as pieces, one per shard it touches: whole shards, except the shard a cut falls in,
whose two sides two ranks (or workers) read, each decoding only its own utterances. So every
rank's share is within about one utterance of the mean whatever the shard sizes (shards of
1,279 and 1 utterances give two ranks about 640 each), and at most
``world_size * num_workers - 1`` shards of an epoch are read by more than one reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from speechlab.data.shard_index import ShardIndex


@dataclass(frozen=True)
class Piece:
    """The utterances one reader takes from one shard: ``positions`` (ascending) within shard
    ``shard`` (its position in the index)."""

    shard: int
    positions: tuple[int, ...]


def balanced_cuts(seconds: np.ndarray, parts: int, nonempty: bool) -> list[int]:
    """Cut ``seconds`` (``(N,)``, in stream order) into ``parts`` contiguous runs of about equal
    sums: ``[0, c1, ..., N]``, run ``i`` being ``[cuts[i], cuts[i + 1])``.

    Each cut is the utterance boundary nearest to ``i / parts`` of the total; with ``nonempty``
    (which needs ``N >= parts``) cuts are moved apart so that every run holds an utterance.
    """
    count = len(seconds)
    cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(seconds, dtype=np.float64))])
    targets = cumulative[-1] * np.arange(1, parts) / parts
    above = np.searchsorted(cumulative, targets)  # first boundary at or past the target
    below = np.maximum(above - 1, 0)
    nearest = np.where(cumulative[above] - targets <= targets - cumulative[below], above, below)
    cuts = [0]
    for i, cut in enumerate(nearest.tolist(), start=1):
        low = cuts[-1] + (1 if nonempty else 0)
        high = count - (parts - i) if nonempty else count
        cuts.append(min(max(cut, low), high))
    cuts.append(count)
    return cuts


def _pieces(shards: np.ndarray, positions: np.ndarray) -> list[Piece]:
    """The consecutive runs of one shard in a run of the stream, as pieces."""
    if len(shards) == 0:
        return []
    starts = [0, *(np.flatnonzero(np.diff(shards)) + 1).tolist(), len(shards)]
    return [
        Piece(int(shards[a]), tuple(positions[a:b].tolist()))
        for a, b in zip(starts[:-1], starts[1:], strict=True)
    ]


def split_epoch(
    index: ShardIndex,
    order: Sequence[int],
    world_size: int,
    num_workers: int,
    max_duration: float | None = None,
) -> list[list[list[Piece]]]:
    """Each rank's and worker's pieces of the epoch whose shards are read in ``order``
    (positions in the index): ``result[rank][worker]``, in reading order. ``num_workers`` is
    the number of readers per rank (1 for a loader without worker processes).

    Raises:
        ValueError: fewer utterances (of at most ``max_duration`` seconds) than ranks: some rank
            would have nothing to train on.
    """
    shard_of, position_of, seconds = [], [], []
    for shard in order:
        durations = np.asarray(index.shards[shard].durations, dtype=np.float64)
        kept = np.arange(len(durations))
        if max_duration is not None:
            kept = kept[durations <= max_duration]
        shard_of.append(np.full(len(kept), shard, dtype=np.int64))
        position_of.append(kept)
        seconds.append(durations[kept])
    shard_of_all = np.concatenate(shard_of) if shard_of else np.zeros(0, np.int64)
    position_all = np.concatenate(position_of) if position_of else np.zeros(0, np.int64)
    seconds_all = np.concatenate(seconds) if seconds else np.zeros(0)
    if len(seconds_all) < world_size:
        longer = index.utterances - len(seconds_all)
        raise ValueError(
            f"the {len(index.shards)} shard(s) hold {len(seconds_all)} utterance(s) to train on"
            + (f" ({longer} more are longer than max_duration={max_duration}s)" if longer else "")
            + f", fewer than the {world_size} rank(s): every rank needs at least one. Shard more "
            "data (speechlab shard), raise data.max_duration, or train on fewer devices."
        )
    plan = []
    rank_cuts = balanced_cuts(seconds_all, world_size, nonempty=True)
    for first, end in zip(rank_cuts[:-1], rank_cuts[1:], strict=True):
        worker_cuts = balanced_cuts(seconds_all[first:end], num_workers, nonempty=False)
        plan.append(
            [
                _pieces(shard_of_all[first + a : first + b], position_all[first + a : first + b])
                for a, b in zip(worker_cuts[:-1], worker_cuts[1:], strict=True)
            ]
        )
    return plan
