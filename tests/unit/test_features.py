import pytest
import torch
import torchaudio

from speechlab.audio.features import LogMelFrontend, frame_lengths
from speechlab.data.collate import collate_examples
from speechlab.data.dataset import Example, SkippedExample
from speechlab.nn.kws_cnn import KeywordCNN


def example(name: str, samples: int, target) -> Example:
    return Example(id=name, audio=torch.randn(samples), target=torch.as_tensor(target))


def test_collate_pads_audio_and_keeps_lengths():
    batch = collate_examples([example("a", 1000, 1), example("b", 1600, 0), example("c", 10, 2)])
    assert batch.audio.shape == (3, 1600)
    assert batch.audio_lengths.tolist() == [1000, 1600, 10]
    assert batch.targets.tolist() == [1, 0, 2]
    assert torch.all(batch.audio[0, 1000:] == 0) and torch.all(batch.audio[2, 10:] == 0)
    assert batch.ids == ["a", "b", "c"]


def test_collate_pads_token_targets():
    batch = collate_examples([example("a", 100, [3, 4, 5]), example("b", 80, [7])], pad_id=0)
    assert batch.targets.tolist() == [[3, 4, 5], [7, 0, 0]]
    assert batch.target_lengths.tolist() == [3, 1]


def test_collate_drops_and_lists_skipped_examples():
    batch = collate_examples([example("a", 100, 0), SkippedExample("b", "/x/b.wav", "truncated")])
    assert batch.ids == ["a"] and batch.skipped == [("/x/b.wav", "truncated")]
    empty = collate_examples([SkippedExample("b", "/x/b.wav", "empty")])
    assert len(empty) == 0 and empty.skipped == [("/x/b.wav", "empty")]


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


def test_keyword_cnn_embedding_ignores_padding():
    torch.manual_seed(0)
    net = KeywordCNN(n_mels=40, channels=(8, 16), dropout=0.0).eval()
    features = torch.randn(1, 40, 60)
    padded = torch.cat([features, torch.zeros(1, 40, 40)], dim=-1)
    short = net(features, torch.tensor([60]))
    long = net(padded, torch.tensor([60]))
    assert short.shape == (1, 16)
    assert torch.allclose(short, long, atol=1e-5)
