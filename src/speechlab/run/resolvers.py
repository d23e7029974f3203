"""OmegaConf resolvers the configs use; registered when speechlab's entry points import this."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf


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


def hydra_choices_and_overrides() -> tuple[dict[str, Any], list[str]]:
    """This run's config group choices (``{"model": "ctc_lstm", ...}``) and task overrides (of
    this job, in a multirun); empty outside Hydra."""
    if not HydraConfig.initialized():
        return {}, []
    hydra_cfg = HydraConfig.get()
    return dict(hydra_cfg.runtime.choices), list(hydra_cfg.overrides.task)


def hydra_run_name() -> str:
    """This run's name for the dashboards (:func:`speechlab.run.dashboards.run_name`): the model
    and corpus chosen, and the overrides of this run (of this job, in a multirun)."""
    from speechlab.run.dashboards import run_name

    return run_name(*hydra_choices_and_overrides())


def sweep_name() -> str | None:
    """The multirun this job belongs to (its sweep dir, from the log dir on, e.g.
    ``train/multiruns/2026-12-03_10-00-00``), or None for a single run: wandb's run group."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    parts = Path(hydra_cfg.sweep.dir).parts
    return "/".join(parts[-3:])


def tag_dict(tags: Any) -> DictConfig:
    """``tags: [dev, baseline]`` as MLflow run tags, plus the model, the corpus and the sweep."""
    result = {str(tag): "true" for tag in tags or []}
    if HydraConfig.initialized():
        choices = HydraConfig.get().runtime.choices
        result.update(model=str(choices.get("model")), data=str(choices.get("data")))
    sweep = sweep_name()
    if sweep:
        result["sweep"] = sweep
    return OmegaConf.create(result)  # a config node: a plain dict cannot sit in the config


def task_namespace(target: str) -> str:
    """The metric namespace of the task class ``target`` (``model._target_``): ``asr``, ``kws``."""
    import hydra

    return hydra.utils.get_class(target).metric_namespace


def sweep_direction(monitor_mode: str) -> str:
    """A task's ``monitor_mode`` (``min``/``max``) as an optimiser's direction."""
    directions = {"min": "minimize", "max": "maximize"}
    if monitor_mode not in directions:
        raise ValueError(f"monitor_mode must be 'min' or 'max', got {monitor_mode!r}")
    return directions[monitor_mode]


def on_cuda(accelerator: str, when_cuda: Any = True, otherwise: Any = False) -> Any:
    """``when_cuda`` if ``accelerator`` (a ``trainer.accelerator``) trains on a CUDA GPU, else
    ``otherwise``: ``${on_cuda:${trainer.accelerator}}`` is true on a GPU, and
    ``${on_cuda:${trainer.accelerator},4,0}`` gives 4 dataloader workers there and none on CPU.

    ``gpu`` and ``cuda`` are CUDA; ``auto`` is CUDA when a CUDA device is present (what
    Lightning picks then); anything else (``cpu``, ``mps``, ...) is not.
    """
    name = str(accelerator).lower()
    if name == "auto":
        import torch

        cuda = torch.cuda.is_available()
    else:
        cuda = name in ("gpu", "cuda")
    return when_cuda if cuda else otherwise


def required(key: str, what: str = "a value") -> Any:
    """``${required:<key>,'<what>'}``: a value a recipe cannot run without and has no default
    for. Unlike ``???``, which merging over another config's value leaves that value in place,
    it stops the run (before any data is prepared) unless ``<key>`` is given.

    Raises:
        ValueError: always: the key was not given; the message says what to pass.
    """
    raise ValueError(f"{key} is required by this recipe and was not given: pass {key}=<{what}>")


def register() -> None:
    from speechlab.run.cluster import slurm_gpus_per_node, slurm_step
    from speechlab.run.loggers import run_id

    # ${launch_dir:}: where data/ and logs/ go, for single runs and multiruns alike
    OmegaConf.register_new_resolver("launch_dir", launch_dir, replace=True)
    # ${slurm_step:<otherwise>}: one run dir for all tasks of a SLURM job step (every node's).
    # Cached like Hydra's ${now:}, so a submitit job resolves the sweep dir its launcher chose.
    OmegaConf.register_new_resolver("slurm_step", slurm_step, use_cache=True, replace=True)
    # ${slurm_gpus_per_node:${trainer.devices},${hydra.launcher.partition}}: a SLURM job's GPUs
    # and tasks per node; trainer.devices=auto asks sinfo how many GPUs the nodes have
    OmegaConf.register_new_resolver(
        "slurm_gpus_per_node", slurm_gpus_per_node, use_cache=True, replace=True
    )
    OmegaConf.register_new_resolver("required", required, replace=True)
    OmegaConf.register_new_resolver("wandb_offline", wandb_offline, replace=True)
    # ${run_id:${paths.output_dir}}: one id per run dir, so a resumed run continues its tracker run
    OmegaConf.register_new_resolver("run_id", run_id, replace=True)
    OmegaConf.register_new_resolver("sweep_direction", sweep_direction, replace=True)
    # the dashboards' names: ${run_name:} for every logger, ${sweep_name:} groups wandb runs
    OmegaConf.register_new_resolver("run_name", hydra_run_name, replace=True)
    OmegaConf.register_new_resolver("sweep_name", sweep_name, replace=True)
    OmegaConf.register_new_resolver("tag_dict", tag_dict, replace=True)
    OmegaConf.register_new_resolver("task_namespace", task_namespace, replace=True)
    # ${on_cuda:${trainer.accelerator}[,when_cuda,otherwise]}: loader and optimizer defaults on GPU
    OmegaConf.register_new_resolver("on_cuda", on_cuda, replace=True)


register()
