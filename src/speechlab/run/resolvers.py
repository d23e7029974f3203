"""OmegaConf resolvers the configs use; registered when speechlab's entry points import this."""

from __future__ import annotations

import os

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf


def wandb_offline() -> bool:
    """wandb runs offline unless an API key is present in the environment."""
    return not os.environ.get("WANDB_API_KEY")


def launch_dir() -> str:
    """The directory the command was run from (absolute): Hydra's ``runtime.cwd`` inside a job.

    ``${hydra:runtime.cwd}`` cannot serve here: a multirun's sweeper, launcher and callbacks
    resolve ``hydra.sweep.dir`` (under ``paths.log_dir``) before Hydra's runtime config is set,
    and that interpolation then fails. Before a job starts, Hydra's ``runtime.cwd`` is the
    process's working directory (``hydra.job.chdir`` is false), so that is the answer there.
    """
    if HydraConfig.initialized():
        return str(HydraConfig.get().runtime.cwd)
    return os.getcwd()


def sweep_direction(monitor_mode: str) -> str:
    """A task's ``monitor_mode`` (``min``/``max``) as an optimiser's direction."""
    directions = {"min": "minimize", "max": "maximize"}
    if monitor_mode not in directions:
        raise ValueError(f"monitor_mode must be 'min' or 'max', got {monitor_mode!r}")
    return directions[monitor_mode]


def register() -> None:
    from speechlab.run.loggers import run_id

    # ${launch_dir:}: where data/ and logs/ go, for single runs and multiruns alike
    OmegaConf.register_new_resolver("launch_dir", launch_dir, replace=True)
    OmegaConf.register_new_resolver("wandb_offline", wandb_offline, replace=True)
    # ${run_id:${paths.output_dir}}: one id per run dir, so a resumed run continues its tracker run
    OmegaConf.register_new_resolver("run_id", run_id, replace=True)
    OmegaConf.register_new_resolver("sweep_direction", sweep_direction, replace=True)


register()
