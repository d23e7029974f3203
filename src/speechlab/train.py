"""The training recipe: data, model, callbacks, loggers, trainer; fit, test, report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from speechlab import __version__, resolvers  # noqa: F401  (config resolvers)
from speechlab.callbacks import RecipeInCheckpoint, SkippedAudioReport
from speechlab.reports import plain_metrics, print_metrics, write_metrics, write_predictions
from speechlab.resume import plan_resume
from speechlab.run_record import RunRecord

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` node of a config group such as ``callbacks`` or ``logger``."""
    if not group:
        return []
    return [hydra.utils.instantiate(node) for node in group.values() if node and "_target_" in node]


def build_datamodule(data_cfg: DictConfig, target_field: str) -> L.LightningDataModule:
    """The datamodule for ``data_cfg``, set up for the task's ``target_field``."""
    datamodule = hydra.utils.instantiate(data_cfg, target_field=target_field)
    datamodule.prepare_data()
    datamodule.setup()
    return datamodule


def build_recipe(cfg: DictConfig, task_inputs: dict[str, Any]) -> dict[str, Any]:
    """Everything a checkpoint needs to rebuild its model and data, as plain data."""
    return {
        "version": __version__,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "task_inputs": task_inputs,
    }


def hydra_job() -> tuple[bool, list[str]]:
    """Whether this is a multirun job, and its task overrides (empty outside Hydra)."""
    if not HydraConfig.initialized():
        return False, []
    hydra_cfg = HydraConfig.get()
    return hydra_cfg.mode == RunMode.MULTIRUN, list(hydra_cfg.overrides.task)


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and/or test as ``cfg`` says; return the logged metrics (``val/*``, ``test/*``) and
    ``<monitor>_best``, the best monitored validation value.

    Keeps the run record ``run.json`` in the run dir. A multirun job whose run dir records that it
    finished returns the recorded metrics without training; one that left ``last.ckpt`` resumes.
    """
    run_dir = Path(cfg.paths.output_dir)
    multirun, overrides = hydra_job()
    state = plan_resume(cfg.get("ckpt_path"), run_dir, multirun, overrides)
    if state.finished:
        return state.metrics
    monitor = cfg.model.get("monitor") or "val/loss"
    record = RunRecord(run_dir, monitor, cfg.model.get("monitor_mode") or "min", overrides)
    record.start()
    try:
        metrics = fit_and_test(cfg, record, state.ckpt_path)
    except Exception as error:
        record.fail(error)
        raise
    record.finish(metrics)
    return metrics


def fit_and_test(cfg: DictConfig, record: RunRecord, ckpt_path: str | None) -> dict[str, float]:
    """The recipe: seed, data, model, callbacks, loggers, trainer; fit from ``ckpt_path``, test."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    task_class = hydra.utils.get_class(cfg.model._target_)
    datamodule = build_datamodule(cfg.data, task_class.target_field)
    task_inputs = datamodule.task_inputs()
    task = hydra.utils.instantiate(cfg.model, **task_inputs)
    datamodule.drop_inadmissible(task.check_example)

    callbacks = instantiate_group(cfg.get("callbacks"))
    callbacks += [RecipeInCheckpoint(build_recipe(cfg, task_inputs)), SkippedAudioReport(), record]
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False
    )
    hyperparameters = {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for k, v in cfg.items()
        if k != "hydra"
    }
    for logger in loggers:
        logger.log_hyperparams(hyperparameters)
    if trainer.is_global_zero:
        datamodule.save_target(Path(trainer.default_root_dir))

    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics.update(plain_metrics(trainer.callback_metrics))
        if record.best is not None:  # what a sweep optimises (conf/train.yaml: optimized_metric)
            metrics[f"{record.monitor}_best"] = record.best

    if cfg.get("test", True):
        checkpoint = next(
            (c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)), None
        )
        best = checkpoint.best_model_path if checkpoint is not None else ""
        if not best:
            log.warning("no best checkpoint was saved; testing the current weights")
        trainer.test(task, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(plain_metrics(trainer.callback_metrics))
        if trainer.is_global_zero:
            output_dir = Path(trainer.default_root_dir)
            write_metrics(output_dir / "metrics.json", metrics)
            write_predictions(output_dir / "predictions.tsv", getattr(task, "predictions", []))
            log.info("best checkpoint: %s", best or "(none)")

    if trainer.is_global_zero:
        print_metrics(f"{task_class.__name__} on {datamodule.reader.name}", metrics)
    return metrics
