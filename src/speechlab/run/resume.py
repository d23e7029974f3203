"""Where a run picks up: skip a finished sweep job, resume an unfinished one, or ``ckpt_path=last``.

A multirun relaunched with the same ``hydra.sweep.dir`` gives each job its old run dir again
(``<sweep dir>/<job num>``). What that dir holds decides what the job does:

- ``run.json`` says *finished* and this job's ``trainer.max_steps`` / ``trainer.max_epochs`` /
  ``trainer.max_time`` leave nothing to train after what it trained (whole epochs: one that a
  limit cut short is not counted) or early stopping ended it: skip training, return the
  recorded metrics;
- ``checkpoints/last.ckpt`` exists (killed, timed out, failed after an epoch, or finished under
  lower limits than this job's): resume from it;
- neither: train from scratch.

A single run resumes only when asked: ``ckpt_path=last`` (this run dir's ``last.ckpt``) or
``ckpt_path=<file>``. ``ckpt_path=last`` of a finished run trains on when the limits were raised,
and otherwise says that nothing is left to train and returns the recorded metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Timer
from omegaconf import OmegaConf

from speechlab.run.run_record import FINISHED, read_record

log = logging.getLogger(__name__)

LAST_CKPT = Path("checkpoints") / "last.ckpt"


@dataclass(frozen=True)
class ResumeState:
    """What a run starts from: recorded ``metrics`` (finished: nothing to do) or a ``ckpt_path``."""

    metrics: dict[str, float] | None = None
    ckpt_path: str | None = None

    @property
    def finished(self) -> bool:
        return self.metrics is not None

    def resumes(self, run_dir: str | Path) -> bool:
        """Whether this continues the run recorded in ``run_dir``: it resumes from one of that
        run's own checkpoints (its attempts and curve then add up)."""
        if self.ckpt_path is None:
            return False
        return Path(self.ckpt_path).resolve().is_relative_to(Path(run_dir).resolve())


@dataclass(frozen=True)
class TrainingLimits:
    """``trainer.max_steps``, ``trainer.max_epochs`` and ``trainer.max_time`` as Lightning reads
    them (-1: no limit; ``max_epochs`` None is 1000 without a ``max_steps``, no limit with one;
    ``max_time_s`` in seconds, None: no limit)."""

    max_steps: int = -1
    max_epochs: int | None = None
    max_time_s: float | None = None

    @classmethod
    def of(cls, trainer_cfg: Mapping[str, Any]) -> TrainingLimits:
        max_steps = trainer_cfg.get("max_steps")
        max_time = trainer_cfg.get("max_time")
        if OmegaConf.is_config(max_time):
            max_time = OmegaConf.to_container(max_time, resolve=True)
        # Lightning's own reading of the duration (DD:HH:MM:SS, a dict or a timedelta)
        max_time_s = None if max_time is None else Timer(duration=max_time).time_remaining()
        return cls(
            -1 if max_steps is None else int(max_steps), trainer_cfg.get("max_epochs"), max_time_s
        )

    def reached(self, trained: Mapping[str, Any]) -> str | None:
        """Why nothing is left to train after ``trained`` (``run.json``'s ``trained``: steps,
        epochs run to their end, the batches of an epoch a limit cut short, stopped_early,
        max_time_s), or None when these limits leave training to do."""
        if trained.get("stopped_early"):
            return f"early stopping ended it after {describe_trained(trained)}"
        steps, epochs = int(trained["steps"]), int(trained["epochs"])
        if self.max_steps != -1 and steps >= self.max_steps:
            return f"it trained {steps} steps and trainer.max_steps={self.max_steps}"
        max_epochs = self.max_epochs
        if max_epochs is None:
            max_epochs = 1000 if self.max_steps == -1 else -1
        if max_epochs != -1 and epochs >= max_epochs:
            return f"it trained {epochs} whole epochs and trainer.max_epochs={max_epochs}"
        stopped_at = trained.get("max_time_s")
        if stopped_at is not None and self.max_time_s is not None and self.max_time_s <= stopped_at:
            return (
                f"trainer.max_time ({stopped_at:g} s) ended it, and trainer.max_time is "
                f"{self.max_time_s:g} s"
            )
        return None


def describe_trained(trained: Mapping[str, Any]) -> str:
    """``run.json``'s ``trained`` in words: '8 steps: 2 whole epochs and 2 batches of epoch 2'
    (epochs counted from 0, as the progress bar and the logs count them)."""
    epochs = int(trained["epochs"])
    whole = f"{epochs} whole epoch{'' if epochs == 1 else 's'}"
    unfinished = int(trained.get("unfinished_epoch_batches") or 0)
    if unfinished:
        whole += (
            f" and {unfinished} batch{'' if unfinished == 1 else 'es'} of epoch {epochs}, "
            "whose rest and validation a limit left out"
        )
    return f"{trained['steps']} steps: {whole}"


def finished_state(
    run_dir: Path, limits: TrainingLimits | None, unknown_is_finished: bool = True
) -> ResumeState | None:
    """A finished run's recorded metrics when ``limits`` leave nothing to train after it (said
    in the log), None when they do and its ``last.ckpt`` can train on (or it did not finish).

    A record that does not say how far the run trained (written before ``trained`` was kept, or
    before it counted only the epochs that ran to their end), or a run without ``last.ckpt``,
    counts as finished when ``unknown_is_finished``.
    """
    record = read_record(run_dir)
    if not (
        record and record.get("status") == FINISHED and isinstance(record.get("metrics"), dict)
    ):
        return None
    metrics = {k: float(v) for k, v in record["metrics"].items()}
    trained = record.get("trained")
    known = isinstance(trained, dict) and "unfinished_epoch_batches" in trained
    if limits is None or not known or not (run_dir / LAST_CKPT).is_file():
        return ResumeState(metrics=metrics) if unknown_is_finished else None
    reason = limits.reached(trained)
    if reason is None:
        log.info(
            "the run in %s finished after %s; trainer.max_steps=%s, trainer.max_epochs=%s "
            "train on from its last.ckpt",
            run_dir,
            describe_trained(trained),
            limits.max_steps,
            limits.max_epochs,
        )
        return None
    log.warning(
        "nothing left to train: the run in %s finished (%s); its recorded metrics stand. Raise "
        "trainer.max_steps or trainer.max_epochs to train on from its last.ckpt",
        run_dir,
        reason,
    )
    return ResumeState(metrics=metrics)


def find_resume_state(
    run_dir: str | Path, limits: TrainingLimits | None = None
) -> ResumeState | None:
    """The state a job left in ``run_dir``: finished (its metrics), a ``last.ckpt``, or None.

    A finished job is finished only when ``limits`` (this job's) leave nothing to train after
    what it trained; given no limits, a finished job is finished.
    """
    run_dir = Path(run_dir)
    finished = finished_state(run_dir, limits)
    if finished is not None:
        return finished
    last = run_dir / LAST_CKPT
    if last.is_file():
        return ResumeState(ckpt_path=str(last))
    return None


def resolve_ckpt_path(ckpt_path: str | None, run_dir: str | Path) -> str | None:
    """``ckpt_path`` as given, with ``last`` meaning ``<run_dir>/checkpoints/last.ckpt``.

    Raises:
        FileNotFoundError: the checkpoint it names does not exist.
    """
    if ckpt_path in (None, ""):
        return None
    if ckpt_path != "last":
        if not Path(ckpt_path).is_file():
            raise FileNotFoundError(
                f"ckpt_path={ckpt_path}: no such checkpoint file; give a .ckpt written by a "
                "speechlab run, or ckpt_path=last to resume the run in hydra.run.dir."
            )
        return str(ckpt_path)
    last = Path(run_dir) / LAST_CKPT
    if not last.is_file():
        raise FileNotFoundError(
            f"ckpt_path=last: no checkpoint at {last}. A single run writes into a new timestamped "
            "dir, so point it at the run to resume: hydra.run.dir=<old run dir> ckpt_path=last "
            "(or pass ckpt_path=<old run dir>/checkpoints/last.ckpt)."
        )
    return str(last)


def plan_resume(
    ckpt_path: str | None,
    run_dir: str | Path,
    multirun: bool,
    overrides: Sequence[str],
    limits: TrainingLimits | None = None,
) -> ResumeState:
    """What this run starts from.

    In a multirun the job's own run dir wins (a relaunch skips or resumes it); its recorded
    overrides must then equal ``overrides`` (the training limits aside), or the dir belongs to
    another job and we stop. Otherwise ``ckpt_path`` (``null`` | ``last`` | a path) says; with
    ``last``, a finished run whose ``limits`` leave nothing to train returns its metrics.
    """
    if multirun:
        state = find_resume_state(run_dir, limits)
        if state is not None:
            check_same_job(run_dir, overrides)
            if state.finished:
                log.info("job already finished in %s (run.json): skipping its training", run_dir)
            else:
                status = (read_record(run_dir) or {}).get("status")
                which = "finished" if status == FINISHED else "unfinished"
                log.info("resuming %s job from %s", which, state.ckpt_path)
            return state
    elif ckpt_path == "last" and limits is not None:
        state = finished_state(Path(run_dir), limits, unknown_is_finished=False)
        if state is not None:
            return state
    return ResumeState(ckpt_path=resolve_ckpt_path(ckpt_path, run_dir))


# How long a job trains, not what it is: a sweep relaunched with higher limits trains on.
TRAINING_LIMITS = ("trainer.max_steps", "trainer.max_epochs", "trainer.max_time")


def job_defining(overrides: Sequence[str]) -> list[str]:
    """The overrides that make a job what it is: all but the launcher's (how it is run) and the
    training limits (how long)."""
    kept = []
    for override in overrides:
        key = override.lstrip("+~").split("=")[0]
        if key.split(".")[0] != "launcher" and key not in TRAINING_LIMITS:
            kept.append(override)
    return kept


def check_same_job(run_dir: str | Path, overrides: Sequence[str]) -> None:
    """Stop when ``run_dir``'s record was made with other overrides than this job's (the
    launcher may differ: a sweep started on SLURM may be finished on this machine)."""
    record = read_record(run_dir) or {}
    recorded = record.get("overrides")
    if recorded is None or job_defining(recorded) == job_defining(overrides):
        return
    raise ValueError(
        f"{run_dir} holds a job run with overrides {list(recorded)}, but this job has "
        f"{list(overrides)}. A relaunch into the same hydra.sweep.dir must repeat the sweep's "
        "command line (and, for Optuna, its sampler seed) so each job number gets its old "
        "overrides back; for a different sweep use a new hydra.sweep.dir, or delete "
        f"{run_dir} to run this job afresh."
    )
