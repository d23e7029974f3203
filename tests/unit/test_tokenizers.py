"""Tokenizers: round trips, the blank at id 0, saved state, training errors, phoneme symbols."""

from __future__ import annotations

import json
import re

import pytest
import torch

from speechlab.data.targets import TokenTargets
from speechlab.data.utterance import Utterance
from speechlab.tasks.recognition import ctc_required_frames
from speechlab.text.tokenizers import (
    BLANK,
    CharTokenizer,
    PhonemeTokenizer,
    SentencePieceTokenizer,
    cached_tokenizer,
    check_tokenizer_spec,
    load_tokenizer,
    train_tokenizer,
)

TEXTS = [
    "the red cat sees two dogs",
    "a small bird eats the green apple",
    "my brother likes old books",
    "the dog runs to the house",
    "seven cats sleep in the sun",
] * 4


def test_char_tokenizer_round_trip_and_blank() -> None:
    tokenizer = CharTokenizer.train(TEXTS)
    assert tokenizer.tokens[0] == BLANK and tokenizer.tokens[1] == "|"
    ids = tokenizer.encode("the  red cat")
    assert 0 not in ids
    assert tokenizer.decode(ids) == "the red cat"
    assert tokenizer.tokens[ids[3]] == "|"  # a space is the word delimiter
    assert tokenizer.unknown("the zebra") == {"z"}
    with pytest.raises(KeyError, match="'z'.*not in the tokenizer's alphabet"):
        tokenizer.encode("zebra")


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_sentencepiece_round_trip_and_state(kind: str) -> None:
    tokenizer = train_tokenizer({"kind": kind, "vocab_size": 40}, TEXTS)
    assert isinstance(tokenizer, SentencePieceTokenizer)
    assert tokenizer.tokens[0] == BLANK
    ids = tokenizer.encode("the green dog sees two books")
    assert ids and 0 not in ids
    assert tokenizer.decode(ids) == "the green dog sees two books"
    restored = load_tokenizer(json.loads(json.dumps(tokenizer.state())))
    assert restored.tokens == tokenizer.tokens
    assert restored.encode("the red cat") == tokenizer.encode("the red cat")
    assert "".join(tokenizer.spell("apple")).replace("▁", "") == "apple"


def test_char_state_round_trip_and_bad_state() -> None:
    tokenizer = CharTokenizer.train(TEXTS)
    restored = load_tokenizer(tokenizer.state())
    assert restored.tokens == tokenizer.tokens
    with pytest.raises(ValueError, match="not a saved tokenizer"):
        load_tokenizer({"kind": "char"})
    with pytest.raises(ValueError, match="kind must be one of"):
        train_tokenizer({"kind": "words"}, TEXTS)
    with pytest.raises(ValueError, match="empty"):
        train_tokenizer({"kind": "char"}, ["", " "])


def test_cached_tokenizer_reuses_the_trained_file(tmp_path) -> None:
    spec = {"kind": "unigram", "vocab_size": 40}
    first = cached_tokenizer(spec, TEXTS, tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len([f for f in files if f.endswith(".json")]) == 1
    assert any(f.endswith(".model") for f in files)  # usable by SentencePiece's own tools
    second = cached_tokenizer(spec, TEXTS, tmp_path)
    assert second.state() == first.state()
    assert cached_tokenizer(first.state(), [], None).tokens == first.tokens


def test_token_targets_count_problems() -> None:
    targets = TokenTargets(CharTokenizer.train(TEXTS))

    def utterance(text: str | None) -> Utterance:
        return Utterance("u", "u.wav", 1.0, 16000, text=text)

    assert targets.problem(utterance(None)) == "no text"
    assert targets.problem(utterance("  ")) == "no text"
    assert "outside the tokenizer" in targets.problem(utterance("zebra"))
    assert targets.problem(utterance("the cat")) is None
    assert targets(utterance("the cat")).dtype == torch.long


def test_ctc_required_frames_counts_repeats() -> None:
    assert ctc_required_frames(torch.tensor([1, 2, 3])) == 3
    assert ctc_required_frames(torch.tensor([5, 5, 6, 6, 6])) == 8  # blanks between repeats
    assert ctc_required_frames(torch.tensor([], dtype=torch.long)) == 0


def test_phoneme_symbols_come_from_espeak_and_survive_a_checkpoint():
    tokenizer = train_tokenizer({"kind": "phoneme"}, ["the red cat", "two dogs"])
    assert isinstance(tokenizer, PhonemeTokenizer)
    assert "ð" in tokenizer.tokens and "æ" in tokenizer.tokens  # IPA, not letters
    ids = tokenizer.encode("the cat")
    assert tokenizer.decode(ids) == "ðə kˈæt"
    restored = load_tokenizer(tokenizer.state())
    assert isinstance(restored, PhonemeTokenizer) and restored.encode("the cat") == ids
    assert "ʃ" in restored.unknown("the ship")  # no /ʃ/ in training


SMALL = ["the cat sat on the mat", "a dog runs here", "ten birds sing today"] * 5


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_a_vocab_size_below_the_characters_says_to_raise_it_and_to_what(kind):
    with pytest.raises(ValueError, match=r"raise data\.tokenizer\.vocab_size to at least 18"):
        train_tokenizer({"kind": kind, "vocab_size": 8}, SMALL)


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_a_vocab_size_above_what_the_texts_allow_is_said_with_the_value_to_set(kind, caplog):
    tokenizer = train_tokenizer({"kind": kind, "vocab_size": 5000}, SMALL)
    made = tokenizer.vocab_size - 1  # without the CTC blank
    assert made < 5000
    assert "vocab_size=5000 asked" in caplog.text
    assert f"Set data.tokenizer.vocab_size={made}" in caplog.text


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"kind": "unigram", "vocab_size": "abc"},
            "data.tokenizer.vocab_size='abc': it takes a whole",
        ),
        ({"kind": "bpe", "vocab_size": 50.5}, "data.tokenizer.vocab_size=50.5"),
        ({"kind": "unigram", "vocab_size": 0}, "a whole number of pieces > 0"),
        ({"kind": "unigram", "character_coverage": 2}, "character_coverage=2"),
        ({"kind": "char", "vocab_size": 64}, "the char tokenizer takes no option"),
        ({"kind": "letters"}, "data.tokenizer.kind must be one of"),
    ],
)
def test_tokenizer_options_of_the_wrong_kind_are_named_before_any_text_is_read(spec, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        check_tokenizer_spec(spec)
