"""The best checkpoint when the monitored metric ties: broken by a second metric, else the latest.

On a small validation split the monitored error often reaches its floor (CER 0.0, accuracy 1.0)
early; Lightning's ``ModelCheckpoint`` then keeps the first epoch that reached it, the least
trained of the tied ones. Here a tie on the monitored value is decided by ``tie_breaker``
(``val/loss`` by default, lower wins) and, when the tie breaker ties too or is not logged, the
later epoch wins.
"""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

log = logging.getLogger(__name__)


class TieBreakingCheckpoint(ModelCheckpoint):
    """:class:`~lightning.pytorch.callbacks.ModelCheckpoint` with ties on ``monitor`` broken.

    Args:
        tie_breaker: the metric that decides between epochs with the same ``monitor`` value
            (``None``: the later epoch wins every tie).
        tie_breaker_mode: ``min`` or ``max``: which ``tie_breaker`` value is better.
        tolerance: monitored values closer than this count as tied (absolute).
        **kwargs: everything :class:`ModelCheckpoint` takes (``monitor``, ``mode``,
            ``save_top_k``, ...).

    Raises:
        ValueError: for a ``tie_breaker_mode`` other than ``min`` or ``max``.
    """

    def __init__(
        self,
        tie_breaker: str | None = "val/loss",
        tie_breaker_mode: str = "min",
        tolerance: float = 1e-9,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if tie_breaker_mode not in ("min", "max"):
            raise ValueError(f"tie_breaker_mode must be 'min' or 'max', got {tie_breaker_mode!r}")
        self.tie_breaker = tie_breaker
        self.tie_breaker_mode = tie_breaker_mode
        self.tolerance = tolerance
        self.tie_values: dict[str, float] = {}  # checkpoint path -> its tie_breaker value
        self.saved_order: dict[str, int] = {}  # checkpoint path -> when it was kept (later: higher)
        self._candidate_tie: float | None = None
        self._missing_warned = False

    def _save_monitor_checkpoint(
        self, trainer: L.Trainer, monitor_candidates: dict[str, torch.Tensor]
    ) -> None:
        value = monitor_candidates.get(self.tie_breaker) if self.tie_breaker else None
        self._candidate_tie = None if value is None else float(value)
        if self.tie_breaker and value is None and not self._missing_warned:
            self._missing_warned = True
            known = sorted(k for k in monitor_candidates if "/" in k)
            log.warning(
                "callbacks.model_checkpoint.tie_breaker=%s is not logged by this run, so ties on "
                "%s go to the later epoch; logged metrics: %s",
                self.tie_breaker,
                self.monitor,
                ", ".join(known),
            )
        super()._save_monitor_checkpoint(trainer, monitor_candidates)

    def _key(self, path: str) -> tuple[float, float, int]:
        """Sort key of a kept checkpoint, best first: the monitored value, then the tie breaker,
        then the later epoch; each turned so that smaller is better."""
        score = float(self.best_k_models[path])
        tie = self.tie_values.get(path)
        return (
            score if self.mode == "min" else -score,
            float("inf") if tie is None else tie if self.tie_breaker_mode == "min" else -tie,
            -self.saved_order.get(path, -1),
        )

    def _wins_tie(self, kept_path: str) -> bool:
        kept = self.tie_values.get(kept_path)
        if self._candidate_tie is None or kept is None or self._candidate_tie == kept:
            return True  # nothing to tell them apart: the later epoch
        if self.tie_breaker_mode == "min":
            return self._candidate_tie < kept
        return self._candidate_tie > kept

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is None or self.save_top_k == -1 or len(self.best_k_models) < self.save_top_k:
            return super().check_monitor_top_k(trainer, current)
        kept = self.best_k_models[self.kth_best_model_path]
        if abs(float(current) - float(kept)) > self.tolerance:
            return super().check_monitor_top_k(trainer, current)
        decision = self._wins_tie(self.kth_best_model_path)
        return trainer.strategy.reduce_boolean_decision(decision)

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        """Before a kept checkpoint is written (its file holds this callback's state): note
        its tie-breaker value and order, and rank the kept ones with them."""
        if filepath in self.best_k_models and filepath not in self.saved_order:
            self.saved_order[filepath] = max(self.saved_order.values(), default=-1) + 1
            if self._candidate_tie is not None:
                self.tie_values[filepath] = self._candidate_tie
            self.tie_values = {p: v for p, v in self.tie_values.items() if p in self.best_k_models}
            self.saved_order = {
                p: v for p, v in self.saved_order.items() if p in self.best_k_models
            }
            ranked = sorted(self.best_k_models, key=self._key)
            self.best_model_path = ranked[0]
            self.best_model_score = self.best_k_models[ranked[0]]
            if len(self.best_k_models) == self.save_top_k:
                self.kth_best_model_path = ranked[-1]
                self.kth_value = self.best_k_models[ranked[-1]]
        super()._save_checkpoint(trainer, filepath)

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "tie_values": dict(self.tie_values),
            "saved_order": dict(self.saved_order),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.tie_values = dict(state_dict.get("tie_values", {}))
        self.saved_order = dict(state_dict.get("saved_order", {}))
