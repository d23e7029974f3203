"""Conformer layers (Gulati et al., 2020) on ``F.scaled_dot_product_attention``, batch first.

The layer of :class:`torchaudio.models.Conformer` (half-step feed-forward, multi-head
self-attention, convolution module, half-step feed-forward, final layer norm), written so that a
training step does little work on the host:

- the padding masks are built once per batch by :class:`Conformer`, not once per layer: an
  additive attention bias ``(B, 1, 1, T)`` in the dtype the attention computes in, stored with
  its rows aligned for the fused (memory-efficient) kernels, and a bool mask ``(B, 1, T)`` that
  zeroes the padded frames before each depthwise convolution (no hooks, no dtype casts);
- attention calls :func:`torch.nn.functional.scaled_dot_product_attention` directly on
  ``(B, heads, T, head_dim)`` views, instead of :class:`torch.nn.MultiheadAttention` with a key
  padding mask it converts in every layer;
- frames stay ``(B, T, D)`` throughout (no ``(T, B, D)`` transposes).

Parameter names and shapes are torchaudio's (``conformer_layers.<i>.ffn1.sequential.1.weight``,
``self_attn.in_proj_weight``, ``conv_module.sequential.2.weight``, ...): a torchaudio
``Conformer``'s ``state_dict`` loads into :class:`Conformer` as it is, and gives the same outputs
in eval when its depthwise convolutions see zeroed padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from speechlab.audio.features import lengths_to_mask
from speechlab.nn.encoders.masking import attention_bias

__all__ = ["Conformer", "ConformerLayer"]


def _feed_forward(d_model: int, ffn_dim: int, dropout: float) -> nn.Sequential:
    """Pre-norm position-wise feed-forward ``(*, d_model) -> (*, d_model)`` with SiLU (Swish)."""
    return nn.Sequential(
        nn.LayerNorm(d_model),
        nn.Linear(d_model, ffn_dim),
        nn.SiLU(),
        nn.Dropout(dropout),
        nn.Linear(ffn_dim, d_model),
        nn.Dropout(dropout),
    )


class _FeedForwardModule(nn.Module):
    """Holds the feed-forward as ``sequential`` (torchaudio's parameter names)."""

    def __init__(self, d_model: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.sequential = _feed_forward(d_model, ffn_dim, dropout)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.sequential(frames)


class _SelfAttention(nn.Module):
    """Multi-head self-attention over ``(B, T, d_model)`` through fused SDPA kernels.

    The parameters are those of :class:`torch.nn.MultiheadAttention` (``in_proj_weight``
    ``(3 d_model, d_model)``, ``in_proj_bias``, ``out_proj``), initialised as it does.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, frames: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``frames`` ``(B, T, d_model)``, additive ``bias`` broadcastable to ``(B, heads, T, T)``."""
        batch, length, width = frames.shape
        qkv = F.linear(frames, self.in_proj_weight, self.in_proj_bias)
        qkv = qkv.view(batch, length, 3, self.num_heads, width // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, head_dim)
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, width))


class _ConvolutionModule(nn.Module):
    """Layer norm, pointwise conv + GLU, depthwise conv, batch norm, SiLU, pointwise conv.

    ``sequential`` keeps torchaudio's order and names; padded frames are zeroed at the input of
    the depthwise convolution (index 2), so no padding leaks into valid frames.
    """

    _DEPTHWISE = 2  # index of the depthwise convolution in ``sequential``

    def __init__(self, d_model: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(d_model)
        self.sequential = nn.Sequential(
            nn.Conv1d(d_model, 2 * d_model, 1),
            nn.GLU(dim=1),
            nn.Conv1d(d_model, d_model, kernel_size, padding=kernel_size // 2, groups=d_model),
            nn.BatchNorm1d(d_model),
            nn.SiLU(),
            nn.Conv1d(d_model, d_model, 1),
            nn.Dropout(dropout),
        )

    def forward(self, frames: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """``frames`` ``(B, T, d_model)``, bool ``padding`` ``(B, 1, T)`` (True = padded)."""
        hidden = self.layer_norm(frames).transpose(1, 2)  # (B, d_model, T)
        for index, module in enumerate(self.sequential):
            if index == self._DEPTHWISE:
                hidden = hidden.masked_fill(padding, 0.0)
            hidden = module(hidden)
        return hidden.transpose(1, 2)


class ConformerLayer(nn.Module):
    """One Conformer block: ``x + FFN/2``, ``+ MHSA``, ``+ Conv``, ``+ FFN/2``, layer norm.

    Gulati et al., "Conformer: Convolution-augmented Transformer for Speech Recognition" (2020),
    as :class:`torchaudio.models.Conformer` builds it (absolute positions only: no relative
    positional encoding), with its parameter names.

    Args:
        d_model: model width.
        ffn_dim: hidden units of the two feed-forward modules.
        num_heads: attention heads (must divide ``d_model``).
        depthwise_conv_kernel_size: odd kernel of the depthwise convolution, in frames.
        dropout: dropout in every module and on the attention weights.
    """

    def __init__(
        self,
        d_model: int,
        ffn_dim: int,
        num_heads: int,
        depthwise_conv_kernel_size: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.ffn1 = _FeedForwardModule(d_model, ffn_dim, dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d_model)
        self.self_attn = _SelfAttention(d_model, num_heads, dropout)
        self.self_attn_dropout = nn.Dropout(dropout)
        self.conv_module = _ConvolutionModule(d_model, depthwise_conv_kernel_size, dropout)
        self.ffn2 = _FeedForwardModule(d_model, ffn_dim, dropout)
        self.final_layer_norm = nn.LayerNorm(d_model)

    def forward(
        self, frames: torch.Tensor, bias: torch.Tensor, padding: torch.Tensor
    ) -> torch.Tensor:
        """``frames`` ``(B, T, d_model)``; ``bias``: the additive attention mask
        ``(B, 1, 1, T)`` (:func:`~speechlab.nn.encoders.masking.attention_bias`); ``padding``:
        bool ``(B, 1, T)``, True on padded frames. Returns ``(B, T, d_model)``."""
        frames = frames + 0.5 * self.ffn1(frames)
        attended = self.self_attn(self.self_attn_layer_norm(frames), bias)
        frames = frames + self.self_attn_dropout(attended)
        frames = frames + self.conv_module(frames, padding)
        frames = frames + 0.5 * self.ffn2(frames)
        return self.final_layer_norm(frames)


def _attention_dtype(frames: torch.Tensor) -> torch.dtype:
    """The dtype attention computes in: autocast's where it is on, else that of ``frames``."""
    device = frames.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return frames.dtype


class Conformer(nn.Module):
    """A stack of :class:`ConformerLayer`: frames ``(B, T, d_model)`` and lengths ``(B,)`` ->
    frames ``(B, T, d_model)`` and the same lengths.

    The drop-in for :class:`torchaudio.models.Conformer` (same arguments, same ``state_dict``
    keys), batch first, with both padding masks built once per call. Outputs on padded frames
    are not zeroed (the encoder does that).

    Args:
        input_dim: model width ``d_model``.
        num_heads: attention heads (must divide ``input_dim``).
        ffn_dim: hidden units of the feed-forward modules.
        num_layers: Conformer layers.
        depthwise_conv_kernel_size: odd kernel of the convolution modules, in frames.
        dropout: dropout inside the layers.

    Raises:
        ValueError: ``num_heads`` does not divide ``input_dim``, or the kernel size is even.
    """

    def __init__(
        self,
        input_dim: int,
        num_heads: int,
        ffn_dim: int,
        num_layers: int,
        depthwise_conv_kernel_size: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if input_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide d_model={input_dim}")
        if depthwise_conv_kernel_size % 2 == 0:
            raise ValueError(
                f"depthwise_conv_kernel_size must be odd ('same' padding), "
                f"got {depthwise_conv_kernel_size}"
            )
        self.conformer_layers = nn.ModuleList(
            ConformerLayer(input_dim, ffn_dim, num_heads, depthwise_conv_kernel_size, dropout)
            for _ in range(num_layers)
        )

    def forward(
        self, frames: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        padding = ~lengths_to_mask(lengths, frames.shape[1])  # (B, T), True on padded frames
        bias = attention_bias(padding, _attention_dtype(frames))  # (B, 1, 1, T)
        conv_padding = padding.unsqueeze(1)  # (B, 1, T)
        for layer in self.conformer_layers:
            frames = layer(frames, bias, conv_padding)
        return frames, lengths
