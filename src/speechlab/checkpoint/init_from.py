"""Initialise part of a model from another speechlab checkpoint (e.g. an ST encoder from ASR).

``model.init_from: {ckpt: <path>, include: [frontend, encoder]}`` takes the checkpoint's
``state_dict`` tensors whose names start with an included prefix and loads those the model has
with the same shape. The report names every tensor: loaded, skipped (not included, or absent
from the model) and mismatched (same name, another shape); it is a warning when included tensors
were left out, and a load that takes no parameter at all (an unrelated checkpoint: at most a
buffer such as an STFT window fits) stops the run. ``expects`` (optional) says in the messages
what kind of checkpoint the config takes. Any task can use it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from speechlab.checkpoint.read import checkpoint_file, read_checkpoint

log = logging.getLogger(__name__)

INIT_FROM_KEY = "init_from"  # the model config key; not a task constructor argument
INIT_FROM_KEY_PATH = f"model.{INIT_FROM_KEY}"  # as typed on the command line


@dataclass
class PartialLoad:
    """What :func:`load_partial` did: tensor names, each with the reason or shapes."""

    checkpoint: str
    include: list[str]
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    mismatched: dict[str, str] = field(default_factory=dict)
    not_initialised: list[str] = field(default_factory=list)  # included model tensors left as is

    def summary(self) -> str:
        """A readable block for the run log."""
        lines = [
            f"init_from {self.checkpoint} (include {self.include}): {len(self.loaded)} loaded, "
            f"{len(self.skipped)} skipped, {len(self.mismatched)} mismatched, "
            f"{len(self.not_initialised)} included model tensors not in the checkpoint",
            *(f"  loaded      {name}" for name in self.loaded),
            *(f"  mismatched  {name}: {why}" for name, why in self.mismatched.items()),
            *(f"  skipped     {name}: {why}" for name, why in self.skipped.items()),
            *(f"  not in ckpt {name}" for name in self.not_initialised),
        ]
        return "\n".join(lines)

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path


def _included(name: str, prefixes: Sequence[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _holds(data: Any, source: Mapping[str, Any]) -> str:
    """What a checkpoint holds, in words: its task and run choices when it has a recipe, and the
    module prefixes of its tensors."""
    recipe = data.get("speechlab") if isinstance(data, dict) else None
    prefixes = sorted({name.split(".")[0] for name in source})
    what = "a state_dict"
    if isinstance(recipe, dict) and isinstance(recipe.get("model"), dict):
        what = f"a {str(recipe['model'].get('_target_', '?')).rpartition('.')[2]}"
        choices = recipe.get("choices") or {}
        chosen = " ".join(f"{g}={choices[g]}" for g in ("model", "data") if choices.get(g))
        what += f" ({chosen})" if chosen else ""
    return f"{what} whose tensors start with {prefixes}"


def load_partial(
    module: nn.Module,
    checkpoint: str | Path,
    include: Sequence[str] = ("frontend", "encoder"),
    expects: str = "",
) -> PartialLoad:
    """Load the tensors of ``checkpoint`` (a speechlab ``.ckpt`` or a bare ``state_dict``)
    under the ``include`` prefixes (module names, e.g. ``encoder``) into ``module``.

    ``expects`` says what kind of checkpoint the config takes (``model.init_from.expects``), in
    the messages; by default a checkpoint holding this model's ``include`` modules.

    Raises:
        FileNotFoundError: no file at ``checkpoint``.
        ValueError: ``checkpoint`` is ``???`` (the config requires one), the file is no
            checkpoint, ``include`` is empty, or no parameter could be loaded (wrong prefixes or
            an unrelated checkpoint; buffers alone, such as an STFT window, do not count).
    """
    prefixes = [str(p).rstrip(".") for p in include]
    expects = expects or _default_expects(prefixes)
    data = read_checkpoint(checkpoint, key=f"{INIT_FROM_KEY_PATH}.ckpt", expected=expects)
    path = Path(checkpoint).expanduser()
    if not prefixes:
        raise ValueError(
            f"{INIT_FROM_KEY_PATH}.include is empty; name the modules to load, e.g. [encoder]"
        )
    source: Mapping[str, Any] = data.get("state_dict", data) if isinstance(data, dict) else {}
    source = {k: v for k, v in source.items() if isinstance(v, torch.Tensor)}
    target = module.state_dict()
    parameters = {name for name, _ in module.named_parameters()}
    report = PartialLoad(checkpoint=str(path), include=prefixes)
    selected: dict[str, torch.Tensor] = {}
    for name, tensor in source.items():
        if not _included(name, prefixes):
            report.skipped[name] = "not included"
        elif name not in target:
            report.skipped[name] = "absent from the model"
        elif tuple(tensor.shape) != tuple(target[name].shape):
            report.mismatched[name] = (
                f"checkpoint {tuple(tensor.shape)} vs model {tuple(target[name].shape)}"
            )
        else:
            selected[name] = tensor
            report.loaded.append(name)
    report.not_initialised = [
        name for name in target if _included(name, prefixes) and name not in source
    ]
    if not parameters.intersection(selected):
        fitting = sorted(
            {
                name.split(".")[0]
                for name, tensor in source.items()
                if name in parameters and tuple(tensor.shape) == tuple(target[name].shape)
            }
        )
        hint = (
            f"its {fitting} parameters fit this model: to take them, pass "
            f"{INIT_FROM_KEY_PATH}.include=[{','.join(fitting)}]"
            if fitting
            else f"pass {INIT_FROM_KEY_PATH}.ckpt=<file>: {expects}"
        )
        loaded = f" (only buffers, {report.loaded})" if report.loaded else ""
        absent = sum(why == "absent from the model" for why in report.skipped.values())
        included = len(report.mismatched) + absent + len(report.loaded)
        why = (
            f"of its {included} tensors under them, {len(report.mismatched)} differ in shape "
            f"and {absent} are absent from the model"
            if included
            else "it has no tensor under them"
        )
        raise ValueError(
            f"{INIT_FROM_KEY_PATH}.ckpt={checkpoint}: no parameter under the included prefixes "
            f"{prefixes} fits this {type(module).__name__}{loaded}: {why}. The file holds "
            f"{_holds(data, source)}; {hint}."
        )
    module.load_state_dict(selected, strict=False)
    return report


def _default_expects(prefixes: Sequence[str]) -> str:
    return f"a speechlab checkpoint holding this model's {list(prefixes)} modules"


def check_init_from_file(options: Mapping[str, Any] | None) -> None:
    """Stop before any data is prepared when ``options``' ``ckpt`` (``model.init_from``) is
    ``???`` or names no file; nothing to check for ``ckpt: null``.

    Raises:
        ValueError: ``ckpt`` is ``???`` (the config requires one and none was given).
        FileNotFoundError: no file at ``ckpt``.
    """
    if options and options.get("ckpt"):
        expects = options.get("expects") or _default_expects(
            options.get("include") or ("frontend", "encoder")
        )
        checkpoint_file(options["ckpt"], f"{INIT_FROM_KEY_PATH}.ckpt", expects)


def apply_init_from(
    module: nn.Module, options: Mapping[str, Any] | None, run_dir: Path | None
) -> PartialLoad | None:
    """``options = {ckpt, include, expects}`` (``ckpt: null`` does nothing): load, log the
    report as one block (a warning when included tensors mismatch, are absent from the model or
    missing from the checkpoint) and write it to ``<run_dir>/init_from.json``."""
    if not options or not options.get("ckpt"):
        return None
    report = load_partial(
        module,
        options["ckpt"],
        options.get("include") or ("frontend", "encoder"),
        options.get("expects") or "",
    )
    absent = any(why == "absent from the model" for why in report.skipped.values())
    if report.mismatched or report.not_initialised or absent:
        log.warning(
            "%s\nsome included tensors were not loaded: those model tensors keep their fresh "
            "initialisation",
            report.summary(),
        )
    else:
        log.info("%s", report.summary())
    if run_dir is not None:
        report.write(Path(run_dir) / "init_from.json")
    return report


def without_init_from(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """The model config minus ``init_from`` (a training option, not a constructor argument)."""
    return {key: value for key, value in model_config.items() if key != INIT_FROM_KEY}
