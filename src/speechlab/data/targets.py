"""Task targets: how an :class:`Utterance` field becomes what a loss consumes."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from speechlab.data.utterance import Utterance


class ClassLabels:
    """Maps ``Utterance.label`` to a class index; the label list order defines the index."""

    field = "label"

    def __init__(self, labels: Sequence[str]) -> None:
        if len(set(labels)) != len(labels):
            raise ValueError(f"class labels must be unique, got {list(labels)}")
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}

    def accepts(self, utterance: Utterance) -> bool:
        return utterance.label in self.index

    def __call__(self, utterance: Utterance) -> torch.Tensor:
        """A scalar ``int64`` tensor."""
        return torch.tensor(self.index[utterance.label], dtype=torch.long)
