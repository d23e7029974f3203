"""The feed-forward keyword-spotting baseline: DNN frames averaged into an utterance embedding."""

from __future__ import annotations

import torch
from torch import nn

from speechlab.nn.encoders.dnn import DNNEncoder


class KeywordDNN(nn.Module):
    """Log-mel ``(B, n_mels, F)`` -> utterance embedding ``(B, hidden_size)``.

    A :class:`~speechlab.nn.encoders.dnn.DNNEncoder` (stacked context windows through
    feed-forward layers; see it for the arguments and the errors raised), then the average of
    its valid output frames and dropout. The DNN keyword-spotting baselines (Chen et al. 2014;
    Zhang et al. 2017, "Hello Edge") flatten a fixed-length clip into one input vector; the
    frame-wise network and the average over time take clips of any length and give an
    utterance the same embedding whatever the padding of its batch.

    Args:
        n_mels: mel bands of the input.
        left_context, right_context, stride, hidden_size, num_layers, norm: those of
            :class:`~speechlab.nn.encoders.dnn.DNNEncoder`.
        dropout: dropout after every activation of the DNN and on the pooled embedding.
    """

    def __init__(
        self,
        n_mels: int = 40,
        left_context: int = 10,
        right_context: int = 10,
        stride: int = 2,
        hidden_size: int = 256,
        num_layers: int = 3,
        norm: str = "layer",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.dnn = DNNEncoder(
            n_mels, left_context, right_context, stride, hidden_size, num_layers, norm, dropout
        )
        self.dropout = nn.Dropout(dropout)
        self.output_dim = self.dnn.output_dim

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        frames, frame_lengths = self.dnn(features, lengths)  # (B, T', D), padded frames zero
        pooled = frames.sum(dim=1) / frame_lengths.clamp(min=1).unsqueeze(-1).to(frames.dtype)
        return self.dropout(pooled)
