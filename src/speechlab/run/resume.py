"""Where a run picks up: skip a finished sweep job, resume an unfinished one, or ``ckpt_path=last``.

A multirun relaunched with the same ``hydra.sweep.dir`` gives each job its old run dir again
(``<sweep dir>/<job num>``). What that dir holds decides what the job does:

- ``run.json`` says *finished*: skip training, return the recorded metrics;
- ``checkpoints/last.ckpt`` exists (killed, timed out, failed after an epoch): resume from it;
- neither: train from scratch.

A single run resumes only when asked: ``ckpt_path=last`` (this run dir's ``last.ckpt``) or
``ckpt_path=<file>``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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


def find_resume_state(run_dir: str | Path) -> ResumeState | None:
    """The state a job left in ``run_dir``: finished (its metrics), a ``last.ckpt``, or None."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if record and record.get("status") == FINISHED and isinstance(record.get("metrics"), dict):
        return ResumeState(metrics={k: float(v) for k, v in record["metrics"].items()})
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
    ckpt_path: str | None, run_dir: str | Path, multirun: bool, overrides: Sequence[str]
) -> ResumeState:
    """What this run starts from.

    In a multirun the job's own run dir wins (a relaunch skips or resumes it); its recorded
    overrides must then equal ``overrides``, or the dir belongs to another job and we stop.
    Otherwise ``ckpt_path`` (``null`` | ``last`` | a path) says.
    """
    if multirun:
        state = find_resume_state(run_dir)
        if state is not None:
            check_same_job(run_dir, overrides)
            if state.finished:
                log.info("job already finished in %s (run.json): skipping its training", run_dir)
            else:
                log.info("resuming unfinished job from %s", state.ckpt_path)
            return state
    return ResumeState(ckpt_path=resolve_ckpt_path(ckpt_path, run_dir))


def job_defining(overrides: Sequence[str]) -> list[str]:
    """The overrides that make a job what it is: all but the launcher's (how it is run)."""
    return [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0] != "launcher"]


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
