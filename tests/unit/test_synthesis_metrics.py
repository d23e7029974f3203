"""Mel-cepstral distortion with DTW."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from speechlab.tasks.synthesis_metrics import dtw_path, mel_cepstral_distortion


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
