"""The feed-forward (DNN) acoustic model: a context window of stacked frames through fully
connected layers (Hinton et al., 2012), as a CTC encoder and, pooled, a keyword-spotting one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speechlab.nn.encoders.masking import MaskedBatchNorm, time_mask
from speechlab.nn.encoders.subsampling import conv_output_lengths

NORMS = ("layer", "batch")


class _FeedForwardLayer(nn.Module):
    """Linear -> layer or batch norm over the features -> ReLU -> dropout, on ``(B, T, C)``."""

    def __init__(self, in_features: int, out_features: int, norm: str, dropout: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=norm != "batch")
        self.norm: nn.Module = (
            MaskedBatchNorm(out_features) if norm == "batch" else nn.LayerNorm(out_features)
        )
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``hidden`` ``(B, T, C_in)``, ``mask`` ``(B, T, 1)`` (1 = valid) -> ``(B, T, C_out)``."""
        hidden = self.linear(hidden)
        if isinstance(self.norm, MaskedBatchNorm):  # statistics over the valid frames only
            hidden = self.norm(hidden.transpose(1, 2), mask.transpose(1, 2)).transpose(1, 2)
        else:
            hidden = self.norm(hidden)
        return self.dropout(self.activation(hidden)) * mask


class DNNEncoder(nn.Module):
    """Log-mel ``(B, input_dim, T)`` -> frames ``(B, T', hidden_size)`` and lengths ``(B,)``.

    The hybrid-era DNN acoustic model (Hinton et al., 2012, "Deep Neural Networks for Acoustic
    Modeling in Speech Recognition"), here under a CTC head as in the feed-forward baselines of
    the CTC and keyword-spotting literature. Output frame ``t`` sees the ``left_context`` input
    frames before input frame ``t * stride``, that frame and the ``right_context`` after it,
    stacked into one vector of ``(left_context + 1 + right_context) * input_dim`` values (a
    Kaldi "splice", frame by frame); it goes through ``num_layers`` x (Linear, norm over the
    features, ReLU, dropout). Nothing mixes frames after the splice, so the receptive field is
    the window: ``(left_context + 1 + right_context) * 10`` ms with 10 ms hops.

    Frames before the start and after the end of an utterance are zeros (the per-utterance mean
    of normalised log-mels), the padding of a batch included, so an utterance's output does not
    depend on the batch it is in; padded output frames are zero. ``stride`` keeps every
    ``stride``-th window (frame skipping, as the low-frame-rate DNN and CTC baselines do):
    ``T' = ceil(T / stride)``.

    Args:
        input_dim: mel bands of the input.
        left_context: past input frames stacked into each window (>= 0).
        right_context: future input frames stacked into each window (>= 0; 0 makes the encoder
            causal).
        stride: time reduction (>= 1, at most the window, so that no input frame goes unseen).
        hidden_size: units of every layer; ``output_dim``.
        num_layers: feed-forward layers (>= 1).
        norm: ``"layer"`` (LayerNorm over each frame's units) or ``"batch"`` (batch norm whose
            training statistics count only the valid frames).
        dropout: dropout after every activation, in ``[0, 1)``.

    Raises:
        ValueError: an argument outside the ranges above, or an unknown ``norm``.
    """

    def __init__(
        self,
        input_dim: int,
        left_context: int = 15,
        right_context: int = 15,
        stride: int = 4,
        hidden_size: int = 512,
        num_layers: int = 5,
        norm: str = "layer",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        window = left_context + 1 + right_context
        problems = []
        for name, value, least in (
            ("input_dim", input_dim, 1),
            ("left_context", left_context, 0),
            ("right_context", right_context, 0),
            ("stride", stride, 1),
            ("hidden_size", hidden_size, 1),
            ("num_layers", num_layers, 1),
        ):
            if value < least:
                problems.append(f"{name}={value} (expected an integer >= {least})")
        if stride > window:
            problems.append(
                f"stride={stride} is larger than the window of {window} frames "
                "(left_context + 1 + right_context), so some input frames would never be seen: "
                "widen the context or lower the stride"
            )
        if norm not in NORMS:
            problems.append(f"norm={norm!r} (expected one of {list(NORMS)})")
        if not 0.0 <= dropout < 1.0:
            problems.append(f"dropout={dropout} (expected a value in [0, 1))")
        if problems:
            raise ValueError("DNNEncoder: " + "; ".join(problems))
        self.left_context = left_context
        self.right_context = right_context
        self.window = window
        self.subsampling = stride
        layers = []
        previous = window * input_dim
        for _ in range(num_layers):
            layers.append(_FeedForwardLayer(previous, hidden_size, norm, dropout))
            previous = hidden_size
        self.layers = nn.ModuleList(layers)
        self.output_dim = hidden_size

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames ``(B,)`` for input frame counts ``(B,)``: ``ceil(T / stride)``."""
        padded = lengths + self.left_context + self.right_context
        return conv_output_lengths(padded, self.window, self.subsampling)

    def splice(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, F, T)`` -> stacked windows ``(B, T', window * F)``, oldest frame first."""
        features = features * time_mask(lengths, features)  # padding read as zeros
        features = F.pad(features, (self.left_context, self.right_context))
        windows = features.unfold(-1, self.window, self.subsampling)  # (B, F, T', window)
        batch, _, frames, _ = windows.shape
        return windows.permute(0, 2, 3, 1).reshape(batch, frames, -1)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.splice(features, lengths)
        lengths = self.output_lengths(lengths)
        mask = time_mask(lengths, hidden.transpose(1, 2)).transpose(1, 2)  # (B, T', 1)
        for layer in self.layers:
            hidden = layer(hidden, mask)
        return hidden, lengths
