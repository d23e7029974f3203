"""Initialise part of a model from another speechlab checkpoint (e.g. an ST encoder from ASR).

``model.init_from: {ckpt: <path>, include: [frontend, encoder]}`` takes the checkpoint's
``state_dict`` tensors whose names start with an included prefix and loads those the model has
with the same shape. The report names every tensor: loaded, skipped (not included, or absent
from the model) and mismatched (same name, another shape). Any task can use it.
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

log = logging.getLogger(__name__)

INIT_FROM_KEY = "init_from"  # the model config key; not a task constructor argument


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


def load_partial(
    module: nn.Module, checkpoint: str | Path, include: Sequence[str] = ("frontend", "encoder")
) -> PartialLoad:
    """Load the tensors of ``checkpoint`` (a speechlab ``.ckpt`` or a bare ``state_dict``)
    under the ``include`` prefixes (module names, e.g. ``encoder``) into ``module``.

    Raises :class:`FileNotFoundError` for a missing file and :class:`ValueError` when nothing
    could be loaded (wrong prefixes or an unrelated checkpoint).
    """
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"model.init_from.ckpt={checkpoint}: no such file; expected a speechlab checkpoint "
            "(e.g. logs/train/runs/<run>/checkpoints/<best>.ckpt of an ASR run)"
        )
    prefixes = [str(p).rstrip(".") for p in include]
    if not prefixes:
        raise ValueError(
            "model.init_from.include is empty; name the modules to load, e.g. [encoder]"
        )
    data = torch.load(path, map_location="cpu", weights_only=True)
    source: Mapping[str, Any] = data.get("state_dict", data) if isinstance(data, dict) else {}
    target = module.state_dict()
    report = PartialLoad(checkpoint=str(path), include=prefixes)
    selected: dict[str, torch.Tensor] = {}
    for name, tensor in source.items():
        if not isinstance(tensor, torch.Tensor):
            continue
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
    if not selected:
        raise ValueError(
            f"model.init_from: no tensor of {path} under {prefixes} fits the model "
            f"({len(report.mismatched)} mismatched, {len(report.skipped)} skipped); check "
            "model.init_from.include and that the checkpoint's encoder matches model.encoder"
        )
    module.load_state_dict(selected, strict=False)
    return report


def apply_init_from(
    module: nn.Module, options: Mapping[str, Any] | None, run_dir: Path | None
) -> PartialLoad | None:
    """``options = {ckpt, include}`` (``ckpt: null`` does nothing): load, log the report as one
    block and write it to ``<run_dir>/init_from.json``."""
    if not options or not options.get("ckpt"):
        return None
    report = load_partial(
        module, options["ckpt"], options.get("include") or ("frontend", "encoder")
    )
    log.info("%s", report.summary())
    if run_dir is not None:
        report.write(Path(run_dir) / "init_from.json")
    return report


def without_init_from(model_config: Mapping[str, Any]) -> dict[str, Any]:
    """The model config minus ``init_from`` (a training option, not a constructor argument)."""
    return {key: value for key, value in model_config.items() if key != INIT_FROM_KEY}
