"""Helpers and fixtures of the encoder, speller, search and LM unit tests."""

from __future__ import annotations

import pytest
import torch

from speechlab.audio.features import lengths_to_mask
from speechlab.decoding.fusion import TokenNGramLM
from speechlab.decoding.ngram import build_arpa, spell_sentences


def padded(lengths: list[int], dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ``(B, max(lengths), dim)`` frames, zero on padding, and the lengths."""
    generator = torch.Generator().manual_seed(seed)
    frames = torch.randn(len(lengths), max(lengths), dim, generator=generator)
    lengths_t = torch.tensor(lengths)
    return frames * lengths_to_mask(lengths_t, frames.shape[1]).unsqueeze(-1), lengths_t


TOKENS = ["<blank>", "|", "a", "b"]
LM_TEXTS = ["ab", "ba ab", "b", "ab ab"]


@pytest.fixture(scope="module")
def token_lm(tmp_path_factory: pytest.TempPathFactory) -> TokenNGramLM:
    path = tmp_path_factory.mktemp("lm") / "tokens.arpa"
    return TokenNGramLM(build_arpa(spell_sentences(LM_TEXTS, list), path, order=3), TOKENS)
