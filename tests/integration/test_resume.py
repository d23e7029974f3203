"""Exact resume: a run killed by SIGKILL resumes to the end an uninterrupted run reaches;
SIGTERM and SIGUSR1 save last.ckpt before the process exits."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.integration.test_train import mini_commands  # noqa: F401  (session fixture)
from tests.integration.tiny_kws import finish, train_process


def checkpoint_step(path: Path) -> int:
    try:
        return int(torch.load(path, weights_only=True, map_location="cpu")["global_step"])
    except Exception:  # being replaced right now
        return -1


def kill_when_saved(process: subprocess.Popen, last: Path, after_step: int) -> int:
    """SIGKILL ``process`` once its ``last.ckpt`` is past ``after_step``; the saved step."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if last.is_file() and (step := checkpoint_step(last)) > after_step:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            return step
        time.sleep(0.05)
    raise AssertionError(f"the run ended or stalled before a checkpoint past step {after_step}")


def logged_losses(run_dir: Path) -> dict[int, str]:
    rows = csv.DictReader((run_dir / "csv" / "metrics.csv").open())
    return {int(row["step"]): row["train/loss"] for row in rows if row.get("train/loss")}


@pytest.mark.slow
@pytest.mark.usefixtures("mini_commands")
def test_sigkill_mid_epoch_then_resume_ends_where_an_uninterrupted_run_ends(data_dir, tmp_path):
    # The reference runs as the killed run does (its own process, one thread): float results
    # depend on the thread count.
    reference_dir = tmp_path / "reference"
    finish(train_process(reference_dir, data_dir))
    reference = json.loads((reference_dir / "metrics.json").read_text())

    run_dir = tmp_path / "killed"
    killed_at = kill_when_saved(
        train_process(run_dir, data_dir), run_dir / "checkpoints" / "last.ckpt", after_step=26
    )
    assert 24 < killed_at < 48, "the kill must land in the second epoch, between epoch ends"
    assert not (run_dir / "metrics.json").exists()

    output = finish(train_process(run_dir, data_dir, "ckpt_path=last"))
    assert "resuming from" in output
    resumed = json.loads((run_dir / "metrics.json").read_text())
    for name in ("val/acc", "val/loss", "test/acc", "test/loss"):
        assert resumed[name] == pytest.approx(reference[name], rel=1e-6, abs=1e-7), name
    # The CSV log continues: one row per step, and the resumed steps equal the reference's.
    assert logged_losses(run_dir) == logged_losses(reference_dir)


@pytest.mark.slow
@pytest.mark.usefixtures("mini_commands")
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGUSR1])
def test_stop_signal_saves_last_checkpoint_before_exit(data_dir, tmp_path, stop_signal):
    run_dir = tmp_path / "preempted"
    last = run_dir / "checkpoints" / "last.ckpt"
    process = train_process(run_dir, data_dir, "callbacks.last_checkpoint.every_n_train_steps=3")
    deadline = time.monotonic() + 300
    while not (last.is_file() and checkpoint_step(last) >= 3):
        assert time.monotonic() < deadline and process.poll() is None, "training did not start"
        time.sleep(0.05)
    process.send_signal(stop_signal)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 143, "a stopped run must not look finished"
    assert not (run_dir / "metrics.json").exists()
    assert "stopped by a signal" in output and "ckpt_path=last" in output, output[-3000:]
    step = checkpoint_step(last)
    assert 3 <= step < 24 and f"step {step}" in output, "saved where the signal stopped it"
