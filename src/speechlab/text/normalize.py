"""Transcript normalisation for ASR targets, for any script.

:class:`TextNormalizer` applies, in order: Unicode normalisation (NFKC by default), lower-casing,
apostrophe canonicalisation (``'``, ``’``, ``ʼ`` or ``‘`` between two letters or digits becomes
``'``, so ``l’homme`` and ``l'homme`` agree), punctuation removal, the alphabet filter, and
whitespace collapsing.

Punctuation is every character of a Unicode ``P*`` category (``.,;:!?"«»()[]-–—…。،؟।`` ...); an
apostrophe between two letters or digits is kept (``don't``, ``l'homme``). Each removed mark
becomes a space, so ``pen-teulu`` gives ``pen teulu`` and ``word,word`` two words. Symbols
(``S*``: ``$ + = €``; ``%`` and ``&`` are ``Po``) are not punctuation: an ``alphabet`` decides
about them.

NFKC folds compatibility characters (full-width letters, ligatures such as ``ﬁ``) but also
decomposes a few ordinary letters, e.g. Thai SARA AM (``ำ`` -> ``ํา``); use ``unicode_form="NFC"``
for such scripts.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

PUNCTUATION_MODES = ("remove", "keep")
OUT_OF_ALPHABET_MODES = ("drop", "remove")
UNICODE_FORMS = ("NFC", "NFD", "NFKC", "NFKD")
APOSTROPHES = frozenset("'\u2019\u02bc\u2018")
#: Bump when the rules change, so cached manifests built with the old rules are rebuilt.
RULES_VERSION = 1


def _is_word_char(char: str) -> bool:
    """A letter, combining mark or digit of any script."""
    return unicodedata.category(char)[0] in "LMN"


class TextNormalizer:
    """Normalise a transcript; ``None`` means "drop this utterance".

    Args:
        lowercase: lower-case the text (``str.lower``, not locale aware).
        punctuation: ``"remove"`` (see the module docstring) or ``"keep"``.
        alphabet: the allowed characters (after the other steps; the space is always allowed);
            ``None`` allows everything.
        out_of_alphabet: ``"drop"``: a text with any character outside ``alphabet`` gives
            ``None``; ``"remove"``: such characters are deleted.
        unicode_form: ``"NFKC"``, ``"NFC"``, ``"NFKD"``, ``"NFD"``, or ``None`` for none.
    """

    def __init__(
        self,
        lowercase: bool = True,
        punctuation: str = "remove",
        alphabet: str | None = None,
        out_of_alphabet: str = "drop",
        unicode_form: str | None = "NFKC",
    ) -> None:
        if punctuation not in PUNCTUATION_MODES:
            raise ValueError(
                f"TextNormalizer punctuation={punctuation!r}: expected one of {PUNCTUATION_MODES}"
            )
        if out_of_alphabet not in OUT_OF_ALPHABET_MODES:
            raise ValueError(
                f"TextNormalizer out_of_alphabet={out_of_alphabet!r}: expected one of "
                f"{OUT_OF_ALPHABET_MODES}"
            )
        if unicode_form is not None and unicode_form not in UNICODE_FORMS:
            raise ValueError(
                f"TextNormalizer unicode_form={unicode_form!r}: expected one of {UNICODE_FORMS} "
                "or None"
            )
        if alphabet is not None and not isinstance(alphabet, str):
            raise ValueError(
                f"TextNormalizer alphabet={alphabet!r}: expected a string of the allowed "
                'characters, e.g. "abcdefghijklmnopqrstuvwxyz\'"'
            )
        self.lowercase = bool(lowercase)
        self.punctuation = punctuation
        self.out_of_alphabet = out_of_alphabet
        self.unicode_form = unicode_form
        self.alphabet = alphabet
        allowed = None
        if alphabet is not None:
            allowed = self._unicode(alphabet)
            allowed = allowed.lower() if self.lowercase else allowed
        self._allowed = None if allowed is None else frozenset(allowed) | {" "}

    @classmethod
    def coerce(cls, value: TextNormalizer | Mapping | None) -> TextNormalizer:
        """A normalizer from itself, a mapping of keyword arguments, or ``None`` (the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, TextNormalizer):
            return value
        if isinstance(value, Mapping):
            options = {str(key): item for key, item in value.items()}
            options.pop("rules_version", None)
            try:
                return cls(**options)
            except TypeError as error:
                raise ValueError(
                    f"normalizer options {options}: {error}; expected keys lowercase, "
                    "punctuation, alphabet, out_of_alphabet, unicode_form"
                ) from error
        raise ValueError(
            f"normalizer={value!r}: expected a TextNormalizer, a mapping of its options or None"
        )

    def options(self) -> dict:
        """The settings, as plain data (for manifest cache keys and configs)."""
        return {
            "lowercase": self.lowercase,
            "punctuation": self.punctuation,
            "alphabet": self.alphabet,
            "out_of_alphabet": self.out_of_alphabet,
            "unicode_form": self.unicode_form,
            "rules_version": RULES_VERSION,
        }

    def __repr__(self) -> str:
        settings = ", ".join(
            f"{k}={v!r}" for k, v in self.options().items() if k != "rules_version"
        )
        return f"TextNormalizer({settings})"

    def __call__(self, text: str) -> str | None:
        """The normalised text (possibly ``""``), or ``None`` when it must be dropped."""
        text = self._unicode(text)
        if self.lowercase:
            text = text.lower()
        text = self._apostrophes_and_punctuation(text)
        if self._allowed is not None:
            outside = {c for c in text if c not in self._allowed and not c.isspace()}
            if outside:
                if self.out_of_alphabet == "drop":
                    return None
                text = "".join(c for c in text if c not in outside)
        return " ".join(text.split())

    def outside_alphabet(self, text: str) -> list[str]:
        """The characters of ``text`` (after the other steps) that the alphabet lacks, sorted."""
        if self._allowed is None:
            return []
        text = self._apostrophes_and_punctuation(
            self._unicode(text).lower() if self.lowercase else self._unicode(text)
        )
        return sorted({c for c in text if c not in self._allowed and not c.isspace()})

    def rejection(self, text: str) -> str:
        """Why ``text`` was dropped, and the two ways to keep it: a clause for a skip message
        that the reader prefixes with which transcript it was and where."""
        outside = "".join(self.outside_alphabet(text))
        return (
            f"has characters outside the normalizer's alphabet ({outside!r}); extend "
            "data.reader.normalizer.alphabet or set out_of_alphabet=remove"
        )

    def _unicode(self, text: str) -> str:
        return unicodedata.normalize(self.unicode_form, text) if self.unicode_form else text

    def _is_separator(self, char: str) -> bool:
        """Punctuation to remove, or a control code (tab, newline, ...)."""
        category = unicodedata.category(char)
        return category == "Cc" or (self.punctuation == "remove" and category[0] == "P")

    def _apostrophes_and_punctuation(self, text: str) -> str:
        chars = []
        last = len(text) - 1
        for i, char in enumerate(text):
            if (
                char in APOSTROPHES
                and 0 < i < last
                and _is_word_char(text[i - 1])
                and _is_word_char(text[i + 1])
            ):
                chars.append("'")
            elif self._is_separator(char):
                chars.append(" ")
            else:
                chars.append(char)
        return "".join(chars)
