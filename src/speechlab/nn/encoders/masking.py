"""Padding helpers shared by the encoders: zeroing padded frames, batch norm over valid frames,
the attention mask of padded keys."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speechlab.audio.features import lengths_to_mask


def time_mask(lengths: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """``(B,)`` lengths -> a mask broadcastable to channels-first ``hidden`` ``(B, C, ..., T)``.

    The mask is 1.0 on valid frames and 0.0 on padded ones, in ``hidden``'s dtype.
    """
    mask = lengths_to_mask(lengths, hidden.shape[-1]).to(hidden.dtype)
    return mask.view(hidden.shape[0], *([1] * (hidden.dim() - 2)), hidden.shape[-1])


# Rows of an attention bias start at multiples of this many elements: before the memory-efficient
# CUDA kernel, SDPA pads (copies) a bias whose row strides are not multiples of 8 elements, on
# every call (``preprocess_mask`` in torch's ``attention.cpp``).
_BIAS_ALIGNMENT = 16


def attention_bias(padding: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool key padding ``(B, T)`` (True = padded) -> the additive mask ``(B, 1, 1, T)`` that
    :func:`torch.nn.functional.scaled_dot_product_attention` takes as ``attn_mask``.

    0 on valid keys, ``torch.finfo(dtype).min`` on padded ones (finite, so an utterance with no
    valid frame gives no NaN), in ``dtype`` (the dtype of the queries: a bool mask, or one of
    another dtype, is converted by SDPA on every call). It broadcasts to ``(B, heads, T, T)``, and
    its storage is padded to a multiple of 16 keys so the fused kernels use it without a copy.
    Build it once per batch and hand it to every layer.

    Raises:
        ValueError: ``padding`` is not a bool ``(B, T)`` tensor.
    """
    if padding.dtype != torch.bool or padding.dim() != 2:
        raise ValueError(
            f"padding must be a bool (B, T) mask, got {padding.dtype} of shape "
            f"{tuple(padding.shape)}"
        )
    batch, frames = padding.shape
    stored = -(-frames // _BIAS_ALIGNMENT) * _BIAS_ALIGNMENT
    bias = torch.zeros(batch, 1, 1, stored, dtype=dtype, device=padding.device)
    bias[..., :frames].masked_fill_(padding.view(batch, 1, 1, frames), torch.finfo(dtype).min)
    return bias[..., :frames]


class MaskedBatchNorm(nn.BatchNorm1d):
    """Batch norm whose training statistics count only valid (unpadded) frames.

    Takes a channels-first ``(B, C, T)`` or ``(B, C, F, T)`` tensor and a mask broadcastable to it
    (see :func:`time_mask`), so neither the normalisation in training nor the running estimates
    depend on how much padding a batch carries. In eval it is plain batch norm over the running
    estimates. Parameters and buffers are those of :class:`torch.nn.BatchNorm1d`.
    """

    def forward(  # type: ignore[override]
        self, hidden: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``hidden`` ``(B, C, ...)``, ``mask`` broadcastable to it (1 = valid) -> same shape."""
        if not self.training and self.track_running_stats:
            return F.batch_norm(
                hidden, self.running_mean, self.running_var, self.weight, self.bias, eps=self.eps
            )
        dtype = hidden.dtype
        hidden = hidden.float()  # statistics in float32, also under autocast
        mask = torch.ones_like(hidden[:1, :1]) if mask is None else mask.float()
        dims = [0, *range(2, hidden.dim())]
        count = mask.expand(hidden.shape[0], 1, *hidden.shape[2:]).sum().clamp(min=1.0)
        mean = (hidden * mask).sum(dims) / count
        shape = (1, -1, *([1] * (hidden.dim() - 2)))
        centred = hidden - mean.view(shape)
        variance = (centred.square() * mask).sum(dims) / count
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), variance.detach(), count.detach())
        normalized = centred * torch.rsqrt(variance.view(shape) + self.eps)
        if self.affine:
            normalized = normalized * self.weight.view(shape) + self.bias.view(shape)
        return normalized.to(dtype)

    @torch.no_grad()
    def _update_running_stats(
        self, mean: torch.Tensor, variance: torch.Tensor, count: torch.Tensor
    ) -> None:
        self.num_batches_tracked.add_(1)
        momentum = self.momentum
        if momentum is None:  # cumulative moving average, as in torch's batch norm
            momentum = 1.0 / float(self.num_batches_tracked)
        unbiased = variance * count / (count - 1).clamp(min=1.0)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
