"""The SDPA Conformer: torchaudio's weights give torchaudio's outputs, masks built once per batch."""

from __future__ import annotations

import pytest
import torch
import torchaudio
from torch import nn

from speechlab.audio.features import lengths_to_mask
from speechlab.nn.encoders import ConformerEncoder
from speechlab.nn.encoders.conformer_layers import Conformer
from speechlab.nn.encoders.masking import attention_bias
from tests.unit.conftest import padded

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = dict(input_dim=32, num_heads=4, ffn_dim=64, num_layers=2, depthwise_conv_kernel_size=7)


def torchaudio_reference(lengths: torch.Tensor) -> torchaudio.models.Conformer:
    """torchaudio's Conformer with the padded frames zeroed before each depthwise convolution
    (what the encoder did before, through forward pre-hooks)."""
    reference = torchaudio.models.Conformer(**SIZES)

    def zero_padding(module: nn.Module, args: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        valid = lengths_to_mask(lengths, args[0].shape[-1]).unsqueeze(1)
        return (args[0] * valid,)

    for layer in reference.conformer_layers:
        layer.conv_module.sequential[2].register_forward_pre_hook(zero_padding)
    return reference


def test_torchaudio_weights_load_and_give_the_same_outputs():
    frames, lengths = padded([23, 9, 16], SIZES["input_dim"])
    torch.manual_seed(0)
    reference = torchaudio_reference(lengths)
    torch.manual_seed(0)
    ours = Conformer(**SIZES)
    # Same names, same shapes, and the same initial weights for the same seed.
    theirs = reference.state_dict()
    assert list(ours.state_dict()) == list(theirs)
    for name, value in ours.state_dict().items():
        torch.testing.assert_close(value, theirs[name], rtol=0, atol=0, msg=name)
    with torch.no_grad():  # trained-looking weights and batch-norm statistics
        for name, value in reference.state_dict().items():
            if value.is_floating_point():
                value.add_(0.1 * torch.randn_like(value).abs() if "var" in name else 0.1)
    ours.load_state_dict(reference.state_dict())  # strict: every key matches
    ours.eval(), reference.eval()
    with torch.no_grad():
        expected, expected_lengths = reference(frames, lengths)
        got, got_lengths = ours(frames, lengths)
    assert got_lengths.tolist() == expected_lengths.tolist()
    valid = lengths_to_mask(lengths, frames.shape[1])
    torch.testing.assert_close(got[valid], expected[valid], atol=1e-5, rtol=1e-5)


def test_encoder_keeps_the_torchaudio_parameter_names():
    encoder = ConformerEncoder(16, d_model=32, num_heads=4, ffn_dim=64, num_layers=2)
    torchaudio_names = torchaudio.models.Conformer(32, 4, 64, 2, 15).state_dict()
    conformer_names = [k for k in encoder.state_dict() if k.startswith("conformer.")]
    assert conformer_names == [f"conformer.{k}" for k in torchaudio_names]


def test_attention_bias_is_additive_aligned_and_in_the_query_dtype():
    padding = ~lengths_to_mask(torch.tensor([5, 2, 0]), 5)
    bias = attention_bias(padding, torch.bfloat16)
    assert bias.shape == (3, 1, 1, 5) and bias.dtype == torch.bfloat16
    assert all(stride % 16 == 0 for stride in bias.stride()[:-1])  # fused kernels take it as is
    lowest = torch.finfo(torch.bfloat16).min
    assert (
        bias[0].eq(0).all() and bias[1, ..., :2].eq(0).all() and bias[1, ..., 2:].eq(lowest).all()
    )
    assert bias[2].eq(lowest).all()  # no valid key: finite, so attention gives no NaN
    with pytest.raises(ValueError, match="bool"):
        attention_bias(padding.float(), torch.float32)


def test_bf16_autocast_forward_and_backward_stay_finite():
    torch.manual_seed(0)
    conformer = Conformer(**SIZES)
    frames, lengths = padded([12, 0, 7], SIZES["input_dim"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, _ = conformer(frames, lengths)
    assert torch.isfinite(output).all()  # a bfloat16 bias, and no NaN from the empty utterance
    output.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in conformer.parameters() if p.grad is not None)


def test_invalid_sizes_are_rejected():
    with pytest.raises(ValueError, match="must divide"):
        Conformer(30, 4, 64, 1, 7)
    with pytest.raises(ValueError, match="odd"):
        Conformer(32, 4, 64, 1, 8)
