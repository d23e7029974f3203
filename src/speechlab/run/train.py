"""The training recipe: data, model, callbacks, loggers, trainer; fit, test, report."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from speechlab.checkpoint.init_from import (
    INIT_FROM_KEY,
    apply_init_from,
    check_init_from_file,
    without_init_from,
)
from speechlab.checkpoint.last import ExactResume
from speechlab.checkpoint.read import check_checkpoint_options
from speechlab.checkpoint.recipe import RecipeInCheckpoint, build_recipe, build_task
from speechlab.data.datamodule import build_datamodule
from speechlab.run import resolvers  # the config resolvers (registered on import)
from speechlab.run.callbacks import (
    NothingTrainedCheck,
    OptimizedMetricCheck,
    ShortRunLogInterval,
    SkippedAudioReport,
    TrainingPlanLog,
    adapt_to_no_validation,
    clipping_for_manual_optimisation,
)
from speechlab.run.cluster import ProcessLayoutLog, check_slurm_shape
from speechlab.run.config_check import check_config
from speechlab.run.console import ModelSummaryTable, announce_run_dir, quiet_console
from speechlab.run.dashboards import (
    BestToLoggers,
    finish_runs,
    hparams_metric_names,
    log_hyperparameters,
    namespace_metrics,
)
from speechlab.run.reports import plain_metrics, print_metrics, write_metrics, write_predictions
from speechlab.run.resume import LAST_CKPT, TrainingLimits, plan_resume
from speechlab.run.resume_check import (
    ResumeCheckpoint,
    check_same_model,
    check_weights_fit,
    read_resume_checkpoint,
)
from speechlab.run.run_record import RunRecord
from speechlab.run.threads import configure_threads, plan_threads, processes_per_node

log = logging.getLogger(__name__)

STOPPED_EXIT_STATUS = 143  # 128 + SIGTERM: stopped by a signal after saving last.ckpt


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` node of a config group such as ``callbacks`` or ``logger``."""
    if not group:
        return []
    return [hydra.utils.instantiate(node) for node in group.values() if node and "_target_" in node]


def quiet_other_ranks() -> None:
    """Only rank 0 writes the run's text log: other ranks keep their console output."""
    if rank_zero_only.rank == 0:  # set by Lightning from RANK / SLURM_PROCID / LOCAL_RANK
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()


def gather_rows(rows: list) -> list:
    """Every rank's rows on every rank (in rank order), without the duplicates that equal-length
    sharding adds; the rows themselves when not distributed."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    gathered: list[list] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(gathered, rows)
    seen: set = set()
    unique = []
    for row in (row for part in gathered for row in part):
        if row[0] not in seen:
            seen.add(row[0])
            unique.append(row)
    return unique


def hydra_job() -> tuple[bool, list[str]]:
    """Whether this is a multirun job, and its task overrides (empty outside Hydra)."""
    if not HydraConfig.initialized():
        return False, []
    hydra_cfg = HydraConfig.get()
    return hydra_cfg.mode == RunMode.MULTIRUN, list(hydra_cfg.overrides.task)


def ddp_children_join_this_job() -> None:
    """Make the DDP processes Lightning starts for a multirun job run this job, not the sweep.

    Lightning starts ranks 1.. as ``python train.py <sys.argv[1:]> hydra.run.dir=<run.dir>``.
    In a multirun job ``sys.argv`` still holds ``-m`` and every swept value, so each child
    launched a whole second sweep in a new sweep folder, and ``run.dir`` is not the job's dir.
    Here both become the job's own: its overrides, without ``-m``, and its output dir.
    """
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return
    sys.argv = [sys.argv[0], *hydra_cfg.overrides.task]
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir


@contextmanager
def job_process_state(multirun: bool) -> Iterator[None]:
    """Leave the process as the multirun job found it: the jobs of a sweep share one process
    (Hydra's basic launcher), and DDP's environment (``LOCAL_RANK``, ``WORLD_SIZE``,
    ``MASTER_PORT``, ...) and process group from one job made the next believe its ranks were
    already launched, so it waited on peers that had exited.

    Every process, a single run's too, also ends its DDP process group here: a process that
    exits with the group still up can abort in gloo's teardown ("terminate called without an
    active exception", status -6), and Lightning's watcher of the child processes, still
    running in a multirun's main process, then killed the whole sweep during the next job."""
    environment = dict(os.environ)
    try:
        yield
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        if multirun:
            os.environ.clear()
            os.environ.update(environment)


def check_model_checkpoints(cfg: DictConfig, resumes: bool) -> None:
    """Stop when a checkpoint the model config names (``model.judge_ckpt``,
    ``model.vocoder.ckpt``, ``model.init_from.ckpt``, ...) is left ``???`` or is no file, with
    its key and what it takes, before any data is prepared. ``model.init_from`` is left out when
    the run ``resumes`` (a resume restores every weight); a model config that does not resolve
    is left to :func:`check_config`.

    Raises:
        ValueError: a required checkpoint not given.
        FileNotFoundError: no file where one is named.
    """
    try:
        model = OmegaConf.to_container(cfg.model, resolve=True)
    except Exception:  # check_config names what does not resolve
        return
    if not isinstance(model, dict):
        return
    if not resumes:
        check_init_from_file(model.get(INIT_FROM_KEY))
    check_checkpoint_options(without_init_from(model), "model")


def run(cfg: DictConfig) -> dict[str, float]:
    """Train and/or test as ``cfg`` says; return the logged metrics (``val/*``, ``test/*``) and
    ``<monitor>_best``, the best monitored validation value.

    Keeps the run record ``run.json`` in the run dir. A multirun job whose run dir records that it
    finished returns the recorded metrics without training; one that left ``last.ckpt`` resumes.
    """
    run_dir = Path(cfg.paths.output_dir)
    multirun, overrides = hydra_job()
    try:
        resumes = bool(cfg.get("ckpt_path")) or (multirun and (run_dir / LAST_CKPT).is_file())
        check_model_checkpoints(cfg, resumes)  # each by its key, with what it takes
        check_config(cfg, overrides)  # before any data is prepared
    except (ValueError, FileNotFoundError) as error:  # a failed attempt: the summary shows it
        mode = cfg.model.get("monitor_mode") if cfg.model.get("monitor_mode") == "max" else "min"
        failed = RunRecord(run_dir, cfg.model.get("monitor") or "val/loss", mode, overrides)
        failed.start()
        failed.fail(error)
        raise
    limits = TrainingLimits.of(cfg.trainer)
    state = plan_resume(cfg.get("ckpt_path"), run_dir, multirun, overrides, limits)
    if state.finished:
        return state.metrics
    monitor = cfg.model.get("monitor") or "val/loss"
    mode = cfg.model.get("monitor_mode") or "min"
    # A multirun job's dir is its own (plan_resume checked): all its attempts add up. A single
    # run continues the record only when it resumes from one of that dir's checkpoints.
    new_run = not multirun and not state.resumes(run_dir)
    record = RunRecord(run_dir, monitor, mode, overrides, new_run=new_run)
    record.start()
    try:
        resume_from = None
        if state.ckpt_path:  # before any data is prepared: the file holds this run's model
            resume_from = read_resume_checkpoint(state.ckpt_path, cfg.get("ckpt_path"))
            check_same_model(resume_from, cfg.model, *resolvers.hydra_choices_and_overrides())
        with job_process_state(multirun):
            metrics = fit_and_test(cfg, record, state.ckpt_path, resume_from)
    except Exception as error:
        record.fail(error)
        raise
    record.finish(metrics)
    return metrics


def record_as_built(cfg: DictConfig, built: dict[str, dict[str, Any]]) -> None:
    """Put the data options as built (:meth:`SpeechDataModule.built_options`) into ``cfg.data``,
    so the checkpoint's recipe, ``hparams.yaml`` and every logger record what the run trained
    with, not what was asked for (``.hydra/config.yaml`` keeps what was asked)."""
    for key, options in built.items():
        log.info("data.%s recorded as built: %s (asked: %s)", key, options, cfg.data.get(key))
        with open_dict(cfg.data):
            asked = cfg.data.get(key)
            cfg.data[key] = OmegaConf.merge(asked, options) if key == "reader" else options


def fit_and_test(
    cfg: DictConfig,
    record: RunRecord,
    ckpt_path: str | None,
    resume_from: ResumeCheckpoint | None = None,
) -> dict[str, float]:
    """The recipe: seed, data, model, callbacks, loggers, trainer; fit from ``ckpt_path`` (whose
    weights, ``resume_from``, must fit the task built), test."""
    quiet_other_ranks()
    quiet_console()
    announce_run_dir(cfg.paths.output_dir)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    per_node = processes_per_node(cfg.trainer.accelerator, cfg.trainer.devices)
    configure_threads(plan_threads(cfg.threads.intra_op, cfg.threads.inter_op, per_node))
    task_class = hydra.utils.get_class(cfg.model._target_)
    datamodule = build_datamodule(
        cfg.data,
        task_class.target_field,
        getattr(task_class, "source_field", None),
        lock_dir=cfg.paths.data_dir,
    )
    limits = cfg.trainer
    used = [
        split
        for split, wanted in (
            ("train", cfg.get("train", True)),
            ("validation", cfg.get("train", True) and limits.get("limit_val_batches") != 0),
            ("test", cfg.get("test") and limits.get("limit_test_batches") != 0),
        )
        if wanted
    ]
    datamodule.check_not_empty(*used)  # before a model is built, not after fitting
    task_inputs = datamodule.task_inputs()
    built = datamodule.built_options()
    root, asked_root = getattr(datamodule.reader, "root", None), cfg.data.reader.get("root")
    if root is not None and asked_root is not None and str(root) != str(asked_root):
        built["reader"] = {"root": str(root)}  # as resolved: evaluate.py runs from anywhere
    record_as_built(cfg, built)
    task = build_task(cfg.model, task_inputs)
    if resume_from is not None:  # as Lightning's strict load will need, before it is reached
        check_weights_fit(resume_from, task, *resolvers.hydra_choices_and_overrides())
    datamodule.drop_inadmissible(task.check_example)

    callbacks = instantiate_group(cfg.get("callbacks"))
    callbacks += [
        RecipeInCheckpoint(
            build_recipe(cfg, task_inputs, *resolvers.hydra_choices_and_overrides())
        ),
        ExactResume(),
        SkippedAudioReport(),
        NothingTrainedCheck(),
        ShortRunLogInterval(),
        TrainingPlanLog(),
        ProcessLayoutLog(),
        OptimizedMetricCheck(cfg.get("optimized_metric"), record.monitor),
        record,
        BestToLoggers(record),  # after the record: it reads the best value the record just kept
    ]
    if cfg.trainer.get("enable_model_summary", True) is not False:
        callbacks.append(ModelSummaryTable())  # parameters per module, without empty columns
    loggers = instantiate_group(cfg.get("logger"))
    namespace = task_class.metric_namespace
    for logger in loggers:
        if not isinstance(logger, CSVLogger):  # a per-run file: its columns keep the plain names
            namespace_metrics(logger, namespace)
    ddp_children_join_this_job()
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        **clipping_for_manual_optimisation(task, cfg.trainer),
    )
    check_slurm_shape(trainer)
    adapt_to_no_validation(trainer)
    hyperparameters = {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for k, v in cfg.items()
        if k not in ("hydra", "tags")  # tags go to the loggers as tags (conf/logger)
    }
    metric_names = [f"{namespace}/{name}" for name in hparams_metric_names(record.monitor)]
    choices, overrides = resolvers.hydra_choices_and_overrides()
    log_hyperparameters(loggers, hyperparameters, metric_names, choices, overrides)
    if trainer.is_global_zero:
        datamodule.save_target(Path(trainer.default_root_dir))
    init_from = cfg.model.get(INIT_FROM_KEY)
    if init_from and init_from.get("ckpt") and ckpt_path:
        log.info("model.init_from ignored: resuming from %s restores every weight", ckpt_path)
    elif init_from:
        run_dir = Path(trainer.default_root_dir) if trainer.is_global_zero else None
        apply_init_from(task, OmegaConf.to_container(init_from, resolve=True), run_dir)

    try:
        metrics = fit_then_test(cfg, trainer, task, datamodule, record, ckpt_path)
    except BaseException as error:  # the dashboards show the job as failed, not finished
        code = error.code if isinstance(error, SystemExit) else 1
        finish_runs(loggers, exit_code=code if isinstance(code, int) and code else 1)
        raise
    finish_runs(loggers)
    if trainer.is_global_zero:
        print_metrics(f"{task_class.__name__} on {datamodule.reader.name}", metrics)
    return metrics


def fit_then_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    task: L.LightningModule,
    datamodule: L.LightningDataModule,
    record: RunRecord,
    ckpt_path: str | None,
) -> dict[str, float]:
    """Fit (from ``ckpt_path``) and test the best checkpoint as ``cfg.train`` / ``cfg.test``
    say; write ``metrics.json`` and ``predictions.tsv``; return the metrics."""
    metrics: dict[str, float] = {}
    if cfg.get("train", True):
        if ckpt_path:
            log.info("resuming from %s", ckpt_path)
        try:
            trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
        except SIGTERMException:  # a SystemExit with status 0: a stopped run must not look done
            raise SystemExit(STOPPED_EXIT_STATUS) from None
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
        predictions = gather_rows(getattr(task, "predictions", []))
        if trainer.is_global_zero:
            output_dir = Path(trainer.default_root_dir)
            write_metrics(output_dir / "metrics.json", metrics)
            write_predictions(
                output_dir / "predictions.tsv",
                predictions,
                getattr(task, "prediction_columns", ("id", "reference", "hypothesis")),
            )
            log.info("best checkpoint: %s", best or "(none)")
    return metrics
