"""What the experiment dashboards show: readable run names, hyperparameters, namespaced metrics.

TensorBoard, wandb and MLflow each get the same run name (model, corpus, and the overrides that
set a run apart), the config as hyperparameters, the tags as tags, every scalar under the task's
namespace (``asr/val/cer``, ``kws/val/loss``), and ``<monitor>_best`` after every validation.
MLflow's params and wandb's config hold every config key; TensorBoard's HParams table holds the
few that runs are compared by (:func:`hparams_columns`), its trials named by the run name, and
the whole resolved config is the run's ``config`` text in TensorBoard's Text tab.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import OmegaConf

from speechlab.run.run_record import RunRecord

NAME_LIMIT = 120  # characters of a run name: MLflow, wandb and TensorBoard show it in one line
# Overrides the run name leaves out: the groups it names already, and those that only say where
# files go or how they are logged.
NAMED_GROUPS = ("model", "data")
UNNAMED_ROOTS = ("logger", "hydra", "paths", "ckpt_path")
# Keys every logger keeps as they are: the x axes.
AXIS_KEYS = frozenset({"epoch", "step", "trainer/global_step"})
# TensorBoard's HParams table after the overrides, in this order: what runs are compared by.
# Each column reads the first of its config paths present (a ``_target_`` as its class name);
# ``model`` and ``data`` are the config groups chosen (``model=ctc_lstm``). The other keys stay
# out of the table (the whole config is one click away: the Text tab's ``config``).
COMPARED_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model", ()),
    ("network", ("model.encoder._target_", "model.model._target_", "model.generator._target_")),
    ("data", ()),
    ("model.optimizer", ("model.optimizer._target_",)),
    ("model.optimizer.lr", ("model.optimizer.lr",)),
    ("model.optimizer.weight_decay", ("model.optimizer.weight_decay",)),
    ("data.batch_seconds", ("data.batch_seconds",)),
    ("trainer.max_epochs", ("trainer.max_epochs",)),
    ("seed", ("seed",)),
    ("trainer.precision", ("trainer.precision",)),
)
_MISSING = object()


def run_name(
    choices: Mapping[str, Any], overrides: Sequence[str], limit: int | None = NAME_LIMIT
) -> str:
    """``<model>-<data>`` followed by the command-line overrides, e.g.
    ``ctc_lstm-mini_voice-model.optimizer.lr=0.001``; at most ``limit`` characters (a longer
    name is cut and ends with ``~``; ``None``: never cut).

    ``choices`` are the config group choices (Hydra's ``runtime.choices``); ``overrides`` the
    task overrides of the run (for a multirun job, the ones of that job). Overrides of the model
    and corpus (already in the name) and of paths, loggers and Hydra itself are left out.
    """
    parts = [str(choices.get("model") or "model"), str(choices.get("data") or "data")]
    for override in overrides:
        key = _override_key(override)
        if key not in NAMED_GROUPS and not _is_logistics(key):
            parts.append(override.lstrip("+~"))
    name = re.sub(r"[/\\\s]+", "_", "-".join(parts))
    return name if limit is None or len(name) <= limit else name[: limit - 1] + "~"


def _override_key(override: str) -> str:
    """``model.optimizer.lr`` of ``+model.optimizer.lr=0.001`` (``~key`` deletes: ``key``)."""
    return override.split("=", 1)[0].lstrip("+~")


def _is_logistics(key: str) -> bool:
    """Whether an override only says where files go or how the run is logged."""
    return key.split(".", 1)[0] in UNNAMED_ROOTS


@dataclass(frozen=True)
class HParamColumn:
    """One column of TensorBoard's HParams table.

    TensorBoard orders the columns by (not ``overridden``, ``name``), whatever order they are
    sent in: so a compared column's ``name`` is its rank and ``label``
    (``"05 model.optimizer.lr"``), the table shows ``label``, and an override's ``name`` is its
    key. The same key gets the same ``name`` in every run, so the runs' rows line up.
    """

    name: str
    label: str
    value: bool | int | float | str
    overridden: bool


def hparams_columns(
    config: Mapping[str, Any], choices: Mapping[str, Any], overrides: Sequence[str]
) -> list[HParamColumn]:
    """The HParams table's columns, in the order TensorBoard shows them: first the overrides
    the run name lists (not the model and corpus chosen, nor paths, loggers and Hydra), then
    the :data:`COMPARED_COLUMNS` present in ``config`` and not overridden.

    ``config`` is the resolved config (nested mappings), ``choices`` the config group choices,
    ``overrides`` the run's task overrides as typed (``model.optimizer.lr=0.001``). An
    override's value is the config's value at its key (typed: TensorBoard filters numbers by
    range), else its text after ``=`` (a group choice: ``trainer=gpu``), else ``"removed"``
    (``~key``).
    """
    ranks = {label: rank for rank, (label, _) in enumerate(COMPARED_COLUMNS, start=1)}
    overridden: dict[str, str | None] = {}
    for override in overrides:
        key = _override_key(override)
        if key not in NAMED_GROUPS and not _is_logistics(key):
            overridden[key] = override.split("=", 1)[1] if "=" in override else None
    columns = []
    for key, text in overridden.items():
        value = _config_value(config, key)
        if value is _MISSING or isinstance(value, (Mapping, list)):
            value = "removed" if text is None else text
        name = f"{ranks[key]:02d} {key}" if key in ranks else key
        columns.append(HParamColumn(name, key, _cell(value), overridden=True))
    for label, paths in COMPARED_COLUMNS:
        if label in overridden:
            continue
        if label in NAMED_GROUPS:
            value = choices.get(label, _MISSING)
        else:
            found = (_config_value(config, path) for path in paths)
            value = next((v for v in found if v is not _MISSING), _MISSING)
            if isinstance(value, str) and paths[0].endswith("._target_"):
                value = value.rsplit(".", 1)[-1]
        if value is not _MISSING:
            name = f"{ranks[label]:02d} {label}"
            columns.append(HParamColumn(name, label, _cell(value), overridden=False))
    return sorted(columns, key=lambda column: (not column.overridden, column.name))


def _config_value(config: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``a.b.c`` in nested mappings, or ``_MISSING``."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _cell(value: Any) -> bool | int | float | str:
    """A value the HParams plugin takes: numbers, text and booleans (``None`` as ``"null"``)."""
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


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
    loggers: Iterable[Logger],
    config: Mapping[str, Any],
    metric_names: Sequence[str],
    choices: Mapping[str, Any],
    overrides: Sequence[str],
) -> None:
    """Send the flattened ``config`` (every key) to every logger.

    TensorBoard also gets the HParams plugin's summaries: the :func:`hparams_columns` of the
    run (not every key: those would bury what runs differ in), ``metric_names`` (already
    namespaced) as the metrics of its table, and the run name, never cut, as the trial id
    (runs of the same name, the same command, are one trial of several sessions). The whole
    resolved config goes to its Text tab as ``config``. Lightning writes the HParams
    summaries only with a placeholder ``hp_metric``, which would draw a false point.
    """
    params = flat_hyperparameters(config)
    for logger in loggers:
        logger.log_hyperparams(params)  # TensorBoard: its hparams.yaml, nothing shown
        if type(logger).__name__ == "TensorBoardLogger":
            writer = logger.experiment._get_file_writer()
            columns = hparams_columns(config, choices, overrides)
            trial = run_name(choices, overrides, limit=None)
            for summary in hparams_summaries(columns, metric_names, trial):
                writer.add_summary(summary)
            logger.experiment.add_text("config", config_markdown(config))
            writer.flush()


def hparams_summaries(
    columns: Sequence[HParamColumn], metric_names: Sequence[str], trial: str
) -> list[Any]:
    """The HParams plugin's experiment (``columns`` and ``metric_names`` as the table's
    columns) and session start (this run's values, in the trial ``trial``), as TensorBoard
    ``Summary`` protos to write to the run's event file."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    def summary(tag: str, data: plugin_data_pb2.HParamsPluginData) -> Summary:
        meta = metadata.create_summary_metadata(data)
        return Summary(value=[Summary.Value(tag=tag, metadata=meta, tensor=metadata.NULL_TENSOR)])

    start = plugin_data_pb2.SessionStartInfo(group_name=trial, start_time_secs=time.time())
    infos = []
    for column in columns:
        value = start.hparams[column.name]
        if isinstance(column.value, bool):
            value.bool_value, kind = column.value, api_pb2.DATA_TYPE_BOOL
        elif isinstance(column.value, (int, float)):
            value.number_value, kind = column.value, api_pb2.DATA_TYPE_FLOAT64
        else:
            value.string_value, kind = column.value, api_pb2.DATA_TYPE_STRING
        infos.append(
            api_pb2.HParamInfo(
                name=column.name, display_name=column.label, type=kind, differs=column.overridden
            )
        )
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=name)) for name in metric_names]
    experiment = api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics)
    return [
        summary(metadata.EXPERIMENT_TAG, plugin_data_pb2.HParamsPluginData(experiment=experiment)),
        summary(
            metadata.SESSION_START_INFO_TAG,
            plugin_data_pb2.HParamsPluginData(session_start_info=start),
        ),
    ]


def config_markdown(config: Mapping[str, Any]) -> str:
    """The resolved config as a YAML block for TensorBoard's Text tab (Markdown)."""
    return f"```yaml\n{OmegaConf.to_yaml(OmegaConf.create(dict(config)))}```"


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


def finish_runs(loggers: Iterable[Logger], exit_code: int = 0) -> None:
    """End the wandb run this process opened, with the job's ``exit_code`` (non-zero: wandb
    shows the run as failed, not finished). The jobs of a multirun share one process (Hydra's
    basic launcher runs them one after another), and wandb would log the next job into the run
    still open."""
    if any(type(logger).__name__ == "WandbLogger" for logger in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=exit_code)
