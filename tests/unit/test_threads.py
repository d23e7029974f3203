"""Torch threads sized for the machine: cores (affinity and cgroup quota) shared by the node's
training processes, the user's OMP_NUM_THREADS or number kept, the choice logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from speechlab.run.threads import (
    configure_threads,
    plan_threads,
    processes_per_node,
    usable_cores,
)


def test_auto_divides_the_cores_among_the_nodes_training_processes():
    assert plan_threads(cores=8, environ={}).intra_op == 8
    plan = plan_threads(processes_per_node=2, cores=8, environ={})
    assert (plan.intra_op, plan.inter_op) == (4, 4) and "8 usable cores / 2" in plan.reason
    assert plan_threads(processes_per_node=4, cores=2, environ={}).intra_op == 1


def test_the_users_setting_wins():
    plan = plan_threads(cores=8, environ={"OMP_NUM_THREADS": "3"})
    assert plan.intra_op == 3 and plan.reason == "OMP_NUM_THREADS"
    assert plan_threads(2, 1, cores=8, environ={"OMP_NUM_THREADS": "3"}).intra_op == 2
    assert plan_threads(2, 1, cores=8, environ={}).inter_op == 1
    assert plan_threads(cores=8, environ={"OMP_NUM_THREADS": "junk"}).intra_op == 8


@pytest.mark.parametrize("bad", [0, -2, "many", 1.5, True])
def test_a_bad_count_is_refused(bad):
    with pytest.raises(ValueError, match="threads.intra_op must be auto or a count >= 1"):
        plan_threads(bad, cores=2, environ={})


def test_a_cgroup_quota_caps_the_cores(tmp_path: Path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 cores: 2 threads
    assert usable_cores(tmp_path) == min(2, usable_cores(tmp_path / "none"))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) == usable_cores(tmp_path / "none") >= 1
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cores(v1) == 1


def test_processes_per_node_follows_trainer_devices():
    assert processes_per_node("cpu", 2) == 2
    assert processes_per_node("cpu", "3") == 3
    assert processes_per_node("gpu", [0, 1]) == 2
    assert processes_per_node("gpu", "0,1,") == 2
    assert processes_per_node("cpu", "auto") == 1


def test_the_plan_is_applied_and_logged(caplog: pytest.LogCaptureFixture):
    before = torch.get_num_threads()
    try:
        with caplog.at_level(logging.INFO, logger="speechlab.run.threads"):
            configure_threads(plan_threads(1, cores=2, environ={}))
        assert torch.get_num_threads() == 1
        assert "torch threads: 1 intra-op" in caplog.text and "threads.intra_op" in caplog.text
    finally:
        torch.set_num_threads(before)
