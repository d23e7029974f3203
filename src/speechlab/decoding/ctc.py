"""CTC decoding: greedy (best path) and flashlight beam search with an optional n-gram LM.

Shapes: ``log_probs`` is ``(B, T, V)`` (log-softmax over ``V`` output tokens, blank included),
``lengths`` is ``(B,)`` valid frames per utterance. Decoders return one list of token indices per
utterance, blanks and repeats removed; word-delimiter tokens stay, for the tokenizer to decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor


def _check_inputs(log_probs: Tensor, lengths: Tensor | None, where: str) -> Tensor:
    """Validate ``(B, T, V)`` / ``(B,)`` inputs; return lengths as a CPU int64 tensor in [0, T]."""
    if log_probs.ndim != 3:
        raise ValueError(
            f"{where}: log_probs must be (B, T, V), got shape {tuple(log_probs.shape)}"
        )
    batch, frames, _ = log_probs.shape
    if lengths is None:
        return torch.full((batch,), frames, dtype=torch.long)
    lengths = torch.as_tensor(lengths).detach().to("cpu", torch.long).reshape(-1)
    if lengths.numel() != batch:
        raise ValueError(f"{where}: lengths has {lengths.numel()} entries for a batch of {batch}")
    return lengths.clamp(0, frames)


def greedy_decode(
    log_probs: Tensor, lengths: Tensor | None = None, blank: int = 0
) -> list[list[int]]:
    """Best-path CTC decoding: per-frame argmax, merge repeats, drop blanks and padded frames.

    ``log_probs``: ``(B, T, V)`` scores (log-probs or logits; only the argmax matters).
    ``lengths``: ``(B,)`` valid frames (``None``: all ``T``). Returns ``B`` lists of token ids.
    """
    lengths = _check_inputs(log_probs, lengths, "greedy_decode")
    best = log_probs.detach().argmax(dim=-1).cpu()  # (B, T)
    previous = torch.nn.functional.pad(best[:, :-1], (1, 0), value=-1)  # (B, T)
    valid = torch.arange(best.shape[1]) < lengths[:, None]  # (B, T)
    keep = (best != blank) & (best != previous) & valid
    return [row[mask].tolist() for row, mask in zip(best, keep, strict=True)]


class GreedyCTCDecoder:
    """Callable wrapper of :func:`greedy_decode` with a fixed blank index."""

    def __init__(self, blank: int = 0) -> None:
        self.blank = blank

    def __call__(self, log_probs: Tensor, lengths: Tensor | None = None) -> list[list[int]]:
        """``(B, T, V)``, ``(B,)`` -> ``B`` lists of token ids."""
        return greedy_decode(log_probs, lengths, blank=self.blank)


@dataclass
class BeamHypothesis:
    """The best beam of one utterance.

    ``tokens``: token ids (blanks, repeats removed); ``frames``: the frame each token starts at;
    ``words``: the lexicon words (empty for lexicon-free decoding); ``score``: total beam score
    (acoustic + ``lm_weight`` * LM + insertion scores).
    """

    tokens: list[int]
    frames: list[int] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    score: float = 0.0


_INSTALL = (
    "BeamSearchCTCDecoder needs the flashlight-text package (torchaudio's CTC beam search "
    "decoder is built on it) and could not import it. Install it with "
    "`pip install flashlight-text`, or decode with GreedyCTCDecoder instead."
)


def _ctc_decoder_factory():
    """torchaudio's flashlight ``ctc_decoder`` factory, or an ImportError saying how to get it."""
    try:
        from torchaudio.models.decoder import ctc_decoder
    except (ImportError, RuntimeError) as err:  # torchaudio wraps the ImportError in RuntimeError
        raise ImportError(_INSTALL) from err
    return ctc_decoder


def _token_kenlm(path: str, tokens: list[str]):
    """A flashlight KenLM scoring output index ``i`` as the LM word ``tokens[i]``.

    torchaudio's lexicon-free path builds the LM's word dictionary from a Python dict, whose
    C++ order differs from the token order, so token ``i`` would be scored as some other token.
    """
    try:
        from flashlight.lib.text.dictionary import Dictionary
    except ImportError as err:
        raise ImportError(_INSTALL) from err
    try:
        from flashlight.lib.text.decoder.kenlm import KenLM
    except ImportError:
        try:
            from flashlight.lib.text.decoder import KenLM
        except ImportError as err:
            raise ImportError(
                "BeamSearchCTCDecoder: this flashlight-text build has no KenLM; reinstall it with "
                "`pip install flashlight-text` (the PyPI wheels bundle KenLM)."
            ) from err
    return KenLM(path, Dictionary(tokens))


def _existing_file(path: str | Path | None, what: str, hint: str) -> str | None:
    if path is None:
        return None
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"BeamSearchCTCDecoder: {what} file {str(path)!r} not found. {hint}"
        )
    return str(path)


def _check_lexicon(path: str, tokens: set[str]) -> None:
    """Every spelling token of the lexicon must be an output token (flashlight would abort)."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            for token in fields[1:]:
                if token not in tokens:
                    raise ValueError(
                        f"BeamSearchCTCDecoder: lexicon {path!r} line {number} spells "
                        f"{fields[0]!r} with {token!r}, which is not one of the model's output "
                        "tokens; rebuild the lexicon with the tokenizer the model was trained with."
                    )


class BeamSearchCTCDecoder:
    """CTC prefix beam search (flashlight-text through torchaudio), optionally with a KenLM LM.

    ``tokens[i]`` is the symbol of output index ``i`` and ``tokens[blank]`` the blank.
    ``word_delimiter`` is the token spelling a space (``"|"`` for character tokenizers); it is
    flashlight's *silence* token, scored with ``sil_score``. Sub-word tokenizers whose pieces carry
    the word boundary (SentencePiece ``"▁the"``) have no such token: pass ``word_delimiter=None``
    and the blank doubles as silence (``sil_score`` must then stay 0, since it would be added to
    every blank frame); lexicon spellings are then the pieces of the word with no trailing token.

    ``lexicon``: a wav2letter lexicon file (``word<TAB>t o k e n s |`` lines, see
    :func:`speechlab.decoding.ngram.write_lexicon`) restricting the output to its words; ``None``
    decodes lexicon-free. ``lm``: an ARPA or KenLM binary file. With a lexicon the LM is over
    *words*; lexicon-free, flashlight scores every emitted *token* with it, so the LM must be a
    token-level one (e.g. built from :func:`speechlab.decoding.ngram.spell_sentences`, where the
    word delimiter is itself a "word"). The other arguments are flashlight's decoder options.

    Caveats (flashlight's lexicon decoder): a word whose spelling does not end in the silence
    token cannot absorb a repeat of its last token (``"▁c at at"``): the repeated frame is scored
    as silence, which costs insertions when the model holds a piece over several frames. Prefer
    ``"|"``-terminated spellings for characters and lexicon-free decoding with a piece-level LM
    for sub-words. With ``"|"``-terminated spellings each utterance gets one extra frame where
    ``"|"`` is certain, so the last word finishes even if the model never emits a final ``"|"``.
    """

    def __init__(
        self,
        tokens: list[str],
        blank: int = 0,
        word_delimiter: str | None = "|",
        beam_size: int = 50,
        beam_size_token: int | None = None,
        beam_threshold: float = 50.0,
        lexicon: str | Path | None = None,
        lm: str | Path | None = None,
        lm_weight: float = 2.0,
        word_score: float = 0.0,
        unk_score: float = float("-inf"),
        sil_score: float = 0.0,
        log_add: bool = False,
    ) -> None:
        tokens = list(tokens)
        if not 0 <= blank < len(tokens):
            raise ValueError(
                f"BeamSearchCTCDecoder: blank index {blank} is not in the token list of "
                f"{len(tokens)} tokens; the tokens must include the blank (tokens[blank])."
            )
        duplicates = sorted({t for t in tokens if tokens.count(t) > 1})
        if duplicates:
            raise ValueError(
                f"BeamSearchCTCDecoder: duplicate tokens {duplicates}; ids would clash"
            )
        if word_delimiter == tokens[blank]:
            word_delimiter = None
        if word_delimiter is not None and word_delimiter not in tokens:
            raise ValueError(
                f"BeamSearchCTCDecoder: word_delimiter {word_delimiter!r} is not one of the "
                f"{len(tokens)} tokens (e.g. {tokens[:5]}). Pass the token that spells a space, or "
                "word_delimiter=None for sub-word tokenizers without one."
            )
        if word_delimiter is None and sil_score != 0.0:
            raise ValueError(
                "BeamSearchCTCDecoder: sil_score must be 0 with word_delimiter=None, because the "
                "blank then stands in for silence and sil_score would be added to every blank frame."
            )
        lexicon = _existing_file(
            lexicon,
            "lexicon",
            "Write one with speechlab.decoding.ngram.write_lexicon or pass None.",
        )
        lm = _existing_file(
            lm, "language model", "Build an ARPA file with speechlab.decoding.ngram.build_arpa."
        )
        if lexicon is not None:
            _check_lexicon(lexicon, set(tokens))
        factory = _ctc_decoder_factory()
        if lm is not None and lexicon is None:
            lm = _token_kenlm(lm, tokens)

        self.tokens = tokens
        self.blank = blank
        self.word_delimiter = word_delimiter
        self.lexicon = lexicon
        # Lexicon words end with the delimiter ("c a t |"), so the last word only counts once a
        # delimiter is decoded: give each utterance one extra frame where it is certain (its
        # tokens are dropped from the output). Without it, flashlight forces the delimiter onto
        # a real frame or returns the last word unfinished.
        self._final_delimiter: Tensor | None = None
        if lexicon is not None and word_delimiter is not None:
            self._final_delimiter = torch.full((1, len(tokens)), -1e4)
            self._final_delimiter[0, tokens.index(word_delimiter)] = 0.0
        self._decoder = factory(
            lexicon=lexicon,
            tokens=tokens,
            lm=lm,
            nbest=1,
            beam_size=beam_size,
            beam_size_token=beam_size_token,
            beam_threshold=beam_threshold,
            lm_weight=lm_weight,
            word_score=word_score,
            unk_score=unk_score,
            sil_score=sil_score,
            log_add=log_add,
            blank_token=tokens[blank],
            sil_token=tokens[blank] if word_delimiter is None else word_delimiter,
        )

    def decode(self, log_probs: Tensor, lengths: Tensor | None = None) -> list[BeamHypothesis]:
        """``(B, T, V)`` log-probs, ``(B,)`` lengths -> the best :class:`BeamHypothesis` each."""
        lengths = _check_inputs(log_probs, lengths, "BeamSearchCTCDecoder")
        if log_probs.shape[-1] != len(self.tokens):
            raise ValueError(
                f"BeamSearchCTCDecoder: log_probs has {log_probs.shape[-1]} classes but the "
                f"decoder was built with {len(self.tokens)} tokens"
            )
        # flashlight reads raw float32 memory on the CPU, row-major.
        emissions = log_probs.detach().to("cpu", torch.float32)
        out = []
        for b, length in enumerate(lengths.tolist()):
            if length == 0:
                out.append(BeamHypothesis(tokens=[]))
                continue
            frames = emissions[b, :length]
            if self._final_delimiter is not None:
                frames = torch.cat([frames, self._final_delimiter])
            frames = frames.contiguous()[None]  # (1, T', V)
            hyp = self._decoder(frames, torch.tensor([frames.shape[1]]))[0][0]
            # Timestep 0 and length + 1 are flashlight's initial/final silence states, not frames.
            keep = [
                (token, step - 1)
                for token, step in zip(hyp.tokens.tolist(), hyp.timesteps.tolist(), strict=True)
                if 1 <= step <= length
            ]
            out.append(
                BeamHypothesis(
                    tokens=[t for t, _ in keep],
                    frames=[f for _, f in keep],
                    words=list(hyp.words),
                    score=float(hyp.score),
                )
            )
        return out

    def __call__(self, log_probs: Tensor, lengths: Tensor | None = None) -> list[list[int]]:
        """``(B, T, V)``, ``(B,)`` -> ``B`` lists of token ids of the best beams."""
        return [hyp.tokens for hyp in self.decode(log_probs, lengths)]
