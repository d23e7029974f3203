"""Decoding an attention speller: greedy and batched beam search, with joint CTC and n-gram LMs.

Shapes: ``encoded`` ``(B, T, D)`` encoder frames and ``encoded_lengths`` ``(B,)``; a search keeps
``K = beam_size`` rows per utterance, all ``N = B * K`` of them in one tensor per step (row
``b * K + k`` is beam ``k`` of utterance ``b``). Token id 0 is both ``<sos>``/``<eos>`` of the
speller and the CTC blank (see :mod:`speechlab.nn.speller`); outputs never contain it.

A hypothesis's score is ``(1 - ctc_weight) * log p_att + ctc_weight * log p_ctc + lm_weight *
log p_lm`` (Watanabe et al., 2017, plus shallow fusion), ``<eos>`` included. ``log p_ctc`` of a
prefix is its CTC *prefix* probability (all alignments of ``T`` frames that start with it) and of
a finished hypothesis its full CTC probability;
:class:`~speechlab.decoding.ctc_prefix.CTCPrefixScorer` computes both. The n-gram LMs of shallow
fusion are in :mod:`speechlab.decoding.fusion`.
Finished hypotheses are ranked by ``score / (tokens + 1) ** length_penalty``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from speechlab.audio.features import lengths_to_mask
from speechlab.decoding.ctc_prefix import NEG_INF, CTCPrefixScorer
from speechlab.decoding.fusion import FusionLM
from speechlab.nn.speller import EOS, append_eos


class DecoderState(Protocol):
    def select(self, indices: Tensor) -> DecoderState: ...


class StepDecoder(Protocol):
    """What the searches need of a decoder (:class:`speechlab.nn.speller.Speller` is one)."""

    def initial_state(self, encoded: Tensor, encoded_lengths: Tensor) -> DecoderState: ...

    def step(
        self, state: DecoderState, previous_tokens: Tensor
    ) -> tuple[Tensor, DecoderState, Tensor]: ...


@dataclass
class Hypothesis:
    """A finished hypothesis: ``tokens`` (no ``<eos>``), its combined ``score`` and the
    ``normalized_score`` = ``score / (len(tokens) + 1) ** length_penalty`` it is ranked by."""

    tokens: list[int]
    score: float
    normalized_score: float


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
        lm: a :class:`~speechlab.decoding.fusion.FusionLM` (``TokenNGramLM``, ``WordNGramLM``).
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
