"""Average the weights of several checkpoints of one model (e.g. the top-k of a run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from speechlab.checkpoint.recipe import load_checkpoint


def average_checkpoints(paths: list[str | Path]) -> dict[str, Any]:
    """The weights of several checkpoints of one model averaged (e.g. the top-k of a run).

    Floating-point tensors are averaged in float64 and stored in their own dtype; integer
    buffers (counters) come from the last checkpoint, as do the recipe and everything else, so
    ``evaluate.py`` and ``speechlab transcribe`` use the result like any checkpoint. Optimizer
    state is dropped: the average is for evaluation, not for resuming.

    Raises:
        ValueError: fewer than two paths, or checkpoints of different models.
    """
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    checkpoints = [load_checkpoint(path) for path in paths]
    reference = checkpoints[-1]["state_dict"]
    for path, checkpoint in zip(paths, checkpoints, strict=True):
        weights = checkpoint["state_dict"]
        shapes = {name: tuple(t.shape) for name, t in weights.items()}
        expected = {name: tuple(t.shape) for name, t in reference.items()}
        if shapes != expected:
            differ = sorted(set(shapes.items()) ^ set(expected.items()))[:5]
            raise ValueError(
                f"{path} does not hold the same model as {paths[-1]} (tensors that differ: "
                f"{differ}); average checkpoints of one run or of one recipe only"
            )
    averaged = {}
    for name, last in reference.items():
        if last.is_floating_point():
            total = sum(c["state_dict"][name].double() for c in checkpoints)
            averaged[name] = (total / len(checkpoints)).to(last.dtype)
        else:
            averaged[name] = last.clone()
    result = {
        k: v for k, v in checkpoints[-1].items() if k not in ("optimizer_states", "lr_schedulers")
    }
    result["state_dict"] = averaged
    result["averaged_from"] = [str(path) for path in paths]
    return result
