"""Wall time to the default job's first test CER, as a newcomer gets it.

Runs ``python train.py`` exactly as ``make train`` types it (no overrides, no environment
variables) in a fresh working directory holding links to ``train.py`` and ``conf/``, so the
corpus goes to ``./data`` and the run to ``./logs`` there. ``fresh``: an empty directory, so the
embedded corpus is generated first (timed separately, from the log); ``prepared``: the corpus,
its manifest and decoded-audio cache already there (an untimed one-epoch run makes them). Median of ``--repeats``.
Prints a markdown table and the validation CER against elapsed seconds (the learning curve).

    .venv/bin/python benchmarks/first_result.py [--repeats 3] [--mode fresh prepared]
        [-- extra overrides, e.g. trainer.max_epochs=8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GENERATED = re.compile(r"clips \([\d.]+ h\) in ([\d.]+) s")  # the generator's closing line


def workdir_for(root: Path) -> Path:
    """A user's fresh working directory: the entry point and configs, nothing else."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("train.py", "conf"):
        link = root / name
        if not link.exists():
            link.symlink_to(REPO / name)
    return root


def generation_seconds(train_log: Path) -> float:
    """Seconds the embedded corpus generator said it took (0 when the corpus was there)."""
    match = GENERATED.search(train_log.read_text())
    return float(match.group(1)) if match else 0.0


def one_run(workdir: Path, overrides: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # as a user has it
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "train.py", *overrides], cwd=workdir, env=env, check=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wall = time.perf_counter() - started
    run_dir = max((workdir / "logs").glob("*/runs/*"), key=lambda p: p.stat().st_mtime)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    record = json.loads((run_dir / "run.json").read_text())
    return {
        "wall_s": wall,
        "generation_s": generation_seconds(run_dir / "train.log"),
        "test_cer": metrics.get("test/cer"),
        "test_wer": metrics.get("test/wer"),
        "epochs": record.get("epochs"),
        "curve": [(p.get("elapsed_s"), p["value"]) for p in record.get("curve", [])],
        "threads": next(
            (
                x.split("] - ", 1)[-1]
                for x in (run_dir / "train.log").read_text().splitlines()
                if "torch threads" in x
            ),
            "not logged",
        ),  # fmt: skip
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", nargs="+", choices=["fresh", "prepared"], default=["fresh"])
    parser.add_argument("overrides", nargs="*", help="after --: extra train.py overrides")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="first_result_") as tmp:
        prepared = workdir_for(Path(tmp) / "prepared")
        if "prepared" in args.mode:  # corpus, manifest and a full pass to fill the audio cache
            one_run(prepared, [*args.overrides, "trainer.max_epochs=1"])
        for mode in args.mode:
            runs = []
            for repeat in range(args.repeats):
                workdir = (
                    prepared if mode == "prepared" else workdir_for(Path(tmp) / f"fresh{repeat}")
                )
                result = one_run(workdir, args.overrides)
                runs.append(result)
                print(f"{mode} #{repeat}: {json.dumps(result)}", flush=True)
            rows.append((mode, runs))
    print(
        "\n| start | wall time (median) | of it, corpus generation | test CER | test WER | epochs |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for mode, runs in rows:
        wall = statistics.median(r["wall_s"] for r in runs)
        gen = statistics.median(r["generation_s"] for r in runs)
        cer = statistics.median(r["test_cer"] for r in runs)
        wer = statistics.median(r["test_wer"] for r in runs)
        print(f"| {mode} ({len(runs)} runs) | {wall:.0f} s | {gen:.0f} s | {cer:.3f} | {wer:.3f} "
              f"| {runs[0]['epochs']} |")  # fmt: skip
    for mode, runs in rows:
        curve = ", ".join(f"{t:.0f} s: {v:.3f}" for t, v in runs[0]["curve"] if t is not None)
        print(f"\n{mode}, first run, val CER by elapsed training time: {curve}")
        print(f"{mode}: {runs[0]['threads']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
