"""Pieces of speech translation: the mini_covost plan and the Transformer decoder option."""

from __future__ import annotations

import pytest
import torch

from speechlab.corpora.embedded.mini_covost import (
    ENDINGS,
    OBJECTS,
    SUBJECTS,
    MiniCovostParams,
    plan_clips,
    plan_pairs,
    plan_speakers,
)
from speechlab.decoding.attention import beam_search, greedy_search
from speechlab.nn.transformer_decoder import TransformerSpeller


def test_mini_covost_plan_is_deterministic_with_disjoint_splits():
    params = MiniCovostParams()
    pairs = plan_pairs(params)
    assert pairs == plan_pairs(MiniCovostParams())
    assert pairs != plan_pairs(MiniCovostParams(seed=1))
    french = {split: {fr for fr, _ in rows} for split, rows in pairs.items()}
    assert not french["train"] & french["validation"] and not french["train"] & french["test"]
    train_words = {word for _, en in pairs["train"] for word in en.lower().strip(".").split()}
    for _, english in pairs["test"]:  # new combinations of phrases train has seen
        assert set(english.lower().strip(".").split()) <= train_words
    speakers = plan_speakers(params)
    by_split = {s: {sp.id for sp in speakers if sp.split == s} for s in french}
    assert (
        not by_split["train"] & by_split["test"] and not by_split["validation"] & by_split["test"]
    )
    clips = plan_clips(params, speakers)
    assert len(clips) == 450 * 3 + 50 * 2 + 80 * 2
    assert all(clip.name.startswith("common_voice_fr_") for clip in clips)


def test_mini_covost_translations_follow_the_grammar():
    for french, english in plan_pairs(MiniCovostParams(train_sentences=60))["train"]:
        assert french[0].isupper() and french.endswith(".") and english.endswith(".")
        assert any(french.lower().startswith(fr) for fr, _ in SUBJECTS)
        assert any(english.lower().startswith(en) for _, en in SUBJECTS)
        assert any(f" {noun}" in english for *_, noun in OBJECTS)
        ending = [en for fr, en in ENDINGS if french.endswith(f" {fr}.")]
        assert not ending or english.endswith(f" {ending[0]}.")
    with pytest.raises(ValueError, match="eval_readings"):
        MiniCovostParams(dev_speakers=1, eval_readings=2)


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
