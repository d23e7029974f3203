"""n-gram LMs for shallow fusion in attention beam search: an ARPA reader and token- and
word-level adapters that score every next speller token.

Build the ARPA files with :mod:`speechlab.decoding.ngram` (``speechlab build-lm``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from speechlab.decoding.ngram import BOS, UNK
from speechlab.decoding.ngram import EOS as LM_EOS
from speechlab.nn.speller import EOS


class FusionLM(Protocol):
    """An LM for shallow fusion: natural-log probabilities ``(N, V)`` of every next token (id
    ``EOS`` = end of sentence) after each token history (speller ids, no ``<sos>``)."""

    def log_probs(self, histories: Sequence[Sequence[int]]) -> Tensor: ...


class ArpaLM:
    """A back-off n-gram LM read from an ARPA file (e.g. written by
    :func:`speechlab.decoding.ngram.build_arpa`).

    :meth:`log_prob` gives natural-log ``p(word | context)``; unknown words are ``<unk>``.
    """

    def __init__(self, path: str | Path) -> None:
        self.probs: dict[tuple[str, ...], float] = {}  # log10
        self.backoffs: dict[tuple[str, ...], float] = {}  # log10
        section = 0
        with open(path, encoding="utf-8") as lines:
            for raw in lines:
                line = raw.strip()
                if not line or line == "\\data\\" or line.startswith("ngram "):
                    continue
                if line == "\\end\\":
                    break
                if line.startswith("\\") and line.endswith("-grams:"):
                    section = int(line[1 : -len("-grams:")])
                    continue
                if not section:
                    raise ValueError(f"{path}: unexpected line {line!r} before the n-grams")
                fields = line.split()
                gram = tuple(fields[1 : 1 + section])
                self.probs[gram] = float(fields[0])
                if len(fields) > 1 + section:
                    self.backoffs[gram] = float(fields[1 + section])
        if not self.probs:
            raise ValueError(f"{path}: no n-grams; not an ARPA file?")
        self.order = max(len(gram) for gram in self.probs)
        self.vocab = {gram[0] for gram in self.probs if len(gram) == 1}

    def log_prob(self, context: Sequence[str], word: str) -> float:
        """Natural-log ``p(word | context)`` by back-off; ``context`` may start with ``<s>``."""
        if word not in self.vocab:
            word = UNK
        context = _tail(tuple(w if w in self.vocab else UNK for w in context), self.order - 1)
        backoff = 0.0
        while True:
            gram = (*context, word)
            if gram in self.probs:
                return (backoff + self.probs[gram]) * math.log(10.0)
            if not context:
                return (backoff - 99.0) * math.log(10.0)  # a word the LM cannot spell
            backoff += self.backoffs.get(context, 0.0)
            context = context[1:]


def _tail(words: tuple[str, ...], size: int) -> tuple[str, ...]:
    """The last ``size`` words (none for ``size <= 0``)."""
    return words[max(len(words) - size, 0) :] if size > 0 else ()


def _arpa(lm: ArpaLM | str | Path) -> ArpaLM:
    return lm if isinstance(lm, ArpaLM) else ArpaLM(lm)


class TokenNGramLM:
    """Shallow fusion with a token-level LM: one LM "word" per output token.

    Build its ARPA file from :func:`speechlab.decoding.ngram.spell_sentences` (``"c a t | s a t"``
    for characters). ``tokens[i]`` is the LM word of id ``i``; id ``eos`` is ``</s>``.
    """

    def __init__(self, lm: ArpaLM | str | Path, tokens: Sequence[str], eos: int = EOS) -> None:
        self.lm = _arpa(lm)
        self.words = [LM_EOS if i == eos else token for i, token in enumerate(tokens)]
        self._cache: dict[tuple[str, ...], Tensor] = {}

    def next_log_probs(self, history: Sequence[int]) -> Tensor:
        """``(V,)`` log-probabilities of every next token after ``history``."""
        context = _tail((BOS, *(self.words[i] for i in history)), self.lm.order - 1)
        if context not in self._cache:
            values = [self.lm.log_prob(context, word) for word in self.words]
            self._cache[context] = torch.tensor(values)
        return self._cache[context]

    def log_probs(self, histories: Sequence[Sequence[int]]) -> Tensor:
        """``(N, V)`` next-token log-probabilities for ``N`` histories."""
        return torch.stack([self.next_log_probs(history) for history in histories])

    def score(self, previous_tokens: Sequence[int], next_token: int) -> float:
        return float(self.next_log_probs(previous_tokens)[next_token])


class WordNGramLM:
    """Shallow fusion with a word-level LM: a word is scored when it is complete.

    With a ``word_delimiter`` token (``"|"``, character tokenizers) a word completes at the
    delimiter; with ``word_delimiter=None`` (SentencePiece) at the next piece starting with
    ``"▁"``. ``<eos>`` completes the last word and adds ``p(</s> | words)``. Tokens inside a word
    score 0 (no look-ahead): keep ``lm_weight`` moderate.
    """

    def __init__(
        self,
        lm: ArpaLM | str | Path,
        tokens: Sequence[str],
        word_delimiter: str | None = "|",
        eos: int = EOS,
    ) -> None:
        self.lm = _arpa(lm)
        self.tokens = list(tokens)
        self.eos = eos
        self.word_delimiter = word_delimiter
        if word_delimiter is not None:
            self.boundaries = [i for i, t in enumerate(tokens) if t == word_delimiter and i != eos]
        else:
            self.boundaries = [i for i, t in enumerate(tokens) if t.startswith("▁") and i != eos]
        if not self.boundaries:
            raise ValueError(f"no word-boundary token among {list(tokens)[:8]}...")
        self._boundary_ids = set(self.boundaries)
        self._cache: dict[tuple[tuple[str, ...], str], Tensor] = {}

    def _words(self, history: Sequence[int]) -> tuple[list[str], str]:
        """Complete words and the word in progress of ``history``."""
        words: list[str] = []
        partial = ""
        for i in history:
            if i in self._boundary_ids:
                if partial:
                    words.append(partial)
                partial = "" if self.word_delimiter is not None else self.tokens[i][1:]
            elif i != self.eos:
                partial += self.tokens[i]
        return words, partial

    def next_log_probs(self, history: Sequence[int]) -> Tensor:
        """``(V,)`` log-probabilities (0 inside words) of every next token after ``history``."""
        words, partial = self._words(history)
        context = _tail((BOS, *words), self.lm.order - 1)
        key = (context, partial)
        if key not in self._cache:
            complete = self.lm.log_prob(context, partial) if partial else 0.0
            end = self.lm.log_prob((*context, partial) if partial else context, LM_EOS)
            values = torch.zeros(len(self.tokens))
            values[self.boundaries] = complete
            values[self.eos] = complete + end
            self._cache[key] = values
        return self._cache[key]

    def log_probs(self, histories: Sequence[Sequence[int]]) -> Tensor:
        """``(N, V)`` next-token log-probabilities for ``N`` histories."""
        return torch.stack([self.next_log_probs(history) for history in histories])

    def score(self, previous_tokens: Sequence[int], next_token: int) -> float:
        return float(self.next_log_probs(previous_tokens)[next_token])
