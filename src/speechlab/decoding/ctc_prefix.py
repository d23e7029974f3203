"""CTC prefix scores of growing hypotheses, for joint CTC/attention search.

Shapes: ``B`` utterances of ``T`` frames over ``V`` tokens; ``N`` prefixes (hypotheses) scored
at once, each tied to its utterance by ``rows``. Token id 0 is both the CTC blank and the
speller's ``<eos>`` (see :mod:`speechlab.nn.speller`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from speechlab.audio.features import lengths_to_mask
from speechlab.nn.speller import EOS

NEG_INF = float("-inf")


@dataclass
class CTCPrefixState:
    """CTC forward variables of ``N`` prefixes ``g``, over ``T + 1`` time slots.

    Slot ``s`` is frame ``s - 1``; slot 0 is "before the first frame". ``nonblank[s]`` /
    ``blank[s]``: log-probability that frames ``0 .. s - 1`` emit exactly ``g`` and the last
    frame is (part of) ``g``'s last token / a blank. ``score`` ``(N,)``: prefix log-probability;
    ``last`` ``(N,)``: last token (-1: empty prefix); ``length`` ``(N,)``: tokens in ``g``;
    ``rows`` ``(N,)``: the utterance of each prefix.
    """

    nonblank: Tensor
    blank: Tensor
    score: Tensor
    last: Tensor
    length: Tensor
    rows: Tensor

    def select(self, indices: Tensor) -> CTCPrefixState:
        """The prefixes ``indices`` ``(M,)``."""
        return CTCPrefixState(
            nonblank=self.nonblank[:, indices],
            blank=self.blank[:, indices],
            score=self.score[indices],
            last=self.last[indices],
            length=self.length[indices],
            rows=self.rows[indices],
        )


@dataclass
class CTCPrefixExtension:
    """Prefix scores ``(N, C)`` of ``g + c`` for ``C`` candidate tokens ``c`` ``(N, C)`` of each of
    ``N`` prefixes ``g`` (see :meth:`CTCPrefixScorer.extend`)."""

    parent: CTCPrefixState
    candidates: Tensor
    scores: Tensor


class CTCPrefixScorer:
    """CTC prefix scores of growing hypotheses, for joint CTC/attention search.

    For a prefix ``g`` and a token ``c``, the prefix probability of ``h = g + c`` is

        psi(h) = sum_t phi_{t-1}(g, c) * p_t(c),
        phi_{t-1}(g, c) = r^b_{t-1}(g) + (r^n_{t-1}(g) if c != last(g) else 0)

    where ``r^n_t(g)`` / ``r^b_t(g)`` are the probabilities that frames ``0..t`` emit exactly
    ``g`` ending in a non-blank / blank frame; they follow ``r^n_t(h) = (r^n_{t-1}(h) + phi_{t-1})
    p_t(c)`` and ``r^b_t(h) = (r^b_{t-1}(h) + r^n_{t-1}(h)) p_t(blank)`` (Watanabe et al., 2017;
    all in log space here). For ``c = eos`` the score is the full probability
    ``r^n_T(g) + r^b_T(g)``.

    Vectorisation: :meth:`extend` scores every token for ``N`` prefixes with no loop over time.
    For ``c != last(g)``, ``phi`` does not depend on ``c``, so ``psi`` of all ``V`` tokens is one
    matrix product of ``phi`` ``(N, T)`` with the emission probabilities ``(T, V)`` (batched over
    utterances, in float64, each row scaled by its largest ``phi``); the one repeated token per
    row takes a separate ``logsumexp`` over time. Only the hypotheses the search keeps need
    forward variables: :meth:`advance` runs the time recursion for those ``M`` rows at once, one
    vectorised step per frame, from the shortest prefix length on (earlier frames cannot hold
    ``len(h)`` tokens). Padded frames of shorter utterances are replaced by frames where the
    blank is certain, which leaves every probability of the valid frames unchanged, so the whole
    batch runs to the longest ``T``.

    Args:
        log_probs: ``(B, T, V)`` CTC log-probabilities (log-softmax).
        lengths: ``(B,)`` valid frames (``None``: all).
        blank: blank id. eos: end-of-sentence id (may equal ``blank``, as in this package).
    """

    def __init__(
        self, log_probs: Tensor, lengths: Tensor | None = None, blank: int = 0, eos: int = EOS
    ) -> None:
        if log_probs.ndim != 3:
            raise ValueError(f"log_probs must be (B, T, V), got {tuple(log_probs.shape)}")
        batch, frames, vocab = log_probs.shape
        log_probs = log_probs.detach().float()
        if lengths is None:
            lengths = torch.full((batch,), frames, device=log_probs.device)
        valid = lengths_to_mask(lengths.to(log_probs.device), frames).unsqueeze(-1)  # (B, T, 1)
        certain_blank = torch.full((vocab,), NEG_INF, device=log_probs.device)
        certain_blank[blank] = 0.0
        self.emissions = torch.where(valid, log_probs, certain_blank).transpose(0, 1)  # (T, B, V)
        # float64 keeps tiny probabilities in the matrix products (MPS has no float64)
        wide = torch.float32 if log_probs.device.type == "mps" else torch.float64
        self.probabilities = self.emissions.to(wide).exp()  # (T, B, V)
        self.blank = blank
        self.eos = eos

    def initial_state(self, rows: Tensor) -> CTCPrefixState:
        """Empty prefixes for utterances ``rows`` ``(N,)`` (e.g. each repeated per beam)."""
        blanks = self.emissions[:, rows, self.blank]  # (T, N)
        n = rows.shape[0]
        return CTCPrefixState(
            nonblank=torch.full((blanks.shape[0] + 1, n), NEG_INF, device=blanks.device),
            blank=torch.cat([blanks.new_zeros(1, n), blanks.cumsum(0)]),
            score=blanks.new_zeros(n),
            last=torch.full((n,), -1, dtype=torch.long, device=blanks.device),
            length=torch.zeros(n, dtype=torch.long, device=blanks.device),
            rows=rows,
        )

    @staticmethod
    def _phi(state: CTCPrefixState, tokens: Tensor) -> Tensor:
        """``phi`` ``(T + 1, N, C)`` of prefixes ``(N,)`` and next tokens ``(N, C)``."""
        total = torch.logaddexp(state.nonblank, state.blank).unsqueeze(-1)
        repeat = (tokens == state.last.unsqueeze(1)).unsqueeze(0)  # (1, N, C)
        return torch.where(repeat, state.blank.unsqueeze(-1), total)

    def _log_matmul(self, weights: Tensor, rows: Tensor, start: int) -> Tensor:
        """``log sum_t exp(weights[t, n] + emissions[start + t, rows[n], v])``: ``(N, V)``.

        One batched matrix product over utterances, in (float64) probabilities scaled by each
        row's largest weight (emission probabilities are at most 1).
        """
        frames, rows_count = weights.shape
        peak = weights.max(dim=0).values
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        scaled = (weights - peak).to(self.probabilities.dtype).exp()  # (T', N)
        batch = self.probabilities.shape[1]
        spread = scaled.new_zeros(batch, rows_count, frames)  # row n under its utterance
        spread[rows, torch.arange(rows_count, device=rows.device)] = scaled.t()
        sums = torch.bmm(spread, self.probabilities[start:].transpose(0, 1))  # (B, N, V)
        picked = sums[rows, torch.arange(rows_count, device=rows.device)]  # (N, V)
        return picked.log().float() + peak.unsqueeze(1)

    def extend(self, state: CTCPrefixState, candidates: Tensor) -> CTCPrefixExtension:
        """Prefix scores ``(N, C)`` (in ``.scores``) of each prefix + each of its candidate tokens
        ``(N, C)``; pass the result to :meth:`advance` to keep some of them."""
        frames = self.emissions.shape[0]
        start = int(state.length.min())  # g + c cannot end before frame len(g)
        if start < frames:
            # phi slot t (frame t - 1) pairs with the emission of frame t
            total = torch.logaddexp(state.nonblank, state.blank)[start:frames]  # (T', N)
            scores = self._log_matmul(total, state.rows, start).gather(1, candidates)
            last = state.last.clamp(min=0)
            emitted = self.emissions[start:, state.rows, last]  # (T', N)
            repeat = torch.logsumexp(state.blank[start:frames] + emitted, dim=0)  # (N,)
            is_repeat = candidates == state.last.unsqueeze(1)
            scores = torch.where(is_repeat, repeat.unsqueeze(1), scores)
        else:
            scores = torch.full(candidates.shape, NEG_INF, device=candidates.device)
        full = torch.logaddexp(state.nonblank[-1], state.blank[-1]).unsqueeze(1)
        scores = torch.where(candidates == self.eos, full, scores)
        if self.blank != self.eos:
            scores = scores.masked_fill(candidates == self.blank, NEG_INF)
        return CTCPrefixExtension(state, candidates, scores)

    def advance(
        self, extension: CTCPrefixExtension, parents: Tensor, columns: Tensor
    ) -> CTCPrefixState:
        """The prefixes ``candidates[parents, columns]`` of an extension: ``(M,)`` indices."""
        parent = extension.parent.select(parents)
        tokens = extension.candidates[parents, columns]
        frames = self.emissions.shape[0]
        phi = self._phi(parent, tokens.unsqueeze(1)).squeeze(-1)  # (T + 1, M)
        emitted = self.emissions[:, parent.rows, tokens]  # (T, M)
        blanks = self.emissions[:, parent.rows, self.blank]  # (T, M)
        nonblank = torch.full_like(phi, NEG_INF)
        blank = torch.full_like(phi, NEG_INF)
        for slot in range(int(parent.length.min()) + 1, frames + 1):
            torch.logaddexp(nonblank[slot - 1], phi[slot - 1], out=nonblank[slot])
            nonblank[slot] += emitted[slot - 1]
            torch.logaddexp(blank[slot - 1], nonblank[slot - 1], out=blank[slot])
            blank[slot] += blanks[slot - 1]
        return CTCPrefixState(
            nonblank=nonblank,
            blank=blank,
            score=extension.scores[parents, columns],
            last=tokens,
            length=parent.length + 1,
            rows=parent.rows,
        )

    def score(self, row: int, tokens: Sequence[int], end: bool = True) -> float:
        """Log-probability of ``tokens`` (+ eos if ``end``: the full CTC probability; else the
        prefix probability) for utterance ``row``. One prefix at a time; for tests and checks."""
        state = self.initial_state(torch.tensor([row], device=self.emissions.device))
        value = 0.0
        for token in [*tokens, self.eos] if end else tokens:
            extension = self.extend(state, torch.tensor([[token]], device=state.rows.device))
            value = float(extension.scores[0, 0])
            zero = torch.zeros(1, dtype=torch.long, device=state.rows.device)
            state = self.advance(extension, zero, zero)
        return value
