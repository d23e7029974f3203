"""Whether the checkpoint a run resumes from holds this run's model, checked before it is used.

A resume loads every weight of ``ckpt_path`` into the task this run's config builds. A file of
another model (``model=kws_cnn``'s checkpoint under the default ``model=ctc_lstm``) failed deep
inside Lightning's ``load_state_dict`` after the data was prepared, with a traceback. Here:

- before any data is prepared, :func:`read_resume_checkpoint` reads the file's recipe and the
  names and shapes of its weights (``torch.load(mmap=True, weights_only=True)``: no tensor is
  read) and stops when it holds another task (its model ``_target_``);
- once the task is built, :func:`check_weights_fit` compares those names and shapes with the
  task's, as Lightning's strict loading would, and stops when they differ (another encoder,
  other sizes, another label set).

Both say which model the file holds and what to pass to resume it: the config choices and
overrides of the run that wrote it (kept in its recipe, or in its run dir's ``.hydra``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from torch import nn

from speechlab.checkpoint.recipe import RECIPE_KEY, load_checkpoint

SELECTING = ("experiment", "model", "data")  # the config parts that make a model what it is


@dataclass
class ResumeCheckpoint:
    """What a resume checkpoint holds, read without its tensors' data.

    Attributes:
        name: how the messages call it (``ckpt_path=last (<file>)``).
        target: its task's ``_target_``.
        shapes: each weight's name and shape.
        choices, overrides: the config group choices and command-line overrides of the run that
            wrote it (empty when neither its recipe nor its run dir keeps them).
    """

    name: str
    target: str
    shapes: dict[str, tuple[int, ...]]
    choices: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)

    def described(self) -> str:
        """'a KeywordSpottingTask (model=kws_cnn data=mini_commands)'."""
        return f"a {self.target.rpartition('.')[2]} ({_selection(self.choices) or self.target})"


def _selection(choices: Mapping[str, Any]) -> str:
    return " ".join(f"{g}={choices[g]}" for g in SELECTING if choices.get(g) is not None)


def _run_dir_config(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The choices and overrides in ``.hydra`` of the run dir ``path`` (a file in its
    ``checkpoints/``) lies in; empty when there is none."""
    hydra_dir = path.resolve().parent.parent / ".hydra"
    try:
        hydra = yaml.safe_load((hydra_dir / "hydra.yaml").read_text())["hydra"]
        overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []
        return dict(hydra["runtime"]["choices"]), [str(o) for o in overrides]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return {}, []


def read_resume_checkpoint(path: str | Path, given: str | None) -> ResumeCheckpoint:
    """The recipe, weight shapes and run config of the checkpoint at ``path`` (``given``: the
    ``ckpt_path`` typed, e.g. ``last``; None for a relaunched job's own ``last.ckpt``).

    Raises:
        ValueError: not a speechlab checkpoint (see :func:`load_checkpoint`).
    """
    name = f"ckpt_path={given}" if given else f"this job's {path}"
    if given and str(given) != str(path):
        name += f" ({path})"
    checkpoint = load_checkpoint(
        path,
        key="ckpt_path" if given else None,
        expected="a checkpoint of the speechlab run to resume (ckpt_path=last: hydra.run.dir's)",
        mmap=True,
    )
    recipe = checkpoint[RECIPE_KEY]
    state = checkpoint.get("state_dict") or {}
    choices, overrides = recipe.get("choices"), recipe.get("overrides")
    if choices is None:
        choices, overrides = _run_dir_config(Path(path))
    return ResumeCheckpoint(
        name=name,
        target=str(recipe["model"].get("_target_")),
        shapes={k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")},
        choices=dict(choices),
        overrides=list(overrides or []),
    )


def _selects(override: str) -> str | None:
    """The key of an override that sets the model, the data or the experiment, else None."""
    key = override.split("=", 1)[0].lstrip("+~")
    return key if re.split(r"[./@]", key, maxsplit=1)[0] in SELECTING else None


def what_to_pass(
    checkpoint: ResumeCheckpoint, choices: Mapping[str, Any], overrides: Sequence[str]
) -> tuple[list[str], list[str]]:
    """The overrides that give this run the model and data of ``checkpoint``'s run (its
    experiment, model and data choices and its own model/data overrides, less those this run,
    with ``choices`` and ``overrides``, already has), and this run's model/data overrides that
    its run did not have (to leave out). Both empty when its run's config is unknown."""
    if not checkpoint.choices:
        return [], []
    picked: dict[str, str] = {}
    theirs = checkpoint.choices
    groups = ("experiment",) if theirs.get("experiment") else ("model", "data")
    for group in groups:
        if theirs.get(group) is not None and theirs[group] != choices.get(group):
            picked[group] = f"{group}={theirs[group]}"
    for override in checkpoint.overrides:
        key = _selects(override)
        if key and override not in overrides:
            picked[key] = override
    drop = [
        o
        for o in overrides
        if _selects(o) and _selects(o) not in picked and o not in checkpoint.overrides
    ]
    return list(picked.values()), drop


def _advice(checkpoint: ResumeCheckpoint, choices: Mapping[str, Any], overrides: Sequence[str]):
    to_pass, to_drop = what_to_pass(checkpoint, choices, overrides)
    if to_pass or to_drop:
        steps = [f"pass {' '.join(to_pass)}"] if to_pass else []
        steps += [f"leave out {' '.join(to_drop)}"] if to_drop else []
        return f"To resume it, {' and '.join(steps)}"
    if checkpoint.choices:
        return (
            "This run has the model and data options of its run, so the corpus gave other task "
            "inputs (labels, tokenizer) than it did: resume it on the corpus it was trained on"
        )
    return (
        f"To resume it, pass the model= and data= options its run used (its task is "
        f"{checkpoint.target})"
    )


def check_same_model(
    checkpoint: ResumeCheckpoint,
    model_cfg: DictConfig | Mapping[str, Any],
    choices: Mapping[str, Any],
    overrides: Sequence[str],
) -> None:
    """Stop when ``checkpoint`` holds another task than ``model_cfg``'s ``_target_``.

    Raises:
        ValueError: saying which model the checkpoint holds and what to pass.
    """
    if OmegaConf.is_config(model_cfg):
        target = OmegaConf.select(model_cfg, "_target_")
    else:
        target = model_cfg.get("_target_")
    if target == checkpoint.target:
        return
    ours = _selection(choices) or target
    raise ValueError(
        f"{checkpoint.name} holds {checkpoint.described()}, but this run builds a "
        f"{str(target).rpartition('.')[2]} ({ours}), which cannot take its weights. "
        f"{_advice(checkpoint, choices, overrides)}; to train {ours} from scratch instead, "
        "leave out ckpt_path (and use a new hydra.run.dir)."
    )


def check_weights_fit(
    checkpoint: ResumeCheckpoint,
    task: nn.Module,
    choices: Mapping[str, Any],
    overrides: Sequence[str],
) -> None:
    """Stop when the weights of ``checkpoint`` do not fit ``task`` as Lightning's strict
    loading requires: the same names with the same shapes.

    Raises:
        ValueError: naming the first tensors that differ and what to pass.
    """
    ours = {name: tuple(t.shape) for name, t in task.state_dict().items()}
    theirs = checkpoint.shapes
    differ = [
        f"{name}: checkpoint {theirs[name]} vs this model {ours[name]}"
        for name in ours
        if name in theirs and theirs[name] != ours[name]
    ]
    differ += [f"{name}: not in the checkpoint" for name in ours if name not in theirs]
    differ += [f"{name}: not in this model" for name in theirs if name not in ours]
    if not differ:
        return
    shown = "; ".join(differ[:4]) + (f"; and {len(differ) - 4} more" if len(differ) > 4 else "")
    raise ValueError(
        f"{checkpoint.name} holds {checkpoint.described()} whose weights do not fit the "
        f"{type(task).__name__} this run built ({len(differ)} tensors differ: {shown}). "
        f"{_advice(checkpoint, choices, overrides)}; to train this model from scratch instead, "
        "leave out ckpt_path (and use a new hydra.run.dir)."
    )
