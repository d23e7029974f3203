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
from collections.abc import Mapping
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback

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
