"""End-to-end speech translation: source-language speech -> target-language text.

The model is :class:`~speechlab.tasks.las.LASTask`'s: an encoder over the features, an
attention decoder (the LSTM speller, or a Transformer decoder by config) over a SentencePiece
vocabulary of the translations, and an optional auxiliary CTC head that spells the *source*
transcript with its own (character) tokenizer; that CTC head cannot score translations, so
decoding is attention only. Otherwise only the target, the metrics and the prediction rows
differ: BLEU (sacreBLEU's 13a tokenization) and chrF on detokenized text, both on a
0-100 scale, and predictions with the source transcript beside reference and hypothesis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchmetrics.text import CHRFScore, SacreBLEUScore

from speechlab.data.collate import Batch
from speechlab.tasks.las import LASTask
from speechlab.text.tokenizers import Tokenizer, load_tokenizer

SPLITS = ("val", "test")


class STTask(LASTask):
    """Speech translation: :class:`LASTask` learning ``Utterance.translation``.

    The CTC head (``ctc_weight > 0``) learns the source transcript (``Utterance.text``) with
    ``source_tokenizer``; decoding is attention only (greedy in validation, ``decoding`` at
    test). Validation monitors ``val/bleu`` (max). See :class:`LASTask` for the other arguments.

    Args:
        source_tokenizer: the saved tokenizer of the source transcript (``Batch.sources``),
            which the CTC head learns; given by the datamodule.
    """

    target_field = "translation"
    metric_namespace = "st"
    source_field = "text"
    prediction_columns = ("id", "source", "reference", "hypothesis")

    def __init__(
        self,
        *args: Any,
        source_tokenizer: Mapping[str, Any] | None = None,
        monitor: str = "val/bleu",
        monitor_mode: str = "max",
        **kwargs: Any,
    ) -> None:
        if source_tokenizer is None:
            raise ValueError(
                "STTask needs source_tokenizer (the tokenizer of the source transcript); the "
                "datamodule gives it when built with source_field='text' (train.py does)"
            )
        # Set before LASTask.__init__, which sizes the CTC head by ``ctc_tokenizer``.
        self.source_tokenizer = load_tokenizer(source_tokenizer)
        super().__init__(
            *args,
            monitor=monitor,
            monitor_mode=monitor_mode,
            **kwargs,
        )

    @property
    def ctc_tokenizer(self) -> Tokenizer:
        """The CTC head spells the source transcript."""
        return self.source_tokenizer

    def _ctc_targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if batch.sources is None or batch.source_lengths is None:
            raise ValueError(
                "this model's CTC head learns the source text, but the batch has no "
                "sources; build the datamodule with source_field='text' (train.py does "
                "for a task with source_field)"
            )
        return batch.sources, batch.source_lengths

    def check_example(self, num_samples: int, target: torch.Tensor) -> str | None:
        return None  # CTC on the source: zero_infinity drops the rare impossible one

    def _no_ctc_scores(self) -> str | None:
        return super()._no_ctc_scores() or "the CTC head spells the source"

    def _init_metrics(self) -> None:
        self.bleu = nn.ModuleDict({split: SacreBLEUScore(tokenize="13a") for split in SPLITS})
        self.chrf = nn.ModuleDict({split: CHRFScore() for split in SPLITS})

    def _score(self, split: str, hypotheses: list[str], references: list[str]) -> None:
        targets = [[reference] for reference in references]
        self.bleu[split].update(hypotheses, targets)
        self.chrf[split].update(hypotheses, targets)

    def _log_corpus_scores(self, split: str) -> None:
        """Corpus BLEU and chrF (0-100) of the epoch, then reset for the next one."""
        for name, metric in (("bleu", self.bleu[split]), ("chrf", self.chrf[split])):
            if metric.update_count:
                self.log(f"{split}/{name}", 100.0 * metric.compute(), prog_bar=True)
            metric.reset()

    def _rows(self, batch: Batch, references: list[str], hypotheses: list[str]) -> list[tuple]:
        sources = _sources(self.source_tokenizer, batch)
        return list(zip(batch.ids, sources, references, hypotheses, strict=True))

    def on_validation_epoch_end(self) -> None:
        self._log_corpus_scores("val")
        super().on_validation_epoch_end()

    def on_test_epoch_end(self) -> None:
        self._log_corpus_scores("test")

    def translate(self, audio, lengths) -> list[str]:
        """Waveforms ``(B, T)`` with sample counts ``(B,)`` -> translations."""
        return self.transcribe(audio, lengths)


def _sources(tokenizer: Tokenizer | None, batch: Batch) -> list[str]:
    """The source transcripts of ``batch`` (empty strings without sources)."""
    if tokenizer is None or batch.sources is None or batch.source_lengths is None:
        return [""] * len(batch)
    return [
        tokenizer.decode(source[:length].tolist())
        for source, length in zip(batch.sources, batch.source_lengths, strict=True)
    ]
