"""Data-pipeline benchmarks.

Throughput: audio-seconds per second through the SpeechDataModule's train loader (decode,
resample, bucketed batching, padding) against plain soundfile decoding of the same files, as a
ratio; on the embedded corpus, generated on first use.

Padding: how much of each padded batch is real audio, for the duration-bucketing sampler against
random batching under the same ``batch_seconds`` rule (``max(duration) * len(batch)``).

    .venv/bin/python benchmarks/data_pipeline.py [--utterances 20000] [--batch-seconds 200]
        [--data-dir data] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

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


def throughput_benchmark(
    data_dir: Path, workers: Sequence[int] = (0, 2), repeats: int = 3
) -> list[dict[str, Any]]:
    """Audio-seconds/s of the ``data=mini_commands`` train loader vs plain soundfile reads.

    Each rate is the median of ``repeats`` passes over the train split.
    """
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    # The corpus and loader settings of `data=mini_commands`, from the config itself.
    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.data_dir={data_dir.resolve()}"])
    rows = []
    for num_workers in workers:
        datamodule = instantiate(cfg.data, num_workers=num_workers)
        datamodule.prepare_data()
        datamodule.setup()
        utterances = datamodule.datasets["train"].utterances
        audio_seconds = sum(u.duration for u in utterances)

        def plain(utterances=utterances) -> None:
            for utterance in utterances:
                data, _ = sf.read(utterance.audio_path, dtype="float32", always_2d=True)
                torch.from_numpy(data.mean(axis=1))

        def loader(datamodule=datamodule) -> None:
            for _ in datamodule.train_dataloader():
                pass

        plain()  # warm the page cache so both sides read from memory
        plain_rate = audio_seconds / _median_seconds(plain, repeats)
        loader_rate = audio_seconds / _median_seconds(loader, repeats)
        rows.append(
            {
                "workers": num_workers,
                "utterances": len(utterances),
                "plain_audio_s_per_s": plain_rate,
                "datamodule_audio_s_per_s": loader_rate,
                "ratio": loader_rate / plain_rate,
            }
        )
    print(
        "| loader workers | utterances | plain soundfile (audio s/s) | datamodule (audio s/s) | ratio |"
    )
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['workers']} | {row['utterances']} | {row['plain_audio_s_per_s']:.0f} | "
            f"{row['datamodule_audio_s_per_s']:.0f} | {row['ratio']:.2f} |"
        )
    return rows


def _median_seconds(function, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=20000, help="utterances to simulate")
    parser.add_argument("--batch-seconds", type=float, default=200.0, help="padded seconds/batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=5, help="epochs to take the median over")
    parser.add_argument(
        "--buckets", type=int, nargs="+", default=[10, 30, 50, 100], help="num_buckets values"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="embedded corpus home")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader workers")
    parser.add_argument("--skip-throughput", action="store_true", help="padding only")
    args = parser.parse_args(argv)
    print(
        f"machine: {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"Python {platform.python_version()}, torch {torch.__version__}\n"
    )
    if not args.skip_throughput:
        throughput_benchmark(args.data_dir, args.workers)
        print()
    padding_benchmark(
        num_utterances=args.utterances,
        batch_seconds=args.batch_seconds,
        seed=args.seed,
        num_buckets=args.buckets,
        epochs=args.epochs,
    )


if __name__ == "__main__":
    main()
