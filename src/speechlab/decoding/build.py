"""The one place that turns ``model.decoding`` into a decoder.

The options and their values come from the model config (``conf/model/ctc.yaml``,
``conf/model/las.yaml``, ...), which every checkpoint stores resolved; there are no defaults
here. :func:`build_ctc_decoder` gives ``(log_probs, lengths) -> texts`` (greedy, or flashlight
beam search with an optional lexicon and n-gram LM); :func:`build_attention_decoder` gives an
:class:`AttentionDecoder` (greedy, or batched beam search with joint CTC prefix scores and
n-gram shallow fusion), which needs every option of :data:`ATTENTION_OPTIONS`;
:func:`build_transducer_decoder` gives a :class:`TransducerDecoder` (greedy or torchaudio's RNN-T
beam search), which needs every option of :data:`TRANSDUCER_OPTIONS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from speechlab.decoding.attention import beam_search, greedy_search
from speechlab.decoding.ctc import BeamSearchCTCDecoder, GreedyCTCDecoder
from speechlab.decoding.fusion import FusionLM, TokenNGramLM, WordNGramLM
from speechlab.decoding.transducer import beam_search as transducer_beam_search
from speechlab.decoding.transducer import greedy_search as transducer_greedy_search
from speechlab.text.tokenizers import Tokenizer

log = logging.getLogger(__name__)

DECODING_KINDS = ("greedy", "beam")
LM_UNITS = ("word", "token")

#: The options of attention decoding, all given by ``model.decoding``:
#: kind (greedy | beam), beam_size, ctc_weight (of the CTC prefix score, needs the CTC head),
#: length_penalty (rank finished hypotheses by score / (tokens + 1) ** length_penalty),
#: max_length_ratio (most output tokens per encoder frame), max_length (absolute cap),
#: ctc_pre_beam (CTC-score only this many candidates per hypothesis; None: all), lm (ARPA file
#: for shallow fusion, see ``speechlab build-lm``), lm_unit (word | token), lm_weight.
ATTENTION_OPTIONS = (
    "kind",
    "beam_size",
    "ctc_weight",
    "length_penalty",
    "max_length_ratio",
    "max_length",
    "ctc_pre_beam",
    "lm",
    "lm_unit",
    "lm_weight",
)

# (log_probs (B, T, V), lengths (B,)) -> B texts
TextDecoder = Callable[[torch.Tensor, torch.Tensor], list[str]]


def _kind(options: Mapping[str, Any]) -> str:
    if "kind" not in options:
        raise ValueError(
            f"model.decoding names no kind; set model.decoding.kind to one of {DECODING_KINDS}"
        )
    kind = options["kind"]
    if kind not in DECODING_KINDS:
        raise ValueError(f"model.decoding.kind must be one of {DECODING_KINDS}, got {kind!r}")
    return kind


def build_ctc_decoder(decoding: Mapping[str, Any], tokenizer: Tokenizer) -> TextDecoder:
    """``{kind: greedy}`` or ``{kind: beam, beam_size, lexicon, lm, lm_weight, word_score, ...}``
    (the arguments of :class:`~speechlab.decoding.ctc.BeamSearchCTCDecoder`) ->
    ``(log_probs (B, T, V), lengths (B,)) -> texts``. With a lexicon, the text is the beam's
    words (a word cut off at the end of the audio is not spelled out).

    Raises:
        ValueError: no ``kind``, or an unknown one.
    """
    options = dict(decoding)
    kind = _kind(options)
    del options["kind"]
    if kind == "greedy":
        greedy = GreedyCTCDecoder(blank=0)
        return lambda log_probs, lengths: [tokenizer.decode(i) for i in greedy(log_probs, lengths)]
    options.setdefault("word_delimiter", tokenizer.word_delimiter)
    beam = BeamSearchCTCDecoder(tokens=tokenizer.tokens, blank=0, **options)
    if options.get("lexicon"):
        return lambda log_probs, lengths: [
            " ".join(hyp.words) for hyp in beam.decode(log_probs, lengths)
        ]
    return lambda log_probs, lengths: [tokenizer.decode(i) for i in beam(log_probs, lengths)]


@dataclass
class AttentionDecoder:
    """Decoding options, bound to an LM if any: call it with the speller and encoder output.

    ``kind="greedy"`` runs :func:`~speechlab.decoding.attention.greedy_search` (no CTC, no LM);
    ``kind="beam"`` runs the batched :func:`~speechlab.decoding.attention.beam_search` with
    joint CTC scoring (``ctc_weight > 0`` and CTC log-probabilities given) and shallow fusion
    with ``lm`` (``lm_weight``). Build it with :func:`build_attention_decoder`.
    """

    kind: str
    beam_size: int
    ctc_weight: float
    length_penalty: float
    max_length_ratio: float
    max_length: int
    ctc_pre_beam: int | None
    lm: FusionLM | None
    lm_weight: float

    def __call__(
        self,
        speller: nn.Module,
        encoded: torch.Tensor,
        encoded_lengths: torch.Tensor,
        ctc_log_probs: torch.Tensor | None = None,
        ctc_lengths: torch.Tensor | None = None,
    ) -> list[list[int]]:
        """Token ids (no ``<eos>``) of the ``B`` utterances of ``encoded`` ``(B, T, D)``."""
        if self.kind == "greedy":
            return greedy_search(
                speller, encoded, encoded_lengths, self.max_length_ratio, self.max_length
            )
        ctc_weight = self.ctc_weight if ctc_log_probs is not None else 0.0
        return beam_search(
            speller,
            encoded,
            encoded_lengths,
            beam_size=self.beam_size,
            max_length_ratio=self.max_length_ratio,
            max_length=self.max_length,
            length_penalty=self.length_penalty,
            ctc_weight=ctc_weight,
            ctc_log_probs=ctc_log_probs if ctc_weight > 0 else None,
            ctc_lengths=ctc_lengths,
            lm=self.lm,
            lm_weight=self.lm_weight if self.lm is not None else 0.0,
            ctc_pre_beam=self.ctc_pre_beam,
        )


def build_attention_decoder(
    decoding: Mapping[str, Any], tokens: Sequence[str], word_delimiter: str | None
) -> AttentionDecoder:
    """Every option of :data:`ATTENTION_OPTIONS` -> a decoder whose LM (if ``lm`` names one and
    ``kind`` is ``beam``) speaks the tokenizer's ``tokens`` (``word_delimiter``: see
    :class:`~speechlab.decoding.fusion.WordNGramLM`).

    Raises:
        ValueError: an unknown or missing option, or a value out of range.
    """
    unknown = sorted(set(decoding) - set(ATTENTION_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown LAS decoding option(s) {unknown}; the options are "
            f"{sorted(ATTENTION_OPTIONS)} (attention decoding takes no lexicon: a word LM "
            "scores each word as the speller completes it)"
        )
    missing = [name for name in ATTENTION_OPTIONS if name not in decoding]
    if missing:
        raise ValueError(
            f"model.decoding lacks {missing}; attention decoding takes every option of "
            f"{list(ATTENTION_OPTIONS)} from the model config (conf/model/las.yaml)"
        )
    kind = _kind(decoding)
    unit = decoding["lm_unit"]
    if unit not in LM_UNITS:
        raise ValueError(f"model.decoding.lm_unit must be one of {LM_UNITS}, got {unit!r}")
    if not 0.0 <= float(decoding["ctc_weight"]) <= 1.0:
        raise ValueError(
            f"model.decoding.ctc_weight must be in [0, 1], got {decoding['ctc_weight']}"
        )
    lm: FusionLM | None = None
    if decoding["lm"] and kind == "beam":
        if unit == "token":
            lm = TokenNGramLM(decoding["lm"], tokens)
        else:
            lm = WordNGramLM(decoding["lm"], tokens, word_delimiter=word_delimiter)
    elif decoding["lm"]:
        log.warning("model.decoding.lm is only used by beam search (kind=beam); greedy ignores it")
    pre_beam = decoding["ctc_pre_beam"]
    return AttentionDecoder(
        kind=kind,
        beam_size=int(decoding["beam_size"]),
        ctc_weight=float(decoding["ctc_weight"]),
        length_penalty=float(decoding["length_penalty"]),
        max_length_ratio=float(decoding["max_length_ratio"]),
        max_length=int(decoding["max_length"]),
        ctc_pre_beam=None if pre_beam is None else int(pre_beam),
        lm=lm,
        lm_weight=float(decoding["lm_weight"]),
    )


#: The options of transducer decoding, all given by ``model.decoding`` (conf/model/rnnt.yaml):
#: kind (greedy | beam), beam_size, max_symbols_per_frame (most tokens emitted at one frame).
TRANSDUCER_OPTIONS = ("kind", "beam_size", "max_symbols_per_frame")


@dataclass
class TransducerDecoder:
    """Transducer decoding options: call it with the prediction network, the joiner and the
    encoder output. ``kind="greedy"`` runs the batched
    :func:`~speechlab.decoding.transducer.greedy_search`, ``kind="beam"`` torchaudio's
    beam search (:func:`~speechlab.decoding.transducer.beam_search`). Build it with
    :func:`build_transducer_decoder`.
    """

    kind: str
    beam_size: int
    max_symbols_per_frame: int

    def __call__(
        self,
        prediction: nn.Module,
        joiner: nn.Module,
        encoded: torch.Tensor,
        encoded_lengths: torch.Tensor,
    ) -> list[list[int]]:
        """Token ids (no blank) of the ``B`` utterances of ``encoded`` ``(B, T, D)``."""
        if self.kind == "greedy":
            return transducer_greedy_search(
                prediction, joiner, encoded, encoded_lengths, self.max_symbols_per_frame
            )
        return transducer_beam_search(
            prediction,
            joiner,
            encoded,
            encoded_lengths,
            beam_size=self.beam_size,
            max_symbols_per_frame=self.max_symbols_per_frame,
        )


def build_transducer_decoder(decoding: Mapping[str, Any]) -> TransducerDecoder:
    """Every option of :data:`TRANSDUCER_OPTIONS` -> a :class:`TransducerDecoder`.

    Raises:
        ValueError: an unknown or missing option, or a value out of range.
    """
    unknown = sorted(set(decoding) - set(TRANSDUCER_OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown transducer decoding option(s) {unknown}; the options are "
            f"{sorted(TRANSDUCER_OPTIONS)} (transducer search takes no LM or lexicon)"
        )
    missing = [name for name in TRANSDUCER_OPTIONS if name not in decoding]
    if missing:
        raise ValueError(
            f"model.decoding lacks {missing}; transducer decoding takes every option of "
            f"{list(TRANSDUCER_OPTIONS)} from the model config (conf/model/rnnt.yaml)"
        )
    kind = _kind(decoding)
    for name in ("beam_size", "max_symbols_per_frame"):
        if int(decoding[name]) < 1:
            raise ValueError(f"model.decoding.{name} must be at least 1, got {decoding[name]}")
    return TransducerDecoder(
        kind=kind,
        beam_size=int(decoding["beam_size"]),
        max_symbols_per_frame=int(decoding["max_symbols_per_frame"]),
    )
