"""The one CTC loss the recognizers share: reductions, and float32 under autocast."""

import pytest
import torch
import torch.nn.functional as F

from speechlab.nn.ctc_loss import ctc_loss


def example() -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    log_probs = torch.randn(3, 12, 6).log_softmax(-1)  # (B, T, V)
    lengths = torch.tensor([12, 9, 7])
    targets = torch.tensor([[1, 2, 3, 4], [2, 2, 5, 0], [3, 0, 0, 0]])
    target_lengths = torch.tensor([4, 3, 1])
    return log_probs, lengths, targets, target_lengths


def test_reductions_per_token_and_per_utterance():
    log_probs, lengths, targets, target_lengths = example()
    summed = F.ctc_loss(
        log_probs.transpose(0, 1), targets, lengths, target_lengths, reduction="none"
    )  # (B,): each utterance's loss summed over its labels
    per_token = ctc_loss(log_probs, lengths, targets, target_lengths, 0, "mean")
    per_utterance = ctc_loss(log_probs, lengths, targets, target_lengths, 0, "utterance")
    torch.testing.assert_close(per_token, (summed / target_lengths).mean())
    torch.testing.assert_close(per_utterance, summed.mean())
    assert per_utterance > per_token  # targets of 1-4 labels: the sum outweighs the mean


def test_float32_under_bf16_autocast_and_zero_for_impossible_alignments():
    log_probs, lengths, targets, target_lengths = example()
    reference = ctc_loss(log_probs, lengths, targets, target_lengths, 0, "utterance")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ctc_loss(log_probs.bfloat16(), lengths, targets, target_lengths, 0, "utterance")
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference, atol=0.2, rtol=0.02)  # bf16 inputs, fp32 sums
    too_short = torch.tensor([2, 9, 7])  # 4 labels cannot fit in 2 frames
    impossible = ctc_loss(log_probs, too_short, targets, target_lengths, 0, "utterance")
    assert torch.isfinite(impossible)


def test_unknown_reduction_is_refused():
    with pytest.raises(ValueError, match="reduction='sum'"):
        ctc_loss(*example(), 0, "sum")  # type: ignore[arg-type]
