"""Shallow fusion: the ARPA reader and the token and word LM adapters."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from speechlab.decoding.fusion import ArpaLM, TokenNGramLM, WordNGramLM
from speechlab.decoding.ngram import build_arpa
from speechlab.nn.speller import EOS
from tests.unit.conftest import LM_TEXTS, TOKENS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_arpa_reader_and_lm_adapters(tmp_path: Path, token_lm: TokenNGramLM) -> None:
    arpa = token_lm.lm
    assert arpa.order == 3 and {"a", "b", "|", "</s>", "<unk>"} <= arpa.vocab
    for context in [("<s>",), ("<s>", "a"), ("a", "b"), ("b", "|"), ("q",)]:
        total = sum(math.exp(arpa.log_prob(context, w)) for w in arpa.vocab - {"<s>"})
        assert total == pytest.approx(1.0, abs=1e-4)
    scores = token_lm.next_log_probs([2, 3])  # after "a b"
    assert scores[EOS] == pytest.approx(arpa.log_prob(("a", "b"), "</s>"))
    assert scores[1] == pytest.approx(arpa.log_prob(("a", "b"), "|"))
    assert token_lm.score([], 2) == pytest.approx(arpa.log_prob(("<s>",), "a"))

    words = WordNGramLM(ArpaLM(build_arpa(LM_TEXTS, tmp_path / "words.arpa", order=2)), TOKENS)
    scores = words.next_log_probs([3, 2, 1, 2, 3])  # "ba ab", the last word in progress
    complete = words.lm.log_prob(("ba",), "ab")
    assert scores[1] == pytest.approx(complete)  # "|" completes "ab"
    assert scores[EOS] == pytest.approx(complete + words.lm.log_prob(("ab",), "</s>"))
    assert (scores[2:] == 0).all()  # inside a word
