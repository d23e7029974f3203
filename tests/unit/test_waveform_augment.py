"""Waveform augmentation: SNR as asked, speed by resampling, shifts inside the length,
reproducible for a seed, clear errors for bad settings and missing folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechlab.audio.augment import WaveformAugment

RATE = 16000


def tone(seconds: float, hz: float = 440.0) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE)) / RATE
    return 0.5 * torch.sin(2 * torch.pi * hz * t)


@pytest.fixture
def noise_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    (tmp_path / "noise").mkdir()
    sf.write(
        tmp_path / "noise" / "hiss.wav", rng.normal(0, 0.1, RATE // 2).astype(np.float32), RATE
    )
    return tmp_path / "noise"


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    audio = torch.zeros(2, RATE)
    audio[0] = tone(1.0)
    audio[1, : RATE // 2] = tone(0.5, 300.0)
    return audio, torch.tensor([RATE, RATE // 2])


@pytest.mark.parametrize("snr", [0.0, 10.0])
def test_noise_is_mixed_at_the_snr_asked_and_padding_stays_silent(noise_dir: Path, snr: float):
    augment = WaveformAugment(RATE, noise_dir=str(noise_dir), noise_prob=1.0, snr_db=[snr, snr])
    audio, lengths = batch()
    torch.manual_seed(0)
    noisy, new_lengths = augment(audio, lengths)
    assert torch.equal(new_lengths, lengths)
    for b, n in enumerate(lengths.tolist()):
        noise = noisy[b, :n] - audio[b, :n]
        measured = 10 * torch.log10(audio[b, :n].pow(2).sum() / noise.pow(2).sum())
        assert measured.item() == pytest.approx(snr, abs=0.01)
    assert torch.all(noisy[1, RATE // 2 :] == 0)


def test_speed_perturbation_resamples_and_updates_the_lengths():
    augment = WaveformAugment(RATE, speeds=[1.1])
    audio, lengths = batch()
    faster, new_lengths = augment(audio, lengths)
    assert torch.allclose(new_lengths.float(), lengths.float() / 1.1, atol=1)
    assert faster.shape[1] == pytest.approx(RATE / 1.1, abs=2)


def test_a_shift_moves_the_content_inside_the_length_and_zero_fills():
    augment = WaveformAugment(RATE, shift_ms=100.0)
    audio, lengths = batch()
    torch.manual_seed(3)
    shifted, new_lengths = augment(audio, lengths)
    assert torch.equal(new_lengths, lengths) and shifted.shape == audio.shape
    assert torch.all(shifted[1, RATE // 2 :] == 0)  # nothing moved into the padding
    assert (shifted[0] == 0).sum() >= 1  # the emptied part
    assert not torch.equal(shifted, audio)


def test_the_same_seed_draws_the_same_augmentation(noise_dir: Path):
    augment = WaveformAugment(
        RATE,
        speeds=[0.9, 1.0, 1.1],
        noise_dir=str(noise_dir),
        noise_prob=0.5,
        gain_db=[-6, 6],
        shift_ms=50,
    )
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        outputs.append(augment(*batch()))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])


def test_bad_settings_and_missing_folders_are_clear_errors(tmp_path: Path):
    with pytest.raises(ValueError, match="noise_prob must be in"):
        WaveformAugment(RATE, noise_prob=1.5)
    with pytest.raises(ValueError, match="snr_db must be"):
        WaveformAugment(RATE, snr_db=[20, 0])
    with pytest.raises(ValueError, match="speeds must be positive"):
        WaveformAugment(RATE, speeds=[0.0])
    missing = WaveformAugment(RATE, noise_dir=str(tmp_path / "nowhere"), noise_prob=1.0)
    with pytest.raises(FileNotFoundError, match="nowhere is missing or holds no audio"):
        missing(*batch())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("snr_db", [float("nan"), 10.0]),
        ("gain_db", [0.0, float("inf")]),
        ("speeds", [float("nan")]),
    ],
)
def test_a_setting_that_is_not_finite_is_a_clear_error(name: str, value: list[float]):
    with pytest.raises(ValueError, match=name):
        WaveformAugment(RATE, **{name: value})


def test_a_silent_noise_file_is_skipped_with_its_reason_and_the_rest_mixed_in(
    noise_dir: Path, caplog
):
    silent = noise_dir / "digital_silence.wav"
    sf.write(silent, np.zeros(RATE, np.float32), RATE)
    augment = WaveformAugment(RATE, noise_dir=str(noise_dir), noise_prob=1.0, snr_db=[0, 0])
    audio, lengths = batch()
    torch.manual_seed(0)
    with caplog.at_level("WARNING"):
        noisy, _ = augment(audio.clone(), lengths)
    assert torch.isfinite(noisy).all() and not torch.equal(noisy, audio)
    assert f"noise file {silent} skipped: silent" in caplog.text
    assert len(augment._noises) == 1


def test_a_folder_of_only_silent_noise_stops_with_what_to_do(tmp_path: Path):
    (tmp_path / "silence").mkdir()
    sf.write(tmp_path / "silence" / "zero.wav", np.zeros(RATE, np.float32), RATE)
    augment = WaveformAugment(RATE, noise_dir=str(tmp_path / "silence"), noise_prob=1.0)
    with pytest.raises(FileNotFoundError, match="no readable, non-silent audio"):
        augment(*batch())


def test_a_silent_stretch_of_a_noise_recording_leaves_the_utterance_clean(noise_dir: Path):
    augment = WaveformAugment(RATE, noise_dir=str(noise_dir), noise_prob=1.0, snr_db=[5, 5])
    augment._noises = [torch.cat([torch.zeros(4 * RATE), torch.zeros(4 * RATE)])]  # all zeros
    augment._noises[0][0] = 1.0  # not silent as a whole file: one click
    audio, lengths = batch()
    noisy, _ = augment(audio.clone(), lengths)
    assert torch.isfinite(noisy).all()
