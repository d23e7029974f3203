"""The transducer's parts: shapes, the loss and its memory bound, greedy and beam search."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from speechlab.decoding.build import build_transducer_decoder
from speechlab.decoding.transducer import beam_search, greedy_search
from speechlab.nn.transducer import Joiner, PredictionNetwork, joint_chunks, transducer_loss

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 6  # blank (0) + 5 tokens
TARGETS = torch.tensor([[1, 2, 3, 4, 5], [2, 2, 3, 1, 0], [5, 4, 3, 0, 0], [3, 3, 0, 0, 0]])
TARGET_LENGTHS = torch.tensor([5, 4, 3, 2])
FRAMES = torch.tensor([10, 9, 8, 6])


def tiny(seed: int = 0) -> tuple[nn.LSTM, PredictionNetwork, Joiner]:
    """A bidirectional-LSTM encoder over 4-dim inputs, a prediction network and a joiner."""
    torch.manual_seed(seed)
    encoder = nn.LSTM(4, 16, batch_first=True, bidirectional=True)
    prediction = PredictionNetwork(
        VOCAB, blank=0, embedding_dim=8, hidden_size=16, num_layers=1, dropout=0.0
    )
    return encoder, prediction, Joiner(32, 16, VOCAB, joint_dim=16)


def test_prediction_network_and_joiner_shapes():
    _, prediction, joiner = tiny()
    predicted = prediction(TARGETS)
    assert predicted.shape == (4, 6, 16)
    output, (h, c) = prediction.step(torch.zeros(3, dtype=torch.long))
    assert output.shape == (3, 16) and h.shape == c.shape == (1, 3, 16)
    # the first position has read only the start symbol (blank): one step from blank
    assert torch.allclose(predicted[0, 0], prediction.step(torch.zeros(1, dtype=torch.long))[0][0])
    assert joiner(torch.randn(4, 10, 32), predicted).shape == (4, 10, 6, VOCAB)
    assert joiner(torch.randn(1, 1, 32), output[:, None]).shape == (3, 1, 1, VOCAB)
    with pytest.raises(ValueError, match="blank id 6 is not a token id"):
        PredictionNetwork(
            VOCAB, blank=6, embedding_dim=8, hidden_size=16, num_layers=1, dropout=0.0
        )


def test_loss_is_finite_and_its_gradients_reach_encoder_prediction_and_joiner():
    encoder, prediction, joiner = tiny()
    encoded, _ = encoder(torch.randn(4, 10, 4))
    loss = transducer_loss(
        joiner, encoded, FRAMES, prediction(TARGETS), TARGETS, TARGET_LENGTHS, 0, 10**9
    )
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and loss > 0
    loss.backward()
    for module in (encoder, prediction, joiner):
        for name, parameter in module.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_joiner_and_loss_run_in_float32_under_bf16_autocast():
    encoder, prediction, joiner = tiny()
    with torch.no_grad():
        encoded, predicted = encoder(torch.randn(4, 10, 4))[0], prediction(TARGETS)
    whole = transducer_loss(joiner, encoded, FRAMES, predicted, TARGETS, TARGET_LENGTHS, 0, 10**9)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 inputs, as a bf16 encoder gives
        mixed = transducer_loss(
            joiner,
            encoded.bfloat16(),
            FRAMES,
            predicted.bfloat16(),
            TARGETS,
            TARGET_LENGTHS,
            0,
            10**9,
        )
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(whole.item(), rel=0.02)  # only the rounded inputs differ


def test_chunks_respect_the_bound_and_the_chunked_loss_equals_the_whole_batch():
    width = 16 + VOCAB
    chunks = joint_chunks(FRAMES, TARGET_LENGTHS, width, 2 * 10 * 6 * width)
    assert sorted(torch.cat(chunks).tolist()) == [0, 1, 2, 3]
    assert len(chunks) == 2
    for chunk in chunks:
        t, u = int(FRAMES[chunk].max()), int(TARGET_LENGTHS[chunk].max()) + 1
        assert len(chunk) * t * u * width <= 2 * 10 * 6 * width
    assert len(joint_chunks(FRAMES, TARGET_LENGTHS, width, 1)) == 4  # one utterance each

    inputs = torch.randn(4, 10, 4)
    results = []
    for bound in (10**9, 1):  # one chunk; one chunk per utterance, recomputed in backward
        encoder, prediction, joiner = tiny()
        encoded, _ = encoder(inputs)
        loss = transducer_loss(
            joiner, encoded, FRAMES, prediction(TARGETS), TARGETS, TARGET_LENGTHS, 0, bound
        )
        loss.backward()
        grads = [p.grad.clone() for m in (encoder, prediction, joiner) for p in m.parameters()]
        results.append((loss.detach(), grads))
    (whole, whole_grads), (chunked, chunked_grads) = results
    assert torch.allclose(whole, chunked, atol=1e-5)
    for a, b in zip(whole_grads, chunked_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_greedy_and_beam_search_find_the_memorised_transcripts():
    """Overfit four utterances, then both searches must spell exactly their targets."""
    encoder, prediction, joiner = tiny()
    inputs = torch.randn(4, 10, 4)
    parameters = [p for m in (encoder, prediction, joiner) for p in m.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=3e-2)
    for _ in range(80):
        encoded, _ = encoder(inputs)
        loss = transducer_loss(
            joiner, encoded, FRAMES, prediction(TARGETS), TARGETS, TARGET_LENGTHS, 0, 10**9
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss < 0.5
    expected = [row[:n].tolist() for row, n in zip(TARGETS, TARGET_LENGTHS, strict=True)]
    with torch.no_grad():
        encoded, _ = encoder(inputs)
    assert greedy_search(prediction, joiner, encoded, FRAMES, 3) == expected
    assert beam_search(prediction, joiner, encoded, FRAMES, 3, 3) == expected
    # the symbol bound holds: at most one token per frame, whatever the model prefers
    one_per_frame = greedy_search(prediction, joiner, encoded[:, :2], torch.tensor([2] * 4), 1)
    assert all(len(tokens) <= 2 for tokens in one_per_frame)


def test_decoding_options_are_checked():
    options = {"kind": "beam", "beam_size": 4, "max_symbols_per_frame": 5}
    assert build_transducer_decoder(options).beam_size == 4
    with pytest.raises(ValueError, match=r"unknown transducer decoding option\(s\) \['lm'\]"):
        build_transducer_decoder({**options, "lm": "lm.arpa"})
    with pytest.raises(ValueError, match=r"lacks \['max_symbols_per_frame'\]"):
        build_transducer_decoder({"kind": "greedy", "beam_size": 4})
    with pytest.raises(ValueError, match="max_symbols_per_frame must be at least 1"):
        build_transducer_decoder({**options, "max_symbols_per_frame": 0})


def test_the_beam_search_adapter_puts_our_blank_last_for_torchaudio():
    from speechlab.decoding.transducer import _BlankLast

    prediction = PredictionNetwork(
        VOCAB, blank=2, embedding_dim=8, hidden_size=16, num_layers=1, dropout=0.0
    )
    joiner = Joiner(32, 16, VOCAB, joint_dim=16)
    adapter = _BlankLast(prediction, joiner)
    assert adapter.token(torch.arange(VOCAB)).tolist() == [3, 4, 5, 0, 1, 2]  # blank (2) last
    encoded, predicted = torch.randn(1, 1, 32), torch.randn(3, 1, 16)
    ours = joiner(encoded, predicted)
    rotated, _, _ = adapter.join(encoded, torch.tensor([1]), predicted, torch.tensor([1] * 3))
    assert torch.equal(rotated[..., -1], ours[..., 2])
    assert torch.equal(rotated[..., adapter.token(torch.arange(VOCAB)).argsort()], ours)
