"""HiFi-GAN: generator and discriminator shapes, the losses, the hop check, and a vocoder that
overfits one real recording."""

from __future__ import annotations

import lightning as L
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from speechlab.audio.features import LogMelFrontend
from speechlab.data.collate import Batch
from speechlab.nn.vocoders.hifigan import (
    HiFiGANGenerator,
    HiFiGANVocoder,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from speechlab.tasks.vocoder import HiFiGANTask
from tests.conftest import shared_data

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_generator(rates=(4, 4, 4), kernels=(8, 8, 8), resblock="2", n_mels=20) -> HiFiGANGenerator:
    return HiFiGANGenerator(
        n_mels=n_mels,
        upsample_rates=list(rates),
        upsample_kernel_sizes=list(kernels),
        upsample_initial_channel=32,
        resblock=resblock,
        resblock_kernel_sizes=[3, 5],
        resblock_dilation_sizes=[[1, 2], [2, 6]] if resblock == "2" else [[1, 3], [1, 3]],
    )


@pytest.mark.parametrize(
    ("rates", "kernels", "resblock"),
    [((4, 4, 4), (8, 8, 8), "2"), ((8, 8, 4), (16, 16, 8), "2"), ((5, 2), (11, 4), "1")],
)
def test_generator_upsamples_each_frame_to_hop_samples(rates, kernels, resblock):
    generator = tiny_generator(rates, kernels, resblock)
    hop = int(torch.tensor(rates).prod())
    audio = generator(torch.randn(2, 20, 13))
    assert generator.hop_length == hop
    assert audio.shape == (2, 1, 13 * hop)
    assert audio.abs().max() <= 1.0  # tanh output


def test_generator_and_vocoder_reject_inconsistent_settings():
    with pytest.raises(ValueError, match="even number"):
        tiny_generator(rates=(4, 4), kernels=(7, 8))
    with pytest.raises(ValueError, match="resblock must be"):
        tiny_generator(resblock="3")
    with pytest.raises(ValueError, match=r"upsamples by \[4, 4, 4\] = 64 .* hop_length is 256"):
        HiFiGANVocoder(tiny_generator(), sample_rate=16000, hop_length=256)


def test_discriminators_score_every_period_and_scale_with_their_feature_maps():
    waveform = torch.randn(3, 1, 2000)
    mpd = MultiPeriodDiscriminator([2, 3, 5, 7, 11], channels=[4, 8, 16, 16, 16])
    scores, features = mpd(waveform)
    assert len(scores) == len(features) == 5
    for period, score, maps in zip([2, 3, 5, 7, 11], scores, features, strict=True):
        assert score.shape[0] == 3 and score.ndim == 2
        assert len(maps) == 6  # 5 convolutions + conv_post
        assert maps[0].shape[-1] == period  # the signal folded by its period
    msd = MultiScaleDiscriminator(3, channels=[16, 16, 32, 32, 32, 32, 32])
    scores, features = msd(waveform)
    assert len(scores) == len(features) == 3
    assert all(s.shape[0] == 3 and len(maps) == 8 for s, maps in zip(scores, features, strict=True))
    assert scores[0].shape[1] > scores[1].shape[1] > scores[2].shape[1]  # pooled copies
    with pytest.raises(ValueError, match="divisible by the 4 groups"):
        MultiScaleDiscriminator(1, channels=[6, 6, 32, 32, 32, 32, 32])


def test_least_squares_and_feature_matching_losses():
    ones, zeros = [torch.ones(2, 5)], [torch.zeros(2, 5)]
    assert discriminator_loss(ones, zeros) == 0  # a perfect discriminator
    assert discriminator_loss(zeros, ones) == 2
    assert generator_adversarial_loss(ones) == 0 and generator_adversarial_loss(zeros) == 1
    maps = [[torch.ones(2, 3), torch.zeros(2, 4)]]
    assert feature_matching_loss(maps, maps) == 0
    assert feature_matching_loss(maps, [[torch.zeros(2, 3), torch.ones(2, 4)]]) == 2


SAMPLE_RATE, HOP = 8000, 64


def one_utterance_task(discriminator_start_step: int) -> HiFiGANTask:
    frontend = LogMelFrontend(SAMPLE_RATE, n_fft=256, hop_length=HOP, n_mels=20, f_min=0.0,
                              normalize="global", mean=-2.5, std=4.7, eps=1e-5)  # fmt: skip
    return HiFiGANTask(
        frontend=frontend,
        generator=tiny_generator(),
        mpd=MultiPeriodDiscriminator([2, 3], channels=[4, 8, 16, 16, 16]),
        msd=MultiScaleDiscriminator(1, channels=[16, 16, 32, 32, 32, 32, 32]),
        optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3, betas=(0.8, 0.99)),
        tokenizer={"kind": "char", "tokens": ["<blank>", "|", "e", "f", "i", "v"]},
        segment_samples=32 * HOP,
        mel_weight=45.0,
        feature_weight=2.0,
        discriminator_start_step=discriminator_start_step,
    )


def test_vocoder_overfits_one_recording():
    """Trained on random windows of one real recording (a spoken digit), the tiny generator
    resynthesizes it with a mel L1 far below the untrained one's."""
    audio, rate = sf.read(shared_data("fsdd", "recordings", "5_george_0.wav"), dtype="float32")
    assert rate == SAMPLE_RATE
    audio = torch.from_numpy(audio)[None] / max(1e-3, float(abs(audio).max()))
    lengths = torch.tensor([audio.shape[1]])
    text = torch.tensor([[3, 4, 5, 2]])

    def batch() -> Batch:
        return Batch(["5_george_0"], audio.clone(), lengths.clone(), text, torch.tensor([4]))

    torch.manual_seed(0)
    task = one_utterance_task(discriminator_start_step=40)

    def mel_l1() -> float:
        task.eval()
        b = task.on_after_batch_transfer(batch(), 0)
        _, target, resynthesized = task.resynthesize(b)
        return float((resynthesized - target).abs().mean())

    before = mel_l1()
    task.train()
    steps = 48  # 40 on the mel L1 alone, then 8 with both discriminators
    trainer = L.Trainer(max_epochs=1, limit_train_batches=steps, limit_val_batches=0,
                        accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    loader = DataLoader([batch() for _ in range(steps)], batch_size=None, collate_fn=lambda b: b)
    trainer.fit(task, train_dataloaders=loader)
    after = mel_l1()
    assert int(task.generator_steps) == steps
    assert "train/loss_d" in trainer.callback_metrics  # the GAN losses ran after the warm-up
    assert before > 2.5  # untrained: near silence against speech (measured 3.6)
    assert after < 0.5 * before and after < 1.5  # measured 0.98 after 48 steps
