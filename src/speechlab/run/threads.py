"""Torch CPU threads sized for the machine: the cores this process may use, shared by the
training processes of one node, unless the user set ``OMP_NUM_THREADS`` or a number."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

AUTO = "auto"


def usable_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPU cores this process may run on: its affinity mask, capped by a cgroup CPU quota
    (containers: ``cpu.max`` of cgroup v2, ``cpu.cfs_quota_us`` of v1), at least 1.

    ``os.cpu_count()`` and torch's own default see the host's cores, which oversubscribes a
    container limited to a few of them.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def _cgroup_quota(root: Path) -> float | None:
    """The cgroup CPU quota in cores, or ``None`` when there is none (or it cannot be read)."""
    try:
        v2 = root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = root / "cpu" / "cpu.cfs_quota_us"
        if v1.is_file():
            quota_us = int(v1.read_text())
            period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
            return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None
    return None


@dataclass(frozen=True)
class ThreadPlan:
    intra_op: int
    inter_op: int
    reason: str


def plan_threads(
    intra_op: int | str = AUTO,
    inter_op: int | str = AUTO,
    processes_per_node: int = 1,
    cores: int | None = None,
    environ: dict[str, str] | None = None,
) -> ThreadPlan:
    """Threads for one training process.

    ``auto``: ``OMP_NUM_THREADS`` when the user set it; otherwise the usable cores divided
    among the node's training processes (DDP on CPU starts one per device). Dataloader workers
    are not subtracted: torch gives each worker one thread, and a worker mostly waits (measured
    in benchmarks/RESULTS.md: keyword spotting with 2 workers trains 45 % faster with 2 torch
    threads than with 1 on 2 cores). Inter-op threads follow intra-op.

    Raises:
        ValueError: for a count below 1 or a word other than ``auto``.
    """
    environ = os.environ if environ is None else environ
    cores = usable_cores() if cores is None else cores
    for name, value in (("intra_op", intra_op), ("inter_op", inter_op)):
        if value != AUTO and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"threads.{name} must be auto or a count >= 1, got {value!r}")
    if intra_op != AUTO:
        intra, reason = int(intra_op), "threads.intra_op"
    elif environ.get("OMP_NUM_THREADS", "").isdigit() and int(environ["OMP_NUM_THREADS"]) > 0:
        intra, reason = int(environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    else:
        intra = max(1, cores // max(1, processes_per_node))
        reason = f"{cores} usable cores / {processes_per_node} training process(es) on this node"
    inter = intra if inter_op == AUTO else int(inter_op)
    return ThreadPlan(intra, inter, reason)


def processes_per_node(accelerator: str, devices: object) -> int:
    """Training processes Lightning starts on this node for ``trainer.accelerator`` and
    ``trainer.devices`` (one per device: a count, a list of indices, ``"0,1"``; ``auto`` is
    every visible GPU, or one CPU process)."""
    if isinstance(devices, str):
        if devices.isdigit():
            return max(1, int(devices))
        if "," in devices:
            return len([d for d in devices.split(",") if d.strip()])
    elif isinstance(devices, int) and devices > 0:
        return devices
    elif isinstance(devices, Iterable):  # a list (ListConfig) of device indices
        return max(1, len(list(devices)))
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return max(1, torch.cuda.device_count())
    return 1


def configure_threads(plan: ThreadPlan) -> None:
    """Apply ``plan`` to torch and log it. The inter-op pool can be sized only before its
    first use; when it already ran, its size is kept and said."""
    torch.set_num_threads(plan.intra_op)
    # The inter-op pool is sized once per process (a second run in one process keeps it).
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(plan.inter_op)
    log.info(
        "torch threads: %d intra-op, %d inter-op (%s)",
        torch.get_num_threads(),
        torch.get_num_interop_threads(),
        plan.reason,
    )
