"""Real recordings: the FSDD recipes (keyword spotting and CTC recognition) against their targets.

Trains ``experiment=kws_fsdd`` (target: test accuracy >= 90 %) and ``experiment=ctc_fsdd``
(target: greedy test WER <= 10 %) on the Free Spoken Digit Dataset in ``../shared/data/fsdd``
(official test takes 0-4), each through ``train.py`` as a user runs it, in a temporary dir.
Prints each run's test metrics and wall time; exits 1 when a target is missed. Both trainings
(minutes each) live here; the test suite runs the same recordings through the README's lines
with one batch per split.

    .venv/bin/python benchmarks/real_audio.py [--fsdd ../shared/data/fsdd] [--only ctc|kws]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# recipe -> (metric, target, True when higher is better)
TARGETS = {
    "kws": ("experiment=kws_fsdd", "test/acc", 0.90, True),
    "ctc": ("experiment=ctc_fsdd", "test/wer", 0.10, False),
}


def run(experiment: str, fsdd: Path, workdir: Path) -> tuple[dict, float]:
    """Train and test one recipe; its ``metrics.json`` and wall seconds."""
    logs = workdir / "logs"
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            experiment,
            f"data.reader.root={fsdd}",
            f"paths.data_dir={workdir / 'data'}",
            f"paths.log_dir={logs}",
            "callbacks.progress_bar=null",
            "callbacks.early_stopping=null",
        ],
        check=True,
    )
    seconds = time.perf_counter() - start
    (metrics,) = logs.glob("*/runs/*/metrics.json")
    return json.loads(metrics.read_text()), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsdd", type=Path, default=REPO.parent / "shared" / "data" / "fsdd")
    parser.add_argument("--only", choices=sorted(TARGETS))
    args = parser.parse_args()
    if not (args.fsdd / "recordings").is_dir():
        print(f"no FSDD at {args.fsdd} (expected recordings/*.wav); pass --fsdd", file=sys.stderr)
        return 2
    missed = []
    for name, (experiment, metric, target, higher) in TARGETS.items():
        if args.only and name != args.only:
            continue
        with tempfile.TemporaryDirectory() as workdir:
            metrics, seconds = run(experiment, args.fsdd.resolve(), Path(workdir))
        value = metrics[metric]
        ok = value >= target if higher else value <= target
        print(
            f"{experiment}: {metric} = {value:.4f} (target {'>=' if higher else '<='} "
            f"{target}) in {seconds:.0f} s; {json.dumps(metrics)}"
        )
        if not ok:
            missed.append(experiment)
    if missed:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
