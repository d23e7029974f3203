"""Padding efficiency of duration bucketing on a shard stream, next to the map-style sampler.

The stream (``ShardStreamDataset``) can only sort what its buffer holds: windows of
``buffer_size`` consecutive utterances of one shard. The map-style ``DurationBucketSampler``
sees the whole split. Both pack under the same rule (``max(duration) * len(batch) <=
batch_seconds``). The stream's figures are its epoch plans for every rank (2 ranks x 2 workers),
together with the batches left out to give the ranks equal counts and the utterances thereby
not seen in the epoch. Durations are synthetic (the distribution of ``data_pipeline.py``),
shuffled into shards of ``--shard-utterances`` as ``speechlab shard`` shuffles a split.

    .venv/bin/python benchmarks/shard_bucketing.py [--utterances 20000] [--batch-seconds 200]
        [--shard-utterances 1000] [--buffers 64 256 1000] [--epochs 5]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
from data_pipeline import DISTRIBUTION, common_voice_like

from speechlab.data.sampler import DurationBucketSampler, padding_efficiency
from speechlab.data.shard_index import ShardIndex, ShardInfo
from speechlab.data.shard_stream import buffer_batches, plan_epoch


def synthetic_index(durations: np.ndarray, shard_utterances: int) -> ShardIndex:
    """Shards of ``shard_utterances`` consecutive ``durations`` (seconds), the last one shorter."""
    shards = tuple(
        ShardInfo(f"shard-{i:06d}.tar", tuple(durations[start : start + shard_utterances]))
        for i, start in enumerate(range(0, len(durations), shard_utterances))
    )
    return ShardIndex(shards=shards)


def stream_epoch(
    index: ShardIndex,
    epoch: int,
    buffer_size: int,
    batch_seconds: float,
    world_size: int,
    num_workers: int,
) -> tuple[float, int, int, int]:
    """Padding efficiency over every rank's batches, batches per rank, batches left out and
    utterances not seen in ``epoch``."""
    offsets = np.cumsum([0] + [shard.utterances for shard in index.shards])
    flat = np.concatenate([np.asarray(shard.durations) for shard in index.shards])

    def batch(durations: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        return buffer_batches(durations, buffer_size, batch_seconds, None, rng)

    batches, dropped, per_rank = [], 0, []
    for rank in range(world_size):
        plan = plan_epoch(index, epoch, 0, rank, world_size, num_workers, batch)
        dropped += plan.dropped
        per_rank.append(len(plan))
        for worker in plan.workers:
            batches += [[int(offsets[shard]) + p for p in positions] for shard, positions in worker]
    assert len(set(per_rank)) == 1, per_rank
    unseen = len(flat) - sum(len(b) for b in batches)
    return padding_efficiency(flat, batches), per_rank[0], dropped, unseen


def benchmark(
    num_utterances: int,
    batch_seconds: float,
    shard_utterances: int,
    buffers: Sequence[int],
    epochs: int,
    world_size: int = 2,
    num_workers: int = 2,
) -> list[dict[str, Any]]:
    durations = common_voice_like(num_utterances, seed=0)
    rows = []
    sampler = DurationBucketSampler(durations, batch_seconds, num_buckets=50, seed=0)
    runs = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        runs.append(list(sampler))
    rows.append(
        {
            "batching": "map-style DurationBucketSampler, 50 buckets (default)",
            "efficiency": float(np.median([padding_efficiency(durations, b) for b in runs])),
            "batches": int(np.median([len(b) for b in runs])) // world_size,
            "dropped": 0,
            "unseen": 0,
        }
    )
    shuffled = durations[np.random.default_rng(0).permutation(num_utterances)]
    index = synthetic_index(shuffled, shard_utterances)
    for buffer_size in buffers:
        results = [
            stream_epoch(index, e, buffer_size, batch_seconds, world_size, num_workers)
            for e in range(epochs)
        ]
        efficiency, batches, dropped, unseen = (
            np.median(column) for column in zip(*results, strict=True)
        )
        rows.append(
            {
                "batching": f"stream, buffer {buffer_size} utterances",
                "efficiency": float(efficiency),
                "batches": int(batches),
                "dropped": float(dropped),
                "unseen": float(unseen),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=20000)
    parser.add_argument("--batch-seconds", type=float, default=200.0)
    parser.add_argument("--shard-utterances", type=int, default=1000)
    parser.add_argument("--buffers", type=int, nargs="+", default=[64, 256, 1000])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    rows = benchmark(
        args.utterances, args.batch_seconds, args.shard_utterances, args.buffers, args.epochs
    )
    print(
        f"{args.utterances} utterances, {DISTRIBUTION}; batch_seconds={args.batch_seconds:g}; "
        f"shards of {args.shard_utterances} utterances; 2 ranks x 2 workers; median over "
        f"{args.epochs} epochs\n"
    )
    print(
        "| batching | padding efficiency | batches/rank/epoch | batches left out | utterances unseen |"
    )
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['batching']} | {row['efficiency']:.4f} | {row['batches']} | "
            f"{row['dropped']:g} | {row['unseen']:g} |"
        )


if __name__ == "__main__":
    main()
