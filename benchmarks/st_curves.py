"""Learning curves of speech translation runs side by side: val BLEU/chrF per epoch.

    python benchmarks/st_curves.py --run scratch=logs/st_scratch/runs/<a> \
        --run asr-init=logs/st_init/runs/<b> --png benchmarks/st_learning_curves.png

Reads each run's ``csv/metrics.csv`` (and ``metrics.json`` for the test scores), prints a
markdown table (one row per epoch, one BLEU and chrF column pair per run) and draws the val
BLEU curves into ``--png``.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path


def val_curve(run_dir: Path) -> dict[int, tuple[float, float]]:
    """``epoch -> (val BLEU, val chrF)`` from the run's CSV log."""
    curve = {}
    with (run_dir / "csv" / "metrics.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("val/bleu"):
                curve[int(row["epoch"])] = (float(row["val/bleu"]), float(row["val/chrf"]))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", required=True, help="name=run_dir")
    parser.add_argument("--png", type=Path, help="where to draw the val BLEU curves")
    args = parser.parse_args()
    runs = {name: Path(path) for name, path in (item.split("=", 1) for item in args.run)}
    curves = {name: val_curve(path) for name, path in runs.items()}
    epochs = sorted({epoch for curve in curves.values() for epoch in curve})

    header = "| epoch | " + " | ".join(f"{n} val BLEU | {n} val chrF" for n in runs) + " |"
    print(header)
    print("|---:|" + "---:|---:|" * len(runs))
    for epoch in epochs:
        cells = []
        for curve in curves.values():
            bleu, chrf = curve.get(epoch, (None, None))
            cells += ["" if bleu is None else f"{bleu:.1f}", "" if chrf is None else f"{chrf:.1f}"]
        print(f"| {epoch} | " + " | ".join(cells) + " |")
    for name, path in runs.items():
        metrics = path / "metrics.json"
        if metrics.is_file():
            test = json.loads(metrics.read_text())
            print(
                f"\n{name}: test BLEU {test.get('test/bleu', float('nan')):.1f}, "
                f"chrF {test.get('test/chrf', float('nan')):.1f}"
            )

    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker

        figure, axis = plt.subplots(figsize=(6, 4))
        for name, curve in curves.items():
            points = sorted(curve.items())
            axis.plot([e for e, _ in points], [b for _, (b, _) in points], marker="o", label=name)
        axis.axhline(40.0, color="grey", linestyle="--", linewidth=1, label="target BLEU 40")
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        axis.set_xlabel("epoch")
        axis.set_ylabel("val BLEU (greedy)")
        axis.set_title("mini_covost fr->en: from scratch vs ASR-initialised encoder")
        axis.legend()
        axis.grid(alpha=0.3)
        args.png.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.png, dpi=100, bbox_inches="tight")
        print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
