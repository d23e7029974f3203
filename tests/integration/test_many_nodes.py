"""A two-node SLURM job without SLURM: two ``train.py`` processes, each with the environment
``srun`` gives one task of ``--nodes=2 --ntasks-per-node=1``, train as one DDP run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_train import mini_commands  # noqa: F401  (session fixture)
from tests.integration.tiny_kws import TINY

JOB_ID, STEP_ID = "4242", "0"
# Lightning's own distributed variables would override SLURM's: a task under srun has none.
NOT_UNDER_SRUN = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def srun_task_env(node: int, nodes: int, port: int, local_dir: Path) -> dict[str, str]:
    """What SLURM sets for the one task on node ``node`` (what SLURMEnvironment reads), plus
    the rendezvous address of the job script and a node-local TMPDIR."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "TORCHELASTIC_")) and k not in NOT_UNDER_SRUN
    }
    env.update(
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
        SLURM_JOB_ID=JOB_ID,
        SLURM_STEP_ID=STEP_ID,
        SLURM_JOB_NAME="speechlab",
        SLURM_NNODES=str(nodes),
        SLURM_NTASKS=str(nodes),
        SLURM_NTASKS_PER_NODE="1",
        SLURM_NODELIST="node[0-1]",
        SLURM_NODEID=str(node),
        SLURM_PROCID=str(node),
        SLURM_LOCALID="0",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        TMPDIR=str(local_dir),
    )
    return env


@pytest.mark.slow
@pytest.mark.usefixtures("mini_commands")
def test_two_nodes_of_a_slurm_job_train_as_one_run_in_one_dir(data_dir, tmp_path):
    """Both tasks run the same command line (as srun starts them), one second apart: they share
    the run dir ``logs/train/runs/slurm-<job>.<step>``, rank 0 alone writes it, and each node
    keeps its manifest cache in its own ``paths.data_dir`` while reading the shared corpus."""
    corpus = data_dir / "mini_commands"  # as the fixture generated it
    for name in ("train.py", "conf"):
        (tmp_path / name).symlink_to(REPO / name)
    command = [
        sys.executable,
        "train.py",
        *TINY,
        "trainer=ddp_cpu",
        "trainer.devices=1",
        "trainer.num_nodes=2",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "paths.data_dir=${oc.env:TMPDIR}/data",  # each node's local disk
        f"data.reader.root={corpus}",  # the corpus, on the shared filesystem
    ]
    port = free_port()
    local = [tmp_path / f"node{node}-local" for node in range(2)]
    processes = []
    for node in range(2):
        local[node].mkdir()
        env = srun_task_env(node, 2, port, local[node])
        processes.append(
            subprocess.Popen(
                command,
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        time.sleep(1.1)  # another second of the clock: a timestamped run dir would differ
    outputs = []
    for process in processes:
        output, _ = process.communicate(timeout=300)
        outputs.append(output)
    for node, (process, output) in enumerate(zip(processes, outputs, strict=True)):
        assert process.returncode == 0, f"node {node}:\n{output[-5000:]}"
        assert f"process {node} of 2: node {node} of 2, local rank 0 of 1" in output
        assert f"SLURM job {JOB_ID}" in output

    # One run dir, named after the job step, whatever second each node started in.
    runs = tmp_path / "logs" / "train" / "runs"
    assert [p.name for p in runs.iterdir()] == [f"slurm-{JOB_ID}.{STEP_ID}"]
    run_dir = runs / f"slurm-{JOB_ID}.{STEP_ID}"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished"
    attempt = record["attempts"][-1]
    assert (attempt["world_size"], attempt["num_nodes"], attempt["processes_per_node"]) == (2, 2, 1)
    assert attempt["cluster"] == "SLURMEnvironment"

    # Rank 0 alone writes the run log, the checkpoints, the metrics.
    log_text = (run_dir / "train.log").read_text()
    assert log_text.count("train: ") == 1
    assert "process 0 of 2" in log_text and "process 1 of 2" not in log_text
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert len(names) == 2 and names[0].startswith("epoch_") and names[1] == "last.ckpt"
    assert [p.name for p in (run_dir / "csv").iterdir() if p.suffix == ".csv"] == ["metrics.csv"]
    assert "test/acc" in json.loads((run_dir / "metrics.json").read_text())

    # Each node built its own manifest cache on its own disk; neither copied the corpus.
    for node_dir in local:
        data = node_dir / "data"
        assert len(list(data.glob("manifests/*/manifest.json"))) == 1
        assert not (data / "mini_commands").exists()
