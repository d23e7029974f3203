"""Evaluate a checkpoint on the test split of the corpus it was trained on (or another)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from speechlab.checkpoint.compat import upgrade_recipe
from speechlab.run.callbacks import RECIPE_KEY, SkippedAudioReport
from speechlab.run.reports import plain_metrics, print_metrics, write_metrics, write_predictions
from speechlab.run.train import build_datamodule, build_task

log = logging.getLogger(__name__)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a speechlab checkpoint as plain data (``weights_only=True``: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}; pass ckpt_path=<run dir>/checkpoints/<file>.ckpt "
            "(train.py writes them under logs/train/runs/<timestamp>/checkpoints/)"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if RECIPE_KEY not in checkpoint:
        raise ValueError(
            f"{path} holds no speechlab recipe (key {RECIPE_KEY!r}); it was not written by "
            "speechlab's train.py, so its model and data cannot be rebuilt from it alone."
        )
    checkpoint[RECIPE_KEY] = upgrade_recipe(checkpoint[RECIPE_KEY])  # old module paths
    return checkpoint


def restore_task(checkpoint: dict[str, Any]):
    """Rebuild the task module of ``checkpoint`` and load its weights."""
    recipe = checkpoint[RECIPE_KEY]
    task = build_task(recipe["model"], recipe["task_inputs"])
    task.load_state_dict(checkpoint["state_dict"])
    return task.eval()


def run(cfg: DictConfig) -> dict[str, float]:
    """Test ``cfg.ckpt_path``; write ``metrics.json`` and ``predictions.tsv`` into the run dir."""
    checkpoint = load_checkpoint(cfg.ckpt_path)
    recipe = checkpoint[RECIPE_KEY]
    data_cfg = OmegaConf.merge(OmegaConf.create(recipe["data"]), cfg.get("data") or {})
    # the model's own labels or tokenizers, never retrained
    for key in ("labels", "tokenizer", "source_tokenizer"):
        if key in recipe["task_inputs"]:
            data_cfg[key] = recipe["task_inputs"][key]
    task = restore_task(checkpoint)
    if cfg.get("decoding"):
        if not hasattr(task, "set_decoding"):
            raise ValueError(f"decoding options do not apply to a {type(task).__name__}")
        task.set_decoding(OmegaConf.to_container(cfg.decoding, resolve=True))
    datamodule = build_datamodule(data_cfg, task.target_field, getattr(task, "source_field", None))

    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[SkippedAudioReport()])
    trainer.test(task, datamodule=datamodule)
    metrics = plain_metrics(trainer.callback_metrics)
    output_dir = Path(cfg.paths.output_dir)
    write_metrics(output_dir / "metrics.json", metrics)
    write_predictions(
        output_dir / "predictions.tsv",
        getattr(task, "predictions", []),
        getattr(task, "prediction_columns", ("id", "reference", "hypothesis")),
    )
    print_metrics(f"{Path(cfg.ckpt_path).name} on {datamodule.reader.name}", metrics)
    log.info("wrote %s and %s", output_dir / "metrics.json", output_dir / "predictions.tsv")
    return metrics
