"""Many processes, many nodes: the SLURM job step's run dir, its shape, each process's place.

Under ``srun`` every task of a job step starts ``train.py`` by itself (one per device, on every
node), so nothing but the environment tells them they belong together. Lightning reads the
ranks from SLURM's variables (``lightning.fabric.plugins.environments.SLURMEnvironment``:
``SLURM_NTASKS``, ``SLURM_PROCID``, ``SLURM_LOCALID``, ``SLURM_NODEID``, ``MASTER_ADDR`` or
``SLURM_NODELIST``, ``MASTER_PORT`` or ``SLURM_JOB_ID``). Here: the run dir named after the job
step (:func:`slurm_step`), so that all tasks write to one dir whatever second each one started
in; a check that the step's tasks are the trainer's processes (:func:`check_slurm_shape`); and
which process is which (:func:`process_layout`, logged by :class:`ProcessLayoutLog`).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


def slurm_step(otherwise: str, environ: Mapping[str, str] | None = None) -> str:
    """``slurm-<job id>.<step id>`` inside a SLURM job step (``srun``), else ``otherwise``.

    The tasks of one step share the name, however far apart they start; each ``srun`` of a job
    gets its own; a requeued job (same job id, steps numbered from 0 again) gets its old one back,
    so Lightning finds the ``hpc_ckpt_*.ckpt`` it saved there before the requeue. Outside a step
    (no ``SLURM_STEP_ID``: a login node, a batch script's own shell) and in an interactive
    session (job name ``bash`` or ``interactive``, which Lightning does not treat as a SLURM run
    either), the answer is ``otherwise``: conf/hydra/default.yaml passes the timestamp.

    Args:
        otherwise: the name outside a SLURM job step.
        environ: the environment to read (default ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    job, step = environ.get("SLURM_JOB_ID"), environ.get("SLURM_STEP_ID")
    if not job or not step or environ.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return otherwise
    return f"slurm-{job}.{step}"


def _gpus_in_gres(gres: str) -> int:
    """The GPUs of one ``sinfo -o %G`` entry: ``gpu:4``, ``gpu:a100:8(S:0-1)``,
    ``gpu:v100:2,gpu:t4:1``, ``(null)``."""
    total = 0
    for item in gres.split(","):
        parts = item.split("(")[0].split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            total += int(parts[-1])
    return total


def slurm_gpus_per_node(
    devices: Any,
    partition: str | None = None,
    sinfo: Callable[[list[str]], str] | None = None,
) -> int:
    """GPUs (and training tasks) per node for a SLURM job, from ``trainer.devices``.

    A count is taken as it is, a list of device ids by its length. ``auto`` (``trainer=ddp``'s
    default: every GPU a node has) cannot size a job by itself, so the nodes of ``partition`` are
    asked (``sinfo -o %G``): when they all have the same number of GPUs, that is the answer.

    Args:
        devices: ``trainer.devices``: an int, a list of ids, ``auto`` or ``-1``.
        partition: ``hydra.launcher.partition`` (``None``: the cluster's default partition).
        sinfo: runs ``sinfo`` with the given arguments and returns its output (for tests).

    Raises:
        ValueError: ``auto`` and no ``sinfo``, no GPU, or nodes with different numbers of GPUs;
            the message says to set ``trainer.devices``.
    """
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices)
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        return devices
    if isinstance(devices, str) and devices.isdigit() and int(devices) > 0:
        return int(devices)
    if str(devices) not in ("auto", "-1"):
        raise ValueError(
            f"trainer.devices={devices} cannot size a SLURM job: set trainer.devices to the "
            "number of GPUs per node (e.g. trainer.devices=4)"
        )
    where = f"partition {partition}" if partition else "the default partition"
    fix = (
        "set trainer.devices=<GPUs per node> (e.g. trainer.devices=4), or hydra.launcher."
        "partition to a partition whose nodes all have the same number of GPUs"
    )
    args = ["--noheader", "-o", "%G", *(["-p", str(partition)] if partition else [])]
    try:
        output = (sinfo or _run_sinfo)(args)
    except (OSError, subprocess.SubprocessError) as error:
        raise ValueError(
            f"trainer.devices={devices} (every GPU of a node) cannot size a SLURM job here: "
            f"asking SLURM how many GPUs the nodes of {where} have failed ({error}); {fix}"
        ) from None
    counts = sorted({_gpus_in_gres(line.strip()) for line in output.splitlines() if line.strip()})
    if len(counts) == 1 and counts[0] > 0:
        log.info("trainer.devices=%s: %d GPUs per node in %s (sinfo)", devices, counts[0], where)
        return counts[0]
    found = ", ".join(map(str, counts)) or "none"
    raise ValueError(
        f"trainer.devices={devices} (every GPU of a node) cannot size a SLURM job: the nodes of "
        f"{where} have {found} GPU(s) each (sinfo -o %G); {fix}"
    )


def _run_sinfo(args: list[str]) -> str:
    return subprocess.run(
        ["sinfo", *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout


def check_slurm_shape(trainer: L.Trainer) -> None:
    """Stop before training when the tasks of this SLURM job step are not the trainer's processes.

    Under ``srun`` each task is one training process, and Lightning takes the world size and the
    ranks from SLURM (``SLURM_NTASKS``, ``SLURM_PROCID``). It checks them against
    ``num_nodes`` x ``devices`` only when it starts the processes itself, so a job step shaped
    otherwise would train with idle devices, hang at the rendezvous, or (one process per task)
    run several copies of the run into one run dir. Nothing is checked outside SLURM, in an
    interactive session, or under another cluster environment (e.g. torchrun inside SLURM).

    Raises:
        ValueError: ``SLURM_NTASKS`` differs from ``trainer.num_nodes`` x ``trainer.devices``,
            or (Lightning's ``SLURMEnvironment.validate_settings``) ``SLURM_NNODES`` from
            ``trainer.num_nodes`` or ``SLURM_NTASKS_PER_NODE`` from ``trainer.devices``.
    """
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if environment is None:  # one process (no parallel strategy): did srun start several?
        if not SLURMEnvironment.detect():
            return
    elif not isinstance(environment, SLURMEnvironment):
        return
    tasks = int(os.environ["SLURM_NTASKS"])
    processes = trainer.num_nodes * trainer.num_devices
    if tasks != processes:
        raise ValueError(
            f"SLURM started {tasks} task(s) for this job step (SLURM_NTASKS), but the trainer "
            f"runs {processes} process(es): trainer.num_nodes={trainer.num_nodes} x "
            f"trainer.devices={trainer.num_devices}. Start one task per device, e.g. "
            "#SBATCH --nodes=<N> --ntasks-per-node=<devices per node> and "
            "`srun python train.py trainer=ddp trainer.num_nodes=<N> "
            "trainer.devices=<devices per node>`."
        )
    if environment is not None:
        environment.validate_settings(num_devices=trainer.num_devices, num_nodes=trainer.num_nodes)


def process_layout(trainer: L.Trainer) -> dict[str, Any]:
    """The run's shape and this process's place in it, as the trainer's strategy set them up.

    Keys: ``world_size`` (processes in all), ``num_nodes``, ``processes_per_node``,
    ``global_rank``, ``node_rank``, ``local_rank`` and ``cluster``, the name of the cluster
    environment Lightning detected (``SLURMEnvironment``, ``LightningEnvironment``, ...; None
    without one, e.g. a single process).
    """
    environment = getattr(trainer.strategy, "cluster_environment", None)
    return {
        "world_size": trainer.world_size,
        "num_nodes": trainer.num_nodes,
        "processes_per_node": trainer.num_devices,
        "global_rank": trainer.global_rank,
        "node_rank": trainer.node_rank,
        "local_rank": trainer.local_rank,
        "cluster": None if environment is None else type(environment).__name__,
    }


class ProcessLayoutLog(Callback):
    """Logs, once per process when the trainer is set up (ranks known), which process it is:
    rank 0's line goes to the run log, the other ranks' to their console (under ``srun``, the
    job's output file). Nothing for a single process."""

    def __init__(self) -> None:
        self.logged = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self.logged:
            log_process_layout(trainer)
            self.logged = True


def log_process_layout(trainer: L.Trainer) -> None:
    """Log this process's place in the run (:func:`process_layout`), when there are several."""
    layout = process_layout(trainer)
    if layout["world_size"] == 1:
        return
    job = SLURMEnvironment.job_id() if layout["cluster"] == SLURMEnvironment.__name__ else None
    log.info(
        "process %d of %d: node %d of %d, local rank %d of %d (%s%s)",
        layout["global_rank"],
        layout["world_size"],
        layout["node_rank"],
        layout["num_nodes"],
        layout["local_rank"],
        layout["processes_per_node"],
        layout["cluster"],
        "" if job is None else f", SLURM job {job}",
    )
