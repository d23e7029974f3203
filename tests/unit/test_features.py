"""Device features: log-mel shapes, lengths and normalisation, float32 under autocast,
SpecAugment."""

import pytest
import torch
import torchaudio

from speechlab.audio.features import LogMelFrontend, frame_lengths


def test_log_mel_shapes_lengths_and_normalisation():
    frontend = LogMelFrontend(sample_rate=16000, n_mels=40, hop_length=160)
    audio = torch.zeros(2, 16000)
    audio[0] = torch.randn(16000)
    audio[1, :8000] = torch.randn(8000)
    features, frames = frontend(audio, torch.tensor([16000, 8000]))
    assert features.shape == (2, 40, 101)
    assert frames.tolist() == frame_lengths(torch.tensor([16000, 8000]), 160).tolist() == [101, 51]
    assert torch.all(features[1, :, 51:] == 0), "padded frames must be zero"
    valid = features[1, :, :51]
    assert valid.mean(dim=-1).abs().max() < 1e-4
    assert (valid.std(dim=-1, unbiased=False) - 1).abs().max() < 1e-2


def test_log_mel_is_float32_under_bf16_autocast():
    frontend = LogMelFrontend()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        features, _ = frontend(torch.randn(1, 4000), torch.tensor([4000]))
    assert features.dtype == torch.float32


def test_frontend_rejects_unknown_normalisation():
    with pytest.raises(ValueError, match="normalize"):
        LogMelFrontend(normalize="batch")


def test_global_normalisation_is_undone_for_the_vocoder():
    audio = torch.randn(2, 8000) * 0.1
    lengths = torch.tensor([8000, 6000])
    plain, frames = LogMelFrontend(normalize="none")(audio, lengths)
    frontend = LogMelFrontend(normalize="global", mean=-2.5, std=4.7)
    normalised, _ = frontend(audio, lengths)
    valid = torch.arange(plain.shape[-1]) < frames[:, None]
    restored = frontend.denormalize(normalised)
    assert torch.allclose(restored[0], plain[0], atol=1e-4)
    assert torch.allclose(restored[1][:, valid[1]], plain[1][:, valid[1]], atol=1e-4)
    with pytest.raises(ValueError, match="cannot be inverted"):
        LogMelFrontend(normalize="utterance").denormalize(plain)


def test_specaugment_masks_in_place_shape():
    augment = torchaudio.transforms.SpecAugment(2, 10, 2, 6, iid_masks=True, zero_masking=True)
    features = torch.randn(4, 40, 101)
    masked = augment(features)
    assert masked.shape == features.shape
    assert (masked == 0).sum() > 0


@pytest.mark.parametrize("samples", [1, 100, 200])
def test_clips_shorter_than_a_window_give_frames_not_an_error(samples):
    frontend = LogMelFrontend(n_fft=400, hop_length=160)
    features, frames = frontend(
        torch.randn(2, samples), torch.tensor([samples, max(1, samples // 2)])
    )
    assert features.shape[:2] == (2, 40) and torch.isfinite(features).all()
    assert (
        frames.tolist()
        == frame_lengths(torch.tensor([samples, max(1, samples // 2)]), 160).tolist()
    )
