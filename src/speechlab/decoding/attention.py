"""Decoding an attention speller: greedy and batched beam search, with joint CTC and n-gram LMs.

Shapes: ``encoded`` ``(B, T, D)`` encoder frames and ``encoded_lengths`` ``(B,)``; a search keeps
``K = beam_size`` rows per utterance, all ``N = B * K`` of them in one tensor per step (row
``b * K + k`` is beam ``k`` of utterance ``b``). Token id 0 is both ``<sos>``/``<eos>`` of the
speller and the CTC blank (see :mod:`speechlab.nn.speller`); outputs never contain it.

A hypothesis's score is ``(1 - ctc_weight) * log p_att + ctc_weight * log p_ctc + lm_weight *
log p_lm`` (Watanabe et al., 2017, plus shallow fusion), ``<eos>`` included. ``log p_ctc`` of a
prefix is its CTC *prefix* probability (all alignments of ``T`` frames that start with it) and of
a finished hypothesis its full CTC probability; :class:`CTCPrefixScorer` computes both.
Finished hypotheses are ranked by ``score / (tokens + 1) ** length_penalty``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from speechlab.audio.features import lengths_to_mask
from speechlab.decoding.ngram import BOS, UNK
from speechlab.decoding.ngram import EOS as LM_EOS
from speechlab.nn.speller import EOS, append_eos

NEG_INF = float("-inf")


class DecoderState(Protocol):
    def select(self, indices: Tensor) -> DecoderState: ...


class StepDecoder(Protocol):
    """What the searches need of a decoder (:class:`speechlab.nn.speller.Speller` is one)."""

    def initial_state(self, encoded: Tensor, encoded_lengths: Tensor) -> DecoderState: ...

    def step(
        self, state: DecoderState, previous_tokens: Tensor
    ) -> tuple[Tensor, DecoderState, Tensor]: ...


class FusionLM(Protocol):
    """An LM for shallow fusion: natural-log probabilities ``(N, V)`` of every next token (id
    ``EOS`` = end of sentence) after each token history (speller ids, no ``<sos>``)."""

    def log_probs(self, histories: Sequence[Sequence[int]]) -> Tensor: ...


@dataclass
class Hypothesis:
    """A finished hypothesis: ``tokens`` (no ``<eos>``), its combined ``score`` and the
    ``normalized_score`` = ``score / (len(tokens) + 1) ** length_penalty`` it is ranked by."""

    tokens: list[int]
    score: float
    normalized_score: float


# --------------------------------------------------------------------------------------------
# CTC prefix scores
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# n-gram LMs for shallow fusion
# --------------------------------------------------------------------------------------------


class ArpaLM:
    """A back-off n-gram LM read from an ARPA file (e.g. :func:`speechlab.decoding.ngram.build_arpa`).

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


# --------------------------------------------------------------------------------------------
# Searches
# --------------------------------------------------------------------------------------------


def max_output_lengths(
    encoded_lengths: Tensor, max_length_ratio: float = 1.0, max_length: int = 256
) -> Tensor:
    """Most output tokens ``(B,)``: ``floor(ratio * frames)``, at least 1, at most
    ``max_length`` (``ratio <= 0``: ``max_length`` for all)."""
    if max_length_ratio <= 0:
        return torch.full_like(encoded_lengths, max_length)
    limits = torch.floor(encoded_lengths.float() * max_length_ratio).long()
    return limits.clamp(min=1, max=max_length).to(encoded_lengths.device)


@torch.no_grad()
def greedy_search(
    speller: StepDecoder,
    encoded: Tensor,
    encoded_lengths: Tensor,
    max_length_ratio: float = 1.0,
    max_length: int = 256,
) -> list[list[int]]:
    """Most likely token at every step, all utterances at once; stops at ``<eos>`` or the limit
    of :func:`max_output_lengths`. Returns ``B`` token lists (no ``<eos>``). Call the speller
    in eval mode."""
    batch = encoded.shape[0]
    limits = max_output_lengths(encoded_lengths, max_length_ratio, max_length)
    state = speller.initial_state(encoded, encoded_lengths)
    previous = torch.full((batch,), EOS, dtype=torch.long, device=encoded.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=encoded.device)
    outputs = []
    for step in range(int(limits.max()) + 1):
        log_probs, state, _ = speller.step(state, previous)
        tokens = log_probs.argmax(-1)
        tokens = tokens.masked_fill(finished | (step >= limits), EOS)
        outputs.append(tokens)
        finished |= tokens == EOS
        if finished.all():
            break
        previous = tokens
    rows = torch.stack(outputs, 1).tolist()
    return [row[: row.index(EOS)] if EOS in row else row for row in rows]


@torch.no_grad()
def beam_search_hypotheses(
    speller: StepDecoder,
    encoded: Tensor,
    encoded_lengths: Tensor,
    beam_size: int = 5,
    max_length_ratio: float = 1.0,
    max_length: int = 256,
    length_penalty: float = 0.0,
    ctc_weight: float = 0.0,
    ctc_log_probs: Tensor | None = None,
    ctc_lengths: Tensor | None = None,
    lm: FusionLM | None = None,
    lm_weight: float = 0.0,
    ctc_pre_beam: int | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search; per utterance, its finished hypotheses, best first.

    Every step advances all ``N = B * K`` rows in one :meth:`step` call, scores each row's
    candidate tokens (all ``V``, or with CTC and ``ctc_pre_beam`` the ``ctc_pre_beam`` best by
    attention + LM score, ``<eos>`` always among them) and keeps the ``K`` best candidates of
    each utterance among its ``K * C``. Candidates ending in ``<eos>`` are set aside as finished
    (their row is then dead, score -inf), the others form the next beam. An utterance stops when
    no row of it is alive; when (``length_penalty == 0``, where scores only fall) its best
    finished score beats its best live one; or (``length_penalty > 0``) once it has ``K``
    finished hypotheses. At the length limit (:func:`max_output_lengths`) only ``<eos>`` may
    follow. The speller should be in eval mode.

    Args:
        speller: the decoder (see :class:`StepDecoder`).
        encoded: ``(B, T, D)`` encoder frames. encoded_lengths: ``(B,)`` valid frames.
        beam_size: ``K``, hypotheses kept per utterance.
        max_length_ratio: most output tokens per encoder frame. max_length: absolute cap.
        length_penalty: ``alpha`` of the ranking ``score / (tokens + 1) ** alpha``.
        ctc_weight: ``lambda`` in ``[0, 1]``: weight of the CTC prefix score, ``1 - lambda``
            that of the attention score.
        ctc_log_probs: ``(B, T', V)`` CTC log-probabilities (needed when ``ctc_weight > 0``).
        ctc_lengths: ``(B,)`` valid CTC frames (default ``encoded_lengths``).
        lm: a :class:`FusionLM` (:class:`TokenNGramLM`, :class:`WordNGramLM`).
        lm_weight: shallow-fusion weight of the LM log-probabilities.
        ctc_pre_beam: CTC-score only this many candidates per row (``None``: all ``V``).
    """
    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
    if ctc_weight > 0 and ctc_log_probs is None:
        raise ValueError("ctc_weight > 0 needs ctc_log_probs")
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    device = encoded.device
    batch, beams = encoded.shape[0], beam_size
    rows = torch.arange(batch, device=device).repeat_interleave(beams)  # (N,)
    utterance_offsets = torch.arange(batch, device=device).unsqueeze(1) * beams  # (B, 1)
    state = speller.initial_state(encoded, encoded_lengths).select(rows)
    limits = max_output_lengths(encoded_lengths, max_length_ratio, max_length)[rows]  # (N,)
    scorer = ctc_state = None
    if ctc_weight > 0 and ctc_log_probs is not None:
        lengths = encoded_lengths if ctc_lengths is None else ctc_lengths
        scorer = CTCPrefixScorer(ctc_log_probs, lengths, blank=0, eos=EOS)
        ctc_state = scorer.initial_state(rows)
    use_lm = lm is not None and lm_weight != 0.0

    total = torch.zeros(batch, beams, device=device)
    total[:, 1:] = NEG_INF  # the first step expands one (empty) hypothesis per utterance
    total = total.flatten()  # (N,) combined scores of the live rows, -inf on dead ones
    tokens = torch.zeros(batch * beams, 0, dtype=torch.long, device=device)  # (N, length)
    previous = torch.full((batch * beams,), EOS, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    best_finished = torch.full((batch,), NEG_INF, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)

    for length in range(int(limits.max()) + 1):
        log_probs, step_state, _ = speller.step(state, previous)  # (N, V)
        vocab = log_probs.shape[1]
        alive = torch.isfinite(total)
        weighted = log_probs if scorer is None else (1.0 - ctc_weight) * log_probs
        if use_lm and lm is not None:
            lm_scores = torch.zeros_like(log_probs)
            live = alive.nonzero().squeeze(1)
            if live.numel():
                histories = tokens[live].tolist()
                lm_scores[live] = lm.log_probs(histories).to(lm_scores)
            weighted = weighted + lm_weight * lm_scores
        if scorer is not None and ctc_pre_beam is not None and ctc_pre_beam < vocab:
            ranking = weighted.index_fill(1, torch.tensor([EOS], device=device), math.inf)
            candidates = ranking.topk(ctc_pre_beam, dim=1).indices  # (N, C)
        else:
            candidates = torch.arange(vocab, device=device).expand(len(previous), vocab)
        scores = total.unsqueeze(1) + weighted.gather(1, candidates)  # (N, C)
        extension = None
        if scorer is not None and ctc_state is not None:
            extension = scorer.extend(ctc_state, candidates)
            scores = scores + ctc_weight * (extension.scores - ctc_state.score.unsqueeze(1))
        too_long = (length >= limits).unsqueeze(1) & (candidates != EOS)
        scores = scores.masked_fill(too_long | ~alive.unsqueeze(1), NEG_INF)

        width = candidates.shape[1]
        top, index = scores.view(batch, beams * width).topk(beams, dim=1)  # (B, K)
        parents = (index // width + utterance_offsets).flatten()  # (N,)
        columns = (index % width).flatten()
        new_tokens = candidates[parents, columns]
        top = top.flatten()
        ended = (new_tokens == EOS) & torch.isfinite(top)
        if ended.any():
            prefixes = tokens[parents[ended]].tolist()
            for row, prefix, value in zip(
                ended.nonzero().squeeze(1).tolist(), prefixes, top[ended].tolist(), strict=True
            ):
                normalized = value / (length + 1) ** length_penalty
                finished[row // beams].append(Hypothesis(prefix, value, normalized))
                best_finished[row // beams] = max(float(best_finished[row // beams]), normalized)

        total = top.masked_fill(ended, NEG_INF)
        tokens = torch.cat([tokens[parents], new_tokens.unsqueeze(1)], dim=1)
        state = step_state.select(parents)
        if scorer is not None and extension is not None:
            ctc_state = scorer.advance(extension, parents, columns)
        previous = new_tokens.masked_fill(~torch.isfinite(total), EOS)

        best_alive = total.view(batch, beams).max(dim=1).values
        done |= ~torch.isfinite(best_alive)
        if length_penalty == 0.0:
            done |= best_finished >= best_alive
        else:
            counts = torch.tensor([len(hyps) for hyps in finished], device=device)
            done |= counts >= beams
        total = total.view(batch, beams).masked_fill(done.unsqueeze(1), NEG_INF).flatten()
        if bool(done.all()):
            break

    results = []
    for hyps in finished:
        hyps = sorted(hyps, key=lambda hyp: hyp.normalized_score, reverse=True)
        results.append(hyps or [Hypothesis([], NEG_INF, NEG_INF)])
    return results


def beam_search(
    speller: StepDecoder,
    encoded: Tensor,
    encoded_lengths: Tensor,
    beam_size: int = 5,
    max_length_ratio: float = 1.0,
    max_length: int = 256,
    length_penalty: float = 0.0,
    ctc_weight: float = 0.0,
    ctc_log_probs: Tensor | None = None,
    ctc_lengths: Tensor | None = None,
    lm: FusionLM | None = None,
    lm_weight: float = 0.0,
    ctc_pre_beam: int | None = None,
) -> list[list[int]]:
    """The best hypothesis of :func:`beam_search_hypotheses` per utterance: ``B`` token lists
    (no ``<eos>``). Same arguments."""
    hypotheses = beam_search_hypotheses(
        speller,
        encoded,
        encoded_lengths,
        beam_size=beam_size,
        max_length_ratio=max_length_ratio,
        max_length=max_length,
        length_penalty=length_penalty,
        ctc_weight=ctc_weight,
        ctc_log_probs=ctc_log_probs,
        ctc_lengths=ctc_lengths,
        lm=lm,
        lm_weight=lm_weight,
        ctc_pre_beam=ctc_pre_beam,
    )
    return [hyps[0].tokens for hyps in hypotheses]


@torch.no_grad()
def score_hypotheses(
    speller: torch.nn.Module,
    encoded: Tensor,
    encoded_lengths: Tensor,
    hypotheses: Sequence[Sequence[int]],
) -> Tensor:
    """Attention log-probability ``(B,)`` of each hypothesis followed by ``<eos>``, by teacher
    forcing through ``speller(encoded, encoded_lengths, targets, target_lengths)``."""
    lengths = torch.tensor([len(h) for h in hypotheses], device=encoded.device)
    targets = torch.zeros(len(hypotheses), int(lengths.max()), dtype=torch.long)
    for row, hyp in enumerate(hypotheses):
        targets[row, : len(hyp)] = torch.tensor(list(hyp), dtype=torch.long)
    targets = targets.to(encoded.device)
    logits, _ = speller(encoded, encoded_lengths, targets, lengths)
    log_probs = logits.float().log_softmax(-1)
    expected = append_eos(targets, lengths, pad=0)
    picked = log_probs.gather(-1, expected.unsqueeze(-1)).squeeze(-1)  # (B, L + 1)
    return (picked * lengths_to_mask(lengths + 1, picked.shape[1])).sum(1)
