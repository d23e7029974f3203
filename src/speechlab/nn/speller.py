"""The attention-based LSTM decoder ("speller") of Listen, Attend and Spell (Chan et al., 2016).

Token convention: the speller's output vocabulary is the tokenizer's, and id 0 -- the CTC blank,
which an attention decoder never has to emit -- doubles as ``<sos>`` (the first input) and
``<eos>`` (the last output). So one vocabulary of ``V`` ids serves the CTC head and the speller
of a joint CTC-attention model, and the CTC prefix scorer's "end" event needs no extra id.

Shapes: ``B`` utterances, ``T`` encoder frames of size ``D``, ``L`` target tokens (padded),
``V`` tokens, ``N`` decoding rows (utterances x beams in a search).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from speechlab.audio.features import lengths_to_mask
from speechlab.nn.attention import build_attention

EOS = 0  # = SOS = the CTC blank
SOS = EOS


@dataclass
class SpellerState:
    """Decoder state of ``N`` rows after a step, with the encoder memory each row attends to.

    ``hidden``, ``cell``: ``(num_layers, N, H)`` LSTM states; ``context``: ``(N, D)`` last
    context; ``weights``: ``(N, T)`` last attention weights; ``keys``: ``(N, T, D)`` encoder
    frames; ``processed_keys``: ``(N, T, A)`` their attention projection; ``mask``: ``(N, T)``
    valid frames. :meth:`select` picks/reorders/repeats rows (beam search).
    """

    hidden: torch.Tensor
    cell: torch.Tensor
    context: torch.Tensor
    weights: torch.Tensor
    keys: torch.Tensor
    processed_keys: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return self.context.shape[0]

    def select(self, indices: torch.Tensor) -> SpellerState:
        """The state of rows ``indices`` ``(M,)`` (any order, repeats allowed) -> ``M`` rows."""
        return SpellerState(
            hidden=self.hidden.index_select(1, indices),
            cell=self.cell.index_select(1, indices),
            context=self.context.index_select(0, indices),
            weights=self.weights.index_select(0, indices),
            keys=self.keys.index_select(0, indices),
            processed_keys=self.processed_keys.index_select(0, indices),
            mask=self.mask.index_select(0, indices),
        )


def append_eos(
    targets: torch.Tensor, lengths: torch.Tensor, eos: int = EOS, pad: int = -100
) -> torch.Tensor:
    """``(B, L)`` padded targets -> ``(B, L + 1)`` targets with ``eos`` after each, ``pad`` after.

    The speller predicts this sequence; its lengths are ``lengths + 1``.
    """
    batch, steps = targets.shape
    out = torch.full((batch, steps + 1), pad, dtype=torch.long, device=targets.device)
    valid = lengths_to_mask(lengths, steps)
    out[:, :steps] = targets.masked_fill(~valid, pad)
    out.scatter_(1, lengths.long().unsqueeze(1), eos)
    return out


def label_smoothed_nll(
    logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Mean over valid tokens of the label-smoothed negative log-likelihood.

    ``logits`` ``(B, L', V)``, ``targets`` ``(B, L')`` (e.g. :func:`append_eos`), ``lengths``
    ``(B,)`` valid tokens per row (eos included); positions past them are ignored, whatever they
    hold. The smoothed target puts ``1 - smoothing`` on the label and spreads ``smoothing``
    uniformly over all ``V`` tokens, as ``F.cross_entropy(label_smoothing=...)`` does.
    """
    log_probs = logits.float().log_softmax(-1)
    mask = lengths_to_mask(lengths, targets.shape[1])
    safe = targets.masked_fill(~mask, 0).unsqueeze(-1)
    nll = -log_probs.gather(-1, safe).squeeze(-1)  # (B, L')
    if smoothing:
        nll = (1.0 - smoothing) * nll - smoothing * log_probs.mean(-1)
    return (nll * mask).sum() / mask.sum().clamp(min=1)


class Speller(nn.Module):
    """Attention LSTM decoder: encoder frames ``(B, T, D)`` -> token logits ``(B, L + 1, V)``.

    Each step reads the embedding of the previous token and the previous context vector,
    advances ``num_layers`` LSTM cells, attends over the encoder frames with the top cell's
    output as query, and predicts the next token from ``[state; context]`` through a ``tanh``
    layer and a linear classifier. Training (:meth:`forward`) and search (:meth:`step`) share the
    same step, so scores agree exactly. The first step starts from zero states, a zero context
    and uniform attention over the valid frames.

    Args:
        vocab_size: output tokens ``V``; id 0 is ``<sos>``/``<eos>`` (see the module docstring).
        encoder_dim: encoder frame size ``D``.
        embedding_dim: token embedding size.
        hidden_size: LSTM units ``H`` per layer (also the width of the output layer).
        num_layers: stacked LSTM cells.
        attention: ``"location"`` (Chorowski et al.) or ``"additive"`` (Bahdanau et al.).
        attention_dim: hidden size of the attention energy MLP.
        dropout: on the embeddings, between LSTM layers and before the classifier.
    """

    def __init__(
        self,
        vocab_size: int,
        encoder_dim: int,
        embedding_dim: int = 128,
        hidden_size: int = 256,
        num_layers: int = 1,
        attention: str = "location",
        attention_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError("vocab_size must be at least 2 (<eos> and one token)")
        if num_layers < 1:
            raise ValueError("num_layers must be at least 1")
        self.vocab_size = vocab_size
        self.encoder_dim = encoder_dim
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.cells = nn.ModuleList(
            nn.LSTMCell(embedding_dim + encoder_dim if layer == 0 else hidden_size, hidden_size)
            for layer in range(num_layers)
        )
        self.attention = build_attention(attention, hidden_size, encoder_dim, attention_dim)
        self.projection = nn.Linear(hidden_size + encoder_dim, hidden_size)
        self.classifier = nn.Linear(hidden_size, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def initial_state(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor) -> SpellerState:
        """The state before the first step, for ``encoded`` ``(B, T, D)``, lengths ``(B,)``."""
        batch, frames, _ = encoded.shape
        mask = lengths_to_mask(encoded_lengths, frames)
        zeros = encoded.new_zeros(self.num_layers, batch, self.hidden_size)
        uniform = mask / mask.sum(-1, keepdim=True).clamp(min=1)
        return SpellerState(
            hidden=zeros,
            cell=zeros,
            context=encoded.new_zeros(batch, self.encoder_dim),
            weights=uniform.to(encoded.dtype),
            keys=encoded,
            processed_keys=self.attention.process_keys(encoded),
            mask=mask,
        )

    def _advance(
        self, state: SpellerState, previous_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, SpellerState]:
        """One step: tokens ``(N,)`` -> logits ``(N, V)`` and the new state."""
        inputs = torch.cat([self.dropout(self.embedding(previous_tokens)), state.context], -1)
        hidden, cell = [], []
        for layer, lstm in enumerate(self.cells):
            h, c = lstm(inputs, (state.hidden[layer], state.cell[layer]))
            hidden.append(h)
            cell.append(c)
            inputs = self.dropout(h)
        context, weights = self.attention(
            hidden[-1], state.keys, state.processed_keys, state.mask, state.weights
        )
        output = torch.tanh(self.projection(torch.cat([hidden[-1], context], -1)))
        logits = self.classifier(self.dropout(output))
        new_state = replace(
            state,
            hidden=torch.stack(hidden),
            cell=torch.stack(cell),
            context=context,
            weights=weights,
        )
        return logits, new_state

    def step(
        self, state: SpellerState, previous_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, SpellerState, torch.Tensor]:
        """Search step: previous tokens ``(N,)`` (``<sos>`` = 0 first) -> log-probabilities
        ``(N, V)`` (float32) of the next token, the new state, attention weights ``(N, T)``."""
        logits, state = self._advance(state, previous_tokens)
        return logits.float().log_softmax(-1), state, state.weights

    def forward(
        self,
        encoded: torch.Tensor,
        encoded_lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
        sampling_rate: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced decoding of ``targets + <eos>``.

        ``encoded`` ``(B, T, D)``, ``encoded_lengths`` ``(B,)``, ``targets`` ``(B, L)`` padded (any
        padding value), ``target_lengths`` ``(B,)``. With probability ``sampling_rate`` (per
        utterance and step) the input is the model's own previous prediction (its argmax) instead
        of the ground truth: scheduled sampling. Returns logits ``(B, L + 1, V)`` whose step ``i``
        predicts ``append_eos(targets)[:, i]``, and attention weights ``(B, L + 1, T)``.
        """
        batch, steps = targets.shape
        valid = lengths_to_mask(target_lengths, steps)
        truth = targets.long().masked_fill(~valid, SOS)
        state = self.initial_state(encoded, encoded_lengths)
        previous = truth.new_full((batch,), SOS)
        logits, weights = [], []
        for index in range(steps + 1):
            if index:
                previous = truth[:, index - 1]
                if sampling_rate > 0.0:
                    sampled = torch.rand(batch, device=truth.device) < sampling_rate
                    previous = torch.where(sampled, logits[-1].detach().argmax(-1), previous)
            step_logits, state = self._advance(state, previous)
            logits.append(step_logits)
            weights.append(state.weights)
        return torch.stack(logits, 1), torch.stack(weights, 1)


__all__ = [
    "EOS",
    "SOS",
    "Speller",
    "SpellerState",
    "append_eos",
    "label_smoothed_nll",
]
