"""The recipe inside every checkpoint: written with it, read back, and the task rebuilt from it.

A speechlab checkpoint is Lightning's (``state_dict``, and the optimizer, loop and callback
states of a resumable one) plus, under :data:`RECIPE_KEY`, the recipe: the resolved model and
data configs and the task inputs the data gave (labels, tokenizers). The recipe is plain data
(dicts, lists, strings, numbers), so :func:`load_checkpoint` reads a checkpoint with
``torch.load(weights_only=True)``: loading it runs no code. :func:`restore_task` rebuilds the
task from the recipe alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from speechlab import __version__
from speechlab.checkpoint.compat import upgrade_recipe
from speechlab.checkpoint.init_from import without_init_from

RECIPE_KEY = "speechlab"


def build_recipe(cfg: DictConfig, task_inputs: dict[str, Any]) -> dict[str, Any]:
    """Everything a checkpoint needs to rebuild its model and data, as plain data."""
    return {
        "version": __version__,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "task_inputs": task_inputs,
    }


class RecipeInCheckpoint(Callback):
    """Store the recipe (model and data configs, task inputs such as labels) in every checkpoint.

    The recipe is plain data (dicts, lists, strings, numbers), so a checkpoint restores its model
    with ``torch.load(weights_only=True)``: loading it runs no code.
    """

    def __init__(self, recipe: dict[str, Any]) -> None:
        self.recipe = recipe

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint[RECIPE_KEY] = self.recipe


def build_task(model_cfg: DictConfig | Mapping[str, Any], task_inputs: dict[str, Any]) -> Any:
    """The task module of ``model_cfg`` (minus ``init_from``, applied after) with the data's
    ``task_inputs`` (labels or tokenizers)."""
    if OmegaConf.is_config(model_cfg):
        model_cfg = OmegaConf.to_container(model_cfg, resolve=True)
    return hydra.utils.instantiate(without_init_from(model_cfg), **task_inputs)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a speechlab checkpoint as plain data (``weights_only=True``: no code runs), its
    recipe's module paths upgraded (:mod:`speechlab.checkpoint.compat`).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file holds no speechlab recipe.
    """
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
    """Rebuild the task module of ``checkpoint`` (see :func:`load_checkpoint`) and load its
    weights; in eval mode."""
    recipe = checkpoint[RECIPE_KEY]
    task = build_task(recipe["model"], recipe["task_inputs"])
    task.load_state_dict(checkpoint["state_dict"])
    return task.eval()
