"""The ARPA estimator: file structure, normalisation via back-off, agreement with KenLM."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from speechlab.decoding.ngram import build_arpa, spell_sentences, words_of, write_lexicon

SENTENCES = [
    "the cat sat on the mat",
    "the cat ran",
    "a dog sat on the log",
    "the dog ran to the cat",
    "a cat sat",
]

Gram = tuple[str, ...]


def parse_arpa(path: Path) -> tuple[dict[int, int], dict[Gram, tuple[float, float]]]:
    """Header counts and ``{ngram: (log10 p, log10 backoff)}`` of an ARPA file."""
    header: dict[int, int] = {}
    grams: dict[Gram, tuple[float, float]] = {}
    section = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := re.fullmatch(r"ngram (\d+)=(\d+)", line):
            header[int(m[1])] = int(m[2])
        elif m := re.fullmatch(r"\\(\d+)-grams:", line):
            section = int(m[1])
        elif line == "\\end\\":
            section = 0
        elif section and line.strip():
            fields = line.split("\t")
            gram = tuple(fields[1].split())
            assert len(gram) == section, line
            grams[gram] = (float(fields[0]), float(fields[2]) if len(fields) > 2 else 0.0)
    return header, grams


def prob(grams: dict[Gram, tuple[float, float]], history: Gram, word: str) -> float:
    """p(word | history) by ARPA back-off."""
    if history + (word,) in grams:
        return 10 ** grams[history + (word,)][0]
    if not history:
        raise KeyError(word)
    backoff = 10 ** grams[history][1] if history in grams else 1.0
    return backoff * prob(grams, history[1:], word)


@pytest.mark.parametrize("kneser_ney", [True, False])
def test_arpa_structure_and_normalisation(tmp_path: Path, kneser_ney: bool) -> None:
    path = build_arpa(SENTENCES, tmp_path / "lm.arpa", order=3, kneser_ney=kneser_ney)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("\\data\\\n") and text.rstrip().endswith("\\end\\")
    header, grams = parse_arpa(path)
    assert header == {n: sum(len(g) == n for g in grams) for n in (1, 2, 3)}
    assert {("<s>",), ("</s>",), ("<unk>",)} <= set(grams)
    assert grams[("<s>",)][0] == -99.0

    vocab = [g[0] for g in grams if len(g) == 1 and g != ("<s>",)]
    assert set(vocab) == set(words_of(SENTENCES)) | {"</s>", "<unk>"}
    # seen histories of every order, and one never seen (pure back-off)
    for history in [
        (),
        ("the",),
        ("<s>",),
        ("<s>", "the"),
        ("the", "cat"),
        ("on", "the"),
        ("dog", "dog"),
    ]:
        total = sum(prob(grams, history, w) for w in vocab)
        assert total == pytest.approx(1.0, abs=1e-5), history
    assert all(lp <= 0 for lp, _ in grams.values())


def test_arpa_agrees_with_kenlm(tmp_path: Path) -> None:
    pytest.importorskip("flashlight.lib.text.decoder.kenlm")
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    path = build_arpa(SENTENCES, tmp_path / "lm.arpa", order=3)
    _, grams = parse_arpa(path)
    words = [*words_of(SENTENCES), "zebra"]  # zebra: out of vocabulary -> <unk>
    lm = KenLM(str(path), Dictionary(words))
    for sentence in ["the cat sat on the log", "a dog ran", "zebra cat"]:
        state, ours, theirs = lm.start(False), 0.0, 0.0
        history: Gram = ("<s>",)
        for word in [*sentence.split(), "</s>"]:
            if word == "</s>":
                state, score = lm.finish(state)
            else:
                state, score = lm.score(state, words.index(word))
            theirs += score
            known = word if (word,) in grams else "<unk>"
            ours += math.log10(prob(grams, history[-2:], known))
            history += (known,)
        assert theirs == pytest.approx(ours, abs=1e-4), sentence


def test_unigram_and_order_one(tmp_path: Path) -> None:
    header, grams = parse_arpa(build_arpa(["a b", "a"], tmp_path / "u.arpa", order=1))
    assert header == {1: 5}  # <s> </s> <unk> a b
    vocab = [g[0] for g in grams if g != ("<s>",)]
    assert sum(prob(grams, (), w) for w in vocab) == pytest.approx(1.0, abs=1e-6)


def test_build_arpa_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="order"):
        build_arpa(SENTENCES, tmp_path / "x.arpa", order=0)
    with pytest.raises(ValueError, match="discount"):
        build_arpa(SENTENCES, tmp_path / "x.arpa", discount=1.5)
    with pytest.raises(ValueError, match="no words"):
        build_arpa(["", "  "], tmp_path / "x.arpa")
    with pytest.raises(ValueError, match="reserved"):
        build_arpa(["a </s> b"], tmp_path / "x.arpa")


def test_write_lexicon_and_spellings(tmp_path: Path) -> None:
    path = write_lexicon(["cat", "a", "cat"], list, tmp_path / "lex.txt")
    assert path.read_text(encoding="utf-8") == "cat\tc a t |\na\ta |\n"
    bare = write_lexicon(["cat"], list, tmp_path / "bare.txt", word_delimiter=None)
    assert bare.read_text(encoding="utf-8") == "cat\tc a t\n"
    with pytest.raises(ValueError, match="whitespace"):
        write_lexicon(["two words"], list, tmp_path / "bad.txt")

    assert spell_sentences(["the cat", ""], list) == ["t h e | c a t", ""]
    pieces = {"the": ["▁the"], "cat": ["▁c", "at"]}
    assert spell_sentences(["the cat"], pieces.__getitem__, None) == ["▁the ▁c at"]
    assert words_of(["b a", "a c"]) == ["a", "b", "c"]
