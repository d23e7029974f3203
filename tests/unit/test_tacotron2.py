"""Tacotron 2: it overfits a few utterances with a diagonal alignment; the stop token ends
generation; the guided attention loss and the diagonal score prefer the diagonal."""

from __future__ import annotations

import time

import pytest
import torch

from speechlab.audio.features import LogMelFrontend
from speechlab.audio.io import resample
from speechlab.nn.tacotron2 import Tacotron2, diagonal_score, guided_attention_loss
from speechlab.text.espeak import Espeak
from speechlab.text.tokenizers import CharTokenizer

SENTENCES = [
    "the red cat sees two dogs",
    "my old friend sings",
    "a boat is blue",
    "ten apples fall",
]
STEPS = 60


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(vocab_size: int, **options) -> Tacotron2:
    sizes = dict(
        n_mels=40, reduction=4, encoder_dim=64, encoder_convs=1, prenet_dim=64,
        attention_rnn_dim=96, decoder_rnn_dim=96, attention_dim=64, postnet_dim=64,
        postnet_layers=2, dropout=0.0, prenet_dropout=0.2, rnn_dropout=0.0,
    )  # fmt: skip
    return Tacotron2(vocab_size, **{**sizes, **options})


@pytest.fixture(scope="module")
def utterances():
    """Four espeak sentences: symbols ``(4, L)``, lengths, globally normalised log-mel
    ``(4, 40, T)`` at 16 kHz, frame counts."""
    tokenizer = CharTokenizer.train(SENTENCES)
    frontend = LogMelFrontend(16000, 1024, None, 256, 40, 0.0, None, "global", 1e-5, -2.5, 4.7)
    with Espeak(isolated=True) as engine:
        audio = [
            resample(
                torch.from_numpy(engine.synthesize(s, "en-us", 170)), engine.sample_rate, 16000
            )
            for s in SENTENCES
        ]
    lengths = torch.tensor([a.numel() for a in audio])
    mels, frames = frontend(torch.nn.utils.rnn.pad_sequence(audio, batch_first=True), lengths)
    symbols = [torch.tensor(tokenizer.encode(s)) for s in SENTENCES]
    symbol_lengths = torch.tensor([s.numel() for s in symbols])
    return (
        tokenizer,
        torch.nn.utils.rnn.pad_sequence(symbols, batch_first=True),
        symbol_lengths,
        mels,
        frames,
    )


def test_overfits_a_few_utterances_with_a_diagonal_alignment(utterances):
    tokenizer, symbols, symbol_lengths, mels, frames = utterances
    torch.manual_seed(0)
    model = tiny(tokenizer.vocab_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    r = model.reduction
    steps = torch.div(frames + r - 1, r, rounding_mode="floor")
    initial = evaluate(model, symbols, symbol_lengths, mels, frames)[0]
    started = time.perf_counter()
    for _ in range(STEPS):
        out = model(symbols, symbol_lengths, mels)
        target = torch.nn.functional.pad(mels, (0, out.mel.shape[-1] - mels.shape[-1]))
        mask = (torch.arange(target.shape[-1]) < frames[:, None]).unsqueeze(1)
        l1 = ((out.mel_postnet - target).abs() * mask).sum() / (mask.sum() * mels.shape[1])
        l1_before = ((out.mel - target).abs() * mask).sum() / (mask.sum() * mels.shape[1])
        attention = guided_attention_loss(out.alignments, symbol_lengths, steps)
        loss = l1 + l1_before + attention
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    elapsed = time.perf_counter() - started
    l1, score = evaluate(model, symbols, symbol_lengths, mels, frames)
    print(f"{STEPS} steps in {elapsed:.1f} s: mel L1 {initial:.3f} -> {l1:.3f}, diagonal {score}")
    # Normalised units (log-mel / 4.7): 0.35 is 1.6 nats.
    assert l1 < 0.35 and l1 < initial / 2
    assert float(score.min()) > 0.8, score


def evaluate(model, symbols, symbol_lengths, mels, frames) -> tuple[float, torch.Tensor]:
    """Teacher-forced mel L1 after the postnet (valid frames) and the per-item diagonal score
    (attention mass within 0.1 of the diagonal)."""
    model.eval()
    with torch.no_grad():
        out = model(symbols, symbol_lengths, mels)
    model.train()
    target = torch.nn.functional.pad(mels, (0, out.mel.shape[-1] - mels.shape[-1]))
    mask = (torch.arange(target.shape[-1]) < frames[:, None]).unsqueeze(1)
    l1 = float(((out.mel_postnet - target).abs() * mask).sum() / (mask.sum() * mels.shape[1]))
    r = model.reduction
    steps = torch.div(frames + r - 1, r, rounding_mode="floor")
    return l1, diagonal_score(out.alignments, symbol_lengths, steps, width=0.1)


def test_stop_token_ends_generation():
    torch.manual_seed(0)
    model = tiny(10, max_decoder_steps=40).eval()
    symbols = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    lengths = torch.tensor([4, 2])
    with torch.no_grad():
        model.stop_projection.bias.fill_(20.0)  # the stop token fires at once
        stopped = model.infer(symbols, lengths)
        model.stop_projection.weight.zero_()
        model.stop_projection.bias.fill_(-20.0)  # never fires: runs to the limit
        endless = model.infer(symbols, lengths)
    assert stopped.lengths.tolist() == [4, 4]
    assert stopped.mel.shape[-1] == 4 and stopped.alignments.shape[1] == 1
    assert endless.lengths.tolist() == [160, 160]
    assert endless.mel.shape[-1] == 160


def test_stop_is_per_item_and_frames_after_it_are_silent():
    torch.manual_seed(0)
    model = tiny(10, max_decoder_steps=30).eval()
    with torch.no_grad():
        model.stop_projection.weight.zero_()
        model.stop_projection.bias.fill_(-20.0)
        # The stop logit follows the first context unit: make it fire only for the item whose
        # encoder output is large there.
        model.stop_projection.weight[0, model.decoder_rnn.hidden_size] = 100.0
        out = model.infer(torch.tensor([[1, 2, 3], [1, 2, 3]]), torch.tensor([3, 3]), 5)
    assert out.lengths.shape == (2,)
    for i, n in enumerate(out.lengths.tolist()):
        assert (out.mel[i, :, n:] == 0).all()


def test_guided_attention_prefers_the_diagonal():
    steps, symbols = 12, 8
    diagonal = torch.zeros(1, steps, symbols)
    for s in range(steps):
        diagonal[0, s, min(symbols - 1, s * symbols // steps)] = 1.0
    reverse = diagonal.flip(-1)
    lengths, step_lengths = torch.tensor([symbols]), torch.tensor([steps])
    on, off = (guided_attention_loss(a, lengths, step_lengths) for a in (diagonal, reverse))
    assert on < 0.05 and off > 10 * on
    assert diagonal_score(diagonal, lengths, step_lengths, 0.1).item() == 1.0
    assert diagonal_score(reverse, lengths, step_lengths, 0.1).item() < 0.4


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="reduction"):
        Tacotron2(10, reduction=0)
    with pytest.raises(ValueError, match="vocab_size"):
        Tacotron2(1)


def test_without_frame_feedback_generation_equals_the_teacher_forced_pass():
    torch.manual_seed(0)
    model = tiny(10, autoregressive=False, max_decoder_steps=6).eval()
    symbols, lengths = torch.tensor([[1, 2, 3, 4]]), torch.tensor([4])
    with torch.no_grad():
        model.stop_projection.weight.zero_()
        model.stop_projection.bias.fill_(-20.0)
        generated = model.infer(symbols, lengths)
        forced = model(symbols, lengths, torch.randn(1, 40, 24))  # the frames are never read
    assert torch.allclose(generated.mel_postnet, forced.mel_postnet, atol=1e-5)
    assert torch.allclose(generated.alignments, forced.alignments, atol=1e-6)
