"""Data-pipeline benchmarks.

Padding: how much of each padded batch is real audio, for the duration-bucketing sampler against
random batching under the same ``batch_seconds`` rule (``max(duration) * len(batch)``).

    .venv/bin/python benchmarks/data_pipeline.py [--utterances 20000] [--batch-seconds 200]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from speechlab.data.sampler import DurationBucketSampler, pack_greedily, padding_efficiency

DISTRIBUTION = (
    "Common-Voice-like: lognormal, median 5.0 s, sigma 0.4 (5-95 %: 2.6-9.7 s), clipped to 1-15 s"
)


def common_voice_like(num_utterances: int, seed: int) -> np.ndarray:
    """Clip durations in seconds drawn as ``DISTRIBUTION`` says."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(math.log(5.0), 0.4, num_utterances), 1.0, 15.0)


def padding_benchmark(
    num_utterances: int = 20000,
    batch_seconds: float = 200.0,
    seed: int = 0,
    num_buckets: Sequence[int] = (10, 30, 50, 100),
    epochs: int = 5,
) -> dict[str, Any]:
    """Median padding efficiency and batch count over ``epochs`` epochs; prints a markdown table."""
    durations = common_voice_like(num_utterances, seed)
    rows = []
    for buckets in num_buckets:
        sampler = DurationBucketSampler(durations, batch_seconds, num_buckets=buckets, seed=seed)
        runs = []
        for epoch in range(epochs):
            sampler.set_epoch(epoch)
            runs.append(list(sampler))
        rows.append(_row(f"bucketed, {buckets} buckets (shuffled)", durations, runs))
    sorted_batches = list(DurationBucketSampler(durations, batch_seconds, shuffle=False))
    rows.append(_row("sorted, no shuffle (ceiling)", durations, [sorted_batches]))
    random_runs = []
    for epoch in range(epochs):
        order = np.random.default_rng(seed + epoch).permutation(num_utterances)
        random_runs.append(pack_greedily(durations, order, batch_seconds))
    rows.append(_row("random permutation", durations, random_runs))
    result = {
        "distribution": DISTRIBUTION,
        "num_utterances": num_utterances,
        "batch_seconds": batch_seconds,
        "epochs": epochs,
        "rows": rows,
    }
    print(markdown_table(result))
    return result


def _row(name: str, durations: np.ndarray, runs: list[list[list[int]]]) -> dict[str, Any]:
    return {
        "batching": name,
        "padding_efficiency": float(np.median([padding_efficiency(durations, b) for b in runs])),
        "batches": int(np.median([len(b) for b in runs])),
    }


def markdown_table(result: dict[str, Any]) -> str:
    """The padding results as a markdown table, under a line naming the setting."""
    lines = [
        f"{result['num_utterances']} utterances, {result['distribution']}; "
        f"batch_seconds={result['batch_seconds']:g}, median over {result['epochs']} epochs",
        "",
        "| batching | padding efficiency | batches/epoch |",
        "|---|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(f"| {row['batching']} | {row['padding_efficiency']:.4f} | {row['batches']} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=20000, help="utterances to simulate")
    parser.add_argument("--batch-seconds", type=float, default=200.0, help="padded seconds/batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5, help="epochs to take the median over")
    parser.add_argument(
        "--buckets", type=int, nargs="+", default=[10, 30, 50, 100], help="num_buckets values"
    )
    args = parser.parse_args(argv)
    padding_benchmark(
        num_utterances=args.utterances,
        batch_seconds=args.batch_seconds,
        seed=args.seed,
        num_buckets=args.buckets,
        epochs=args.epochs,
    )


if __name__ == "__main__":
    main()
