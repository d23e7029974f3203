"""TextNormalizer: punctuation by Unicode category, apostrophes, alphabets, options."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from speechlab.text.normalize import RULES_VERSION, TextNormalizer


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"Takuma Sato\'s afternoon, ended."', "takuma sato's afternoon ended"),
        ("L'homme  DON'T\tstop!", "l'homme don't stop"),
        ("Ne vevomp ket diwar hor c\u2019harantez.", "ne vevomp ket diwar hor c'harantez"),
        ("'quoted' words", "quoted words"),
        ("dell' come", "dell come"),
        ('"""chyba będziemy łowić żaby."""', "chyba będziemy łowić żaby"),
        ("pen-teulu, U.S.A.", "pen teulu u s a"),
        ("Московитам – ні? Але це – расизм!", "московитам ні але це расизм"),
        ("阿什伯顿是位于英国的一座小镇。", "阿什伯顿是位于英国的一座小镇"),
        ("大家幫手，散出去", "大家幫手 散出去"),
        ("أَلَمْ يَعْلَمْ ؟", "أَلَمْ يَعْلَمْ"),  # harakat are marks (Mn), not punctuation
        ("मैं खाती हूँ।", "मैं खाती हूँ"),  # the danda is punctuation, the vowel signs are not
        ("«Вот» — так…", "вот так"),
        ("Ｆｕｌｌ ｗｉｄｔｈ ﬁne", "full width fine"),  # NFKC
        ("5 + 5 = $10", "5 + 5 = $10"),  # symbols (S*) are not punctuation
        ("50% off", "50 off"),  # but % is (Po)
        ("  \n ", ""),
        ("...!?", ""),
    ],
)
def test_default_normalisation(raw: str, expected: str):
    assert TextNormalizer()(raw) == expected


def test_keep_punctuation_and_case():
    normalizer = TextNormalizer(lowercase=False, punctuation="keep")
    assert normalizer('  "Don\u2019t,"  he said. ') == '"Don\'t," he said.'


def test_alphabet_drop_and_remove():
    letters = "abcdefghijklmnopqrstuvwxyz'"
    drop = TextNormalizer(alphabet=letters)
    assert drop("Don't stop!") == "don't stop"
    assert drop("Café au lait.") is None
    assert drop.outside_alphabet("Café au lait.") == ["é"]
    remove = TextNormalizer(alphabet=letters, out_of_alphabet="remove")
    assert remove("Café au lait.") == "caf au lait"
    assert remove("日本") == ""
    # The alphabet is compared after lower-casing and Unicode normalisation.
    assert TextNormalizer(alphabet="ABC")("Cab") == "cab"
    assert TextNormalizer(alphabet="e\u0301")("e\u0301") == "\u00e9"  # NFKC composes both
    assert TextNormalizer(alphabet="e", unicode_form="NFD")("é") is None  # e + U+0301


def test_unicode_form_none_leaves_compatibility_characters():
    assert TextNormalizer(unicode_form=None)("ﬁne") == "ﬁne"
    assert TextNormalizer(unicode_form="NFC")("ﬁne") == "ﬁne"


def test_options_round_trip_and_coerce():
    normalizer = TextNormalizer(lowercase=False, alphabet="ab ", out_of_alphabet="remove")
    options = normalizer.options()
    assert options == {
        "lowercase": False,
        "punctuation": "remove",
        "alphabet": "ab ",
        "out_of_alphabet": "remove",
        "unicode_form": "NFKC",
        "rules_version": RULES_VERSION,
    }
    assert TextNormalizer.coerce(options).options() == options
    assert TextNormalizer.coerce(OmegaConf.create({"punctuation": "keep"}))("A, b") == "a, b"
    assert TextNormalizer.coerce(None).options() == TextNormalizer().options()
    assert TextNormalizer.coerce(normalizer) is normalizer


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"punctuation": "strip"}, "punctuation='strip': expected one of"),
        ({"out_of_alphabet": "skip"}, "out_of_alphabet='skip'"),
        ({"unicode_form": "NFX"}, "unicode_form='NFX'"),
        ({"alphabet": ["a", "b"]}, "expected a string of the allowed characters"),
        ({"lowercse": True}, "expected keys lowercase, punctuation"),
    ],
)
def test_bad_options_are_clear_errors(options: dict, message: str):
    with pytest.raises(ValueError, match=message):
        TextNormalizer.coerce(options)
