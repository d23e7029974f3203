"""Run records and resume planning: what a relaunched job or ``ckpt_path=last`` starts from."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from speechlab.run.resume import (
    ResumeState,
    TrainingLimits,
    find_resume_state,
    plan_resume,
    resolve_ckpt_path,
)
from speechlab.run.run_record import RunRecord, best_of, read_record, wall_seconds

LR = ["model.optimizer.lr=0.001"]


def make_last(run_dir: Path) -> Path:
    last = run_dir / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"checkpoint")
    return last


def test_a_fresh_dir_trains_from_scratch(tmp_path):
    assert find_resume_state(tmp_path) is None
    state = plan_resume(None, tmp_path, multirun=True, overrides=LR)
    assert state.ckpt_path is None and not state.finished


def test_a_finished_job_is_skipped_with_its_recorded_metrics(tmp_path):
    make_last(tmp_path)
    record = RunRecord(tmp_path, "val/acc", "max", LR)
    record.start()
    record.finish({"val/acc": 0.5, "test/acc": 0.4})
    state = plan_resume(None, tmp_path, multirun=True, overrides=LR)
    assert state.finished and state.metrics == {"val/acc": 0.5, "test/acc": 0.4}
    # A single run never skips: it does what ckpt_path says.
    assert not plan_resume(None, tmp_path, multirun=False, overrides=LR).finished


def test_an_unfinished_or_failed_job_resumes_from_its_last_checkpoint(tmp_path):
    last = make_last(tmp_path)
    record = RunRecord(tmp_path, "val/cer", "min", LR)
    record.start()
    record.fail(RuntimeError("out of memory\nmore lines"))
    saved = read_record(tmp_path)
    assert saved["status"] == "failed" and saved["error"] == "RuntimeError: out of memory"
    state = plan_resume(None, tmp_path, multirun=True, overrides=LR)
    assert state.ckpt_path == str(last) and not state.finished


def test_a_dir_of_another_job_stops_the_relaunch(tmp_path):
    make_last(tmp_path)
    RunRecord(tmp_path, "val/acc", "max", LR).start()
    with pytest.raises(ValueError, match="hydra.sweep.dir") as error:
        plan_resume(None, tmp_path, multirun=True, overrides=["model.optimizer.lr=0.003"])
    assert "model.optimizer.lr=0.001" in str(error.value) and str(tmp_path) in str(error.value)
    # Another launcher runs the same job.
    assert plan_resume(None, tmp_path, True, [*LR, "launcher=joblib"]).ckpt_path is not None


def test_ckpt_path_last_means_this_run_dirs_last_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"hydra.run.dir=<old run dir> ckpt_path=last"):
        resolve_ckpt_path("last", tmp_path)
    last = make_last(tmp_path)
    assert resolve_ckpt_path("last", tmp_path) == str(last)
    assert resolve_ckpt_path(str(last), tmp_path) == str(last)
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        resolve_ckpt_path(str(tmp_path / "other.ckpt"), tmp_path)
    assert resolve_ckpt_path(None, tmp_path) is None
    assert plan_resume("last", tmp_path, multirun=False, overrides=[]).ckpt_path == str(last)


def test_record_times_every_attempt_and_ignores_missing_values(tmp_path):
    record = {
        "attempts": [
            {"started": "2026-01-01T00:00:00+00:00", "updated": "2026-01-01T00:01:00+00:00"},
            {"started": "2026-01-01T01:00:00+00:00", "ended": "2026-01-01T01:00:30+00:00"},
        ]
    }
    assert wall_seconds(record) == 90.0  # the killed attempt counts until its last update
    curve = [{"value": 0.3}, {"value": None}, {"value": float("nan")}, {"value": 0.2}]
    assert best_of(curve, "min") == 0.2 and best_of(curve, "max") == 0.3
    assert best_of([], "max") is None
    (tmp_path / "run.json").write_text("{not json")
    assert read_record(tmp_path) is None
    (tmp_path / "run.json").write_text(json.dumps([1, 2]))
    assert read_record(tmp_path) is None


def finish_run(run_dir: Path, overrides: list[str], trained: dict) -> None:
    record = RunRecord(run_dir, "val/acc", "max", overrides)
    record.start()
    record.record["trained"] = {"unfinished_epoch_batches": 0, "stopped_early": False, **trained}
    record.finish({"val/acc": 0.5})


def test_a_finished_job_trains_on_only_when_its_limits_were_raised(tmp_path, caplog):
    last = make_last(tmp_path)
    finish_run(tmp_path, [*LR, "trainer.max_steps=4"], {"steps": 4, "epochs": 2})
    # A relaunched sweep with a higher max_steps: the same job (the limits aside), trained on.
    longer = [*LR, "trainer.max_steps=7"]
    state = plan_resume(None, tmp_path, True, longer, TrainingLimits(7, 10))
    assert state.ckpt_path == str(last) and not state.finished
    assert plan_resume("last", tmp_path, False, [], TrainingLimits(7, 10)).ckpt_path == str(last)
    # max_epochs=2 ends it as well: both limits must leave something.
    assert plan_resume(None, tmp_path, True, longer, TrainingLimits(7, 2)).finished
    # The same limits: nothing left, and the log says so and how to train on.
    caplog.set_level("WARNING", logger="speechlab.run.resume")
    for multirun in (True, False):
        state = plan_resume("last", tmp_path, multirun, LR, TrainingLimits(4, 10))
        assert state.finished and state.metrics == {"val/acc": 0.5}
    assert "nothing left to train" in caplog.text and "trainer.max_steps=4" in caplog.text
    assert "Raise trainer.max_steps or trainer.max_epochs" in caplog.text


def test_a_job_that_early_stopping_ended_is_finished_whatever_its_limits(tmp_path, caplog):
    make_last(tmp_path)
    finish_run(tmp_path, LR, {"steps": 40, "epochs": 5, "stopped_early": True})
    caplog.set_level("WARNING", logger="speechlab.run.resume")
    assert plan_resume("last", tmp_path, False, LR, TrainingLimits(-1, 100)).finished
    assert "early stopping ended it after 40 steps: 5 whole epochs" in caplog.text


def test_resume_after_a_run_a_limit_ended_mid_epoch_trains_the_rest_of_that_epoch(tmp_path, caplog):
    # max_steps=8 ended the run two batches into epoch 2 (of 3-batch epochs): two whole epochs.
    last = make_last(tmp_path)
    finish_run(tmp_path, LR, {"steps": 8, "epochs": 2, "unfinished_epoch_batches": 2})
    caplog.set_level("INFO", logger="speechlab.run.resume")
    for limits in (TrainingLimits(-1, 3), TrainingLimits(100, 3)):  # the rest of epoch 2 is left
        assert plan_resume("last", tmp_path, False, LR, limits).ckpt_path == str(last)
    assert "8 steps: 2 whole epochs and 2 batches of epoch 2" in caplog.text
    caplog.clear()
    for limits, reason in [
        (TrainingLimits(8, 3), "it trained 8 steps and trainer.max_steps=8"),
        (TrainingLimits(-1, 2), "it trained 2 whole epochs and trainer.max_epochs=2"),
    ]:
        assert plan_resume("last", tmp_path, False, LR, limits).finished
        assert reason in caplog.text


def test_resume_after_max_time_ended_a_run_trains_on_only_under_a_longer_max_time(tmp_path):
    last = make_last(tmp_path)
    finish_run(tmp_path, LR, {"steps": 5, "epochs": 1, "max_time_s": 60.0})
    assert TrainingLimits.of({"max_time": "00:00:01:00"}).max_time_s == 60.0
    assert TrainingLimits.of({"max_time": {"minutes": 2}}).max_time_s == 120.0
    same = TrainingLimits.of({"max_time": "00:00:01:00", "max_epochs": 10})
    assert plan_resume("last", tmp_path, False, LR, same).finished
    # A relaunched sweep with a longer max_time: the same job, trained on.
    longer = [*LR, "+trainer.max_time=00:00:02:00"]
    assert plan_resume(None, tmp_path, True, longer, TrainingLimits(-1, 10, 120.0)).ckpt_path
    for limits in (TrainingLimits(-1, 10, 120.0), TrainingLimits(-1, 10, None)):
        assert plan_resume("last", tmp_path, False, LR, limits).ckpt_path == str(last)


def test_a_failed_start_in_a_finished_run_dir_keeps_it_finished(tmp_path):
    make_last(tmp_path)
    finish_run(tmp_path, [*LR, "model=kws_cnn"], {"steps": 15, "epochs": 5})
    finished = read_record(tmp_path)
    # e.g. ckpt_path=last without model=kws_cnn: another model's monitor, stopped before training
    attempt = RunRecord(tmp_path, "val/loss", "min", ["ckpt_path=last"])
    attempt.start()
    attempt.fail(ValueError("holds a KeywordSpottingTask\nmore"))
    record = read_record(tmp_path)
    assert record["status"] == "finished" and "error" not in record
    for key in ("metrics", "trained", "monitor", "mode", "overrides", "best", "curve"):
        assert record[key] == finished[key], key
    failed = record["attempts"][-1]
    assert (
        failed["status"] == "failed"
        and failed["error"] == "ValueError: holds a KeywordSpottingTask"
    )
    assert failed["overrides"] == ["ckpt_path=last"]
    assert plan_resume(None, tmp_path, True, [*LR, "model=kws_cnn"]).finished

    # Once training started, a failure is the run's.
    attempt = RunRecord(tmp_path, "val/acc", "max", [*LR, "model=kws_cnn"])
    attempt.start()
    attempt.on_train_start(SimpleNamespace(current_epoch=5), None)
    attempt.fail(RuntimeError("out of memory"))
    assert read_record(tmp_path)["status"] == "failed"


@pytest.mark.parametrize(
    "trained",
    [
        None,  # written before records said what they trained
        {"steps": 8, "epochs": 3, "stopped_early": False},  # before they counted whole epochs
    ],
)
def test_a_record_that_does_not_say_how_far_it_trained_keeps_the_old_decisions(tmp_path, trained):
    last = make_last(tmp_path)
    record = RunRecord(tmp_path, "val/acc", "max", LR)
    record.start()
    if trained is not None:
        record.record["trained"] = trained
    record.finish({"val/acc": 0.5})
    assert plan_resume(None, tmp_path, True, LR, TrainingLimits(10**6, -1)).finished
    assert plan_resume("last", tmp_path, False, LR, TrainingLimits(-1, 3)).ckpt_path == str(last)


def test_training_limits_read_as_lightning_reads_them():
    trained = {"steps": 300, "epochs": 1000, "unfinished_epoch_batches": 0}
    assert TrainingLimits.of({"max_epochs": None}).reached(trained)  # 1000 epochs by default
    assert TrainingLimits.of({"max_epochs": None, "max_steps": 301}).reached(trained) is None
    assert TrainingLimits.of({"max_epochs": -1, "max_steps": None}).reached(trained) is None
    assert "max_steps=300" in TrainingLimits.of({"max_epochs": -1, "max_steps": 300}).reached(
        trained
    )


def test_only_the_attempts_of_one_run_add_up(tmp_path):
    killed = {
        "status": "running",
        "overrides": LR,
        "attempts": [
            {"started": "2026-01-01T00:00:00+00:00", "updated": "2026-01-01T00:01:00+00:00"}
        ],
        "curve": [{"epoch": 0, "step": 3, "value": 0.1, "attempt": 0}],
    }
    (tmp_path / "run.json").write_text(json.dumps(killed))
    resumed = RunRecord(tmp_path, "val/acc", "max", LR)
    resumed.start()
    saved = read_record(tmp_path)
    assert len(saved["attempts"]) == 2 and saved["curve"] == killed["curve"]
    assert saved["wall_s"] == pytest.approx(60.0, abs=0.5)  # the killed attempt's minute counts

    # Another run in the same dir (not resumed): its own attempts, curve and wall time.
    other = RunRecord(tmp_path, "val/acc", "max", ["model.optimizer.lr=0.003"], new_run=True)
    other.start()
    saved = read_record(tmp_path)
    assert len(saved["attempts"]) == 1 and saved["curve"] == [] and saved["wall_s"] < 60.0
    (previous,) = saved["previous_runs"]
    assert len(previous["attempts"]) == 2 and previous["overrides"] == LR


def test_a_resume_continues_the_run_only_from_its_own_checkpoints(tmp_path):
    own = make_last(tmp_path / "run")
    assert ResumeState(ckpt_path=str(own)).resumes(tmp_path / "run")
    assert not ResumeState(ckpt_path=str(own)).resumes(tmp_path / "other")
    assert not ResumeState().resumes(tmp_path / "run")
