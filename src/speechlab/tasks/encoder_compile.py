"""``torch.compile`` of a task's encoder over a bounded set of shapes (``model.compile``).

Compiled code is specialised to the shapes it was traced with, and duration-bucketed batches
come in as many lengths as a corpus has durations. So each batch's features are padded on the
time axis up to one of a few configured frame counts, and only those get compiled:

- the time axis is marked static (``torch._dynamo.mark_static``): one graph per padded size,
  with fixed-size kernels;
- the batch axis is marked dynamic (``torch._dynamo.maybe_mark_dynamic``): batch sizes vary with
  the durations of a bucket, and one graph serves them all (a batch of one utterance may get a
  graph of its own);
- everything else follows ``torch.compile``'s automatic dynamic shapes. Dynamo cannot trace
  ``nn.LSTM`` / ``nn.GRU`` (a graph break), and the code after a break would otherwise be
  compiled again for every batch size (``dynamic=False`` does that); with automatic dynamic
  shapes it is compiled once or twice.

The true lengths are unchanged: every encoder masks its padded frames, so the valid output frames,
a CTC loss and a decoding are those of the unpadded batch. (Batch norms that count padded frames in
training, as in the conformer's convolution module, see a few more of them.)
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


class CompileOptions(TypedDict):
    """``model.compile``: its keys and what each takes (``conf/model/compile/default.yaml``);
    a config of the wrong shape is named before any data is prepared."""

    enabled: bool
    backend: str
    mode: str | None
    frames: list[int]


OPTIONS = tuple(CompileOptions.__annotations__)
MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Graphs one compiled encoder may hold per size: training, evaluation, and a batch of one each.
GRAPHS_PER_SIZE = 4


def padded_frames(frames: int, sizes: Sequence[int]) -> int:
    """The smallest of ``sizes`` (ascending) that holds ``frames``; beyond the largest, the next
    multiple of the largest (so an unusually long batch still compiles once per multiple)."""
    index = bisect.bisect_left(sizes, frames)
    if index < len(sizes):
        return int(sizes[index])
    return math.ceil(frames / sizes[-1]) * int(sizes[-1])


def pad_frames(features: torch.Tensor, size: int) -> torch.Tensor:
    """Features ``(B, ..., F)`` zero-padded on the last (time) axis to ``(B, ..., size)``.

    Raises:
        ValueError: ``size`` is smaller than ``F``.
    """
    missing = size - features.shape[-1]
    if missing < 0:
        raise ValueError(f"cannot pad {features.shape[-1]} frames down to {size}")
    return F.pad(features, (0, missing)) if missing else features


def _check_frames(frames: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(frames) if isinstance(frames, Sequence) and not isinstance(frames, str) else ()
    valid = (
        bool(sizes)
        and all(isinstance(size, int) and not isinstance(size, bool) for size in sizes)
        and sizes[0] > 0
        and all(a < b for a, b in zip(sizes, sizes[1:], strict=False))
    )
    if not valid:
        raise ValueError(
            f"model.compile.frames must be a non-empty, strictly ascending list of positive "
            f"frame counts (e.g. [256, 384, 512]), got {frames!r}; see "
            "conf/model/compile/default.yaml"
        )
    return sizes


class EncoderCompiler:
    """Compiles an encoder with :meth:`torch.nn.Module.compile` (its parameter names, and so the
    checkpoints, stay those of the eager module) and pads every batch for it.

    :meth:`prepare` pads features ``(B, n_mels, F)`` to ``(B, n_mels, F*)`` with ``F*`` from
    :func:`padded_frames` and marks the axes; :meth:`step_done` closes the clock of the first step
    of each new ``(train|eval, F*)``: its wall time, compilation included, is logged once and kept
    in :attr:`seconds` (``{"train/512": 41.2, ...}``).

    Args:
        backend: a ``torch.compile`` backend (``"inductor"``; ``"aot_eager"`` and ``"eager"`` for
            debugging) or a backend callable.
        mode: ``torch.compile`` mode: ``None``, ``"reduce-overhead"`` (CUDA graphs),
            ``"max-autotune"``, ...
        frames: the padded sizes, in feature frames, strictly ascending.

    Raises:
        ValueError: an unknown backend or mode, or ``frames`` not a strictly ascending list of
            positive ints.
    """

    def __init__(
        self,
        backend: str | Callable[..., Any],
        mode: str | None,
        frames: Sequence[int],
    ) -> None:
        if isinstance(backend, str):
            known = torch._dynamo.list_backends(exclude_tags=())
            if backend not in known:
                raise ValueError(
                    f"model.compile.backend={backend!r} is not a torch.compile backend; "
                    f"use one of {sorted(known)}"
                )
        if mode not in MODES:
            raise ValueError(f"model.compile.mode must be one of {list(MODES)}, got {mode!r}")
        self.backend = backend
        self.mode = mode
        self.frames = _check_frames(frames)
        self.seconds: dict[str, float] = {}
        self.compiled = False
        self._pending: tuple[str, float] | None = None

    @classmethod
    def from_config(cls, options: Mapping[str, Any] | None) -> EncoderCompiler | None:
        """The compiler of ``model.compile`` (keys :data:`OPTIONS`), or ``None`` when it is
        absent or not ``enabled``.

        Raises:
            ValueError: unknown or missing keys, or invalid values (see the class).
        """
        if options is None:
            return None
        keys = set(options)
        if keys != set(OPTIONS):
            raise ValueError(
                f"model.compile takes the keys {list(OPTIONS)}; got unknown "
                f"{sorted(keys - set(OPTIONS))} and missing {sorted(set(OPTIONS) - keys)} "
                "(conf/model/compile/default.yaml has them all)"
            )
        if not isinstance(options["enabled"], bool):
            raise ValueError(
                f"model.compile.enabled takes true or false, got {options['enabled']!r}"
            )
        if not options["enabled"]:
            return None
        return cls(options["backend"], options["mode"], list(options["frames"]))

    def compile(self, encoder: nn.Module) -> None:
        """Compile ``encoder`` in place, once.

        Raises dynamo's per-function recompile limit (8 by default, a process-wide setting) to
        :data:`GRAPHS_PER_SIZE` graphs per configured size, so that no size falls back to eager.
        """
        if self.compiled:
            return
        limit = GRAPHS_PER_SIZE * len(self.frames)
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, limit)
        encoder.compile(backend=self.backend, mode=self.mode)
        self.compiled = True

    def prepare(
        self, features: torch.Tensor, lengths: torch.Tensor, training: bool
    ) -> torch.Tensor:
        """Features ``(B, n_mels, F)`` padded to ``(B, n_mels, F*)`` and marked for compilation;
        ``lengths`` ``(B,)`` is marked, not changed. Starts the clock of a new shape."""
        size = padded_frames(features.shape[-1], self.frames)
        features = pad_frames(features, size)
        torch._dynamo.maybe_mark_dynamic(features, 0)
        torch._dynamo.maybe_mark_dynamic(lengths, 0)
        torch._dynamo.mark_static(features, features.dim() - 1)
        key = f"{'train' if training else 'eval'}/{size}"
        if key not in self.seconds:
            self._pending = (key, time.perf_counter())
        return features

    def step_done(self, device: torch.device) -> None:
        """End of a step: the first step of a new shape logs its wall time (once)."""
        if self._pending is None:
            return
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        key, start = self._pending
        self._pending = None
        self.seconds[key] = time.perf_counter() - start
        split, size = key.split("/")
        log.info(
            "encoder compiled for %s frames (%s): first step %.1f s, compilation included",
            size,
            split,
            self.seconds[key],
        )
