"""Send figures to every logger that takes images, and keep a PNG in the run dir."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

log = logging.getLogger(__name__)


def log_figure(trainer: L.Trainer, name: str, figure) -> Path:
    """Save ``figure`` (matplotlib) as ``<run dir>/images/<name>.png`` and log it where possible.

    CSV loggers take no images; the PNG in the run dir is then the record.
    """
    import matplotlib.pyplot as plt

    safe = name.replace("/", "_")
    path = Path(trainer.default_root_dir) / "images" / f"{safe}.png"
    if trainer.is_global_zero:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100, bbox_inches="tight")
        step = trainer.global_step
        for logger in trainer.loggers:
            kind = type(logger).__name__
            if kind == "TensorBoardLogger":
                logger.experiment.add_figure(name, figure, global_step=step)
            elif kind == "WandbLogger":
                logger.log_image(key=name, images=[str(path)], step=step)
            elif kind == "MLFlowLogger":
                logger.experiment.log_figure(logger.run_id, figure, f"{safe}.png")
    plt.close(figure)
    return path
