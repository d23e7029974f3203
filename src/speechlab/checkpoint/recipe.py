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
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from speechlab import __version__
from speechlab.checkpoint.compat import upgrade_recipe
from speechlab.checkpoint.init_from import without_init_from
from speechlab.checkpoint.read import named, read_checkpoint, what_to_pass

RECIPE_KEY = "speechlab"


def build_recipe(
    cfg: DictConfig,
    task_inputs: dict[str, Any],
    choices: Mapping[str, Any] | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Everything a checkpoint needs to rebuild its model and data, as plain data; with the
    run's config group ``choices`` (``{"model": "kws_cnn", "data": "mini_commands", ...}``) and
    command-line ``overrides``, which say what to pass to resume or use it."""
    recipe = {
        "version": __version__,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "task_inputs": task_inputs,
    }
    if choices is not None:
        recipe["choices"] = {k: None if v is None else str(v) for k, v in choices.items()}
    if overrides is not None:
        recipe["overrides"] = [str(o) for o in overrides]
    return recipe


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


def load_checkpoint(
    path: str | Path | None, key: str | None = None, expected: str = "", mmap: bool = False
) -> dict[str, Any]:
    """Load a speechlab checkpoint as plain data (``weights_only=True``: no code runs), its
    recipe's module paths upgraded (:mod:`speechlab.checkpoint.compat`).

    Args:
        path: the checkpoint file.
        key: the option ``path`` came from (``ckpt_path``, ``model.judge_ckpt``, ...), named in
            the error messages; None for a neutral message.
        expected: what kind of checkpoint that option takes (e.g. ``"a recognizer's
            checkpoint"``), said in the messages.
        mmap: map the tensors instead of reading them (see :func:`read_checkpoint`).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ``path`` is ``???`` (a required value not given), the file is no checkpoint
            torch reads as plain data, or it holds no speechlab recipe.
    """
    checkpoint = read_checkpoint(path, key, expected, mmap=mmap)
    advice = what_to_pass(key, expected)
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"{named(key, path)} holds a {type(checkpoint).__name__}, not a checkpoint of "
            f"speechlab's train.py (a dict of its weights and, under {RECIPE_KEY!r}, its "
            f"recipe); {advice}"
        )
    recipe = checkpoint.get(RECIPE_KEY)
    if recipe is None:
        raise ValueError(
            f"{named(key, path)} holds no speechlab recipe (key {RECIPE_KEY!r}): it was not "
            "written by speechlab's train.py (a checkpoint of another project, or a bare "
            f"state_dict), so its model and data cannot be rebuilt from it; {advice}"
        )
    if not (
        isinstance(recipe, dict)
        and isinstance(recipe.get("model"), dict)
        and "_target_" in recipe["model"]
        and isinstance(recipe.get("data"), dict)
        and isinstance(recipe.get("task_inputs"), dict)
        and isinstance(checkpoint.get("state_dict"), dict)
    ):
        raise ValueError(
            f"{named(key, path)} holds a speechlab recipe without the model (with its "
            "_target_), data and task_inputs parts, or no state_dict: it is damaged or was "
            f"not written by speechlab's train.py; {advice}"
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
