"""What the experiment dashboards show: readable run names, hyperparameters, namespaced metrics.

TensorBoard, wandb and MLflow each get the same run name (model, corpus, and the overrides that
set a run apart), the config as hyperparameters (TensorBoard's HParams plugin included), the
tags as tags, every scalar under the task's namespace (``asr/val/cer``, ``kws/val/loss``), and
``<monitor>_best`` after every validation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger

from speechlab.run.run_record import RunRecord

NAME_LIMIT = 120  # characters of a run name: MLflow, wandb and TensorBoard show it in one line
# Overrides the run name leaves out: the groups it names already, and those that only say where
# files go or how they are logged.
NAMED_GROUPS = ("model", "data")
UNNAMED_ROOTS = ("logger", "hydra", "paths", "ckpt_path")
# Keys every logger keeps as they are: the x axes.
AXIS_KEYS = frozenset({"epoch", "step", "trainer/global_step"})


def run_name(choices: Mapping[str, Any], overrides: Sequence[str]) -> str:
    """``<model>-<data>`` followed by the command-line overrides, e.g.
    ``ctc_lstm-mini_voice-model.optimizer.lr=0.001``; at most ``NAME_LIMIT`` characters.

    ``choices`` are the config group choices (Hydra's ``runtime.choices``); ``overrides`` the
    task overrides of the run (for a multirun job, the ones of that job). Overrides of the model
    and corpus (already in the name) and of paths, loggers and Hydra itself are left out.
    """
    parts = [str(choices.get("model") or "model"), str(choices.get("data") or "data")]
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key not in NAMED_GROUPS and key.split(".", 1)[0] not in UNNAMED_ROOTS:
            parts.append(override.lstrip("+~"))
    name = re.sub(r"[/\\\s]+", "_", "-".join(parts))
    return name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 1] + "~"


def flat_hyperparameters(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config as ``{"model/optimizer/lr": 0.001, ...}``: scalars kept, lists as text,
    ``None`` as ``"null"`` (TensorBoard's HParams plugin takes only numbers, text and booleans)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_hyperparameters(value, f"{name}/"))
        elif value is None:
            flat[name] = "null"
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def namespace_metrics(logger: Logger, namespace: str) -> None:
    """Make ``logger`` write every scalar ``name`` as ``<namespace>/<name>``.

    Different tasks' ``val/loss`` then land in different charts (``kws/val/loss``,
    ``tts/val/loss``) while the console, ``metrics.json``, checkpoints and ``model.monitor`` keep
    the plain names. Axes (``epoch``, ``trainer/global_step``) and media (wandb images, audio,
    tables, which are not numbers) keep theirs.
    """
    log_metrics = logger.log_metrics

    def namespaced(metrics: Mapping[str, Any], step: int | None = None) -> None:
        log_metrics({_namespaced(namespace, k, v): v for k, v in metrics.items()}, step)

    logger.log_metrics = namespaced  # type: ignore[method-assign]


def _namespaced(namespace: str, key: str, value: Any) -> str:
    numeric = isinstance(value, (int, float)) or getattr(value, "ndim", None) == 0
    if not numeric or key in AXIS_KEYS or key.startswith(f"{namespace}/"):
        return key
    return f"{namespace}/{key}"


def hparams_metric_names(monitor: str) -> list[str]:
    """The scalars TensorBoard's HParams table shows per run: the monitored value, its best, and
    its test counterpart (``val/cer`` -> ``test/cer``)."""
    names = [monitor, f"{monitor}_best"]
    if monitor.startswith("val/"):
        names.append("test/" + monitor[len("val/") :])
    return names


def log_hyperparameters(
    loggers: Iterable[Logger], config: Mapping[str, Any], metric_names: Sequence[str]
) -> None:
    """Send the flattened ``config`` to every logger.

    TensorBoard also gets the HParams plugin's summaries (experiment, session start), naming
    ``metric_names`` (already namespaced) as the metrics of its table; Lightning writes those
    only with a placeholder ``hp_metric``, which would draw a false point.
    """
    params = flat_hyperparameters(config)
    for logger in loggers:
        logger.log_hyperparams(params)
        if type(logger).__name__ == "TensorBoardLogger":
            from torch.utils.tensorboard.summary import hparams

            metrics = {name: math.nan for name in metric_names}
            writer = logger.experiment._get_file_writer()
            for summary in hparams(params, metrics)[:2]:  # experiment, session start info
                writer.add_summary(summary)
            writer.flush()


class BestToLoggers(Callback):
    """After every validation epoch of a fit, log ``<monitor>_best`` (what sweeps optimise and
    the summary reports) to every logger, from the run record's curve."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit" or not trainer.is_global_zero:
            return
        best = self.record.best
        if best is None:
            return
        for logger in trainer.loggers:
            logger.log_metrics({f"{self.record.monitor}_best": best}, step=trainer.global_step)


def finish_runs(loggers: Iterable[Logger]) -> None:
    """End the wandb run this process opened. The jobs of a multirun share one process (Hydra's
    basic launcher runs them one after another), and wandb would log the next job into the run
    still open."""
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()
