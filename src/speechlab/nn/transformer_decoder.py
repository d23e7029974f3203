"""A Transformer decoder (Vaswani et al., 2017) with the speller's interface.

Drop-in for :class:`speechlab.nn.speller.Speller` in the attention tasks and searches: the same
token convention (id 0 is ``<sos>``/``<eos>``), :meth:`forward` for teacher forcing and
:meth:`initial_state`/:meth:`step` for greedy and beam search. Built on
``torch.nn.TransformerDecoder`` (pre-norm layers). A search step re-runs the decoder over the
whole prefix (no key/value cache): outputs are short (tens of tokens), and the step then agrees
exactly with teacher forcing.

Shapes: ``B`` utterances, ``T`` encoder frames of size ``D``, ``L`` target tokens, ``V`` tokens,
``N`` decoding rows, ``t`` tokens decoded so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from speechlab.audio.features import lengths_to_mask
from speechlab.nn.speller import SOS


@dataclass
class TransformerDecoderState:
    """``N`` rows: ``tokens`` ``(N, t)`` fed so far (``<sos>`` first), ``memory`` ``(N, T, d)``
    projected encoder frames, ``mask`` ``(N, T)`` valid frames."""

    tokens: torch.Tensor
    memory: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def select(self, indices: torch.Tensor) -> TransformerDecoderState:
        """The state of rows ``indices`` ``(M,)`` (any order, repeats allowed)."""
        return TransformerDecoderState(
            self.tokens.index_select(0, indices),
            self.memory.index_select(0, indices),
            self.mask.index_select(0, indices),
        )


def _positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """Sinusoidal position encodings ``(length, dim)``."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    scale = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * scale)
    table[:, 1::2] = torch.cos(position * scale)[:, : dim // 2]
    return table


class TransformerSpeller(nn.Module):
    """Token embeddings + sinusoidal positions -> causal self-attention and cross-attention over
    the (linearly projected) encoder frames -> logits ``(B, L + 1, V)``.

    Args:
        vocab_size: output tokens ``V`` (id 0 is ``<sos>``/``<eos>``).
        encoder_dim: encoder frame size ``D``.
        d_model: decoder width.
        num_heads: attention heads (divides ``d_model``).
        num_layers: decoder layers.
        feedforward_dim: hidden size of each layer's feed-forward block.
        dropout: in the layers and on the embeddings.
    """

    def __init__(
        self,
        vocab_size: int,
        encoder_dim: int,
        d_model: int = 256,
        num_heads: int = 4,
        num_layers: int = 2,
        feedforward_dim: int = 1024,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError("vocab_size must be at least 2 (<eos> and one token)")
        if d_model % num_heads:
            raise ValueError(f"d_model={d_model} must be divisible by num_heads={num_heads}")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.memory_projection = nn.Linear(encoder_dim, d_model)
        layer = nn.TransformerDecoderLayer(
            d_model, num_heads, feedforward_dim, dropout, batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.classifier = nn.Linear(d_model, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def _decode(
        self, tokens: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Inputs ``(N, t)`` -> logits ``(N, t, V)``, each position seeing only its prefix."""
        steps = tokens.shape[1]
        inputs = self.embedding(tokens) * math.sqrt(self.d_model)
        inputs = self.dropout(inputs + _positions(steps, self.d_model, tokens.device))
        causal = torch.triu(
            torch.ones(steps, steps, dtype=torch.bool, device=tokens.device), diagonal=1
        )
        hidden = self.decoder(
            inputs, memory, tgt_mask=causal, memory_key_padding_mask=~mask, tgt_is_causal=True
        )
        return self.classifier(hidden)

    def initial_state(
        self, encoded: torch.Tensor, encoded_lengths: torch.Tensor
    ) -> TransformerDecoderState:
        """The state before the first step, for ``encoded`` ``(B, T, D)``, lengths ``(B,)``."""
        mask = lengths_to_mask(encoded_lengths, encoded.shape[1])
        tokens = encoded.new_zeros(encoded.shape[0], 0, dtype=torch.long)
        return TransformerDecoderState(tokens, self.memory_projection(encoded), mask)

    def step(
        self, state: TransformerDecoderState, previous_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, TransformerDecoderState, None]:
        """Search step: previous tokens ``(N,)`` -> float32 log-probabilities ``(N, V)`` of the
        next token, the new state, and no attention weights (the layers do not expose them)."""
        tokens = torch.cat([state.tokens, previous_tokens.long().unsqueeze(1)], 1)
        logits = self._decode(tokens, state.memory, state.mask)[:, -1]
        new_state = TransformerDecoderState(tokens, state.memory, state.mask)
        return logits.float().log_softmax(-1), new_state, None

    def forward(
        self,
        encoded: torch.Tensor,
        encoded_lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
        sampling_rate: float = 0.0,
    ) -> tuple[torch.Tensor, None]:
        """Teacher-forced logits ``(B, L + 1, V)`` over ``targets + <eos>`` (``targets``
        ``(B, L)`` padded, any padding value). ``sampling_rate`` is accepted for the speller's
        interface and ignored (all positions are decoded in parallel). No attention weights."""
        batch, steps = targets.shape
        valid = lengths_to_mask(target_lengths, steps)
        truth = targets.long().masked_fill(~valid, SOS)
        inputs = torch.cat([truth.new_full((batch, 1), SOS), truth], 1)
        memory = self.memory_projection(encoded)
        mask = lengths_to_mask(encoded_lengths, encoded.shape[1])
        return self._decode(inputs, memory, mask), None


__all__ = ["TransformerDecoderState", "TransformerSpeller"]
