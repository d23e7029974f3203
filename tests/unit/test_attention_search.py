"""Attention decoding: greedy and beam search recover what a tiny model learned, beam search
scores at least as well as greedy, length limits hold, joint CTC stops a runaway hypothesis,
and a wide beam finds the exhaustive best with CTC and LM scores."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from speechlab.decoding.attention import (
    beam_search,
    beam_search_hypotheses,
    greedy_search,
    max_output_lengths,
    score_hypotheses,
)
from speechlab.decoding.ctc_prefix import CTCPrefixScorer
from speechlab.decoding.fusion import TokenNGramLM
from speechlab.nn.encoders.pyramidal_lstm import PyramidalLSTMEncoder
from speechlab.nn.speller import EOS, Speller, append_eos, label_smoothed_nll
from tests.unit.conftest import padded

pytestmark = pytest.mark.usefixtures("one_thread")


TARGETS = [[1, 2, 3], [3, 1], [2, 2, 4, 1], [5, 4, 3]]


def test_tiny_las_overfits_to_exact_greedy_and_beam_decoding() -> None:
    """4 random "utterances" with distinct short targets: ~25 Adam steps to a memorised set."""
    torch.manual_seed(0)
    encoder = PyramidalLSTMEncoder(8, hidden_size=24, num_layers=2, reduction=4, dropout=0.0)
    speller = Speller(6, encoder.output_dim, 16, 48, attention_dim=24, dropout=0.0)
    features, lengths = padded([32, 28, 24, 30], 8, seed=1)
    features = features.transpose(1, 2)
    target_lengths = torch.tensor([len(t) for t in TARGETS])
    targets = torch.zeros(4, int(target_lengths.max()), dtype=torch.long)
    for row, target in enumerate(TARGETS):
        targets[row, : len(target)] = torch.tensor(target)
    expected = append_eos(targets, target_lengths)
    parameters = [*encoder.parameters(), *speller.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=1e-2)
    losses = []
    for _ in range(120):
        encoded, encoded_lengths = encoder(features, lengths)
        logits, _ = speller(encoded, encoded_lengths, targets, target_lengths)
        loss = label_smoothed_nll(logits, expected, target_lengths + 1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if loss < 0.01:
            break
    assert losses[-1] < 0.05 * losses[0]
    encoder.eval()
    speller.eval()
    with torch.no_grad():
        encoded, encoded_lengths = encoder(features, lengths)
    assert greedy_search(speller, encoded, encoded_lengths) == TARGETS
    assert beam_search(speller, encoded, encoded_lengths, beam_size=3) == TARGETS
    assert beam_search(speller, encoded, encoded_lengths, beam_size=4, length_penalty=1.0) == (
        TARGETS
    )


def test_beam_search_scores_at_least_as_well_as_greedy() -> None:
    torch.manual_seed(0)
    speller = Speller(8, 12, 8, 32, attention_dim=16).eval()
    with torch.no_grad():
        speller.classifier.weight.mul_(4.0)  # peakier, more varied next-token distributions
    better = 0
    for seed in range(4):
        encoded, lengths = padded([12, 9, 7, 4, 10, 12], 12, seed=seed)
        greedy = greedy_search(speller, encoded, lengths)
        hyps = beam_search_hypotheses(speller, encoded, lengths, beam_size=4)
        beam = [h[0].tokens for h in hyps]
        greedy_scores = score_hypotheses(speller, encoded, lengths, greedy)
        beam_scores = score_hypotheses(speller, encoded, lengths, beam)
        torch.testing.assert_close(beam_scores, torch.tensor([h[0].score for h in hyps]))
        assert (beam_scores >= greedy_scores - 1e-4).all()
        better += int((beam_scores > greedy_scores + 1e-4).sum())
    assert better > 0  # the test inputs do separate the two searches


def test_search_length_limits() -> None:
    assert max_output_lengths(torch.tensor([10, 3, 0, 400]), 0.5, 100).tolist() == [5, 1, 1, 100]
    assert max_output_lengths(torch.tensor([10, 3]), 0.0, 7).tolist() == [7, 7]


def looping_speller(vocab: int = 6) -> Speller:
    """A speller that always prefers token 1, then 2 and 3, and almost never ends."""
    speller = Speller(vocab, 12, 8, 16, attention_dim=8).eval()
    with torch.no_grad():
        speller.classifier.weight.zero_()
        speller.classifier.bias.copy_(torch.tensor([-8.0, 2.0, 1.0, 1.0] + [0.0] * (vocab - 4)))
    return speller


def ctc_emissions(frames: list[int], vocab: int, sharpness: float = 20.0) -> torch.Tensor:
    """``(1, T, V)`` log-probs where frame ``t`` is surely token ``frames[t]``."""
    return (sharpness * F.one_hot(torch.tensor(frames), vocab).float()).log_softmax(-1)[None]


def test_joint_ctc_scoring_stops_a_runaway_hypothesis() -> None:
    torch.manual_seed(0)
    speller = looping_speller()
    encoded, lengths = padded([20], 12)
    ctc = ctc_emissions([0, 0, 0, 2, 2, 2, 0, 0, 0, 0, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0], 6)
    options = dict(beam_size=3, length_penalty=1.0, ctc_log_probs=ctc)
    runaway = beam_search(speller, encoded, lengths, ctc_weight=0.0, **options)
    assert len(runaway[0]) == 20 and set(runaway[0]) == {1}  # the max-length guard
    assert greedy_search(speller, encoded, lengths) == runaway
    assert beam_search(speller, encoded, lengths, ctc_weight=0.5, **options) == [[2, 3]]
    pre_beam = beam_search(speller, encoded, lengths, ctc_weight=0.5, ctc_pre_beam=4, **options)
    assert pre_beam == [[2, 3]]


@pytest.mark.parametrize(
    ("ctc_weight", "lm_weight"), [(0.0, 0.0), (0.4, 0.0), (0.0, 0.7), (0.3, 0.5)]
)
def test_beam_search_with_a_wide_beam_finds_the_exhaustive_best(
    token_lm: TokenNGramLM, ctc_weight: float, lm_weight: float
) -> None:
    """All 40 hypotheses of up to 3 tokens fit in the beam: its best is the true argmax."""
    torch.manual_seed(0)
    speller = Speller(4, 12, 8, 16, attention_dim=8).eval()
    encoded, lengths = padded([8, 5], 12, seed=3)
    ctc = (3.0 * torch.randn(2, 8, 4)).log_softmax(-1)
    scorer = CTCPrefixScorer(ctc, lengths)
    hyps = beam_search_hypotheses(
        speller,
        encoded,
        lengths,
        beam_size=40,
        max_length=3,
        ctc_weight=ctc_weight,
        ctc_log_probs=ctc,
        lm=token_lm,
        lm_weight=lm_weight,
    )
    candidates = [list(s) for n in range(4) for s in itertools.product((1, 2, 3), repeat=n)]
    for row in range(2):
        batch = [encoded[row : row + 1].expand(len(candidates), -1, -1), lengths[row].repeat(40)]
        attention = score_hypotheses(speller, *batch, candidates)
        totals = []
        for seq, att in zip(candidates, attention.tolist(), strict=True):
            lm = sum(token_lm.score(seq[:i], t) for i, t in enumerate([*seq, EOS]))
            ctc_score = scorer.score(row, seq) if ctc_weight else 0.0
            totals.append((1 - ctc_weight) * att + ctc_weight * ctc_score + lm_weight * lm)
        best = max(range(len(candidates)), key=totals.__getitem__)
        assert hyps[row][0].tokens == candidates[best]
        assert hyps[row][0].score == pytest.approx(totals[best], abs=1e-4)
