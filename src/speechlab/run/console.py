"""What a run prints: the model summary with its parameters, the run dir, progress; not the
lines a user cannot act on.

Lightning prints, on every run, advertisements ("Tip: ... litlogger", "... litmodels"), a
warning that the task's ``on_after_batch_transfer`` is used instead of the datamodule's (it is
meant to be: features are computed there, on the device), one about a logging interval longer
than a short epoch (the runner lowers the interval itself, :class:`ShortRunLogInterval`), a
deprecation warning from its own use of torch's pytree API, and a model summary whose ``FLOPs``
column is all zeros (nothing is measured without an example input). Each is silenced here by its
exact wording, so every other warning, ours and Lightning's, still shows.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import RichModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count

log = logging.getLogger(__name__)

# Lightning's info lines that help no one, by their beginning.
QUIET_LINES = (
    "💡 Tip:",  # litlogger / litmodels advertisements
    "Loading `train_dataloader` to estimate number of stepping batches",
    "Trainer already configured with model summary callbacks",  # ours, on purpose
    "TPU available:",  # speech runs on GPUs and CPUs; the GPU line stays
)
# Warnings by the start of their message (regular expressions, as warnings.filterwarnings).
QUIET_WARNINGS = (
    r"You have overridden `on_after_batch_transfer` in `LightningModule` but have passed in a",
    r"The number of training batches \(\d+\) is smaller than the logging interval",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # the summary's size is an estimate under any precision; EMA's copy is not sharded here
    r"Precision [\w-]+ is not supported by the model summary",
    r"You're using the WeightAveraging callback with a model that overrides the configure_model",
)


class QuietLines(logging.Filter):
    """Drops the log records whose message starts with one of :data:`QUIET_LINES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(QUIET_LINES)


def quiet_console() -> None:
    """Silence the lines of :data:`QUIET_LINES` and the warnings of :data:`QUIET_WARNINGS` in
    this process (the handlers of the root logger and of Lightning's own loggers)."""
    for pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in (None, "lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, QuietLines) for f in handler.filters):
                handler.addFilter(QuietLines())


def announce_run_dir(run_dir: str | Path) -> None:
    """Say where the run writes, first thing: its log, checkpoints and metrics."""
    log.info("run dir: %s (train.log, run.json, checkpoints/, metrics.json)", run_dir)


class ModelSummaryTable(RichModelSummary):
    """Lightning's rich model summary without the columns and lines that say nothing here: the
    ``FLOPs`` column and total (zeros: nothing is run through the model to count them) and the
    per-mode module counts. Name, type and parameters of each top-level module stay, with the
    trainable, frozen and total parameter counts and the model's size.

    Args:
        max_depth: module levels shown (1: the task's direct children).
    """

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        from rich import get_console
        from rich.table import Table

        shown = [(name, values) for name, values in summary_data if name not in ("FLOPs", "Mode")]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        table.add_column(" ", style="dim")
        for name, _ in shown[1:]:
            justify = "left" if name in ("Name", "Type") else "right"
            table.add_column(name, justify=justify, no_wrap=name == "Name")
        for row in zip(*(values for _, values in shown), strict=True):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        frozen = total_parameters - trainable_parameters
        console.print(
            f"[bold]Trainable params[/]: {get_human_readable_count(int(trainable_parameters))}  "
            f"[bold]Frozen[/]: {get_human_readable_count(int(frozen))}  "
            f"[bold]Total[/]: {get_human_readable_count(int(total_parameters))}  "
            f"[bold]Size[/]: {model_size:,.1f} MB"
        )
