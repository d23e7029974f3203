"""Tokenizers: characters, espeak-ng phonemes (synthesis) and SentencePiece (BPE, unigram),
trained on the train split.

Every tokenizer reserves id 0 for the CTC blank, saves itself as plain data (``state()``: a dict
of strings and lists, stored in checkpoints and run dirs as JSON) and is rebuilt from it with
:func:`load_tokenizer`. Texts reach the tokenizer already normalised by the corpus reader.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

BLANK = "<blank>"
CHAR_KINDS = ("char", "phoneme")
SENTENCEPIECE_KINDS = ("bpe", "unigram")
KINDS = CHAR_KINDS + SENTENCEPIECE_KINDS


class Tokenizer(Protocol):
    """What tasks and decoders use. ``tokens[i]`` is the symbol of id ``i``; id 0 is the blank."""

    kind: str
    tokens: list[str]
    word_delimiter: str | None

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...

    def unknown(self, text: str) -> set[str]: ...

    def spell(self, word: str) -> list[str]: ...

    def state(self) -> dict[str, Any]: ...


class CharTokenizer:
    """One id per character; a space is spelled ``|`` (the wav2letter word delimiter).

    ``tokens`` is ``["<blank>", "|", <characters in sorted order>]``.
    """

    kind = "char"
    word_delimiter = "|"

    def __init__(self, characters: Iterable[str]) -> None:
        characters = sorted(set(characters) - {" ", "|"})
        if any(len(c) != 1 for c in characters):
            raise ValueError(f"character tokenizer symbols must be single characters: {characters}")
        self.tokens = [BLANK, self.word_delimiter, *characters]
        self.index = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def train(cls, texts: Iterable[str]) -> CharTokenizer:
        """The characters of ``texts`` (spaces become the delimiter)."""
        characters: set[str] = set()
        for text in texts:
            characters.update(text)
        if not characters - {" "}:
            raise ValueError("cannot build a character tokenizer: the training texts are empty")
        return cls(characters)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def _symbols(self, text: str) -> list[str]:
        return [self.word_delimiter if c == " " else c for c in " ".join(text.split())]

    def unknown(self, text: str) -> set[str]:
        """Characters of ``text`` the tokenizer cannot spell."""
        return {s for s in self._symbols(text) if s not in self.index}

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; raises ``KeyError`` naming the first unknown character."""
        try:
            return [self.index[s] for s in self._symbols(text)]
        except KeyError as error:
            raise KeyError(
                f"character {error.args[0]!r} of {text!r} is not in the tokenizer's alphabet "
                f"{''.join(self.tokens[2:])!r}"
            ) from None

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` (the blank is dropped; repeats are kept: collapse before calling)."""
        symbols = [self.tokens[i] for i in ids if i != 0]
        return " ".join("".join(symbols).replace(self.word_delimiter, " ").split())

    def spell(self, word: str) -> list[str]:
        """Tokens of one word (for lexicons)."""
        return list(word)

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": list(self.tokens)}


class PhonemeTokenizer(CharTokenizer):
    """Characters of the IPA phonemes libespeak-ng gives for the text (for synthesis).

    ``encode("the cat")`` spells ``"ðə kˈæt"``: one id per IPA character (stress and length marks
    included), ``|`` between words. ``voice`` picks espeak-ng's language rules (``en-us``).
    """

    kind = "phoneme"

    def __init__(self, characters: Iterable[str], voice: str = "en-us") -> None:
        super().__init__(characters)
        self.voice = voice

    @classmethod
    def train(cls, texts: Iterable[str], voice: str = "en-us") -> PhonemeTokenizer:
        """The phoneme characters of ``texts``."""
        phonemes = CharTokenizer.train(phonemize(t, voice) for t in texts)
        return cls(phonemes.tokens[2:], voice)

    def unknown(self, text: str) -> set[str]:
        return super().unknown(phonemize(text, self.voice))

    def encode(self, text: str) -> list[int]:
        return super().encode(phonemize(text, self.voice))

    def spell(self, word: str) -> list[str]:
        return list(phonemize(word, self.voice).replace(" ", ""))

    def state(self) -> dict[str, Any]:
        return {**super().state(), "voice": self.voice}


@lru_cache(maxsize=65536)
def phonemize(text: str, voice: str = "en-us") -> str:
    """IPA phonemes of ``text`` from libespeak-ng (cached: every epoch spells the same texts)."""
    from speechlab.text.espeak import Espeak

    return Espeak.shared().phonemize(text, voice)


class SentencePieceTokenizer:
    """SentencePiece BPE or unigram pieces; SentencePiece id ``i`` is our id ``i + 1``.

    ``tokens`` is ``["<blank>", <pieces>]`` (pieces start a word with ``▁``). There is no word
    delimiter token, so n-gram LM decoding needs a lexicon (words spelled in pieces).
    """

    word_delimiter = None

    def __init__(self, model_proto: bytes, kind: str) -> None:
        import sentencepiece as spm

        if kind not in SENTENCEPIECE_KINDS:
            raise ValueError(f"SentencePiece kind must be one of {SENTENCEPIECE_KINDS}, got {kind}")
        self.kind = kind
        self.model_proto = model_proto
        self.processor = spm.SentencePieceProcessor(model_proto=model_proto)
        pieces = [self.processor.id_to_piece(i) for i in range(self.processor.get_piece_size())]
        self.tokens = [BLANK, *pieces]

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        kind: str = "unigram",
        vocab_size: int = 256,
        character_coverage: float = 1.0,
    ) -> SentencePieceTokenizer:
        """Train on ``texts``.

        When the texts allow fewer pieces than ``vocab_size``, the tokenizer has as many as they
        allow, and a warning says what was asked, what was made and what to set. Raises
        ``ValueError`` when ``vocab_size`` is below what the texts need (one piece per character
        plus the unknown piece), saying the smallest size that trains.
        """
        import sentencepiece as spm

        sentences = [t for t in texts if t.strip()]
        if not sentences:
            raise ValueError("cannot train a SentencePiece tokenizer: the training texts are empty")
        model = io.BytesIO()
        options = dict(
            sentence_iterator=iter(sentences),
            model_writer=model,
            model_type=kind,
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            bos_id=-1,
            eos_id=-1,
            unk_id=0,
            hard_vocab_limit=False,
            num_threads=1,
            minloglevel=2,
        )
        try:
            spm.SentencePieceTrainer.train(**options)
        except RuntimeError as error:
            needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(error))
            advice = (
                f"the texts need {int(needed.group(1)) - 1} character pieces (the word boundary among "
                f"them) and the unknown piece: raise data.tokenizer.vocab_size to at least "
                f"{needed.group(1)}"
                if needed
                else "check data.tokenizer (kind, vocab_size, character_coverage)"
            )
            raise ValueError(
                f"SentencePiece {kind} training with data.tokenizer.vocab_size={vocab_size} "
                f"failed on {len(sentences)} training sentences: {advice} ({error})"
            ) from error
        tokenizer = cls(model.getvalue(), kind)
        made = tokenizer.pieces
        if made < vocab_size:
            log.warning(
                "data.tokenizer.vocab_size=%d asked, but the %d training sentences allow only %d "
                "%s pieces: the tokenizer has %d (the run records that size: tokenizer.json, "
                "the checkpoint, hparams and loggers). Set data.tokenizer.vocab_size=%d to ask "
                "for it.",
                vocab_size,
                len(sentences),
                made,
                kind,
                made,
                made,
            )
        return tokenizer

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def pieces(self) -> int:
        """SentencePiece's pieces, without the CTC blank: what ``vocab_size`` asks for."""
        return len(self.tokens) - 1

    def unknown(self, text: str) -> set[str]:
        unk = self.processor.unk_id()
        pieces = self.processor.encode(text, out_type=str)
        ids = self.processor.encode(text)
        return {piece for piece, i in zip(pieces, ids, strict=True) if i == unk}

    def encode(self, text: str) -> list[int]:
        return [i + 1 for i in self.processor.encode(text)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.processor.decode([i - 1 for i in ids if i != 0])

    def spell(self, word: str) -> list[str]:
        return self.processor.encode(word, out_type=str)

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": base64.b64encode(self.model_proto).decode("ascii")}


def load_tokenizer(state: Mapping[str, Any]) -> CharTokenizer | SentencePieceTokenizer:
    """Rebuild a tokenizer from :meth:`state` (as stored in checkpoints and ``tokenizer.json``)."""
    kind = state.get("kind")
    if kind in CHAR_KINDS and "tokens" in state:
        tokens = list(state["tokens"])
        if kind == "phoneme":
            tokenizer = PhonemeTokenizer(tokens[2:], state.get("voice", "en-us"))
        else:
            tokenizer = CharTokenizer(tokens[2:])
        if tokenizer.tokens != tokens:
            raise ValueError(f"saved character tokens {tokens} are not in canonical order")
        return tokenizer
    if kind in SENTENCEPIECE_KINDS and "model" in state:
        return SentencePieceTokenizer(base64.b64decode(state["model"]), kind)
    raise ValueError(
        f"not a saved tokenizer: {dict(state)!r}; expected {{'kind': 'char', 'tokens': [...]}} or "
        f"{{'kind': 'bpe'|'unigram', 'model': <base64>}}"
    )


def is_trained(spec: Mapping[str, Any]) -> bool:
    """Whether ``spec`` is a saved tokenizer (vs options of one still to train)."""
    return "tokens" in spec or "model" in spec


# The options of each kind of tokenizer, and a check of each option's value.
OPTIONS: dict[str, dict[str, tuple[str, Any]]] = {
    "char": {},
    "phoneme": {"voice": ("an espeak-ng voice name (en-us)", lambda v: isinstance(v, str))},
    **{
        kind: {
            "vocab_size": (
                "a whole number of pieces > 0 (e.g. 256)",
                lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
            ),
            "character_coverage": (
                "a share of the characters in (0, 1] (e.g. 1.0, or 0.9995 for large alphabets)",
                lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1,
            ),
        }
        for kind in SENTENCEPIECE_KINDS
    },
}


def check_tokenizer_spec(spec: Mapping[str, Any], key: str = "data.tokenizer") -> None:
    """Check the options of a tokenizer to train (a saved one passes), before any text is read.

    Raises:
        ValueError: an unknown kind, an option the kind does not take, or a value it cannot use;
            the message names ``<key>.<option>`` and what it takes.
    """
    if is_trained(spec):
        return
    options = dict(spec)
    kind = options.pop("kind", "char")
    if kind not in OPTIONS:
        raise ValueError(f"{key}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    allowed = OPTIONS[kind]
    for name, value in options.items():
        if name not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no option"
            raise ValueError(
                f"{key}.{name}={value}: the {kind} tokenizer {takes}; remove it (~{key}.{name})"
            )
        wanted, valid = allowed[name]
        if not valid(value):
            raise ValueError(f"{key}.{name}={value!r}: it takes {wanted}")


def train_tokenizer(
    spec: Mapping[str, Any], texts: Iterable[str]
) -> CharTokenizer | SentencePieceTokenizer:
    """Train the tokenizer ``spec`` describes: ``{kind: char}`` or
    ``{kind: bpe|unigram, vocab_size: N, character_coverage: 1.0}``.

    Raises:
        ValueError: options :func:`check_tokenizer_spec` refuses, or texts that cannot train it.
    """
    check_tokenizer_spec(spec)
    options = dict(spec)
    kind = options.pop("kind", "char")
    if kind == "char":
        return CharTokenizer.train(texts)
    if kind == "phoneme":
        return PhonemeTokenizer.train(texts, **options)
    return SentencePieceTokenizer.train(texts, kind, **options)


def cached_tokenizer(
    spec: Mapping[str, Any], texts: list[str], cache_dir: Path | None
) -> CharTokenizer | SentencePieceTokenizer:
    """:func:`train_tokenizer`, reusing ``<cache_dir>/tokenizer-<hash>.json`` for the same
    spec and texts (SentencePiece training on a large corpus takes a while)."""
    if is_trained(spec):
        return load_tokenizer(spec)
    if cache_dir is None:
        return train_tokenizer(spec, texts)
    digest = hashlib.sha256(json.dumps(dict(spec), sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    path = Path(cache_dir) / f"tokenizer-{digest.hexdigest()[:16]}.json"
    if path.is_file():
        return load_tokenizer(json.loads(path.read_text(encoding="utf-8")))
    tokenizer = train_tokenizer(spec, texts)
    save_tokenizer(tokenizer, path)
    return tokenizer


def save_tokenizer(tokenizer: CharTokenizer | SentencePieceTokenizer, path: Path) -> Path:
    """Write ``tokenizer.state()`` as JSON (atomically); a SentencePiece model also gets its
    ``.model`` file beside it, for use with SentencePiece's own tools."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(tokenizer.state(), ensure_ascii=False) + "\n", encoding="utf-8")
    partial.replace(path)
    if isinstance(tokenizer, SentencePieceTokenizer):
        path.with_suffix(".model").write_bytes(tokenizer.model_proto)
    return path
