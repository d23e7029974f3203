"""A tiny keyword-spotting recipe on mini_commands, and train.py run on it as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.integration.test_train import KWS

# A tiny KWS recipe: 2 epochs of 24 batches, checkpoints every 4 steps.
TINY = [
    *KWS,
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "+trainer.limit_train_batches=24",
    "+trainer.limit_val_batches=4",
    "+trainer.limit_test_batches=4",
    "trainer.log_every_n_steps=1",
    "callbacks.progress_bar=null",
    "callbacks.last_checkpoint.every_n_train_steps=4",
]


def train_process(
    run_dir: Path, data_dir: Path, *overrides: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [
            sys.executable,
            "train.py",
            *TINY,
            f"paths.data_dir={data_dir}",
            f"hydra.run.dir={run_dir}",
            *overrides,
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-5000:]
    return output
