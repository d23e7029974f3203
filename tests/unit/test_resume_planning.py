"""Run records and resume planning: what a relaunched job or ``ckpt_path=last`` starts from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechlab.run.resume import find_resume_state, plan_resume, resolve_ckpt_path
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
