"""CTC decoding: greedy best path, flashlight beam search, and an n-gram LM changing its choice."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from speechlab.decoding.ctc import BeamSearchCTCDecoder, GreedyCTCDecoder, greedy_decode
from speechlab.decoding.ngram import build_arpa, spell_sentences, words_of, write_lexicon

pytest.importorskip("flashlight.lib.text")

CHARS = ["<blank>", "|", "a", "c", "o", "t", "h", "e", "s"]
AMBIGUOUS = {"o": 0.0, "a": -0.3}  # a frame where "o" is only slightly ahead of "a"
# The LM corpus says "cat" far more often than "cot".
SENTENCES = ["the cat"] * 6 + ["the cat sat", "a cat sat", "the cot"]


def emissions(tokens: list[str], frames: list[str | dict[str, float]]) -> torch.Tensor:
    """(1, T, V) log-probs: each frame one certain token, or a dict of token -> logit."""
    index = {t: i for i, t in enumerate(tokens)}
    logits = torch.full((len(frames), len(tokens)), -8.0)
    for t, frame in enumerate(frames):
        for token, logit in (frame if isinstance(frame, dict) else {frame: 0.0}).items():
            logits[t, index[token]] = logit
    return logits.log_softmax(-1)[None]


def spelt(tokens: list[str], ids: list[int]) -> str:
    return "".join(tokens[i] for i in ids)


def test_greedy_collapses_repeats_drops_blanks_and_padding() -> None:
    # vocabulary: 0 blank, 1 a, 2 b
    best = torch.tensor(
        [
            [1, 1, 0, 1, 2, 2, 2, 0, 0, 2],  # a a _ a b b b _ _ b -> a a b b
            [0, 2, 2, 1, 0, 0, 1, 1, 2, 2],  # padded after 5 frames -> b a
        ]
    )
    log_probs = torch.nn.functional.one_hot(best, 3).float().add(1e-3).log()
    lengths = torch.tensor([10, 5])
    assert greedy_decode(log_probs, lengths) == [[1, 1, 2, 2], [2, 1]]
    assert GreedyCTCDecoder(blank=0)(log_probs, lengths) == [[1, 1, 2, 2], [2, 1]]
    assert greedy_decode(log_probs, torch.tensor([0, 1])) == [[], []]
    assert greedy_decode(log_probs)[1] == [2, 1, 1, 2]  # no lengths: every frame
    # a blank other than 0: here "b" (2) is the blank and 0 a token
    assert greedy_decode(log_probs, lengths, blank=2) == [[1, 0, 1, 0], [0, 1, 0]]


def test_greedy_and_beam_agree_on_peaked_emissions() -> None:
    torch.manual_seed(0)
    best = torch.randint(0, len(CHARS), (3, 40))
    log_probs = (torch.nn.functional.one_hot(best, len(CHARS)) * 12.0).log_softmax(-1)
    lengths = torch.tensor([40, 33, 7])
    beam = BeamSearchCTCDecoder(CHARS, beam_size=8)
    expected = greedy_decode(log_probs, lengths)
    # float64 and non-contiguous input are converted for flashlight
    strided = log_probs.double().transpose(0, 1).contiguous().transpose(0, 1)
    assert beam(strided, lengths) == expected
    hyps = beam.decode(log_probs, lengths)
    assert [h.tokens for h in hyps] == expected
    assert all(len(h.frames) == len(h.tokens) and h.words == [] for h in hyps)
    assert all(f < n for h, n in zip(hyps, lengths.tolist(), strict=True) for f in h.frames)


def test_char_lm_flips_lexicon_free_decision(tmp_path: Path) -> None:
    log_probs = emissions(CHARS, ["t", "h", "e", "|", "c", AMBIGUOUS, "t"])
    plain = BeamSearchCTCDecoder(CHARS)
    # lexicon-free: flashlight scores tokens, so the LM is over characters and "|"
    lm = build_arpa(spell_sentences(SENTENCES, list), tmp_path / "chars.arpa", order=4)
    with_lm = BeamSearchCTCDecoder(CHARS, lm=str(lm), lm_weight=2.0)
    assert spelt(CHARS, plain(log_probs)[0]) == "the|cot"
    assert spelt(CHARS, with_lm(log_probs)[0]) == "the|cat"


def test_word_lm_flips_lexicon_decision(tmp_path: Path) -> None:
    log_probs = emissions(CHARS, ["t", "h", "e", "|", "c", AMBIGUOUS, "t", "<blank>"])
    lexicon = write_lexicon(words_of(SENTENCES), list, tmp_path / "lexicon.txt")
    lm = build_arpa(SENTENCES, tmp_path / "words.arpa", order=3)
    plain = BeamSearchCTCDecoder(CHARS, lexicon=str(lexicon)).decode(log_probs)[0]
    with_lm = BeamSearchCTCDecoder(CHARS, lexicon=lexicon, lm=lm).decode(log_probs)[0]
    assert (plain.words, spelt(CHARS, plain.tokens)) == (["the", "cot"], "the|cot")
    assert (with_lm.words, spelt(CHARS, with_lm.tokens)) == (["the", "cat"], "the|cat")
    # The last word finished without a trailing "|" from the model, at no cost.
    assert plain.score == pytest.approx(log_probs[0].max(-1).values.sum().item(), abs=1e-3)


def test_subword_pieces_without_delimiter(tmp_path: Path) -> None:
    pieces = ["<blank>", "<unk>", "▁the", "▁c", "at", "ot", "▁sat", "▁a"]
    spell = {"the": ["▁the"], "cat": ["▁c", "at"], "cot": ["▁c", "ot"], "sat": ["▁sat"]}
    spell["a"] = ["▁a"]
    log_probs = emissions(pieces, ["▁the", "<blank>", "▁c", {"ot": 0.0, "at": -0.3}, "<blank>"])
    # a piece-level LM; the piece ids must reach KenLM in token order
    lm = build_arpa(spell_sentences(SENTENCES, spell.__getitem__, None), tmp_path / "p.arpa")
    plain = BeamSearchCTCDecoder(pieces, word_delimiter=None)
    with_lm = BeamSearchCTCDecoder(pieces, word_delimiter=None, lm=lm)
    assert [pieces[i] for i in plain(log_probs)[0]] == ["▁the", "▁c", "ot"]
    assert [pieces[i] for i in with_lm(log_probs)[0]] == ["▁the", "▁c", "at"]

    lexicon = write_lexicon(spell, spell.__getitem__, tmp_path / "lex.txt", word_delimiter=None)
    words = BeamSearchCTCDecoder(pieces, word_delimiter=None, lexicon=lexicon)
    assert words.decode(log_probs)[0].words == ["the", "cot"]


def test_missing_files_and_bad_tokens_explain_themselves(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"lexicon file .*nope\.txt.*write_lexicon"):
        BeamSearchCTCDecoder(CHARS, lexicon=tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match=r"language model file .*nope\.arpa.*build_arpa"):
        BeamSearchCTCDecoder(CHARS, lm=str(tmp_path / "nope.arpa"))
    with pytest.raises(ValueError, match="must include the blank"):
        BeamSearchCTCDecoder(CHARS, blank=len(CHARS))
    with pytest.raises(ValueError, match=r"word_delimiter '_' is not one of .*word_delimiter=None"):
        BeamSearchCTCDecoder(CHARS, word_delimiter="_")
    with pytest.raises(ValueError, match="sil_score must be 0"):
        BeamSearchCTCDecoder(CHARS, word_delimiter=None, sil_score=-1.0)
    with pytest.raises(ValueError, match="duplicate"):
        BeamSearchCTCDecoder([*CHARS, "a"])
    bad = tmp_path / "bad.txt"
    bad.write_text("dog\td o g |\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1 spells 'dog' with 'd'"):
        BeamSearchCTCDecoder(CHARS, lexicon=bad)
    with pytest.raises(ValueError, match="9 tokens"):
        BeamSearchCTCDecoder(CHARS)(torch.zeros(1, 4, 5), torch.tensor([4]))


def test_missing_flashlight_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchaudio.models.decoder as decoders

    monkeypatch.delattr(decoders, "ctc_decoder", raising=False)
    monkeypatch.delattr(decoders, "_ctc_decoder", raising=False)
    monkeypatch.setitem(sys.modules, "torchaudio.models.decoder._ctc_decoder", None)
    with pytest.raises(ImportError, match="pip install flashlight-text"):
        BeamSearchCTCDecoder(CHARS)
