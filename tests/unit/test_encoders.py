"""Speech encoders: shapes and lengths, padding invariance, they learn CTC, their configs build."""

from __future__ import annotations

import copy
from collections.abc import Callable

import hydra
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from speechlab.audio.features import lengths_to_mask
from speechlab.nn.bc_resnet import BCResNet
from speechlab.nn.encoders import (
    ConformerEncoder,
    ConvEncoder,
    ConvLSTMEncoder,
    DNNEncoder,
    LSTMEncoder,
    conv_output_lengths,
)
from speechlab.nn.encoders.masking import MaskedBatchNorm, time_mask
from speechlab.nn.encoders.pyramidal_lstm import PyramidalLSTMEncoder
from speechlab.nn.encoders.rnn import PackedRNN
from speechlab.nn.kws_cnn import KeywordCNN
from speechlab.nn.kws_dnn import KeywordDNN
from tests.conftest import CONF
from tests.unit.conftest import padded

N_MELS = 20

# Small instances, so that every test runs in about a second on 2 CPU cores.
SMALL: dict[str, Callable[[], nn.Module]] = {
    "cnn": lambda: ConvEncoder(
        N_MELS, channels=(32, 48), kernel_sizes=(5, 7), stem_channels=32, dropout=0.0
    ),
    "cnn_stride4": lambda: ConvEncoder(
        N_MELS, channels=(32,), kernel_sizes=(5,), repeat=1, stem_channels=32, stride=4
    ),
    "lstm": lambda: LSTMEncoder(
        N_MELS, hidden_size=32, num_layers=2, dropout=0.0, subsampling_channels=(8, 8)
    ),
    "conv_lstm": lambda: ConvLSTMEncoder(
        N_MELS,
        conv_channels=(8, 8),
        conv_kernel_sizes=((5, 3), (5, 3)),
        hidden_size=32,
        num_layers=2,
        dropout=0.0,
    ),
    "conv_lstm_unidirectional": lambda: ConvLSTMEncoder(
        N_MELS,
        conv_channels=(8,),
        conv_kernel_sizes=((5, 3),),
        conv_strides=((2, 2),),
        rnn_type="lstm",
        hidden_size=32,
        num_layers=1,
        bidirectional=False,
    ),
    "conformer": lambda: ConformerEncoder(
        N_MELS,
        d_model=32,
        num_heads=2,
        ffn_dim=64,
        num_layers=2,
        depthwise_conv_kernel_size=7,
        dropout=0.0,
        subsampling_channels=(8, 8),
    ),
    "dnn": lambda: DNNEncoder(N_MELS, left_context=3, right_context=2, hidden_size=32, dropout=0.0),
    "dnn_stride3_batch_norm": lambda: DNNEncoder(
        N_MELS,
        left_context=2,
        right_context=2,
        stride=3,
        hidden_size=32,
        num_layers=2,
        norm="batch",
    ),
}


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random log-mel-like ``(B, N_MELS, max(lengths))`` with zero padding, and the lengths."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(len(lengths), N_MELS, max(lengths), generator=generator)
    lengths_t = torch.tensor(lengths)
    return features * time_mask(lengths_t, features), lengths_t


@pytest.mark.parametrize("name", SMALL)
def test_shapes_and_output_lengths(name: str):
    torch.manual_seed(0)
    encoder = SMALL[name]()
    features, lengths = padded_batch([61, 40, 17, 1])
    output, out_lengths = encoder(features, lengths)
    assert out_lengths.tolist() == encoder.output_lengths(lengths).tolist()
    assert out_lengths.dtype == torch.int64
    assert output.shape == (4, int(out_lengths.max()), encoder.output_dim)
    assert (out_lengths >= 1).all()
    assert out_lengths[0] == -(-61 // encoder.subsampling)  # "same" padding: ceil(T / stride)
    assert torch.isfinite(output).all()
    output.sum().backward()


@pytest.mark.parametrize("name", SMALL)
def test_output_does_not_depend_on_padding(name: str):
    torch.manual_seed(0)
    encoder = SMALL[name]().eval()
    features, lengths = padded_batch([37, 80])
    with torch.no_grad():
        alone, alone_lengths = encoder(features[:1, :, :37], lengths[:1])
        batched, batched_lengths = encoder(features, lengths)
    valid = int(alone_lengths[0])
    assert batched_lengths[0] == valid
    torch.testing.assert_close(batched[0, :valid], alone[0, :valid], atol=1e-5, rtol=1e-4)
    assert (batched[0, valid:] == 0).all()  # padded output frames are zero


@pytest.mark.parametrize("name", ["cnn", "lstm", "conv_lstm", "conformer", "dnn"])
def test_learns_ctc_on_a_tiny_batch(name: str):
    torch.manual_seed(0)
    encoder = SMALL[name]()
    vocab = 6  # index 0 is the CTC blank
    head = nn.Linear(encoder.output_dim, vocab)
    features, lengths = padded_batch([96, 88, 80, 72], seed=1)
    generator = torch.Generator().manual_seed(2)
    targets = torch.randint(1, vocab, (4, 5), generator=generator)
    target_lengths = torch.tensor([5, 4, 5, 3])
    parameters = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=1e-2)
    losses = []
    for _ in range(25):
        output, out_lengths = encoder(features, lengths)
        log_probs = head(output).log_softmax(-1).transpose(0, 1)  # (T', B, V)
        loss = F.ctc_loss(log_probs, targets, out_lengths, target_lengths, zero_infinity=True)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.5 * losses[0], losses


def test_conv_output_lengths_match_torch():
    for kernel, stride, padding, dilation in [
        (3, 2, 1, 1),
        (11, 2, 5, 1),
        (5, 3, 0, 2),
        (4, 4, 2, 1),
    ]:
        conv = nn.Conv1d(1, 1, kernel, stride, padding, dilation)
        shortest = max(1, dilation * (kernel - 1) + 1 - 2 * padding)
        lengths = torch.arange(shortest, 40)
        expected = [conv(torch.zeros(1, 1, int(n))).shape[-1] for n in lengths]
        got = conv_output_lengths(lengths, kernel, stride, padding, dilation)
        assert got.tolist() == expected


def test_masked_batch_norm_ignores_padding_in_training():
    features, lengths = padded_batch([30, 12])
    features = features + 3.0 * time_mask(lengths, features)  # nonzero mean on valid frames
    norm = MaskedBatchNorm(N_MELS)
    output = norm(features, time_mask(lengths, features))
    # The same valid frames, concatenated along time without padding.
    flat = torch.cat([features[i, :, : int(n)] for i, n in enumerate(lengths)], dim=-1)
    reference = MaskedBatchNorm(N_MELS)
    expected = reference(flat.unsqueeze(0))
    got = torch.cat([output[i, :, : int(n)] for i, n in enumerate(lengths)], dim=-1)
    torch.testing.assert_close(got, expected[0])
    torch.testing.assert_close(norm.running_mean, reference.running_mean)
    torch.testing.assert_close(norm.running_var, reference.running_var)


ENCODER_CONFIGS = sorted(p.stem for p in (CONF / "model" / "encoder").glob("*.yaml"))


def test_every_encoder_has_a_config():
    assert ENCODER_CONFIGS == ["cnn", "conformer", "conv_lstm", "dnn", "lstm", "pyramidal_lstm"]


@pytest.mark.parametrize("option", ENCODER_CONFIGS)
def test_encoder_config_instantiates(option: str):
    cfg = OmegaConf.load(CONF / "model" / "encoder" / f"{option}.yaml")
    assert OmegaConf.to_container(cfg)["input_dim"] == "${model.frontend.n_mels}"
    cfg.input_dim = 40
    encoder = hydra.utils.instantiate(cfg)
    features, lengths = padded_batch([50, 23])
    features = torch.cat([features, features], dim=1)  # 40 mel bands
    with torch.no_grad():
        output, out_lengths = encoder.eval()(features, lengths)
    assert output.shape == (2, -(-50 // encoder.subsampling), encoder.output_dim)
    assert out_lengths.tolist() == encoder.output_lengths(lengths).tolist()


@pytest.mark.parametrize("convs_per_block", [1, 2])
@pytest.mark.parametrize("frames", [60, 61])  # 61: a pooling window straddles the padding
def test_keyword_cnn_embedding_ignores_padding(convs_per_block: int, frames: int):
    torch.manual_seed(0)
    net = KeywordCNN(n_mels=40, channels=(8, 16), dropout=0.0, convs_per_block=convs_per_block)
    net = net.eval()
    with torch.no_grad():  # BatchNorm statistics that move padded frames away from zero
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.bias.uniform_(0.5, 1.0)
    features = torch.randn(1, 40, frames)
    padded = torch.cat([features, torch.zeros(1, 40, 40)], dim=-1)
    short = net(features, torch.tensor([frames]))
    long = net(padded, torch.tensor([frames]))
    assert short.shape == (1, 16)
    assert torch.allclose(short, long, atol=1e-5)


def test_keyword_cnn_channels_last_changes_the_layout_not_the_outputs():
    """The NHWC activations give the NCHW network's embeddings and gradients, same weights."""
    features, lengths = torch.randn(3, 40, 61), torch.tensor([61, 45, 30])
    results = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        net = KeywordCNN(
            n_mels=40, channels=(8, 16), convs_per_block=2, dropout=0.0, channels_last=channels_last
        )
        seen: list[torch.Tensor] = []
        net.blocks[1][0].register_forward_pre_hook(
            lambda _m, inputs, seen=seen: seen.append(inputs[0])
        )
        embedding = net(features, lengths)
        embedding.square().sum().backward()
        assert seen[0].is_contiguous(memory_format=torch.channels_last) == channels_last
        results.append((embedding.detach(), net.blocks[0][0].weight.grad))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-5)
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-3, atol=1e-3)  # float32 sums


def test_keyword_cnn_rejects_blocks_without_convs():
    with pytest.raises(ValueError, match="convs_per_block=0"):
        KeywordCNN(n_mels=40, channels=(8,), convs_per_block=0)


def randomized_batch_norms(net: nn.Module) -> nn.Module:
    """``net`` in eval mode with BatchNorm statistics that move padded frames away from zero."""
    net = net.eval()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.bias.uniform_(0.5, 1.0)
                module.running_mean.uniform_(-1.0, 1.0)
                module.running_var.uniform_(0.5, 2.0)
    return net


@pytest.mark.parametrize("width", [1, 1.5])
def test_bc_resnet_shapes_and_output_dim(width: float):
    torch.manual_seed(0)
    net = BCResNet(n_mels=40, width=width, dropout=0.0)
    assert net.output_dim == round(32 * width)
    features, lengths = torch.randn(4, 40, 61), torch.tensor([61, 40, 17, 1])
    embedding = net(features, lengths)
    assert embedding.shape == (4, net.output_dim)
    assert torch.isfinite(embedding).all()
    # BC-ResNet-1: 8.8 k weights, 9.2 k with the paper's 12-class classifier (its Table 2)
    if width == 1:
        assert sum(p.numel() for p in net.parameters()) + 32 * 12 + 12 == 9232


@pytest.mark.parametrize(("n_mels", "sub_bands"), [(40, 5), (80, 5), (20, 1)])
@pytest.mark.parametrize("frames", [60, 61])
def test_bc_resnet_embedding_ignores_padding(n_mels: int, sub_bands: int, frames: int):
    torch.manual_seed(0)
    net = randomized_batch_norms(BCResNet(n_mels=n_mels, width=1, sub_bands=sub_bands))
    features = torch.randn(2, n_mels, frames)
    lengths = torch.tensor([frames, frames - 23])
    padded = torch.cat([features, torch.randn(2, n_mels, 40)], dim=-1)  # padding need not be 0
    with torch.no_grad():
        short = net(features, lengths)
        long = net(padded, lengths)
        alone = net(features[1:, :, : frames - 23], lengths[1:])
    assert short.shape == (2, 32)
    assert torch.allclose(short, long, atol=1e-5)
    assert torch.allclose(alone, short[1:], atol=1e-5)


def test_bc_resnet_gradients_reach_every_weight():
    torch.manual_seed(0)
    net = BCResNet(n_mels=40, width=1)
    features, lengths = torch.randn(3, 40, 31), torch.tensor([31, 20, 9])
    net(features, lengths).square().sum().backward()
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_bc_resnet_channels_last_changes_the_layout_not_the_outputs():
    """The NHWC activations give the NCHW network's embeddings and gradients, same weights.

    In float64: in float32 the 27 batch normalisations of a training step amplify the two
    layouts' different summation orders to about 1e-5."""
    features, lengths = torch.randn(3, 40, 61, dtype=torch.float64), torch.tensor([61, 45, 30])
    results = []
    for channels_last in (False, True):
        torch.manual_seed(0)
        net = BCResNet(n_mels=40, width=1, dropout=0.0, channels_last=channels_last).double()
        seen: list[torch.Tensor] = []
        for block in (net.blocks[1], net.blocks[-1]):
            block.register_forward_pre_hook(lambda _m, inputs, seen=seen: seen.append(inputs[0]))
        embedding = net(features, lengths)
        embedding.square().sum().backward()
        for hidden in seen:
            assert hidden.is_contiguous(memory_format=torch.channels_last) == channels_last
        results.append((embedding.detach(), net.stem[0].weight.grad))
    assert torch.allclose(results[0][0], results[1][0], rtol=1e-9, atol=1e-9)
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 0}, "width=0"),
        ({"width": -1.0}, "width=-1.0"),
        ({"sub_bands": 0}, "sub_bands=0"),
        ({"n_mels": 4}, "n_mels=4 is too small"),
        ({"n_mels": 40, "sub_bands": 3}, r"sub_bands=3.*set sub_bands to one of \[1, 5\]"),
        ({"n_mels": 64, "sub_bands": 5}, "n_mels=64, sub_bands=5"),
    ],
)
def test_bc_resnet_rejects_bad_arguments(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        BCResNet(**kwargs)


@pytest.mark.parametrize(
    "option", sorted(p.stem for p in (CONF / "model" / "kws_encoder").glob("*.yaml"))
)
def test_kws_encoder_config_instantiates(option: str):
    cfg = OmegaConf.load(CONF / "model" / "kws_encoder" / f"{option}.yaml")
    assert OmegaConf.to_container(cfg)["n_mels"] == "${model.frontend.n_mels}"
    cfg.n_mels = 40
    encoder = hydra.utils.instantiate(cfg).eval()
    with torch.no_grad():
        embedding = encoder(torch.randn(2, 40, 50), torch.tensor([50, 23]))
    assert embedding.shape == (2, encoder.output_dim)


def test_pyramidal_encoder_lengths_and_padding_invariance() -> None:
    torch.manual_seed(0)
    encoder = PyramidalLSTMEncoder(6, hidden_size=8, num_layers=3, reduction=8).eval()
    features, lengths = padded([37, 20, 9, 1], 6)
    features = features.transpose(1, 2)  # (B, n_mels, T)
    with torch.no_grad():
        output, out_lengths = encoder(features, lengths)
        alone, alone_lengths = encoder(features[2:3, :, :9], lengths[2:3])
    assert out_lengths.tolist() == [5, 3, 2, 1] == encoder.output_lengths(lengths).tolist()
    assert output.shape == (4, 5, encoder.output_dim) and encoder.output_dim == 16
    assert encoder.subsampling == 8
    assert (output[~lengths_to_mask(out_lengths, 5)] == 0).all()
    assert alone_lengths.tolist() == [2]
    torch.testing.assert_close(alone, output[2:3, :2], atol=1e-6, rtol=1e-5)

    keep_rate = PyramidalLSTMEncoder(6, hidden_size=8, num_layers=3, reduction=2)
    assert keep_rate.output_lengths(lengths).tolist() == [19, 10, 5, 1]
    for reduction, layers in ((6, 3), (16, 3)):
        with pytest.raises(ValueError):
            PyramidalLSTMEncoder(6, num_layers=layers, reduction=reduction)


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_the_cpu_layer_by_layer_rnn_equals_the_packed_one(rnn_type: str, bidirectional: bool):
    """The CPU path (oneDNN's fused kernel on the padded batch, backward direction reversed
    within each length) gives the packed path's outputs and gradients, zero on padding."""
    torch.manual_seed(0)
    rnn = PackedRNN(12, 8, 3, dropout=0.0, bidirectional=bidirectional, rnn_type=rnn_type)
    frames = torch.randn(5, 11, 12)
    lengths = torch.tensor([11, 6, 1, 9, 3])
    results = []
    for path in (rnn._packed, rnn._by_layer):
        rnn.zero_grad()
        inputs = frames.clone().requires_grad_(True)
        output = path(inputs, lengths)
        (output * torch.linspace(-1, 1, output.shape[-1])).sum().backward()
        grads = [p.grad.clone() for p in rnn.parameters()]
        results.append((output.detach(), inputs.grad, grads))
    (packed, packed_input_grad, packed_grads), (layered, layered_input_grad, layered_grads) = (
        results
    )
    torch.testing.assert_close(layered, packed, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(layered_input_grad, packed_input_grad, atol=1e-6, rtol=1e-5)
    for a, b in zip(layered_grads, packed_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert layered[1, 6:].abs().max() == 0 and layered[2, 1:].abs().max() == 0


@pytest.mark.parametrize(("stride", "frames"), [(1, 7), (3, 7), (4, 9), (4, 1)])
def test_dnn_windows_stack_the_frames_around_each_output_frame(stride: int, frames: int):
    encoder = DNNEncoder(3, left_context=2, right_context=1, stride=stride, hidden_size=4)
    features = torch.arange(1.0, 3 * frames + 1).view(1, 3, frames)
    windows = encoder.splice(features, torch.tensor([frames]))
    outputs = -(-frames // stride)
    assert windows.shape == (1, outputs, 4 * 3)
    for t in range(outputs):
        centre = t * stride
        expected = [
            features[0, :, i] if 0 <= i < frames else torch.zeros(3)
            for i in range(centre - 2, centre + 2)  # oldest frame first
        ]
        assert torch.equal(windows[0, t], torch.cat(expected))


def test_dnn_lengths_and_batch_norm_in_training_ignore_padding():
    torch.manual_seed(0)
    encoder = DNNEncoder(
        N_MELS, left_context=2, right_context=2, stride=4, hidden_size=16, norm="batch", dropout=0.0
    )
    features, lengths = padded_batch([37, 80, 1, 4, 5])
    assert encoder.output_lengths(lengths).tolist() == [10, 20, 1, 1, 2]
    noise = torch.randn(5, N_MELS, 120) * ~lengths_to_mask(lengths, 120).unsqueeze(1)
    more_padding = F.pad(features, (0, 40)) + noise  # padding need not be zero
    twin = copy.deepcopy(encoder)
    output, _ = encoder(features, lengths)  # training: batch statistics
    longer, _ = twin(more_padding, lengths)
    assert longer.shape[1] == 30 and (longer[:, 20:] == 0).all()
    torch.testing.assert_close(longer[:, :20], output, atol=1e-5, rtol=1e-4)
    for layer, twin_layer in zip(encoder.layers, twin.layers, strict=True):
        torch.testing.assert_close(twin_layer.norm.running_var, layer.norm.running_var)


def test_dnn_gradients_reach_every_weight():
    torch.manual_seed(0)
    encoder = DNNEncoder(N_MELS, stride=3, hidden_size=16, num_layers=3)
    features, lengths = padded_batch([31, 20, 9])
    output, _ = encoder(features, lengths)
    output.square().sum().backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"left_context": -1}, r"left_context=-1 \(expected an integer >= 0\)"),
        ({"num_layers": 0}, "num_layers=0"),
        ({"hidden_size": 0, "stride": 0}, "stride=0.*hidden_size=0"),
        (
            {"left_context": 1, "right_context": 1, "stride": 4},
            "stride=4 is larger than the window",
        ),
        ({"norm": "group"}, r"norm='group' \(expected one of \['layer', 'batch'\]\)"),
        ({"dropout": 1.0}, r"dropout=1.0 \(expected a value in \[0, 1\)\)"),
    ],
)
def test_dnn_rejects_bad_arguments(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        DNNEncoder(N_MELS, **kwargs)


def test_keyword_dnn_embedding_ignores_padding():
    torch.manual_seed(0)
    net = KeywordDNN(n_mels=N_MELS, left_context=3, right_context=3, hidden_size=16).eval()
    features, lengths = padded_batch([61, 40, 17])
    with torch.no_grad():
        batched = net(features, lengths)
        alone = net(features[2:, :, :17], lengths[2:])
    assert batched.shape == (3, 16) == (3, net.output_dim)
    torch.testing.assert_close(alone, batched[2:], atol=1e-5, rtol=1e-4)
