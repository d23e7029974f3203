"""The RNN transducer's parts (Graves, 2012, "Sequence Transduction with Recurrent Neural
Networks"): an LSTM prediction network, a joiner, and the transducer loss computed in chunks.

Any encoder gives the transcription network (``(B, T, D)`` frames and their lengths). Token id
``blank`` (the tokenizer's blank, id 0) is the start symbol of the prediction network and the
"emit nothing, go to the next frame" output of the joiner. The loss is
:func:`torchaudio.functional.rnnt_loss` (fused log-softmax) in float32, computed over
sub-batches whose joiner tensors stay within a bound, see :func:`transducer_loss`.
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["Joiner", "PredictionNetwork", "joint_chunks", "transducer_loss"]

LSTMState = tuple[torch.Tensor, torch.Tensor]


class PredictionNetwork(nn.Module):
    """Embedding + LSTM over the previous tokens: the transducer's label-context model.

    Args:
        vocab_size: tokens, blank included (the tokenizer's ``vocab_size``).
        blank: the blank id, fed as the start symbol.
        embedding_dim: width of the token embedding.
        hidden_size: LSTM units per layer (= ``output_dim``).
        num_layers: stacked LSTM layers.
        dropout: on the embedding, between LSTM layers and on the output.

    Raises:
        ValueError: ``blank`` is not a token id, or a size is not positive.
    """

    def __init__(
        self,
        vocab_size: int,
        blank: int,
        embedding_dim: int,
        hidden_size: int,
        num_layers: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if not 0 <= blank < vocab_size:
            raise ValueError(
                f"blank id {blank} is not a token id of a {vocab_size}-token vocabulary"
            )
        if min(embedding_dim, hidden_size, num_layers) < 1:
            raise ValueError(
                "prediction network sizes must be positive: "
                f"embedding_dim={embedding_dim}, hidden_size={hidden_size}, num_layers={num_layers}"
            )
        self.blank = blank
        self.output_dim = hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, targets: torch.Tensor) -> torch.Tensor:
        """Padded targets ``(B, U)`` -> outputs ``(B, U + 1, H)``: position ``u`` has read the
        start symbol and the first ``u`` targets (padding after a target's end only changes the
        positions after it, which the loss ignores)."""
        start = torch.full_like(targets[:, :1], self.blank)
        inputs = self.dropout(self.embedding(torch.cat([start, targets], dim=1)))
        outputs, _ = self.lstm(inputs)
        return self.dropout(outputs)

    def step(
        self, tokens: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        """One step for ``N`` hypotheses: last tokens ``(N,)`` and the LSTM state (``h`` and
        ``c``, each ``(num_layers, N, H)``; ``None`` at the start) -> output ``(N, H)`` and the
        new state."""
        inputs = self.dropout(self.embedding(tokens[:, None]))
        outputs, state = self.lstm(inputs, state)
        return self.dropout(outputs[:, 0]), state


class Joiner(nn.Module):
    """``linear(encoder) + linear(prediction) -> tanh -> linear`` to token logits.

    Inputs broadcast over their leading dimensions, so one call serves training (every frame
    with every label position) and search (one frame with ``N`` hypotheses).

    Args:
        encoder_dim: the encoder's ``output_dim``.
        prediction_dim: the prediction network's ``output_dim``.
        vocab_size: tokens, blank included.
        joint_dim: width of the hidden joint layer.

    Raises:
        ValueError: a size is not positive.
    """

    def __init__(self, encoder_dim: int, prediction_dim: int, vocab_size: int, joint_dim: int):
        super().__init__()
        if min(encoder_dim, prediction_dim, vocab_size, joint_dim) < 1:
            raise ValueError(
                f"joiner sizes must be positive: encoder_dim={encoder_dim}, "
                f"prediction_dim={prediction_dim}, vocab_size={vocab_size}, joint_dim={joint_dim}"
            )
        self.joint_dim = joint_dim
        self.vocab_size = vocab_size
        self.encoder_projection = nn.Linear(encoder_dim, joint_dim)
        self.prediction_projection = nn.Linear(prediction_dim, joint_dim, bias=False)
        self.output = nn.Linear(joint_dim, vocab_size)

    def forward(self, encoded: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        """Frames ``(B, T, D_enc)`` and prediction outputs ``(B, U, D_pred)`` -> logits
        ``(B, T, U, V)`` (``B`` broadcasts: ``(1, 1, D_enc)`` with ``(N, 1, D_pred)`` gives
        ``(N, 1, 1, V)``)."""
        hidden = self.encoder_projection(encoded).unsqueeze(2)
        hidden = hidden + self.prediction_projection(predicted).unsqueeze(1)
        return self.output(torch.tanh(hidden))


def joint_chunks(
    encoded_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    width: int,
    max_elements: int,
) -> list[torch.Tensor]:
    """Split a batch into sub-batches (index tensors) whose joiner tensors, each padded to its
    own longest utterance, hold at most ``max_elements`` elements:
    ``B_chunk x T_chunk x (U_chunk + 1) x width <= max_elements``. Utterances go longest first,
    so the chunks also waste little padding. An utterance above the bound on its own gets a
    chunk of its own (training drops such utterances beforehand, see
    :meth:`speechlab.tasks.rnnt.RNNTTask.check_example`).

    Raises:
        ValueError: ``max_elements`` or ``width`` is not positive.
    """
    if max_elements < 1 or width < 1:
        raise ValueError(f"max_elements and width must be positive, got {max_elements}, {width}")
    frames = encoded_lengths.detach().cpu().long()
    labels = target_lengths.detach().cpu().long()
    order = torch.argsort(frames * (labels + 1), descending=True, stable=True).tolist()
    chunks: list[list[int]] = []
    longest_t = longest_u = 0
    for index in order:
        t, u = int(frames[index]), int(labels[index]) + 1
        if chunks:
            grown_t, grown_u = max(longest_t, t), max(longest_u, u)
            if (len(chunks[-1]) + 1) * grown_t * grown_u * width <= max_elements:
                chunks[-1].append(index)
                longest_t, longest_u = grown_t, grown_u
                continue
        chunks.append([index])
        longest_t, longest_u = t, u
    return [torch.tensor(sorted(chunk), device=encoded_lengths.device) for chunk in chunks]


def _chunk_loss(
    joiner: Joiner,
    encoded: torch.Tensor,
    predicted: torch.Tensor,
    targets: torch.Tensor,
    encoded_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
) -> torch.Tensor:
    """The summed transducer loss of one chunk, joiner and loss in float32."""
    with torch.autocast(device_type=encoded.device.type, enabled=False):
        logits = joiner(encoded.float(), predicted.float())
        return torchaudio.functional.rnnt_loss(
            logits,
            targets.int(),
            encoded_lengths.int(),
            target_lengths.int(),
            blank=blank,
            reduction="sum",
            fused_log_softmax=True,
        )


def transducer_loss(
    joiner: Joiner,
    encoded: torch.Tensor,
    encoded_lengths: torch.Tensor,
    predicted: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
    max_joint_elements: int,
) -> torch.Tensor:
    """The RNN-T loss (Graves, 2012), mean over utterances of ``-log P(target | audio)``.

    Computed by :func:`torchaudio.functional.rnnt_loss` with ``fused_log_softmax=True`` (the
    log-softmax and its gradient inside the loss, no separate ``(B, T, U + 1, V)`` log-prob
    tensor), with the joiner and the loss in float32 even under mixed precision.

    Memory bound: the batch is cut into chunks (:func:`joint_chunks`) of at most
    ``max_joint_elements`` elements of ``B_chunk x T_chunk x (U_chunk + 1) x (joint_dim + V)``,
    i.e. the joiner's hidden layer and logits. When there is more than one chunk and gradients
    are on, each chunk's joiner and loss are recomputed in the backward pass (activation
    checkpointing, ``use_reentrant=False``), so at any moment only one chunk's joiner tensors
    exist. A chunk of ``N = B_chunk x T_chunk x (U_chunk + 1)`` positions peaks at about
    ``2 x N x (joint_dim + V)`` floats, twice the bound or a little more: in the forward pass
    the hidden layer before and after ``tanh`` (``2 x N x joint_dim``), then the logits and the
    loss's gradient of them (``2 x N x V``); the backward pass holds as much (``tanh`` output
    and its gradient, the logits' gradient twice). ``benchmarks/rnnt_joiner_memory.py`` measures it on
    the default recipe's largest batch: 1.95 x in one chunk, 2.24 x the bound in four chunks.

    Args:
        joiner: the :class:`Joiner`.
        encoded: encoder frames ``(B, T, D_enc)``, with ``encoded_lengths`` ``(B,)``.
        predicted: prediction network outputs ``(B, U + 1, D_pred)`` for ``targets`` ``(B, U)``
            (padded token ids) with ``target_lengths`` ``(B,)``.
        blank: the blank id.
        max_joint_elements: the chunk bound above.

    Returns:
        The scalar loss (float32), in nats per utterance.
    """
    width = joiner.joint_dim + joiner.vocab_size
    chunks = joint_chunks(encoded_lengths, target_lengths, width, max_joint_elements)
    recompute = len(chunks) > 1 and torch.is_grad_enabled()
    total = encoded.new_zeros((), dtype=torch.float32)
    for index in chunks:
        frames, labels = encoded_lengths[index], target_lengths[index]
        t, u = int(frames.max()), int(labels.max())
        inputs = (
            encoded[index, :t],
            predicted[index, : u + 1],
            targets[index, :u],
            frames,
            labels,
            blank,
        )
        if recompute:
            total = total + checkpoint(_chunk_loss, joiner, *inputs, use_reentrant=False)
        else:
            total = total + _chunk_loss(joiner, *inputs)
    return total / encoded.shape[0]
