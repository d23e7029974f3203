"""What a user sees when a run stops for a reason of theirs: the message alone, no traceback, a
non-zero exit status, the run recorded as failed with that message; and a console without the
lines nobody can act on. (A missing corpus: test_train.py; a missing or foreign checkpoint:
test_checkpoint_options.py; which errors keep their traceback: tests/unit/test_stops.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.integration.test_dashboards import wandb_log
from tests.integration.test_train import KWS, mini_commands  # noqa: F401  (session fixture)

pytestmark = pytest.mark.usefixtures("mini_commands")

NOISE = ("💡", "litlogger", "litmodels", "FLOPs", "on_after_batch_transfer", "LeafSpec")


def typed(script: str, *overrides: str) -> subprocess.CompletedProcess:
    """``python <script> <overrides>`` from the checkout, as a user types it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, script, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_a_config_value_of_the_wrong_shape_stops_before_any_data_with_what_to_write(tmp_path):
    data_dir = tmp_path / "data"
    result = typed(
        "train.py",
        "model=ctc_conformer",
        "model.compile=true",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert "model.compile=true" in result.stderr and "model.compile.enabled=true" in result.stderr
    assert not data_dir.exists(), "nothing is prepared for a config that cannot run"
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "failed" and "model.compile.enabled=true" in record["error"]
    assert "Traceback (most recent call last)" in (tmp_path / "run" / "train.log").read_text()


def test_a_diverged_run_prints_its_message_and_where_its_weights_are(data_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = typed(
        "train.py",
        *KWS,
        "model.optimizer.lr=1e6",
        "logger=wandb",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "Error: training diverged" in result.stderr
    last = run_dir / "checkpoints" / "last.ckpt"
    assert f"saved in {last}" in result.stderr and last.is_file()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and "training diverged" in record["error"]

    # The console shows the run dir and the model's parameters, not Lightning's noise.
    console = result.stdout + result.stderr
    assert f"run dir: {run_dir}" in console and "Trainable params" in console
    assert [line for line in console.splitlines() if any(n in line for n in NOISE)] == []

    # The dashboards show the job as failed: wandb got its exit code.
    wandb_log(run_dir)  # one offline run, readable
    (debug,) = (run_dir / "wandb").glob("offline-run-*/logs/debug.log")
    assert "got exitcode: 1" in debug.read_text()
