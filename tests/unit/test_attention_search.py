"""Listen, Attend and Spell: attention, pyramidal encoder, speller, searches, CTC prefix scores."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from speechlab.audio.features import lengths_to_mask
from speechlab.decoding.attention import (
    beam_search,
    beam_search_hypotheses,
    greedy_search,
    max_output_lengths,
    score_hypotheses,
)
from speechlab.decoding.ctc_prefix import CTCPrefixScorer
from speechlab.decoding.fusion import ArpaLM, TokenNGramLM, WordNGramLM
from speechlab.decoding.ngram import build_arpa, spell_sentences
from speechlab.nn.attention import AdditiveAttention, LocationAwareAttention
from speechlab.nn.encoders.pyramidal_lstm import PyramidalLSTMEncoder
from speechlab.nn.speller import EOS, Speller, append_eos, label_smoothed_nll

pytestmark = pytest.mark.usefixtures("one_thread")


ATTENTIONS = {
    "location": lambda: LocationAwareAttention(12, 10, 16, conv_channels=4, conv_kernel=5),
    "additive": lambda: AdditiveAttention(12, 10, 16),
}


def padded(lengths: list[int], dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``(B, max(lengths), dim)`` frames, zero on padding, and the lengths."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(len(lengths), max(lengths), dim, generator=generator)
    lengths_t = torch.tensor(lengths)
    return frames * lengths_to_mask(lengths_t, frames.shape[1]).unsqueeze(-1), lengths_t


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_attention_is_a_distribution_over_valid_frames(kind: str) -> None:
    torch.manual_seed(0)
    attention = ATTENTIONS[kind]()
    keys, lengths = padded([9, 5, 1], 10)
    mask = lengths_to_mask(lengths, 9)
    query = torch.randn(3, 12)
    previous = torch.rand(3, 9) * mask
    previous = previous / previous.sum(-1, keepdim=True)
    context, weights = attention(query, keys, None, mask, previous)
    assert context.shape == (3, 10) and weights.shape == (3, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))
    assert (weights[~mask] == 0).all() and (weights[mask] > 0).all()
    torch.testing.assert_close(context, torch.einsum("bt,btd->bd", weights, keys))
    # keys projected once give the same result; an utterance alone gives the same result
    again = attention(query, keys, attention.process_keys(keys), mask, previous)
    torch.testing.assert_close(again, (context, weights))
    alone = attention(query[1:2], keys[1:2, :5], None, mask[1:2, :5], previous[1:2, :5])
    torch.testing.assert_close(alone[0], context[1:2])
    torch.testing.assert_close(alone[1], weights[1:2, :5])


def test_location_attention_uses_the_previous_weights() -> None:
    torch.manual_seed(0)
    attention = ATTENTIONS["location"]()
    keys, lengths = padded([8], 10)
    mask = lengths_to_mask(lengths, 8)
    query = torch.randn(1, 12)
    first = attention(query, keys, None, mask, F.one_hot(torch.tensor([1]), 8).float())[1]
    second = attention(query, keys, None, mask, F.one_hot(torch.tensor([6]), 8).float())[1]
    assert not torch.allclose(first, second)


def test_pyramidal_encoder_lengths_and_padding_invariance() -> None:
    torch.manual_seed(0)
    encoder = PyramidalLSTMEncoder(6, hidden_size=8, num_layers=3, reduction=8).eval()
    features, lengths = padded([37, 20, 9, 1], 6)
    features = features.transpose(1, 2)  # (B, n_mels, T)
    with torch.no_grad():
        output, out_lengths = encoder(features, lengths)
        alone, alone_lengths = encoder(features[2:3, :, :9], lengths[2:3])
    assert out_lengths.tolist() == [5, 3, 2, 1] == encoder.output_lengths(lengths).tolist()
    assert output.shape == (4, 5, encoder.output_dim) and encoder.output_dim == 16
    assert encoder.subsampling == 8
    assert (output[~lengths_to_mask(out_lengths, 5)] == 0).all()
    assert alone_lengths.tolist() == [2]
    torch.testing.assert_close(alone, output[2:3, :2], atol=1e-6, rtol=1e-5)

    keep_rate = PyramidalLSTMEncoder(6, hidden_size=8, num_layers=3, reduction=2)
    assert keep_rate.output_lengths(lengths).tolist() == [19, 10, 5, 1]
    for reduction, layers in ((6, 3), (16, 3)):
        with pytest.raises(ValueError):
            PyramidalLSTMEncoder(6, num_layers=layers, reduction=reduction)


@pytest.mark.parametrize("attention", ["location", "additive"])
def test_speller_shapes_and_step_agree_with_forward(attention: str) -> None:
    torch.manual_seed(0)
    speller = Speller(7, 10, 8, 16, num_layers=2, attention=attention, attention_dim=8).eval()
    encoded, lengths = padded([11, 6, 3], 10)
    targets = torch.tensor([[1, 2, 3, 4], [5, 6, -1, -1], [2, -1, -1, -1]])
    target_lengths = torch.tensor([4, 2, 1])
    logits, weights = speller(encoded, lengths, targets, target_lengths)
    assert logits.shape == (3, 5, 7) and weights.shape == (3, 5, 11)
    mask = lengths_to_mask(lengths, 11).unsqueeze(1)
    assert (weights * ~mask == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))

    # step() with the same inputs gives the same log-probabilities; rows can be reordered
    state = speller.initial_state(encoded, lengths)
    previous = torch.full((3,), EOS)
    truth = targets.clamp(min=0)
    for index in range(3):
        log_probs, state, step_weights = speller.step(state, previous)
        assert log_probs.shape == (3, 7) and step_weights.shape == (3, 11)
        torch.testing.assert_close(log_probs, logits[:, index].log_softmax(-1))
        previous = truth[:, index]
    order = torch.tensor([2, 0, 0])
    reordered = state.select(order)
    assert len(reordered) == 3
    following = speller.step(state, previous)[0]
    torch.testing.assert_close(speller.step(reordered, previous[order])[0], following[order])

    # scheduled sampling at rate 1 feeds the model's own argmax: greedy decoding's scores
    sampled, _ = speller(encoded, lengths, targets, target_lengths, sampling_rate=1.0)
    state, previous = speller.initial_state(encoded, lengths), torch.full((3,), EOS)
    for index in range(5):
        log_probs, state, _ = speller.step(state, previous)
        torch.testing.assert_close(log_probs, sampled[:, index].log_softmax(-1))
        previous = log_probs.argmax(-1)


def test_label_smoothed_nll_matches_cross_entropy() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7)
    targets = torch.tensor([[1, 2, 3, 4], [5, 6, 9, 9], [2, 9, 9, 9]])
    lengths = torch.tensor([4, 2, 1])
    with_eos = append_eos(targets, lengths)
    assert with_eos.tolist()[1] == [5, 6, EOS, -100, -100]
    for smoothing in (0.0, 0.1):
        expected = F.cross_entropy(
            logits.transpose(1, 2), with_eos, ignore_index=-100, label_smoothing=smoothing
        )
        actual = label_smoothed_nll(logits, with_eos, lengths + 1, smoothing)
        torch.testing.assert_close(actual, expected)


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


def ctc_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    log_probs = (2.0 * torch.randn(3, 10, 5, generator=generator)).log_softmax(-1)
    return log_probs, torch.tensor([10, 7, 4])


@pytest.mark.parametrize(
    ("row", "tokens"), [(0, [1, 2, 2, 3]), (0, [4]), (1, [4, 4, 1]), (2, [2, 1]), (2, [])]
)
def test_ctc_prefix_score_with_eos_is_the_ctc_log_likelihood(row: int, tokens: list[int]) -> None:
    log_probs, lengths = ctc_inputs()
    scorer = CTCPrefixScorer(log_probs, lengths)
    loss = F.ctc_loss(
        log_probs[row : row + 1].transpose(0, 1),
        torch.tensor([tokens or [0]])[:, : len(tokens)],
        lengths[row : row + 1],
        torch.tensor([len(tokens)]),
        reduction="sum",
    )
    assert scorer.score(row, tokens) == pytest.approx(-float(loss), abs=1e-4)


def test_ctc_prefix_scores_are_prefix_probabilities() -> None:
    """Vectorised scores of every candidate = brute-force sums over all alignments."""
    log_probs, lengths = ctc_inputs(seed=1)
    log_probs, lengths = log_probs[:, :5, :3].log_softmax(-1), lengths.clamp(max=5)  # 5, 5, 4
    scorer = CTCPrefixScorer(log_probs, lengths)

    def brute_force(row: int, target: list[int], complete: bool) -> float:
        frames = int(lengths[row])
        values = []
        for path in itertools.product(range(3), repeat=frames):
            collapsed = [k for k, _ in itertools.groupby(path) if k != 0]
            if (collapsed == target) if complete else (collapsed[: len(target)] == target):
                values.append(log_probs[row, torch.arange(frames), torch.tensor(path)].sum())
        return float(torch.stack(values).logsumexp(0)) if values else -math.inf

    for size in range(3):
        pairs = [(row, list(p)) for row in range(3) for p in itertools.product((1, 2), repeat=size)]
        state = scorer.initial_state(torch.tensor([row for row, _ in pairs]))
        first = torch.zeros(len(pairs), dtype=torch.long)
        for step in range(size):
            grown = scorer.extend(state, torch.tensor([[p[step]] for _, p in pairs]))
            state = scorer.advance(grown, torch.arange(len(pairs)), first)
        scores = scorer.extend(state, torch.arange(3).expand(len(pairs), 3)).scores
        for n, (row, prefix) in enumerate(pairs):
            assert float(state.score[n]) == pytest.approx(brute_force(row, prefix, False), abs=1e-4)
            assert float(scores[n, EOS]) == pytest.approx(brute_force(row, prefix, True), abs=1e-4)
            for token in (1, 2):
                expected = brute_force(row, [*prefix, token], False)
                assert float(scores[n, token]) == pytest.approx(expected, abs=1e-4)


TOKENS = ["<blank>", "|", "a", "b"]
LM_TEXTS = ["ab", "ba ab", "b", "ab ab"]


@pytest.fixture(scope="module")
def token_lm(tmp_path_factory: pytest.TempPathFactory) -> TokenNGramLM:
    path = tmp_path_factory.mktemp("lm") / "tokens.arpa"
    return TokenNGramLM(build_arpa(spell_sentences(LM_TEXTS, list), path, order=3), TOKENS)


def test_arpa_reader_and_lm_adapters(tmp_path: Path, token_lm: TokenNGramLM) -> None:
    arpa = token_lm.lm
    assert arpa.order == 3 and {"a", "b", "|", "</s>", "<unk>"} <= arpa.vocab
    for context in [("<s>",), ("<s>", "a"), ("a", "b"), ("b", "|"), ("q",)]:
        total = sum(math.exp(arpa.log_prob(context, w)) for w in arpa.vocab - {"<s>"})
        assert total == pytest.approx(1.0, abs=1e-4)
    scores = token_lm.next_log_probs([2, 3])  # after "a b"
    assert scores[EOS] == pytest.approx(arpa.log_prob(("a", "b"), "</s>"))
    assert scores[1] == pytest.approx(arpa.log_prob(("a", "b"), "|"))
    assert token_lm.score([], 2) == pytest.approx(arpa.log_prob(("<s>",), "a"))

    words = WordNGramLM(ArpaLM(build_arpa(LM_TEXTS, tmp_path / "words.arpa", order=2)), TOKENS)
    scores = words.next_log_probs([3, 2, 1, 2, 3])  # "ba ab", the last word in progress
    complete = words.lm.log_prob(("ba",), "ab")
    assert scores[1] == pytest.approx(complete)  # "|" completes "ab"
    assert scores[EOS] == pytest.approx(complete + words.lm.log_prob(("ab",), "</s>"))
    assert (scores[2:] == 0).all()  # inside a word


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
