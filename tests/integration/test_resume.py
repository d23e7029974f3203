"""Exact resume: a run killed by SIGKILL resumes to the end an uninterrupted run reaches;
SIGTERM and SIGUSR1 save last.ckpt before the process exits; a run that reached its
trainer.max_steps trains on when resumed with a higher one; run.json adds up one run's attempts.

The in-process tests kill a run right after a chosen ``last.ckpt`` is written (the file is
what a SIGKILL at that moment leaves), resume it with ``ckpt_path=last`` and compare it with the
same run never interrupted: weights bit for bit, metrics, the validation curve and its CSV rows.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
import torch

from speechlab.checkpoint.last import LastCheckpoint
from speechlab.run.train import run as train
from tests.conftest import composed, one_torch_thread
from tests.integration.test_train import (
    KWS,
    mini_commands,  # noqa: F401  (session fixture)
)
from tests.integration.tiny_kws import finish, train_process

pytestmark = pytest.mark.usefixtures("one_thread")

# Short epochs (3 batches of the corpus's ~90): epochs that limit_train_batches cuts short.
SHORT = [
    *KWS,
    "trainer.accelerator=cpu",
    "trainer.max_epochs=3",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_test_batches=2",
    "callbacks.progress_bar=null",
]


class Killed(BaseException):
    """Ends a run the way SIGKILL does: no handler saves anything (not an ``Exception``)."""


def kill_after_save(when: Callable[[LastCheckpoint, object], bool]) -> Callable:
    """A ``LastCheckpoint.save`` that kills the run once a save that ``when`` picks is written."""
    original = LastCheckpoint.save

    def save(self: LastCheckpoint, trainer, again: bool = True) -> None:
        original(self, trainer, again)
        if self._last_saved_step == trainer.global_step and when(self, trainer):
            raise Killed

    return save


def run_in(run_dir: Path, overrides: list[str]) -> dict[str, float]:
    with composed("train", overrides, run_dir) as cfg:
        return train(cfg)


def killed_then_resumed(
    run_dir: Path, overrides: list[str], when: Callable, monkeypatch: pytest.MonkeyPatch
) -> dict[str, float]:
    with monkeypatch.context() as patch:
        patch.setattr(LastCheckpoint, "save", kill_after_save(when))
        with pytest.raises(Killed):
            run_in(run_dir, overrides)
    assert not (run_dir / "metrics.json").exists()
    return run_in(run_dir, [*overrides, "ckpt_path=last"])


def at_step(step: int) -> Callable:
    return lambda checkpoint, trainer: trainer.global_step == step


def validation_rows(run_dir: Path) -> list[tuple[str, str, str]]:
    rows = csv.DictReader((run_dir / "csv" / "metrics.csv").open())
    return [(row["epoch"], row["step"], row["val/loss"]) for row in rows if row.get("val/loss")]


def assert_same_run(resumed_dir: Path, resumed: dict, reference_dir: Path, reference: dict):
    """Bit for bit the same weights, the same metrics, validations and validation log rows."""
    last, expected = (
        torch.load(d / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
        for d in (resumed_dir, reference_dir)
    )
    assert last["global_step"] == expected["global_step"]
    for name, weight in expected["state_dict"].items():
        assert torch.equal(last["state_dict"][name], weight), name
    assert resumed == reference  # val/*, test/* (of the same best checkpoint), train/*, lr

    def curve(d: Path) -> list:
        record = json.loads((d / "run.json").read_text())
        return [(p["epoch"], p["step"], p["value"]) for p in record["curve"]]

    assert curve(resumed_dir) == curve(reference_dir)
    assert validation_rows(resumed_dir) == validation_rows(reference_dir)


@pytest.fixture(scope="module")
def short_reference(mini_commands, data_dir, tmp_path_factory) -> Iterator[tuple]:  # noqa: F811
    """A run of 3 epochs of 3 batches, saving last.ckpt every 2 steps, never interrupted."""
    overrides = [
        *SHORT,
        f"paths.data_dir={data_dir}",
        "+trainer.limit_train_batches=3",
        "callbacks.last_checkpoint.every_n_train_steps=2",
    ]
    run_dir = tmp_path_factory.mktemp("short_reference")
    with one_torch_thread():
        yield overrides, run_dir, run_in(run_dir, overrides)


@pytest.mark.parametrize(
    "kill_step",
    [
        4,  # inside epoch 1
        # the last batch of epoch 1: its due save waits for the epoch's validation and end, or
        # the resume would pass over them; then the next epoch's first batch, not the 4th of
        # epoch 1 (limit_train_batches cut it short, the sampler had more)
        6,
    ],
)
def test_a_run_killed_after_a_checkpoint_under_limit_train_batches_resumes_exactly(
    short_reference, tmp_path, monkeypatch, kill_step
):
    overrides, reference_dir, reference = short_reference
    resumed = killed_then_resumed(tmp_path, overrides, at_step(kill_step), monkeypatch)
    assert_same_run(tmp_path, resumed, reference_dir, reference)


def after_epoch(epoch: int) -> Callable:
    """The save at the end of ``epoch`` (Lightning counts it processed, not yet completed)."""
    progress = lambda trainer: trainer.fit_loop.epoch_progress.current  # noqa: E731
    return lambda checkpoint, trainer: (
        progress(trainer).processed == epoch + 1 and progress(trainer).completed == epoch
    )


@pytest.mark.usefixtures("mini_commands")
@pytest.mark.parametrize(
    ("limits", "when"),
    [
        # a share of the corpus's batches: 2 an epoch
        (["+trainer.limit_train_batches=0.03"], after_epoch(0)),
        # under max_steps Lightning replayed the end of the saved epoch: early stopping then
        # found no validation metric and stopped the resumed run with an error
        (["+trainer.limit_train_batches=3", "+trainer.max_steps=5"], after_epoch(0)),
        # a validation inside the epoch (after 2 of its 4 batches) that a due save waits for
        (
            [
                "+trainer.limit_train_batches=4",
                "+trainer.val_check_interval=2",
                "callbacks.last_checkpoint.every_n_train_steps=1",
            ],
            at_step(2),
        ),
    ],
    ids=["float_limit", "max_steps", "val_check_interval"],
)
def test_a_run_killed_under_other_limits_resumes_exactly(
    data_dir, tmp_path, monkeypatch, limits, when
):
    overrides = [*SHORT, f"paths.data_dir={data_dir}", "trainer.max_epochs=2", *limits]
    reference = run_in(tmp_path / "reference", overrides)
    resumed = killed_then_resumed(tmp_path / "killed", overrides, when, monkeypatch)
    assert_same_run(tmp_path / "killed", resumed, tmp_path / "reference", reference)


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


@pytest.mark.usefixtures("mini_commands")
def test_a_run_stopped_by_max_steps_trains_on_to_a_higher_max_steps(data_dir, tmp_path, caplog):
    # No schedule: its length follows max_steps, and the resumed run must equal the long one.
    overrides = [
        *SHORT,
        f"paths.data_dir={data_dir}",
        "+trainer.limit_train_batches=3",
        "model.scheduler=null",
    ]
    reference = run_in(tmp_path / "reference", [*overrides, "+trainer.max_steps=7"])
    run_dir = tmp_path / "run"
    run_in(run_dir, [*overrides, "+trainer.max_steps=4"])  # stops inside epoch 1
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"

    longer = [*overrides, "+trainer.max_steps=7", "ckpt_path=last"]
    resumed = run_in(run_dir, longer)
    assert_same_run(run_dir, resumed, tmp_path / "reference", reference)
    record = json.loads((run_dir / "run.json").read_text())
    assert len(record["attempts"]) == 2 and record["trained"]["steps"] == 7

    # The same limits again: nothing left to train, said so, and the metrics stand.
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = last.stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger="speechlab.run.resume"):
        again = run_in(run_dir, longer)
    assert "nothing left to train" in caplog.text and "trainer.max_steps=7" in caplog.text
    assert again == json.loads((run_dir / "metrics.json").read_text()) == resumed
    assert last.stat().st_mtime_ns == saved
    assert len(json.loads((run_dir / "run.json").read_text())["attempts"]) == 2


@pytest.mark.usefixtures("mini_commands")
def test_a_fresh_run_in_a_used_run_dir_keeps_its_own_attempts_and_curve(data_dir, tmp_path):
    overrides = [*SHORT, f"paths.data_dir={data_dir}", "+trainer.limit_train_batches=3"]
    run_in(tmp_path, [*overrides, "+trainer.max_steps=2"])
    run_in(tmp_path, [*overrides, "+trainer.max_steps=4", "ckpt_path=last"])
    resumed = json.loads((tmp_path / "run.json").read_text())
    assert len(resumed["attempts"]) == 2  # one run: its two attempts add up

    run_in(tmp_path, [*overrides, "trainer.max_epochs=1"])  # another run, same dir, no resume
    record = json.loads((tmp_path / "run.json").read_text())
    (attempt,) = record["attempts"]
    started, ended = (datetime.fromisoformat(attempt[k]) for k in ("started", "ended"))
    assert record["wall_s"] == pytest.approx((ended - started).total_seconds(), abs=1e-3)
    assert [(p["epoch"], p["attempt"]) for p in record["curve"]] == [(0, 0)]
    assert record["trained"] == {
        "steps": 3,
        "epochs": 1,
        "unfinished_epoch_batches": 0,
        "stopped_early": False,
        "max_time_s": None,
    }
    (previous,) = record["previous_runs"]
    assert previous["attempts"] == resumed["attempts"] and previous["curve"] == resumed["curve"]


@pytest.mark.usefixtures("mini_commands")
def test_resume_after_max_steps_ended_a_run_mid_epoch_trains_and_validates_the_rest(
    data_dir, tmp_path, caplog
):
    overrides = [*SHORT, f"paths.data_dir={data_dir}", "+trainer.limit_train_batches=3"]
    # 3-batch epochs: max_steps=8 ends the run 2 batches into epoch 2, never validated.
    run_in(tmp_path, [*overrides, "trainer.max_epochs=10", "+trainer.max_steps=8"])
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["trained"]["epochs"] == 2 and record["trained"]["unfinished_epoch_batches"] == 2
    assert [p["epoch"] for p in record["curve"]] == [0, 1]

    # max_epochs=3 leaves one batch and epoch 2's validation: they run.
    with caplog.at_level(logging.INFO, logger="speechlab.run.resume"):
        run_in(tmp_path, [*overrides, "trainer.max_epochs=3", "ckpt_path=last"])
    assert "finished after 8 steps: 2 whole epochs and 2 batches of epoch 2" in caplog.text
    assert "nothing left" not in caplog.text
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["trained"]["steps"] == 9 and record["trained"]["epochs"] == 3
    assert record["trained"]["unfinished_epoch_batches"] == 0
    assert [(p["epoch"], p["step"]) for p in record["curve"]] == [(0, 3), (1, 6), (2, 9)]

    # Now three whole epochs are trained: nothing is left under the same limits.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="speechlab.run.resume"):
        run_in(tmp_path, [*overrides, "trainer.max_epochs=3", "ckpt_path=last"])
    assert "it trained 3 whole epochs and trainer.max_epochs=3" in caplog.text


def test_resume_with_another_models_checkpoint_stops_before_any_data_is_prepared(
    short_reference, tmp_path
):
    _, reference_dir, _ = short_reference  # a finished model=kws_cnn run
    copied = tmp_path / "r1b"
    shutil.copytree(reference_dir, copied)
    last = copied / "checkpoints" / "last.ckpt"
    saved, finished = last.read_bytes(), json.loads((copied / "run.json").read_text())
    fresh = tmp_path / "data"
    base = [f"paths.data_dir={fresh}", "trainer.accelerator=cpu", "callbacks.progress_bar=null"]
    # The default model=ctc_lstm, resuming the kws run in its dir or from its file elsewhere.
    for run_dir, given in [(copied, "last"), (tmp_path / "other", str(last))]:
        with pytest.raises(ValueError) as error:
            run_in(run_dir, [*base, "trainer.max_epochs=10", f"ckpt_path={given}"])
        message = str(error.value)
        assert message.startswith(f"ckpt_path={given}")
        assert "holds a KeywordSpottingTask (model=kws_cnn data=mini_commands)" in message
        assert "builds a CTCTask (model=ctc_lstm data=mini_voice)" in message
        assert "To resume it, pass model=kws_cnn data=mini_commands" in message
    assert not fresh.exists(), "the check comes before any data is prepared"
    assert last.read_bytes() == saved
    record = json.loads((copied / "run.json").read_text())
    assert record["status"] == "finished" and record["metrics"] == finished["metrics"]
    assert record["attempts"][:-1] == finished["attempts"]
    assert record["attempts"][-1]["status"] == "failed"
    assert "holds a KeywordSpottingTask" in record["attempts"][-1]["error"]


@pytest.mark.usefixtures("mini_commands")
def test_resume_with_the_same_task_but_another_network_says_what_to_pass(
    short_reference, data_dir, tmp_path
):
    _, reference_dir, _ = short_reference
    last = reference_dir / "checkpoints" / "last.ckpt"
    overrides = [*SHORT, f"paths.data_dir={data_dir}", f"ckpt_path={last}"]
    overrides = [o if o != "model=kws_cnn" else "model=kws_bc_resnet" for o in overrides]
    with pytest.raises(ValueError) as error:
        run_in(tmp_path, overrides)
    message = str(error.value)
    assert "weights do not fit the KeywordSpottingTask this run built" in message
    assert "To resume it, pass model=kws_cnn" in message
    assert not (tmp_path / "checkpoints").exists()
