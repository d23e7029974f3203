"""Attention and spellers: weights over valid frames only, step-by-step decoding equals teacher
forcing (LSTM and Transformer spellers), the label-smoothed loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from speechlab.audio.features import lengths_to_mask
from speechlab.decoding.attention import (
    beam_search,
    greedy_search,
)
from speechlab.nn.attention import AdditiveAttention, LocationAwareAttention
from speechlab.nn.speller import EOS, Speller, append_eos, label_smoothed_nll
from speechlab.nn.transformer_decoder import TransformerSpeller
from tests.unit.conftest import padded

pytestmark = pytest.mark.usefixtures("one_thread")


ATTENTIONS = {
    "location": lambda: LocationAwareAttention(12, 10, 16, conv_channels=4, conv_kernel=5),
    "additive": lambda: AdditiveAttention(12, 10, 16),
}


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


def test_transformer_decoder_steps_agree_with_teacher_forcing():
    torch.manual_seed(0)
    decoder = TransformerSpeller(12, 10, d_model=32, num_heads=4, num_layers=2, feedforward_dim=64)
    decoder.eval()
    encoded, lengths = torch.randn(2, 9, 10), torch.tensor([9, 6])
    targets, target_lengths = torch.tensor([[3, 4, 5], [6, 7, 0]]), torch.tensor([3, 2])
    logits, attention = decoder(encoded, lengths, targets, target_lengths)
    assert logits.shape == (2, 4, 12) and attention is None
    state = decoder.initial_state(encoded, lengths)
    previous = torch.zeros(2, dtype=torch.long)
    for step in range(3):
        log_probs, state, _ = decoder.step(state, previous)
        assert torch.allclose(log_probs, logits[:, step].log_softmax(-1), atol=1e-5)
        previous = targets[:, step]
    greedy = greedy_search(decoder, encoded, lengths, 1.0, 8)
    beams = beam_search(decoder, encoded, lengths, beam_size=1, max_length_ratio=1.0, max_length=8)
    assert greedy == beams and all(len(ids) <= 8 for ids in greedy)
    with pytest.raises(ValueError, match="divisible"):
        TransformerSpeller(12, 10, d_model=30, num_heads=4)
