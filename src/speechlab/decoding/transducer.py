"""Transducer (RNN-T) search: batched greedy search and torchaudio's beam search.

Both take the encoder's frames and the transducer's prediction network and joiner
(:mod:`speechlab.nn.transducer`); search lives here, apart from the model.

- :func:`greedy_search`: time-synchronous, batched over utterances; at each frame the best
  token is emitted while it is not blank, at most ``max_symbols_per_frame`` times, then the
  search moves to the next frame.
- :func:`beam_search`: :class:`torchaudio.models.RNNTBeamSearch` (the beam search of Graves,
  2012, as torchaudio implements it: hypotheses ranked by log-probability per token, at most
  ``max_symbols_per_frame`` expansions per frame), one utterance at a time, through an adapter
  that rotates the vocabulary so that our blank (id 0) is the last index, where torchaudio
  expects it.
"""

from __future__ import annotations

import torch
from torch import nn
from torchaudio.models import RNNTBeamSearch

from speechlab.nn.transducer import Joiner, LSTMState, PredictionNetwork

__all__ = ["beam_search", "greedy_search"]


@torch.no_grad()
def greedy_search(
    prediction: PredictionNetwork,
    joiner: Joiner,
    encoded: torch.Tensor,
    encoded_lengths: torch.Tensor,
    max_symbols_per_frame: int,
) -> list[list[int]]:
    """Token ids (no blank) of the ``B`` utterances of ``encoded`` ``(B, T, D)`` with
    ``encoded_lengths`` ``(B,)``.

    Raises:
        ValueError: ``max_symbols_per_frame`` is below 1.
    """
    if max_symbols_per_frame < 1:
        raise ValueError(f"max_symbols_per_frame must be at least 1, got {max_symbols_per_frame}")
    batch = encoded.shape[0]
    blank = prediction.blank
    tokens = torch.full((batch,), blank, dtype=torch.long, device=encoded.device)
    output, state = prediction.step(tokens)
    hypotheses: list[list[int]] = [[] for _ in range(batch)]
    lengths = encoded_lengths.to(encoded.device)
    for t in range(int(lengths.max()) if batch else 0):
        frame = encoded[:, t : t + 1]  # (B, 1, D)
        may_emit = t < lengths
        for _ in range(max_symbols_per_frame):
            best = joiner(frame, output[:, None])[:, 0, 0].argmax(dim=-1)  # (B,)
            emit = may_emit & (best != blank)
            if not bool(emit.any()):
                break
            new_output, new_state = prediction.step(best, state)
            output = torch.where(emit[:, None], new_output, output)
            state = _select(emit, new_state, state)
            tokens = best.tolist()
            for b in emit.nonzero()[:, 0].tolist():
                hypotheses[b].append(tokens[b])
            may_emit = emit
    return hypotheses


def _select(keep_new: torch.Tensor, new: LSTMState, old: LSTMState) -> LSTMState:
    """The LSTM state of hypotheses ``keep_new`` ``(N,)`` from ``new``, of the others from
    ``old`` (each ``(layers, N, H)``)."""
    mask = keep_new[None, :, None]
    return (torch.where(mask, new[0], old[0]), torch.where(mask, new[1], old[1]))


class _BlankLast(nn.Module):
    """Our prediction network and joiner as the ``RNNT`` interface torchaudio's beam search
    calls (``transcribe``, ``predict``, ``join``), with the vocabulary rotated so that our
    blank is the last index: search index ``j`` is our token ``(j + blank + 1) % V``. The
    encoder has already run: ``transcribe`` returns its input."""

    def __init__(self, prediction: PredictionNetwork, joiner: Joiner) -> None:
        super().__init__()
        self.prediction = prediction
        self.joiner = joiner
        self.vocab_size = joiner.vocab_size
        self.shift = prediction.blank + 1

    def token(self, search_ids: torch.Tensor) -> torch.Tensor:
        """Our token ids of search indices."""
        return (search_ids + self.shift) % self.vocab_size

    def transcribe(
        self, sources: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return sources, lengths

    def predict(
        self,
        targets: torch.Tensor,
        lengths: torch.Tensor,
        state: list[list[torch.Tensor]] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[list[torch.Tensor]]]:
        """Search-index tokens ``(N, 1)`` and torchaudio's per-layer ``[h, c]`` state (each
        ``(N, H)``) -> outputs ``(N, 1, H)``, lengths, new state."""
        tokens = self.token(targets[:, 0])
        lstm_state = None
        if state is not None:
            lstm_state = (
                torch.stack([layer[0] for layer in state]),
                torch.stack([layer[1] for layer in state]),
            )
        output, (h, c) = self.prediction.step(tokens, lstm_state)
        return output[:, None], lengths, [[h[i], c[i]] for i in range(h.shape[0])]

    def join(
        self,
        sources: torch.Tensor,
        source_lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(1, 1, D_enc)`` with ``(N, 1, D_pred)`` -> logits ``(N, 1, 1, V)``, blank last."""
        logits = self.joiner(sources, targets).roll(-self.shift, dims=-1)
        return logits, source_lengths, target_lengths


@torch.no_grad()
def beam_search(
    prediction: PredictionNetwork,
    joiner: Joiner,
    encoded: torch.Tensor,
    encoded_lengths: torch.Tensor,
    beam_size: int,
    max_symbols_per_frame: int,
) -> list[list[int]]:
    """The best hypothesis of torchaudio's RNN-T beam search for each utterance of ``encoded``
    ``(B, T, D)`` with ``encoded_lengths`` ``(B,)``: token ids, no blank.

    Raises:
        ValueError: ``beam_size`` or ``max_symbols_per_frame`` below 1.
    """
    if beam_size < 1 or max_symbols_per_frame < 1:
        raise ValueError(
            f"beam_size and max_symbols_per_frame must be at least 1, got {beam_size}, "
            f"{max_symbols_per_frame}"
        )
    model = _BlankLast(prediction, joiner)
    search = RNNTBeamSearch(
        model,  # type: ignore[arg-type]  (duck-typed: transcribe, predict, join)
        blank=joiner.vocab_size - 1,
        step_max_tokens=max_symbols_per_frame,
    )
    results = []
    for b in range(encoded.shape[0]):
        length = encoded_lengths[b : b + 1].to(encoded.device)
        hypotheses = search(encoded[b : b + 1, : int(length)], length, beam_size)
        search_ids = torch.tensor(hypotheses[0][0][1:], dtype=torch.long)  # no start symbol
        results.append(model.token(search_ids).tolist())
    return results
