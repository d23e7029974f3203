"""A compact Tacotron 2 (Shen et al., 2018): symbols -> log-mel frames and a stop token.

Symbol embedding -> convolutions -> BiLSTM encoder; an autoregressive decoder (prenet with
dropout also at inference, attention LSTM, location-sensitive attention over the encoder
frames, decoder LSTM) emits ``reduction`` mel frames and one stop logit per step; a
convolutional postnet adds a residual. Plain ``nn.Module``: it knows nothing of training.

Shapes: symbols ``(B, L)`` int64 (0 = padding), mels ``(B, n_mels, T)``; with reduction ``r``
the decoder runs ``S = ceil(T / r)`` steps and alignments are ``(B, S, L)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from speechlab.audio.features import lengths_to_mask
from speechlab.nn.attention import LocationAwareAttention

__all__ = ["Tacotron2", "Tacotron2Output", "guided_attention_loss", "diagonal_score"]


@dataclass
class Tacotron2Output:
    """``mel``/``mel_postnet`` ``(B, n_mels, S*r)``, ``stop_logits`` ``(B, S)``, ``alignments``
    ``(B, S, L)``; ``lengths`` ``(B,)`` frames generated (inference only)."""

    mel: torch.Tensor
    mel_postnet: torch.Tensor
    stop_logits: torch.Tensor
    alignments: torch.Tensor
    lengths: torch.Tensor | None = None


class _Encoder(nn.Module):
    """``(B, L)`` symbols -> ``(B, L, encoder_dim)``."""

    def __init__(self, vocab_size: int, dim: int, convs: int, kernel: int, dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.convs = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Conv1d(dim, dim, kernel, padding=kernel // 2),
                    nn.BatchNorm1d(dim),
                    nn.ReLU(),
                    nn.Dropout(dropout),
                )
                for _ in range(convs)
            )
        )
        self.lstm = nn.LSTM(dim, dim // 2, batch_first=True, bidirectional=True)

    def forward(self, symbols: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.convs(self.embedding(symbols).transpose(1, 2)).transpose(1, 2)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return out


class _Prenet(nn.Module):
    """Two ReLU layers with dropout that stays on at inference (it keeps the decoder from
    copying its input and gives the variation that lets it attend)."""

    def __init__(self, in_dim: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(in_dim, dim), nn.Linear(dim, dim)])
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = F.dropout(F.relu(layer(x)), p=self.dropout, training=True)
        return x


class Tacotron2(nn.Module):
    """Symbols -> log-mel frames, stop logits and attention alignments; see the module docstring.

    Args:
        vocab_size: symbols, id 0 is padding.
        n_mels: mel bands of the frames predicted.
        reduction: frames predicted per decoder step (``r``).
        encoder_dim: embedding, convolution and BiLSTM output size.
        encoder_convs: convolutions before the BiLSTM.
        conv_kernel: width of the encoder and postnet convolutions.
        prenet_dim: prenet layer size.
        attention_rnn_dim: attention LSTM units.
        decoder_rnn_dim: decoder LSTM units.
        attention_dim: hidden size of the attention energy MLP.
        postnet_dim: postnet channels; ``postnet_layers`` convolutions (0 = no postnet).
        dropout: encoder/postnet dropout; ``prenet_dropout`` for the prenet; ``rnn_dropout``
            on the decoder LSTM outputs.
        max_decoder_steps: the most steps :meth:`infer` runs.
        stop_threshold: probability of the stop token that ends generation.
        autoregressive: feed each step the previous frame through the prenet (Tacotron 2). With
            ``False`` the decoder gets no frames back: it reads only the text through the
            attention (and its own recurrent state), so teacher-forced training and generation
            are the same computation; faster to learn when speech follows the text closely.
    """

    def __init__(
        self,
        vocab_size: int,
        n_mels: int = 80,
        reduction: int = 3,
        encoder_dim: int = 256,
        encoder_convs: int = 3,
        conv_kernel: int = 5,
        prenet_dim: int = 128,
        attention_rnn_dim: int = 256,
        decoder_rnn_dim: int = 256,
        attention_dim: int = 128,
        postnet_dim: int = 256,
        postnet_layers: int = 5,
        dropout: float = 0.5,
        prenet_dropout: float = 0.5,
        rnn_dropout: float = 0.1,
        max_decoder_steps: int = 500,
        stop_threshold: float = 0.5,
        autoregressive: bool = True,
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(
                f"vocab_size must be at least 2 (padding + a symbol), got {vocab_size}"
            )
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1 frame per step, got {reduction}")
        if encoder_dim % 2:
            raise ValueError(f"encoder_dim must be even (two LSTM directions), got {encoder_dim}")
        if conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd (centred convolutions), got {conv_kernel}")
        self.n_mels = n_mels
        self.reduction = reduction
        self.max_decoder_steps = max_decoder_steps
        self.stop_threshold = stop_threshold
        self.rnn_dropout = rnn_dropout
        self.autoregressive = autoregressive
        self.prenet_dim = prenet_dim
        self.encoder = _Encoder(vocab_size, encoder_dim, encoder_convs, conv_kernel, dropout)
        self.prenet = _Prenet(n_mels, prenet_dim, prenet_dropout)
        self.attention_rnn = nn.LSTMCell(prenet_dim + encoder_dim, attention_rnn_dim)
        self.attention = LocationAwareAttention(attention_rnn_dim, encoder_dim, attention_dim)
        self.decoder_rnn = nn.LSTMCell(attention_rnn_dim + encoder_dim, decoder_rnn_dim)
        self.frame_projection = nn.Linear(decoder_rnn_dim + encoder_dim, n_mels * reduction)
        self.stop_projection = nn.Linear(decoder_rnn_dim + encoder_dim, 1)
        layers = []
        for i in range(postnet_layers):
            last = i == postnet_layers - 1
            layers += [
                nn.Conv1d(n_mels if i == 0 else postnet_dim, n_mels if last else postnet_dim,
                          conv_kernel, padding=conv_kernel // 2),
                nn.BatchNorm1d(n_mels if last else postnet_dim),
            ]  # fmt: skip
            if not last:
                layers.append(nn.Tanh())
            layers.append(nn.Dropout(dropout))
        self.postnet = nn.Sequential(*layers) if layers else None

    # -- decoding ---------------------------------------------------------------------------
    def _initial_state(self, memory: torch.Tensor) -> dict[str, torch.Tensor]:
        batch, length, dim = memory.shape
        zeros = memory.new_zeros
        return {
            "attention_h": zeros(batch, self.attention_rnn.hidden_size),
            "attention_c": zeros(batch, self.attention_rnn.hidden_size),
            "decoder_h": zeros(batch, self.decoder_rnn.hidden_size),
            "decoder_c": zeros(batch, self.decoder_rnn.hidden_size),
            "context": zeros(batch, dim),
            "cumulative": zeros(batch, length),
        }

    def _step(
        self,
        frame: torch.Tensor,
        state: dict[str, torch.Tensor],
        memory: torch.Tensor,
        processed: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Previous frame ``(B, n_mels)`` -> ``r`` frames ``(B, r*n_mels)``, stop logit ``(B,)``
        and attention weights ``(B, L)``; ``state`` is updated in place."""
        if self.autoregressive:
            previous = self.prenet(frame)
        else:
            previous = frame.new_zeros(frame.shape[0], self.prenet_dim)
        x = torch.cat([previous, state["context"]], dim=-1)
        h, c = self.attention_rnn(x, (state["attention_h"], state["attention_c"]))
        h = F.dropout(h, self.rnn_dropout, self.training)
        state["attention_h"], state["attention_c"] = h, c
        # Location features from the cumulative weights: where the decoder has already been.
        context, weights = self.attention(h, memory, processed, mask, state["cumulative"])
        state["cumulative"] = state["cumulative"] + weights
        state["context"] = context
        d, dc = self.decoder_rnn(
            torch.cat([h, context], dim=-1), (state["decoder_h"], state["decoder_c"])
        )
        d = F.dropout(d, self.rnn_dropout, self.training)
        state["decoder_h"], state["decoder_c"] = d, dc
        out = torch.cat([d, context], dim=-1)
        return self.frame_projection(out), self.stop_projection(out).squeeze(-1), weights

    def _postnet(self, mel: torch.Tensor) -> torch.Tensor:
        return mel if self.postnet is None else mel + self.postnet(mel)

    def forward(
        self, symbols: torch.Tensor, symbol_lengths: torch.Tensor, mels: torch.Tensor
    ) -> Tacotron2Output:
        """Teacher-forced pass over target ``mels`` ``(B, n_mels, T)``; outputs have
        ``ceil(T / r) * r`` frames (the caller pads the targets to match)."""
        batch, n_mels, frames = mels.shape
        r = self.reduction
        steps = -(-frames // r)
        padded = F.pad(mels, (0, steps * r - frames))
        # Decoder input of step s: the last frame of step s-1 (zeros at the start).
        previous = padded[:, :, r - 1 :: r].transpose(1, 2)  # (B, S, n_mels)
        inputs = torch.cat([padded.new_zeros(batch, 1, n_mels), previous[:, :-1]], dim=1)
        memory = self.encoder(symbols, symbol_lengths)
        processed = self.attention.process_keys(memory)
        mask = lengths_to_mask(symbol_lengths, memory.shape[1])
        state = self._initial_state(memory)
        outputs, stops, alignments = [], [], []
        for step in range(steps):
            out, stop, weights = self._step(inputs[:, step], state, memory, processed, mask)
            outputs.append(out)
            stops.append(stop)
            alignments.append(weights)
        mel = torch.stack(outputs, dim=1).view(batch, steps * r, n_mels).transpose(1, 2)
        return Tacotron2Output(
            mel=mel,
            mel_postnet=self._postnet(mel),
            stop_logits=torch.stack(stops, dim=1),
            alignments=torch.stack(alignments, dim=1),
        )

    @torch.no_grad()
    def infer(
        self, symbols: torch.Tensor, symbol_lengths: torch.Tensor, max_steps: int | None = None
    ) -> Tacotron2Output:
        """Free-running generation until every item's stop probability passes the threshold (or
        ``max_steps``, default ``max_decoder_steps``). ``lengths`` counts each item's frames up
        to and including the step that stopped; frames after it are zero."""
        max_steps = max_steps or self.max_decoder_steps
        batch = symbols.shape[0]
        r = self.reduction
        memory = self.encoder(symbols, symbol_lengths)
        processed = self.attention.process_keys(memory)
        mask = lengths_to_mask(symbol_lengths, memory.shape[1])
        state = self._initial_state(memory)
        frame = memory.new_zeros(batch, self.n_mels)
        steps_taken = torch.full((batch,), max_steps, dtype=torch.long, device=symbols.device)
        done = torch.zeros(batch, dtype=torch.bool, device=symbols.device)
        outputs, stops, alignments = [], [], []
        for step in range(max_steps):
            out, stop, weights = self._step(frame, state, memory, processed, mask)
            outputs.append(out)
            stops.append(stop)
            alignments.append(weights)
            frame = out[:, -self.n_mels :]
            stopping = (torch.sigmoid(stop) > self.stop_threshold) & ~done
            steps_taken[stopping] = step + 1
            done |= stopping
            if bool(done.all()):
                break
        steps = len(outputs)
        mel = torch.stack(outputs, dim=1).view(batch, steps * r, self.n_mels).transpose(1, 2)
        lengths = steps_taken.clamp(max=steps) * r
        valid = lengths_to_mask(lengths, mel.shape[-1]).unsqueeze(1)
        mel_postnet = self._postnet(mel.masked_fill(~valid, 0.0)).masked_fill(~valid, 0.0)
        return Tacotron2Output(
            mel=mel.masked_fill(~valid, 0.0),
            mel_postnet=mel_postnet,
            stop_logits=torch.stack(stops, dim=1),
            alignments=torch.stack(alignments, dim=1),
            lengths=lengths,
        )


def _diagonal_distance(
    alignments: torch.Tensor, symbol_lengths: torch.Tensor, step_lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``|l / L - s / S|`` for every (step, symbol) ``(B, S, L)`` and the validity mask."""
    _, steps, length = alignments.shape
    s = torch.arange(steps, device=alignments.device).view(1, -1, 1)
    l_ = torch.arange(length, device=alignments.device).view(1, 1, -1)
    step_n = step_lengths.view(-1, 1, 1).clamp(min=1).to(alignments.dtype)
    symbol_n = symbol_lengths.view(-1, 1, 1).clamp(min=1).to(alignments.dtype)
    distance = (l_ / symbol_n - s / step_n).abs()
    valid = (s < step_lengths.view(-1, 1, 1)) & (l_ < symbol_lengths.view(-1, 1, 1))
    return distance, valid


def guided_attention_loss(
    alignments: torch.Tensor,
    symbol_lengths: torch.Tensor,
    step_lengths: torch.Tensor,
    sigma: float = 0.2,
) -> torch.Tensor:
    """Guided attention loss (Tachibana et al., 2018) with ``W = 1 - exp(-(l/L - s/S)^2 /
    (2 sigma^2))``, which penalises attention far from the diagonal: the penalty ``sum_l A[s, l]
    W[s, l]`` of each valid decoder step, averaged over the steps. Per step rather than per cell,
    so it is in [0, 1] whatever the text length (about 0.6 for uniform attention) and weighs as
    much as the mel loss at weight 1. ``alignments`` ``(B, S, L)``, lengths ``(B,)``."""
    distance, valid = _diagonal_distance(alignments, symbol_lengths, step_lengths)
    penalty = 1.0 - torch.exp(-(distance**2) / (2 * sigma**2))
    steps = (valid.any(dim=-1)).sum().clamp(min=1)
    return (alignments * penalty * valid).sum() / steps


def diagonal_score(
    alignments: torch.Tensor,
    symbol_lengths: torch.Tensor,
    step_lengths: torch.Tensor,
    width: float = 0.2,
) -> torch.Tensor:
    """Share of the attention mass of valid steps within ``width`` of the diagonal, per item
    ``(B,)`` (1 = every step attends near ``s / S`` of the text)."""
    distance, valid = _diagonal_distance(alignments, symbol_lengths, step_lengths)
    near = (distance <= width) & valid
    mass = (alignments * valid).sum(dim=(1, 2)).clamp(min=1e-8)
    return (alignments * near).sum(dim=(1, 2)) / mass
