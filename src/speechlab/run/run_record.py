"""The run record ``<run dir>/run.json``: status, attempts with their times, the monitored curve.

One JSON file per run dir, rewritten atomically at the start of each attempt, after each
validation epoch and at the end, so that a run killed at any moment leaves a record that says
how far it got. Sweep summaries read it; relaunched sweeps decide from it whether a job is done.

Layout::

    {"status": "running" | "finished" | "failed",
     "overrides": ["model.optimizer.lr=0.001", ...],        # the job's command-line overrides
     "monitor": "val/acc", "mode": "max",
     "attempts": [{"started": "...", "updated": "...", "ended": "...", "status": "...",
                   "world_size": 2, "num_nodes": 2, "processes_per_node": 1,  # the run's shape
                   "cluster": "SLURMEnvironment"}],   # Lightning's cluster environment (or null)
     "curve": [{"epoch": 0, "step": 40, "value": 0.41, "attempt": 0,   # after each validation
                "elapsed_s": 12.5}, ...],    # seconds of the run's attempts so far (learning curves)
     "best": 0.52, "epochs": 3, "wall_s": 61.2, "error": "...",
     "skipped_steps": 0,              # non-finite steps the guard skipped (also per attempt)
     # a train split streamed from shards (data.shards): each epoch's batches per rank and
     # utterances, and what equal batch counts per rank left out of it, with the totals
     "stream_epochs": [{"epoch": 0, "batches": 48, "utterances": 1280,
                        "dropped_batches": 0, "dropped_utterances": 0}, ...],
     "dropped_batches": 0, "dropped_utterances": 0,
     # where fit ended: optimizer steps, epochs run to their end, the batches of an epoch that a
     # limit (max_steps, max_time) cut short, whether early stopping or max_time ended it
     "trained": {"steps": 120, "epochs": 3, "unfinished_epoch_batches": 0,
                 "stopped_early": false, "max_time_s": null},
     "previous_runs": [{...}, ...]}   # the records of other runs that used this dir before

Attempts add up only within one run: a multirun job's attempts (its dir is its own), and a
single run's that resume from one of this dir's checkpoints. A single run started afresh in a
used dir is a run of its own (``new_run``): the record there moves to ``previous_runs``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, Timer
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.utilities import rank_zero_only

from speechlab.run.cluster import process_layout

RECORD_NAME = "run.json"
FINISHED, FAILED, RUNNING = "finished", "failed", "running"


def read_record(run_dir: str | Path) -> dict[str, Any] | None:
    """The run record of ``run_dir``, or None when there is none (or it is unreadable)."""
    path = Path(run_dir) / RECORD_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def best_of(curve: Sequence[dict[str, Any]], mode: str) -> float | None:
    """The best ``value`` of a curve (``mode`` ``min`` or ``max``), ignoring missing values."""
    values = [p["value"] for p in curve if p.get("value") is not None and p["value"] == p["value"]]
    if not values:
        return None
    return max(values) if mode == "max" else min(values)


def wall_seconds(record: dict[str, Any]) -> float:
    """Seconds spent over all attempts (a killed attempt counts until its last update)."""
    total = 0.0
    for attempt in record.get("attempts", []):
        start = _parse(attempt.get("started"))
        end = _parse(attempt.get("ended") or attempt.get("updated"))
        if start is not None and end is not None:
            total += max(0.0, end - start)
    return total


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _parse(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp).timestamp() if stamp else None


def trained_so_far(trainer: L.Trainer) -> dict[str, Any]:
    """How far ``trainer``'s fit got, read as it ends: optimizer steps (``global_step``, what
    ``max_steps`` counts), ``epochs`` that ran to their last batch, the batches of an epoch that
    a limit ended early (``unfinished_epoch_batches``: Lightning counts such an epoch as done,
    though its rest and its validation were never run), whether an ``EarlyStopping`` callback
    ended it (``stopped_early``) and, when ``trainer.max_time`` did, that limit in seconds
    (``max_time_s``; otherwise None)."""
    batches = trainer.fit_loop.epoch_loop.batch_progress
    epochs = trainer.current_epoch
    unfinished = 0
    if epochs and not batches.is_last_batch and batches.current.completed:
        epochs, unfinished = epochs - 1, batches.current.completed
    stopped_early = any(
        isinstance(c, EarlyStopping) and c.stopping_reason != EarlyStoppingReason.NOT_STOPPED
        for c in trainer.callbacks
    )
    max_time_s = None
    for timer in (c for c in trainer.callbacks if isinstance(c, Timer)):
        remaining = timer.time_remaining()
        if remaining is not None and remaining <= 0:
            max_time_s = round(timer.time_elapsed() + remaining, 3)
    return {
        "steps": trainer.global_step,
        "epochs": epochs,
        "unfinished_epoch_batches": unfinished,
        "stopped_early": stopped_early,
        "max_time_s": max_time_s,
    }


class RunRecord(Callback):
    """Keeps ``<run_dir>/run.json`` up to date; only the global-zero process writes.

    ``start()`` opens an attempt (keeping the curve of earlier attempts up to the epoch a resumed
    run restarts from), the callback appends the monitored value after every validation epoch,
    and ``finish()`` / ``fail()`` close the attempt.

    Args:
        new_run: this attempt starts a run of its own (it does not resume one of ``run_dir``'s
            checkpoints): the record found there moves to ``previous_runs``, and attempts, curve
            and wall time are this run's alone. Otherwise the attempt continues that record.
    """

    def __init__(
        self,
        run_dir: str | Path,
        monitor: str,
        mode: str,
        overrides: Sequence[str] = (),
        new_run: bool = False,
    ) -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"monitor mode must be 'min' or 'max', got {mode!r}")
        self.path = Path(run_dir) / RECORD_NAME
        self.monitor, self.mode = monitor, mode
        self.record: dict[str, Any] = read_record(run_dir) or {}
        if new_run and self.record.get("attempts"):
            previous = self.record.pop("previous_runs", [])
            self.record = {"previous_runs": [*previous, self.record]}
        # What a failed start keeps of a finished run (see fail).
        self._kept = {
            k: self.record[k] for k in ("monitor", "mode", "overrides") if k in self.record
        }
        self.record.update(monitor=monitor, mode=mode, overrides=list(overrides))
        self.record.setdefault("attempts", [])
        self.record.setdefault("curve", [])
        self._finished_before = False  # the record said finished when this attempt started
        self._training_started = False  # this attempt reached the training loop

    def start(self) -> None:
        self._finished_before = self.record.get("status") == FINISHED
        self._training_started = False
        self.record["status"] = RUNNING
        self.record.pop("error", None)
        self.record["attempts"].append({"started": _now(), "status": RUNNING})
        self._write()

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # The ranks are known by now: record how many processes on how many nodes ran this
        # attempt (a requeued attempt may get another shape).
        if self.record["attempts"]:
            layout = process_layout(trainer)
            shape = ("world_size", "num_nodes", "processes_per_node", "cluster")
            self.record["attempts"][-1].update({key: layout[key] for key in shape})

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A resumed fit (its state restored by now) goes on after the checkpoint's epoch: forget
        # what an earlier attempt recorded after that.
        self._training_started = True
        epoch = trainer.current_epoch
        self.record["curve"] = [p for p in self.record["curve"] if p["epoch"] < epoch]
        if "stream_epochs" in self.record:
            self._stream_epochs([e for e in self.record["stream_epochs"] if e["epoch"] < epoch])
        self._write()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A streamed train split plans each epoch from its index: record what it trains on and
        # what giving every rank the same batch count left out (the next write saves it).
        dataset = getattr(trainer.train_dataloader, "dataset", None)
        summary = getattr(dataset, "epoch_summary", None)
        if summary is None:
            return
        epoch = trainer.current_epoch
        kept = [e for e in self.record.get("stream_epochs", []) if e["epoch"] != epoch]
        self._stream_epochs([*kept, {"epoch": epoch, **summary(epoch)}])

    def _stream_epochs(self, epochs: list[dict[str, Any]]) -> None:
        self.record["stream_epochs"] = epochs
        for key in ("dropped_batches", "dropped_utterances"):
            self.record[key] = sum(e[key] for e in epochs)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(self.monitor)
        epoch = trainer.current_epoch
        curve = [p for p in self.record["curve"] if p["epoch"] != epoch]
        curve.append(
            {
                "epoch": epoch,
                "step": trainer.global_step,
                "value": None if value is None else float(value),
                "attempt": len(self.record["attempts"]) - 1,
                "elapsed_s": round(self._elapsed(), 3),
            }
        )
        self.record["curve"] = curve
        self.record["epochs"] = epoch + 1
        self._count_skipped(trainer)
        self._write()

    def _elapsed(self) -> float:
        """Seconds of every attempt so far, the current one up to now."""
        attempts = self.record["attempts"]
        current = _parse(attempts[-1]["started"]) if attempts else None
        done = wall_seconds({"attempts": attempts[:-1]})
        return done + (0.0 if current is None else time.time() - current)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._count_skipped(trainer)
        # How far fit got, so a resume with other trainer.max_steps / max_epochs knows whether
        # anything is left to train (run/resume.py).
        self.record["trained"] = trained_so_far(trainer)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._count_skipped(trainer)

    def _count_skipped(self, trainer: L.Trainer) -> None:
        """The non-finite steps the task's guard skipped, in this attempt and over all."""
        guard = getattr(trainer.lightning_module, "step_guard", None)
        if guard is None or not self.record["attempts"]:
            return
        self.record["attempts"][-1]["skipped_steps"] = guard.skipped
        self.record["skipped_steps"] = sum(
            a.get("skipped_steps", 0) for a in self.record["attempts"]
        )

    def finish(self, metrics: dict[str, float]) -> None:
        self._close(FINISHED)
        self.record["metrics"] = dict(metrics)
        self._write()

    def fail(self, error: BaseException) -> None:
        """Close the attempt as failed with ``error``'s first line. An attempt that failed
        before training started (a bad option, a checkpoint of another model) changed nothing
        of a finished run: the record stays ``finished`` with its metrics, the failed attempt
        and its error listed in ``attempts``."""
        message = f"{type(error).__name__}: {error}".strip()
        message = message.splitlines()[0][:2000] if message else type(error).__name__
        self._close(FAILED)
        if self.record["attempts"]:
            self.record["attempts"][-1]["error"] = message
        if self._finished_before and not self._training_started:
            if self.record["attempts"]:  # what the failed attempt asked for
                self.record["attempts"][-1]["overrides"] = self.record["overrides"]
            self.record.update(self._kept, status=FINISHED)
            self.monitor, self.mode = self.record["monitor"], self.record["mode"]
        else:
            self.record["error"] = message
        self._write()

    @property
    def best(self) -> float | None:
        """The best monitored value over the validation epochs recorded so far."""
        return best_of(self.record["curve"], self.mode)

    def _close(self, status: str) -> None:
        self.record["status"] = status
        if self.record["attempts"]:
            attempt = self.record["attempts"][-1]
            attempt.update(ended=_now(), status=status)

    @rank_zero_only
    def _write(self) -> None:
        if self.record["attempts"]:
            self.record["attempts"][-1]["updated"] = _now()
        self.record["best"] = self.best
        self.record["wall_s"] = round(wall_seconds(self.record), 3)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{RECORD_NAME}.{os.getpid()}.{time.monotonic_ns()}")
        tmp.write_text(json.dumps(self.record, indent=2) + "\n")
        os.replace(tmp, self.path)
