"""Manifests at scale: build, load, sampler planning and per-worker memory of a synthetic corpus.

A synthetic Common-Voice-like corpus (a train split of ``--utterances`` utterances, 1,000 each in
validation and test; ids, clip paths, transcripts and client ids of Common Voice's lengths) goes
through the real manifest cache writer (``load_or_build_manifest``). Then, in a fresh process:
the cached manifest is loaded, the train split becomes a ``SpeechDataset`` whose decode is a no-op
(``__getitem__`` builds the ``Utterance`` record and the target as in training, but reads no
audio), the ``DurationBucketSampler`` plans an epoch, and ``--workers`` forked DataLoader workers
take one pass over all its batches. Memory comes from ``/proc/<pid>/smaps_rollup``: RSS counts
shared pages in every process, so the private (USS = Private_Clean + Private_Dirty) and
proportional (PSS) sizes are reported too; a worker's extra memory is its USS after the pass
minus its USS when it started.

``--baseline`` measures the same on the previous layout (a JSONL manifest parsed into a list of
``Utterance`` objects, held by the dataset), for comparison. Each phase runs in its own process
forked from this one, before any manifest is loaded here.

    .venv/bin/python benchmarks/manifest_scale.py [--utterances 2000000] [--workers 4]
        [--batch-seconds 200] [--cache-dir DIR] [--baseline] [--smoke] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from data_pipeline import DISTRIBUTION, common_voice_like
from torch.utils.data import DataLoader

from speechlab.data.dataset import SpeechDataset
from speechlab.data.manifest import load_or_build_manifest
from speechlab.data.reader import ScanReport
from speechlab.data.sampler import DurationBucketSampler
from speechlab.data.utterance import Utterance

SMOKE_UTTERANCES = 20_000
HELD_OUT = 1_000  # utterances in each of validation and test
TARGETS = {"load_s": 10.0, "worker_extra_mb": 100.0, "plan_s": 5.0}
WORDS = (  # noqa: SIM905  one sentence of common words reads better than 100 literals
    "the of and to a in is was he for it with as his on be at by had are but from or have an "
    "they which one you were all we her she there would their will when who him been has "
    "more if no out do so can what up said about other into than its time only could new "
    "them man some these then two first may any like now my such make over our even most me "
    "state after also made many did must before back see through way where get much go well "
    "your know should down work"
).split()


class SyntheticReader:
    """A corpus reader yielding Common-Voice-like records from a seed (no audio on disk).

    Durations follow ``data_pipeline.DISTRIBUTION``; transcripts are 4 to 16 common English
    words; 20,000 speakers with Common Voice's 128-hex-digit client ids.
    """

    name = "synthetic_cv"

    def __init__(self, root: Path, utterances: int, seed: int = 0) -> None:
        self.root = Path(root)
        self.utterances = utterances
        self.seed = seed

    def check_layout(self) -> None:
        pass

    def options(self) -> dict:
        return {"utterances": self.utterances, "seed": self.seed}

    def fingerprint_paths(self) -> Iterator[Path]:
        return iter(())

    def scan(self, split: str, report: ScanReport) -> Iterator[Utterance]:
        count = {"train": self.utterances}.get(split, HELD_OUT)
        seed = self.seed + ("train", "validation", "test").index(split)
        rng = np.random.default_rng(seed)
        durations = common_voice_like(count, seed)
        speakers = [f"{value:0128x}" for value in rng.integers(0, 2**62, 20_000).tolist()]
        chunk = 10_000
        for start in range(0, count, chunk):
            stop = min(count, start + chunk)
            lengths = rng.integers(4, 17, stop - start).tolist()
            words = rng.integers(0, len(WORDS), (stop - start, 16)).tolist()
            who = rng.integers(0, len(speakers), stop - start).tolist()
            for row, index in enumerate(range(start, stop)):
                name = f"common_voice_en_{seed}{index:08d}"
                yield Utterance(
                    id=name,
                    audio_path=f"/data/cv-corpus-17.0/en/clips/{name}.mp3",
                    duration=float(durations[index]),
                    sample_rate=48000,
                    text=" ".join(WORDS[w] for w in words[row][: lengths[row]]),
                    speaker=speakers[who[row]],
                    language="en",
                )


# -- memory --------------------------------------------------------------------------------
def memory_mb(pid: int | str = "self") -> dict[str, float]:
    """RSS, PSS, USS (Private_Clean + Private_Dirty) and Private_Dirty of ``pid``, in MB."""
    fields: dict[str, float] = {}
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                fields[parts[0].rstrip(":")] = int(parts[1]) / 1024
    return {
        "rss": fields["Rss"],
        "pss": fields["Pss"],
        "uss": fields["Private_Clean"] + fields["Private_Dirty"],
        "private_dirty": fields["Private_Dirty"],
    }


# -- datasets that index the records without decoding audio ----------------------------------
class IndexingDataset(SpeechDataset):
    """The real :class:`SpeechDataset` (over a table) with a no-op decode: one silent sample."""

    def _decode(self, utterance: Utterance) -> torch.Tensor:
        return torch.zeros(1)


class ListIndexingDataset(IndexingDataset):
    """The previous layout: the dataset holds a Python list of ``Utterance`` objects."""

    def __init__(self, utterances: list[Utterance], **kwargs: Any) -> None:
        super().__init__([], **kwargs)
        self.utterances = utterances  # type: ignore[assignment]


def text_length(utterance: Utterance) -> torch.Tensor:
    """A target that reads the transcript, as token targets do."""
    return torch.tensor(len(utterance.text or ""))


def count_examples(batch: list) -> int:
    return len(batch)


def _record_worker_start(folder: str) -> Callable[[int], None]:
    def record(worker_id: int) -> None:
        start = {"pid": os.getpid(), **memory_mb()}
        Path(folder, f"worker-{worker_id}.json").write_text(json.dumps(start))

    return record


# -- phases, each in a process of its own ----------------------------------------------------
def build_phase(cache_dir: Path, utterances: int) -> dict[str, float]:
    reader = SyntheticReader(cache_dir / "corpus", utterances)
    start = time.perf_counter()
    for _ in reader.scan("train", ScanReport()):
        pass
    generate_s = time.perf_counter() - start
    start = time.perf_counter()
    manifest = load_or_build_manifest(reader, cache_dir)
    build_s = time.perf_counter() - start
    size = sum(p.stat().st_size for p in manifest.directory.rglob("*") if p.is_file())
    return {
        "generate_s": generate_s,
        "build_s": build_s,
        "manifest_dir": str(manifest.directory),
        "manifest_mb": size / 2**20,
    }


def baseline_build_phase(cache_dir: Path, utterances: int) -> dict[str, float]:
    """Build the train split as the previous version did: scan, one JSON line per utterance."""
    reader = SyntheticReader(cache_dir / "corpus", utterances)
    path = cache_dir / "baseline-train.jsonl"
    start = time.perf_counter()
    records = list(reader.scan("train", ScanReport()))
    lines = "".join(utterance.to_json() + "\n" for utterance in records)
    path.write_text(lines, encoding="utf-8")
    return {"build_s": time.perf_counter() - start, "manifest_mb": path.stat().st_size / 2**20}


def measure_phase(
    cache_dir: Path, utterances: int, workers: int, batch_seconds: float, baseline: bool
) -> dict[str, Any]:
    """Load, index with the sampler's batches in ``workers`` forked workers, and measure."""
    result: dict[str, Any] = {}
    start = time.perf_counter()
    if baseline:
        path = cache_dir / "baseline-train.jsonl"
        with path.open(encoding="utf-8") as f:
            records = [Utterance.from_dict(json.loads(line)) for line in f if line.strip()]
        dataset: SpeechDataset = ListIndexingDataset(records, sample_rate=16000, target=text_length)
        durations = np.array([u.duration for u in records])
    else:
        manifest = load_or_build_manifest(
            SyntheticReader(cache_dir / "corpus", utterances), cache_dir
        )
        dataset = IndexingDataset(manifest.splits["train"], sample_rate=16000, target=text_length)
        durations = dataset.durations
    result["load_s"] = time.perf_counter() - start
    result["main_after_load"] = memory_mb()

    start = time.perf_counter()
    sampler = DurationBucketSampler(durations, batch_seconds=batch_seconds, num_buckets=50)
    result["sampler_init_s"] = time.perf_counter() - start
    plans = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        start = time.perf_counter()
        batches = len(sampler)  # plans the epoch
        plans.append(time.perf_counter() - start)
    result["plan_s"] = max(plans)
    result["batches_per_epoch"] = batches

    with tempfile.TemporaryDirectory() as folder:
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=workers,
            collate_fn=count_examples,
            multiprocessing_context="fork" if workers else None,
            persistent_workers=workers > 0,
            worker_init_fn=_record_worker_start(folder),
        )
        start = time.perf_counter()
        seen = sum(loader)  # an iterator over a persistent loader keeps its workers alive
        result["pass_s"] = time.perf_counter() - start
        result["utterances_indexed"] = seen
        rows = []
        for worker in range(workers):
            begin = json.loads(Path(folder, f"worker-{worker}.json").read_text())
            end = memory_mb(begin["pid"])
            rows.append(
                {
                    "worker": worker,
                    "rss": end["rss"],
                    "pss": end["pss"],
                    "uss": end["uss"],
                    "extra_uss": end["uss"] - begin["uss"],
                    "extra_private_dirty": end["private_dirty"] - begin["private_dirty"],
                }
            )
        del loader
    result["workers"] = rows
    result["worker_extra_mb"] = max((row["extra_uss"] for row in rows), default=0.0)
    result["main_after_pass"] = memory_mb()
    return result


def in_fork(function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a forked process (fresh memory figures); its exception re-raised."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def target() -> None:
        try:
            send.send(("ok", function(*args)))
        except BaseException:  # noqa: BLE001  reported to the parent, which raises it
            send.send(("error", traceback.format_exc()))

    process = context.Process(target=target)
    process.start()
    status, value = receive.recv()
    process.join()
    if status != "ok":
        raise RuntimeError(f"{getattr(function, '__name__', function)} failed:\n{value}")
    return value


# -- report ----------------------------------------------------------------------------------
def markdown_table(result: dict[str, Any]) -> str:
    """The figures of each layout side by side, against the targets."""
    layouts = [("columnar table (.npy, mmap)", result["columnar"])]
    if "baseline" in result:
        layouts.append(("list of Utterance (JSONL)", result["baseline"]))
    header = "| figure | " + " | ".join(name for name, _ in layouts) + " | target |"
    lines = [
        f"{result['utterances']:,} train utterances ({DISTRIBUTION}); "
        f"batch_seconds={result['batch_seconds']:g}, {result['workers']} forked workers; "
        f"generating the synthetic records alone took {result['columnar']['generate_s']:.1f} s "
        "of the build",
        "",
        header,
        "|---|" + "---:|" * (len(layouts) + 1),
    ]

    def row(name: str, key: Callable[[dict], float], fmt: str, target: str = "") -> None:
        values = " | ".join(format(key(figures), fmt) for _, figures in layouts)
        lines.append(f"| {name} | {values} | {target} |")

    row("build: scan + write, s", lambda r: r["build_s"], ".1f")
    row("manifest on disk, MB", lambda r: r["manifest_mb"], ".0f")
    row("load, s", lambda r: r["load_s"], ".2f", "<= 10")
    row("main RSS after load, MB", lambda r: r["main_after_load"]["rss"], ".0f")
    row("main USS after load, MB", lambda r: r["main_after_load"]["uss"], ".0f")
    row("sampler set-up, s", lambda r: r["sampler_init_s"], ".2f")
    row("sampler planning per epoch, s", lambda r: r["plan_s"], ".2f", "<= 5")
    row("one pass over all batches, s", lambda r: r["pass_s"], ".1f")
    row("main USS after the pass, MB", lambda r: r["main_after_pass"]["uss"], ".0f")
    row("main PSS after the pass, MB", lambda r: r["main_after_pass"]["pss"], ".0f")
    row("worker extra USS (max), MB", lambda r: r["worker_extra_mb"], ".1f", "<= 100")
    row(
        "worker extra Private_Dirty (max), MB",
        lambda r: max((w["extra_private_dirty"] for w in r["workers"]), default=0.0),
        ".1f",
    )
    row("worker PSS (max), MB", lambda r: max((w["pss"] for w in r["workers"]), default=0.0), ".0f")
    row("worker RSS (max), MB", lambda r: max((w["rss"] for w in r["workers"]), default=0.0), ".0f")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=2_000_000, help="train utterances")
    parser.add_argument("--workers", type=int, default=4, help="forked DataLoader workers")
    parser.add_argument("--batch-seconds", type=float, default=200.0, help="padded seconds/batch")
    parser.add_argument(
        "--cache-dir", type=Path, help="where the manifest goes (default: a temp dir)"
    )
    parser.add_argument("--baseline", action="store_true", help="also measure a list of records")
    parser.add_argument(
        "--smoke", action="store_true", help=f"{SMOKE_UTTERANCES:,} utterances, 2 workers"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.utterances, args.workers = SMOKE_UTTERANCES, 2
    if args.utterances < 1 or args.workers < 0:
        parser.error("--utterances must be >= 1 and --workers >= 0")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}\n"
    )
    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="manifest-scale-"))
    try:
        result: dict[str, Any] = {
            "utterances": args.utterances,
            "workers": args.workers,
            "batch_seconds": args.batch_seconds,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        build = in_fork(build_phase, cache_dir, args.utterances)
        measure = (cache_dir, args.utterances, args.workers, args.batch_seconds)
        result["columnar"] = {**build, **in_fork(measure_phase, *measure, False)}
        if args.baseline:
            written = in_fork(baseline_build_phase, cache_dir, args.utterances)
            result["baseline"] = {**written, **in_fork(measure_phase, *measure, True)}
        result["targets"] = TARGETS
        result["meets_targets"] = all(
            result["columnar"][key] <= limit for key, limit in TARGETS.items()
        )
    finally:
        if args.cache_dir is None:
            shutil.rmtree(cache_dir, ignore_errors=True)
    print(markdown_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
