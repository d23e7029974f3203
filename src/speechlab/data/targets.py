"""Task targets: how an :class:`Utterance` field becomes what a loss consumes."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from speechlab.data.utterance import Utterance
from speechlab.text.tokenizers import Tokenizer


class ClassLabels:
    """Maps ``Utterance.label`` to a class index; the label list order defines the index."""

    field = "label"

    def __init__(self, labels: Sequence[str]) -> None:
        if len(set(labels)) != len(labels):
            raise ValueError(f"class labels must be unique, got {list(labels)}")
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}

    def problem(self, utterance: Utterance) -> str | None:
        """Why ``utterance`` cannot be a target (a reason to count), or ``None``."""
        return self.problem_of(utterance.label)

    def problem_of(self, label: str | None) -> str | None:
        """:meth:`problem` from the ``label`` field alone (a column of a manifest table)."""
        if label is None:
            return "no label"
        if label not in self.index:
            return "label outside the label set"
        return None

    def __call__(self, utterance: Utterance) -> torch.Tensor:
        """A scalar ``int64`` tensor."""
        return self.tensor_of(utterance.label)

    def tensor_of(self, label: str) -> torch.Tensor:
        """:meth:`__call__` from the ``label`` field alone."""
        return torch.tensor(self.index[label], dtype=torch.long)


class TokenTargets:
    """Maps a text field (``text`` or ``translation``) to token ids ``(L,)`` with ``tokenizer``."""

    def __init__(self, tokenizer: Tokenizer, field: str = "text") -> None:
        self.tokenizer = tokenizer
        self.field = field

    def problem(self, utterance: Utterance) -> str | None:
        """Why ``utterance`` cannot be a target (a reason to count), or ``None``."""
        return self.problem_of(getattr(utterance, self.field))

    def problem_of(self, text: str | None) -> str | None:
        """:meth:`problem` from the text field alone (a column of a manifest table)."""
        if text is None or not text.strip():
            return f"no {self.field}"
        if self.tokenizer.unknown(text):
            return f"{self.field} with symbols outside the tokenizer's vocabulary"
        return None

    def __call__(self, utterance: Utterance) -> torch.Tensor:
        """``(L,)`` int64 token ids."""
        return self.tensor_of(getattr(utterance, self.field))

    def tensor_of(self, text: str) -> torch.Tensor:
        """:meth:`__call__` from the text field alone."""
        return torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
