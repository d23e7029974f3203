"""The run dir of a SLURM job step: every task of the step, on every node, gets the same one."""

from __future__ import annotations

import os
import re
from pathlib import Path

import hydra
import lightning as L
import pytest
from omegaconf import OmegaConf

from speechlab.run.cluster import (
    check_slurm_shape,
    process_layout,
    slurm_gpus_per_node,
    slurm_step,
)
from tests.conftest import composed

STEP = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "3", "SLURM_JOB_NAME": "speechlab"}
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_JOB_NAME")


def test_a_job_step_is_named_after_its_job_and_step():
    assert slurm_step("stamp", STEP) == "slurm-4242.3"


@pytest.mark.parametrize(
    "environ",
    [
        {},  # no SLURM: this machine, a login node
        {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "speechlab"},  # a batch script, no srun
        {**STEP, "SLURM_JOB_NAME": "bash"},  # srun --pty bash: each command its own run
        {**STEP, "SLURM_JOB_NAME": "interactive"},
    ],
)
def test_outside_a_non_interactive_step_the_timestamp_stays(environ):
    assert slurm_step("2026-12-04_10-00-00", environ) == "2026-12-04_10-00-00"


@pytest.mark.parametrize("slurm", [True, False])
def test_the_run_and_sweep_dirs_follow_the_job_step(slurm, tmp_path: Path, monkeypatch):
    for name in SLURM_VARS:
        monkeypatch.delenv(name, raising=False)
    if slurm:
        for name, value in STEP.items():
            monkeypatch.setenv(name, value)
    with composed("train", [], tmp_path) as cfg:
        run_dir, sweep_dir = Path(cfg.hydra.run.dir), Path(cfg.hydra.sweep.dir)
    assert run_dir.parent == tmp_path / "logs" / "train" / "runs"
    assert sweep_dir.parent == tmp_path / "logs" / "train" / "multiruns"
    for name in (run_dir.name, sweep_dir.name):
        if slurm:
            assert name == "slurm-4242.3"
        else:
            assert re.fullmatch(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d", name)


def test_a_single_process_reports_its_layout():
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    layout = process_layout(trainer)
    assert layout["world_size"] == layout["num_nodes"] == layout["processes_per_node"] == 1
    assert layout["global_rank"] == layout["node_rank"] == layout["local_rank"] == 0


def test_a_submitit_job_inside_its_step_keeps_the_sweep_dir_its_launcher_chose(
    tmp_path: Path, monkeypatch
):
    """Hydra's submitit launcher resolves the sweep dir on the submitting machine, and each job
    (an srun step) recomposes its config and copies the launcher's resolver cache
    (``load_sweep_config``): the job dir must stay the launcher's, not the job step's."""
    for name in SLURM_VARS:
        monkeypatch.delenv(name, raising=False)
    with composed("train", [], tmp_path) as launcher:
        chosen = str(launcher.hydra.sweep.dir)
    for name, value in STEP.items():
        monkeypatch.setenv(name, value)
    with composed("train", [], tmp_path) as job:
        OmegaConf.copy_cache(from_config=launcher, to_config=job)
        assert str(job.hydra.sweep.dir) == chosen
        assert "slurm-" not in chosen


TWO_NODES = {
    **STEP,
    "SLURM_NNODES": "2",
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_NODEID": "0",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer=ddp_cpu", "trainer.devices=1", "trainer.num_nodes=2"], None),
        (["trainer=ddp_cpu", "trainer.devices=1", "trainer.num_nodes=1"], "trainer.num_nodes=1"),
        (["trainer=ddp_cpu", "trainer.devices=2", "trainer.num_nodes=2"], "trainer.devices=2"),
        (["trainer=cpu"], "runs 1 process(es)"),  # two copies of one run into one dir
    ],
)
def test_a_trainer_shaped_unlike_its_slurm_job_step_stops_before_training(
    overrides, message, tmp_path: Path, monkeypatch
):
    """``srun`` under ``--nodes=2 --ntasks-per-node=1``: the trainer must run 2 x 1 processes;
    otherwise the run stops at once and says what to set (it would hang or train twice)."""
    for name, value in TWO_NODES.items():
        monkeypatch.setenv(name, value)
    with composed("train", overrides, tmp_path) as cfg:
        trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
    if message is None:
        check_slurm_shape(trainer)
        return
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        check_slurm_shape(trainer)
    assert "SLURM started 2 task(s)" in str(error.value) and "--ntasks-per-node" in str(error.value)


@pytest.mark.parametrize(
    ("devices", "expected"), [(4, 4), ("2", 2), ([0, 1, 2], 3), ("auto", 8), (-1, 8)]
)
def test_a_slurm_job_gets_the_gpus_per_node_trainer_devices_says(devices, expected):
    calls = []

    def sinfo(args):
        calls.append(args)
        return "gpu:a100:8(S:0-1)\ngpu:a100:8(S:0-1)\n"

    assert slurm_gpus_per_node(devices, "gpu", sinfo=sinfo) == expected
    if devices in ("auto", -1):
        assert calls == [["--noheader", "-o", "%G", "-p", "gpu"]]


@pytest.mark.parametrize(
    ("output", "found"),
    [("(null)\n", "0"), ("gpu:4\ngpu:v100:2,gpu:t4:2\ngpu:8\n", "4, 8"), ("", "none")],
)
def test_devices_auto_that_sinfo_cannot_size_says_what_to_set(output, found):
    with pytest.raises(ValueError) as caught:
        slurm_gpus_per_node("auto", None, sinfo=lambda args: output)
    message = str(caught.value)
    assert f"have {found} GPU(s) each" in message and "trainer.devices=<GPUs per node>" in message


def test_devices_auto_without_sinfo_says_what_to_set():
    def missing(args):
        raise FileNotFoundError("sinfo")

    with pytest.raises(ValueError, match=r"set trainer.devices=<GPUs per node>"):
        slurm_gpus_per_node("auto", "gpu", sinfo=missing)


def test_launcher_submitit_slurm_with_trainer_ddp_sizes_the_job_from_the_partition(
    tmp_path, monkeypatch
):
    sinfo = tmp_path / "bin" / "sinfo"
    sinfo.parent.mkdir()
    sinfo.write_text('#!/bin/sh\necho "gpu:h100:4(S:0-1)"\n')
    sinfo.chmod(0o755)
    monkeypatch.setenv("PATH", f"{sinfo.parent}:{os.environ['PATH']}")
    with composed("train", ["launcher=submitit_slurm", "trainer=ddp"], tmp_path) as cfg:
        launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["gpus_per_node"] == launcher["tasks_per_node"] == 4
