"""Attention over encoder frames for attention-based decoders (LAS): additive and location-aware.

Both modules share one call signature::

    context, weights = attention(query, keys, processed_keys, mask, previous_weights)

``query`` ``(B, Dq)`` is the decoder state, ``keys`` ``(B, T, Dk)`` the encoder frames, ``mask``
``(B, T)`` True on valid frames, ``previous_weights`` ``(B, T)`` the last step's weights.
``processed_keys`` ``(B, T, A)`` is :meth:`process_keys` of ``keys``: it depends on the utterance
only, so decoders compute it once and pass it at every step (``None`` recomputes it). The
weights ``(B, T)`` are a softmax over valid frames (exactly zero on padding) and the context
``(B, Dk)`` is the weighted sum of the keys.
"""

from __future__ import annotations

import torch
from torch import nn


def masked_softmax(energies: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax of ``(B, T)`` energies over the frames where ``mask`` is True, zero elsewhere.

    A row with no valid frame gets all-zero weights (and so a zero context).
    """
    energies = energies.float().masked_fill(~mask, torch.finfo(torch.float32).min)
    return torch.softmax(energies, dim=-1) * mask


class AdditiveAttention(nn.Module):
    """Content-based additive attention (Bahdanau et al., 2015).

    ``e_t = v . tanh(W q + V k_t + b)``. ``previous_weights`` is accepted and ignored, so that it
    swaps with :class:`LocationAwareAttention`.

    Args:
        query_dim: decoder state size ``Dq``.
        key_dim: encoder frame size ``Dk``.
        attention_dim: hidden size ``A`` of the energy MLP.
    """

    def __init__(self, query_dim: int, key_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.query_projection = nn.Linear(query_dim, attention_dim, bias=False)
        self.key_projection = nn.Linear(key_dim, attention_dim)
        self.energy = nn.Linear(attention_dim, 1, bias=False)

    def process_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """``V k_t + b`` for every frame: ``(B, T, Dk)`` -> ``(B, T, A)``, once per utterance."""
        return self.key_projection(keys)

    def _hidden(
        self, query: torch.Tensor, processed_keys: torch.Tensor, previous_weights: torch.Tensor
    ) -> torch.Tensor:
        """Pre-activation ``(B, T, A)`` of the energy MLP."""
        return processed_keys + self.query_projection(query).unsqueeze(1)

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        processed_keys: torch.Tensor | None,
        mask: torch.Tensor,
        previous_weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> context ``(B, Dk)``, weights ``(B, T)``; see the module docstring."""
        if processed_keys is None:
            processed_keys = self.process_keys(keys)
        hidden = self._hidden(query, processed_keys, previous_weights)
        energies = self.energy(torch.tanh(hidden)).squeeze(-1)  # (B, T)
        weights = masked_softmax(energies, mask)
        context = torch.bmm(weights.unsqueeze(1).to(keys.dtype), keys).squeeze(1)
        return context, weights


class LocationAwareAttention(AdditiveAttention):
    """Location-aware attention (Chorowski et al., 2015).

    ``e_t = v . tanh(W q + V k_t + U f_t + b)`` with location features ``f = F * a_prev``: a 1-D
    convolution (``conv_channels`` filters of width ``conv_kernel``, odd) over the previous
    weights. Knowing where it attended last step helps the decoder move forward monotonically and
    not skip or repeat parts of the utterance. Padded frames carry zero previous weight, so the
    features of valid frames do not depend on the padding.

    Args:
        query_dim: decoder state size ``Dq``.
        key_dim: encoder frame size ``Dk``.
        attention_dim: hidden size ``A`` of the energy MLP.
        conv_channels: location filters.
        conv_kernel: width of the location filters, in encoder frames.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        attention_dim: int,
        conv_channels: int = 10,
        conv_kernel: int = 31,
    ) -> None:
        super().__init__(query_dim, key_dim, attention_dim)
        if conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd (centred filters), got {conv_kernel}")
        self.location_conv = nn.Conv1d(
            1, conv_channels, conv_kernel, padding=conv_kernel // 2, bias=False
        )
        self.location_projection = nn.Linear(conv_channels, attention_dim, bias=False)

    def _hidden(
        self, query: torch.Tensor, processed_keys: torch.Tensor, previous_weights: torch.Tensor
    ) -> torch.Tensor:
        weights = previous_weights.to(processed_keys.dtype).unsqueeze(1)  # (B, 1, T)
        location = self.location_conv(weights).transpose(1, 2)  # (B, T, C)
        return super()._hidden(query, processed_keys, previous_weights) + (
            self.location_projection(location)
        )


def build_attention(
    kind: str, query_dim: int, key_dim: int, attention_dim: int
) -> AdditiveAttention:
    """``"location"`` -> :class:`LocationAwareAttention`, ``"additive"`` -> :class:`AdditiveAttention`."""
    if kind == "location":
        return LocationAwareAttention(query_dim, key_dim, attention_dim)
    if kind == "additive":
        return AdditiveAttention(query_dim, key_dim, attention_dim)
    raise ValueError(f"attention must be 'location' or 'additive', got {kind!r}")
