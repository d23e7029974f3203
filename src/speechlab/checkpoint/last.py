"""Resumable runs: ``last.ckpt`` written atomically and often, random state, preemption signals.

A run killed at any moment (SIGKILL, node failure) resumes from ``checkpoints/last.ckpt`` with
``ckpt_path=last``: the same epoch and batch position (the train loader is stateful, see
:class:`speechlab.data.loader.ResumableDataLoader`), optimizer, scheduler, callbacks and random
state, so it ends where an uninterrupted run with the same seed ends. SIGTERM and SIGUSR1 (what
clusters send before preempting or at a job's time limit) save ``last.ckpt`` before the process
exits.
"""

from __future__ import annotations

import logging
import os
import random
import signal
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

LAST_NAME = "last.ckpt"


def weights_finite(module: torch.nn.Module) -> bool:
    """Whether every parameter and buffer of ``module`` is finite: a checkpoint of weights that
    are not would be no state to resume from."""
    tensors = [t for t in [*module.parameters(), *module.buffers()] if t.is_floating_point()]
    return not tensors or bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def validation_or_epoch_end_follows(trainer: L.Trainer) -> bool:
    """Whether validation, the end of the epoch or of training (``max_steps``) comes right after
    the training batch that just ended."""
    fit_loop = trainer.fit_loop
    epoch_loop = fit_loop.epoch_loop
    if epoch_loop._is_training_done:
        return True
    return fit_loop._data_fetcher is not None and epoch_loop._should_check_val_fx(
        fit_loop._data_fetcher
    )


class StopWithFiniteWeights(RuntimeError):
    """A stop raised in the middle of a training step that left the weights as the last finite
    step made them (the non-finite step guard): :class:`LastCheckpoint` saves them to
    ``last.ckpt`` at the stop, and the message then says where (``saved_to``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.saved_to: Path | None = None

    def __str__(self) -> str:
        message = super().__str__()
        if self.saved_to is None:
            return message
        return f"{message} The weights of the last finite step are saved in {self.saved_to}."


class LastCheckpoint(Checkpoint):
    """Keep ``<dirpath>/last.ckpt`` current: every ``every_n_train_steps`` steps, at the end of
    every epoch, and when the run is stopped by SIGTERM/SIGUSR1 (or fails with an exception).
    A step due to be saved that a validation or the epoch's end follows is saved after them:
    resumed from before them, Lightning would pass over them.

    The file is written next to its final name and renamed over it, so a kill during the write
    leaves the previous ``last.ckpt`` intact. SIGUSR1 is handled only when nothing else (such as
    Lightning's SLURM auto-requeue) has claimed it.

    Args:
        dirpath: the run's checkpoint folder.
        every_n_train_steps: save every this many optimizer steps; 0 saves only at epoch ends.
    """

    def __init__(self, dirpath: str | Path, every_n_train_steps: int = 100) -> None:
        if every_n_train_steps < 0:
            raise ValueError(f"every_n_train_steps must be >= 0, got {every_n_train_steps}")
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps
        self._last_saved_step = -1
        self._save_after_validation = False
        self._training = False  # the fit reached its training loop
        self._previous_sigusr1: Any = None

    @property
    def path(self) -> Path:
        return self.dirpath / LAST_NAME

    def save(self, trainer: L.Trainer, again: bool = True) -> None:
        """Write ``last.ckpt`` (all ranks call this; rank 0 writes); ``again=False`` skips a step
        that was saved already."""
        if trainer.sanity_checking or (not again and trainer.global_step == self._last_saved_step):
            return
        if not weights_finite(trainer.lightning_module):
            step = self.saved_step()
            log.warning(
                "weights are not finite at step %d: %s",
                trainer.global_step,
                f"{self.path} keeps the state of step {step}"
                if step is not None
                else f"{self.path} is not written",
            )
            return
        partial = self.dirpath / f".{LAST_NAME}.partial"
        # the full state (optimizer, loops): resume needs it; saying so keeps Lightning quiet
        trainer.save_checkpoint(partial, weights_only=False)
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        trainer.strategy.barrier("last_checkpoint")
        self._last_saved_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not (self.every_n_train_steps and step and step % self.every_n_train_steps == 0):
            return
        if validation_or_epoch_end_follows(trainer):
            # A resume from the state before them would pass over them (Lightning counts the
            # validation done and the epoch ended): save once they are over instead.
            self._save_after_validation = True
            return
        self.save(trainer, again=False)

    def on_validation_end(self, trainer, pl_module) -> None:
        # A validation inside the epoch (val_check_interval) that a due save waited for; at the
        # epoch's end the save comes with on_train_epoch_end, after the callbacks that judge it.
        if (
            self._save_after_validation
            and trainer.state.fn == "fit"
            and not trainer.sanity_checking
            and not trainer.fit_loop.epoch_loop._is_training_done
        ):
            self._save_after_validation = False
            self.save(trainer, again=False)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # After the epoch's validation and the callbacks that judge it (early stopping, best
        # checkpoint): a resume from here starts the next epoch with all of them up to date.
        self._save_after_validation = False
        self.save(trainer)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if trainer.state.fn != "fit":
            return
        if isinstance(exception, StopWithFiniteWeights):
            # The weights are those of the last finite step (skipped steps change nothing):
            # saved even when no periodic save happened yet, and the message says where.
            self.save(trainer)
            if self.path.is_file() and self._last_saved_step == trainer.global_step:
                exception.saved_to = self.path
            return
        if not isinstance(exception, SIGTERMException):
            # Mid-step failures leave the loop counters half-advanced: keep the last good file.
            step = self.saved_step()
            if step is None:
                return
            where = (
                f"at epoch {trainer.current_epoch}, step {trainer.global_step}"
                if self._training
                else "before training started"
            )
            log.error(
                "the run failed %s; %s holds the state of step %d. Fix the cause, then resume "
                "with ckpt_path=last hydra.run.dir=%s",
                where,
                self.path,
                step,
                trainer.default_root_dir,
            )
            return
        self.save(trainer)
        log.warning(
            "training stopped by a signal at epoch %d, step %d; saved %s. Resume with "
            "ckpt_path=last hydra.run.dir=%s",
            trainer.current_epoch,
            trainer.global_step,
            self.path,
            trainer.default_root_dir,
        )

    def saved_step(self) -> int | None:
        """The step ``last.ckpt`` holds (None: no readable file): the one this run saved last,
        else the file's own (a resumed run that has not saved yet keeps the file it resumed
        from, whatever step that is)."""
        if self._last_saved_step >= 0:
            return self._last_saved_step
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)
            return int(saved["global_step"])
        except Exception:  # no file, or none torch reads: nothing to say about it
            return None

    def on_train_start(self, trainer, pl_module) -> None:
        self._training = True

    def on_fit_start(self, trainer, pl_module) -> None:
        self._training = False
        if hasattr(signal, "SIGUSR1") and signal.getsignal(signal.SIGUSR1) in (
            signal.SIG_DFL,
            None,
        ):
            connector = trainer._signal_connector

            def stop_after_this_batch(signum, frame) -> None:
                log.info("received signal %d: saving last.ckpt after this batch", signum)
                connector.received_sigterm = True  # Lightning stops at the batch end

            self._previous_sigusr1 = signal.signal(signal.SIGUSR1, stop_after_this_batch)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.save(trainer, again=False)
        self._restore_sigusr1()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._restore_sigusr1()

    def _restore_sigusr1(self) -> None:
        if self._previous_sigusr1 is not None:
            signal.signal(signal.SIGUSR1, self._previous_sigusr1)
            self._previous_sigusr1 = None

    def state_dict(self) -> dict[str, Any]:
        return {"dirpath": str(self.dirpath)}


class ExactResume(Callback):
    """What Lightning leaves out of a resume, so a resumed run continues exactly where it was.

    - The train loader's position: Lightning restores a stateful loader only if it has not
      iterated it yet, but a scheduler asking ``trainer.estimated_stepping_batches`` makes it
      iterate before the checkpoint is loaded. Here the saved position is loaded when the training
      loop starts, and the epoch's iterator restarted from it. Which epoch that is, the loop
      says (not the loader: ``limit_train_batches`` and ``max_steps`` end epochs early), so a
      checkpoint of a finished epoch resumes with the next epoch's first batch.
    - The Python, NumPy and torch (CPU and CUDA) random states, saved with every checkpoint and put
      back at the same moment, so SpecAugment and dropout draw what they would have drawn.
    - The loop's position when the checkpoint ended an epoch (see :func:`settle_epoch_end`).
    - The last logged metrics (``trainer.callback_metrics``): a resumed run that validates no
      more (it was killed after its last validation, or ``max_steps`` ends it first) reports the
      validation metrics an uninterrupted run reports.

    Stored as tensors and lists only, so ``torch.load(weights_only=True)`` still reads the file.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._at_epoch_boundary = False

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if state is not None:
            state["metrics"] = {
                name: value.detach().cpu().clone()
                for name, value in trainer.callback_metrics.items()
                if isinstance(value, torch.Tensor)
            }

    def state_dict(self) -> dict[str, Any]:
        python_version, python_state, python_gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state: dict[str, Any] = {
            "python": [python_version, list(python_state), python_gauss],
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        fit_loop = checkpoint.get("loops", {}).get("fit_loop")
        self._at_epoch_boundary = bool(fit_loop) and settle_epoch_end(fit_loop)

    def on_train_start(self, trainer, pl_module) -> None:
        fit_loop = trainer.fit_loop
        if self._at_epoch_boundary:
            # Under max_steps Lightning marks every resumed loop as restarting, and an epoch loop
            # restarting at its first batch replays a batch end (no batch, one more logging step).
            # Resumed between two epochs, the next one begins as it would have.
            self._at_epoch_boundary = False
            fit_loop.epoch_loop.restarting = False
            fit_loop.epoch_loop.reset_restart_stage()
        loader_states, fit_loop._combined_loader_states_to_load = (
            fit_loop._combined_loader_states_to_load,
            [],
        )
        random_state, self._pending = self._pending, None
        if random_state is not None and random_state.get("metrics"):
            device = pl_module.device
            trainer.callback_metrics.update(
                {name: value.to(device) for name, value in random_state["metrics"].items()}
            )
        combined, fetcher = fit_loop._combined_loader, fit_loop._data_fetcher
        if combined is None or fetcher is None:
            if random_state is not None:
                _set_random_state(random_state)
            return
        if loader_states:
            combined._load_state_dicts(loader_states)
        # The epoch the loop resumes: Lightning sets it on the samplers as the epoch begins.
        epoch = fit_loop.epoch_progress.current.processed
        starts = [
            loader.resume_epoch(epoch)
            for loader in combined.flattened
            if callable(getattr(loader, "resume_epoch", None))
        ]
        starts = [start for start in starts if start is not None]
        if not starts:  # nothing restored to position (or loaders that cannot be)
            if random_state is not None:
                _set_random_state(random_state)
            return
        at_epoch_start = all(starts)
        # Creating a loader iterator may draw a seed from torch's generator. An uninterrupted run
        # created it before a mid-epoch checkpoint was saved, but after an end-of-epoch one.
        if at_epoch_start and random_state is not None:
            _set_random_state(random_state)
        iter(fetcher)  # the resumed epoch restarts at the restored position
        if not at_epoch_start and random_state is not None:
            _set_random_state(random_state)


def settle_epoch_end(fit_loop: dict[str, Any]) -> bool:
    """Give a fit-loop state saved at the end of an epoch (``on_train_epoch_end``: Lightning has
    counted the epoch processed but not yet completed) a meaning Lightning resumes as such.

    - The epoch ran out of batches: the state after it, that epoch completed and the next not
      begun (returns True). Without a ``max_steps`` Lightning resumes so itself; with one it
      replays the epoch's end, so callbacks that judge the epoch ran twice, the second time
      without its validation metrics (early stopping then stopped the run with an error).
    - ``max_steps`` (or a stop request) ended it early: the state inside it, so a resume with a
      higher ``max_steps`` trains the rest of the epoch, validates and ends it.

    ``fit_loop`` (a checkpoint's ``loops.fit_loop``) is modified in place; any other state is
    left as it is (returns False).
    """
    epochs = fit_loop.get("epoch_progress", {})
    batches = fit_loop.get("epoch_loop.batch_progress", {})
    try:
        total, current = epochs["total"], epochs["current"]
        ended = all(
            p["ready"] == p["started"] == p["processed"] == p["completed"] + 1
            for p in (total, current)
        )
    except (KeyError, TypeError):
        return False
    if not ended:
        return False
    if not batches.get("is_last_batch"):
        total["processed"] = total["completed"]
        current["processed"] = current["completed"]
        return False
    total["completed"] = total["processed"]
    current["completed"] = current["processed"]
    # What the epoch loop resets when an epoch begins (TrainingEpochLoop.reset, not restarting).
    for key in ("epoch_loop.batch_progress", "epoch_loop.scheduler_progress"):
        if key in fit_loop:
            _zero(fit_loop[key]["current"])
    batches["is_last_batch"] = False
    optim = fit_loop.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer")
    for part in (optim or {}).values():
        _zero(part["current"])
    validation = fit_loop.get("epoch_loop.val_loop.batch_progress")
    if validation:
        _zero(validation["total"])
    return True


def _zero(counters: dict[str, Any]) -> None:
    for key in counters:
        counters[key] = 0


def _set_random_state(state: dict[str, Any]) -> None:
    version, python_state, gauss = state["python"]
    random.setstate((version, tuple(python_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
