"""Expected stops print their message alone; unexpected errors keep their traceback.

A run that stops because of what the user gave it (a config value that does not exist or does
not fit, a corpus that is not where the config says, a run that diverged, a metric a sweep cannot
optimise) is not a bug in speechlab: its message says what was expected, where, and what to do,
and a Python traceback above it only hides that. :func:`stops_as_messages` wraps the entry points
(``train.py``, ``evaluate.py``): such an error leaves as :class:`RunStopped`, which Hydra prints
as its message alone (a ``CompactHydraException``) and exits with status 1. The traceback still
goes to the run log (``<run dir>/<task>.log``), and ``HYDRA_FULL_ERROR=1`` prints it as before
(Hydra's own last line says so).
In a multirun the job's record (``run.json``) keeps the message, so the sweep summary shows it,
and the sweep goes on with the next job as before.

An error counts as expected when it was raised on purpose: by a ``raise`` statement of
speechlab's own code (which says what to do; an ``AssertionError``, a ``KeyError`` from a lookup
or a ``TypeError`` from a wrong call are not such statements), by a Hydra or OmegaConf config
error, or by Lightning's ``MisconfigurationException``. Anything else, from torch, a library or a
slip in our code, is a bug to report: it keeps its traceback.
"""

from __future__ import annotations

import linecache
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.errors import CompactHydraException, HydraException, InstantiationException
from hydra.experimental.callback import Callback
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/speechlab


class RunStopped(CompactHydraException):
    """An expected stop: Hydra prints ``str(self)`` alone and exits with status 1."""


def raised_on_purpose(error: BaseException) -> bool:
    """Whether ``error`` is an expected, user-caused stop (see the module docstring). A
    constructor's error that Hydra wraps (``InstantiationException``) is judged by its cause."""
    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        return raised_on_purpose(error.__cause__)
    if isinstance(error, (OmegaConfBaseException, MisconfigurationException, HydraException)):
        return True
    traceback = error.__traceback__
    if traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    filename = traceback.tb_frame.f_code.co_filename
    try:
        inside = Path(filename).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):
        return False
    return inside and linecache.getline(filename, traceback.tb_lineno).lstrip().startswith("raise")


def message_of(error: BaseException) -> str:
    """The error's own words (a config error's cause's, when speechlab raised that), and where
    its traceback went."""
    where = ""
    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        where = f" ({str(error).splitlines()[0].rstrip(':')})"  # Error in call to target '...'
        error = error.__cause__
    cause: BaseException | None = error
    while isinstance(cause, OmegaConfBaseException):  # OmegaConf re-raises without "from"
        cause = cause.__cause__ or cause.__context__
    if cause is not None and raised_on_purpose(cause):
        error = cause  # a resolver's own message, not OmegaConf's wrapping of it
    text = (str(error).strip() or type(error).__name__) + where
    logs = _run_logs()
    kept = f"; its traceback is in {logs[-1].baseFilename}" if logs else ""
    return f"Error: {text}\n({type(error).__name__}{kept})"


def _run_logs() -> list[logging.FileHandler]:
    """The run log's handlers: the root logger's files (Hydra's ``<run dir>/<task>.log``)."""
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.FileHandler) and h.baseFilename != os.devnull
    ]


def _traceback_to_run_log(error: BaseException) -> None:
    """The full traceback into the run log only, not onto the console."""
    exc_info = (type(error), error, error.__traceback__)
    record = logging.LogRecord(log.name, logging.ERROR, __file__, 0, "run stopped", None, exc_info)
    for handler in _run_logs():
        handler.handle(record)


@contextmanager
def stops_as_messages() -> Iterator[None]:
    """Turn an expected error raised inside into :class:`RunStopped` (its message alone on the
    console, the traceback in the run log); let every other error through unchanged. With
    ``HYDRA_FULL_ERROR=1`` nothing is changed."""
    try:
        yield
    except Exception as error:
        if os.environ.get("HYDRA_FULL_ERROR") == "1" or isinstance(error, RunStopped):
            raise
        if not raised_on_purpose(error):
            cause = error.__cause__
            if isinstance(error, InstantiationException) and cause is not None:
                # a bug in a constructor: its own traceback, not Hydra's one-line wrapping
                raise cause.with_traceback(cause.__traceback__) from None
            raise
        _traceback_to_run_log(error)
        stopped = RunStopped(message_of(error))
        if isinstance(error, OmegaConfBaseException):
            raise stopped from None  # Hydra would print an OmegaConf cause a second time
        raise stopped from error


class CheckBeforeSweep(Callback):
    """A Hydra callback: before a multirun launches any job, resolve its launcher and sweeper
    settings (``${slurm_gpus_per_node:...}`` asks SLURM, for one), so that a setting that cannot
    work stops the sweep at once with its message alone (exit status 1), as a job's expected
    stop does. (Hydra turns a callback's exceptions into warnings, so the stop is a
    ``SystemExit``.)"""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_") or "")
        if launcher.endswith("SlurmLauncher") and shutil.which("sbatch") is None:
            sys.stderr.write(
                "hydra.launcher: Error: launcher=submitit_slurm submits each job with SLURM's "
                "sbatch, which is not on this machine: start the sweep on the cluster's login "
                "node, or run its jobs here with launcher=submitit_local or launcher=joblib\n"
            )
            raise SystemExit(1)
        for key in ("launcher", "sweeper"):
            node = config.hydra.get(key)
            if node is None:
                continue
            try:
                OmegaConf.to_container(node, resolve=True)
            except Exception as error:
                if os.environ.get("HYDRA_FULL_ERROR") == "1" or not raised_on_purpose(error):
                    raise
                sys.stderr.write(f"hydra.{key}: {message_of(error)}\n")
                raise SystemExit(1) from error
