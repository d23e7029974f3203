"""Sweep summary: one row per job of a multirun dir in ``summary.csv``, ``summary.md``, ``summary.png``.

Runs by itself after every multirun of train.py (a Hydra callback, registered in
``conf/train.yaml``) and by hand on any multirun dir::

    python -m speechlab.run.sweep_summary logs/train/multiruns/<timestamp>

A job is a subdir holding ``.hydra/overrides.yaml``; its row comes from the run record
``run.json`` (status, best monitored value, epochs, wall time, the validation curve). A job that
failed is a row with status ``failed``; one that was killed or is still going is ``unfinished``.
"""

from __future__ import annotations

import atexit
import csv
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from speechlab.run.run_record import FAILED, FINISHED, read_record

log = logging.getLogger(__name__)

COLUMNS = [
    "job",
    "status",
    "overrides",
    "monitor",
    "best",
    "epochs",
    "wall_s",
    "error",
    "all_overrides",
]


@dataclass
class JobRow:
    """One job of a sweep; ``curve`` holds ``(epoch, monitored value)`` pairs."""

    job: str
    status: str
    all_overrides: list[str]
    overrides: str = ""  # those that tell this job from the others (see ``collect``)
    monitor: str = ""
    mode: str = ""
    best: float | None = None
    epochs: int | None = None
    wall_s: float | None = None
    error: str = ""
    curve: list[tuple[int, float]] = field(default_factory=list)

    def cells(self) -> dict[str, Any]:
        cells = {name: getattr(self, name) for name in COLUMNS}
        cells["all_overrides"] = " ".join(self.all_overrides)
        return {name: "" if value is None else value for name, value in cells.items()}


def job_dirs(sweep_dir: Path) -> list[Path]:
    """The job dirs of a multirun dir, in job-number order."""
    dirs = [p.parent.parent for p in sweep_dir.glob("*/.hydra/overrides.yaml")]
    return sorted(
        dirs, key=lambda p: (not p.name.isdigit(), int(p.name) if p.name.isdigit() else 0, p.name)
    )


def read_job(job_dir: Path) -> JobRow:
    """The row of one job dir; a missing or partial record gives ``failed``/``unfinished``."""
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    row = JobRow(job=job_dir.name, status="unfinished", all_overrides=[str(o) for o in overrides])
    record = read_record(job_dir)
    if record is None:
        # Hydra made the dir, but the run never wrote its record: it stopped before training
        # (bad config, missing corpus), or it is not a speechlab training run at all.
        row.status = FAILED
        row.error = f"no run record ({job_dir / 'run.json'}): see the job's log in {job_dir}"
        return row
    row.status = record.get("status") if record.get("status") in (FINISHED, FAILED) else row.status
    row.monitor, row.mode = record.get("monitor", ""), record.get("mode", "")
    row.best = record.get("best")
    row.epochs = record.get("epochs")
    row.wall_s = record.get("wall_s")
    row.error = record.get("error", "")
    row.curve = [
        (int(p["epoch"]), float(p["value"]))
        for p in record.get("curve", [])
        if p.get("value") is not None
    ]
    return row


def collect(sweep_dir: str | Path) -> list[JobRow]:
    """The rows of every job under ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no multirun dir at {sweep_dir}")
    dirs = job_dirs(sweep_dir)
    if not dirs:
        raise FileNotFoundError(
            f"{sweep_dir} holds no job dirs (<job>/.hydra/overrides.yaml); pass a multirun dir "
            "such as logs/train/multiruns/<timestamp>"
        )
    rows = [read_job(d) for d in dirs]
    common = shared_overrides(rows)
    for row in rows:
        row.overrides = " ".join(o for o in row.all_overrides if o not in common)
    return rows


def shared_overrides(rows: list[JobRow]) -> list[str]:
    """The overrides every job has (the sweep's fixed command line); none for a single job."""
    if len(rows) < 2:
        return []
    first = rows[0].all_overrides
    return [o for o in first if all(o in r.all_overrides for r in rows[1:])]


def best_row(rows: list[JobRow]) -> JobRow | None:
    """The finished job with the best monitored value."""
    done = [r for r in rows if r.status == FINISHED and r.best is not None]
    if not done:
        return None
    sign = -1.0 if done[0].mode == "max" else 1.0
    return min(done, key=lambda r: sign * r.best)


def write_csv(rows: list[JobRow], path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(row.cells() for row in rows)
    return path


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or value == "":
        return ""
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def write_markdown(rows: list[JobRow], path: Path, title: str) -> Path:
    best = best_row(rows)
    monitor = next((r.monitor for r in rows if r.monitor), "metric")
    mode = next((r.mode for r in rows if r.mode), "")
    counts = {s: sum(r.status == s for r in rows) for s in (FINISHED, FAILED, "unfinished")}
    lines = [
        f"# Sweep {title}",
        "",
        f"{len(rows)} jobs: {counts[FINISHED]} finished, {counts[FAILED]} failed, "
        f"{counts['unfinished']} unfinished. Best `{monitor}` ({mode}) over validation epochs.",
        "",
    ]
    common = shared_overrides(rows)
    if common:
        lines += ["Every job: `" + " ".join(common) + "`", ""]
    if best is not None:
        lines += [f"Best: job {best.job} (`{best.overrides}`), {monitor} = {_fmt(best.best)}", ""]
    lines += ["| job | status | overrides | best | epochs | wall time (s) | error |"]
    lines += ["|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        job = f"**{r.job}**" if r is best else r.job
        error = r.error.replace("|", "\\|")
        lines.append(
            f"| {job} | {r.status} | `{r.overrides}` | {_fmt(r.best)} | {_fmt(r.epochs)} "
            f"| {'' if r.wall_s is None else f'{r.wall_s:.1f}'} | {error} |"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _short(overrides: str, width: int = 70) -> str:
    """Overrides for a legend: long floats to 3 significant digits, cut at ``width``."""
    text = re.sub(r"\d+\.\d{4,}(?:e-?\d+)?", lambda m: f"{float(m.group()):.3g}", overrides)
    return text if len(text) <= width else text[: width - 1] + "…"


def write_plot(rows: list[JobRow], path: Path, title: str) -> Path:
    """Left: the best monitored value per job (failed/unfinished jobs marked). Right: the curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    monitor = next((r.monitor for r in rows if r.monitor), "metric")
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(12, 4.5))
    positions = list(range(len(rows)))
    heights = [r.best if r.best is not None else 0.0 for r in rows]
    colors = ["tab:blue" if r.status == FINISHED else "tab:gray" for r in rows]
    bars.bar(positions, heights, color=colors)
    bars.set_xticks(positions, [r.job for r in rows])
    for i, r in enumerate(rows):
        note = _fmt(r.best, 3) if r.status == FINISHED else r.status
        bars.annotate(note, (i, heights[i]), ha="center", va="bottom", fontsize=8)
    bars.set_xlabel("job")
    bars.set_ylabel(f"best {monitor}")
    bars.set_title("best validation value per job")
    for r in rows:
        if r.curve:
            epochs, values = zip(*r.curve, strict=True)
            curves.plot(epochs, values, marker="o", label=f"{r.job}: {_short(r.overrides)}")
    curves.xaxis.set_major_locator(MaxNLocator(integer=True))
    curves.set_xlabel("epoch")
    curves.set_ylabel(monitor)
    curves.set_title("validation curves")
    if any(r.curve for r in rows):
        curves.legend(fontsize=7)
    fig.suptitle(f"sweep {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_summary(sweep_dir: str | Path) -> list[Path]:
    """Write ``summary.csv``, ``summary.md`` and ``summary.png`` into ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    rows = collect(sweep_dir)
    return [
        write_csv(rows, sweep_dir / "summary.csv"),
        write_markdown(rows, sweep_dir / "summary.md", sweep_dir.name),
        write_plot(rows, sweep_dir / "summary.png", sweep_dir.name),
    ]


class SweepSummary(Callback):
    """Hydra callback: write the sweep summary when a multirun ends, in the launching process.

    A sweep whose jobs failed ends in an exception before Hydra's ``on_multirun_end``; the summary
    is then written at interpreter exit, so the failed jobs show up in it as such.
    """

    def __init__(self) -> None:
        self.sweep_dir: str | None = None
        self.written = False

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = str(config.hydra.sweep.dir)
        self.written = False
        atexit.register(self._write_if_pending)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self.sweep_dir = str(config.hydra.sweep.dir)
        self._write()

    def _write_if_pending(self) -> None:
        if self.written or not self.sweep_dir or not Path(self.sweep_dir).is_dir():
            return
        if not job_dirs(Path(self.sweep_dir)):  # stopped before any job started: nothing to sum
            log.info("no job of the sweep started in %s: no summary", self.sweep_dir)
            return
        self._write()

    def _write(self) -> None:
        self.written = True
        try:
            paths = write_summary(self.sweep_dir)
        except Exception as error:  # a summary must never turn a finished sweep into a failure
            log.warning("no sweep summary for %s: %s", self.sweep_dir, error)
            return
        log.info("sweep summary: %s", ", ".join(str(p) for p in paths))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m speechlab.run.sweep_summary <multirun dir>", file=sys.stderr)
        return 2
    try:
        paths = write_summary(args[0])
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(paths[1].read_text(), end="")
    print("\n".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
