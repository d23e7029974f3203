"""Loggers that survive a resume: the CSV log keeps its rows, wandb continues the same run
(and is not told a setting it warns about)."""

from __future__ import annotations

import csv
import secrets
from pathlib import Path
from typing import Any

from lightning.pytorch import loggers
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _ContinuingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing ``metrics.csv`` is continued, not deleted.

    Rows logged at or after the first step of the resumed run are dropped from the old file when
    the new rows are first saved: those steps were trained again after the last checkpoint.
    """

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        self._continuing = self._fs.isfile(self.metrics_file_path)
        if self._continuing:
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])

    def _check_log_dir_exists(self) -> None:
        """Keep what an earlier (interrupted) run of this dir wrote."""

    def save(self) -> None:
        if self._continuing and self.metrics:
            self._continuing = False
            first = min(int(row["step"]) for row in self.metrics)
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                kept = [row for row in csv.DictReader(file) if int(row["step"] or 0) < first]
            with self._fs.open(self.metrics_file_path, "w", newline="") as file:
                writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)
        super().save()


class ResumableCSVLogger(CSVLogger):
    """:class:`CSVLogger` whose ``metrics.csv`` continues across ``ckpt_path=last`` resumes."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuingWriter(log_dir=self.log_dir)
        return self._experiment


class WandbLogger(loggers.WandbLogger):
    """Lightning's :class:`~lightning.pytorch.loggers.WandbLogger` without the ``anonymous=None``
    it always hands to ``wandb.init``: current wandb warns on every run that the setting has no
    effect. Same arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)


def run_id(output_dir: str) -> str:
    """The experiment-tracker run id of the run in ``output_dir``: created once, then read back.

    A run resumed in the same dir (``ckpt_path=last``) logs to the same wandb run.
    """
    path = Path(output_dir) / ".run_id"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    identifier = secrets.token_hex(4)
    path.write_text(identifier + "\n")
    return identifier
