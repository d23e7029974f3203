"""Mel-cepstral distortion with DTW, and the phoneme symbol set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechlab.tasks.synthesis_metrics import dtw_path, mel_cepstral_distortion
from speechlab.text.tokenizers import PhonemeTokenizer, load_tokenizer, train_tokenizer


def test_dtw_aligns_a_stretched_copy_at_zero_cost():
    a = np.array([0.0, 1.0, 2.0, 3.0])
    b = np.repeat(a, 2)
    cost = np.abs(a[:, None] - b[None, :])
    path = dtw_path(cost)
    assert path[0] == (0, 0) and path[-1] == (3, 7)
    assert sum(cost[i, j] for i, j in path) == 0.0


def test_mcd_is_zero_for_the_same_speech_at_another_tempo_and_grows_with_distortion():
    torch.manual_seed(0)
    mel = torch.randn(40, 50)
    slow = mel.repeat_interleave(2, dim=-1)
    assert mel_cepstral_distortion(mel, slow) == pytest.approx(0.0, abs=1e-2)
    small = mel_cepstral_distortion(mel + 0.1 * torch.randn(40, 50), mel)
    large = mel_cepstral_distortion(mel + 1.0 * torch.randn(40, 50), mel)
    assert 0 < small < large


def test_phoneme_symbols_come_from_espeak_and_survive_a_checkpoint():
    tokenizer = train_tokenizer({"kind": "phoneme"}, ["the red cat", "two dogs"])
    assert isinstance(tokenizer, PhonemeTokenizer)
    assert "ð" in tokenizer.tokens and "æ" in tokenizer.tokens  # IPA, not letters
    ids = tokenizer.encode("the cat")
    assert tokenizer.decode(ids) == "ðə kˈæt"
    restored = load_tokenizer(tokenizer.state())
    assert isinstance(restored, PhonemeTokenizer) and restored.encode("the cat") == ids
    assert "ʃ" in restored.unknown("the ship")  # no /ʃ/ in training
