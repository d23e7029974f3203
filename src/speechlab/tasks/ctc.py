"""Speech recognition with connectionist temporal classification (CTC)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.text import CharErrorRate, WordErrorRate

from speechlab.data.collate import Batch
from speechlab.decoding.build import TextDecoder, build_ctc_decoder
from speechlab.tasks.artifacts import log_table
from speechlab.tasks.base import OptimizerFactory, SchedulerFactory, SpeechTask
from speechlab.tasks.recognition import batch_references, ctc_length_problem, encoder_frames
from speechlab.tasks.step_guard import NonFiniteStepGuard
from speechlab.text.tokenizers import load_tokenizer


class CTCTask(SpeechTask):
    """Frontend -> encoder ``(B, T', D)`` -> linear head over the tokens -> CTC.

    The loss is computed in float32 even under mixed precision, with ``zero_infinity``.
    Validation decodes greedily every epoch (WER, CER and a table of sample pairs); test and
    :meth:`transcribe` use ``decoding`` (greedy, or beam search with optional lexicon and n-gram
    LM). Test keeps ``(id, reference, hypothesis)`` rows in :attr:`predictions`.

    Args:
        tokenizer: a saved tokenizer (``Tokenizer.state()``), given by the datamodule.
        decoding: decoder options (``kind`` and, for beam search, the arguments of
            :class:`speechlab.decoding.ctc.BeamSearchCTCDecoder`); the model config gives them,
            see :func:`speechlab.decoding.build.build_ctc_decoder`.
        num_logged_samples: reference/hypothesis pairs logged per validation epoch.
    """

    target_field = "text"
    metric_namespace = "asr"

    def __init__(
        self,
        frontend: nn.Module,
        encoder: nn.Module,
        tokenizer: Mapping[str, Any],
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        augment: nn.Module | None = None,
        *,
        decoding: Mapping[str, Any],
        num_logged_samples: int = 8,
        monitor: str = "val/cer",
        monitor_mode: str = "min",
        step_guard: NonFiniteStepGuard | None = None,
        waveform_augment: nn.Module | None = None,
    ) -> None:
        super().__init__(
            frontend,
            optimizer,
            scheduler,
            augment,
            monitor,
            monitor_mode,
            step_guard,
            waveform_augment,
        )
        self.tokenizer = load_tokenizer(tokenizer)
        self.encoder = encoder
        self.head = nn.Linear(encoder.output_dim, self.tokenizer.vocab_size)
        self.decoding = dict(decoding)
        self.num_logged_samples = num_logged_samples
        self._decoder: TextDecoder | None = None
        self._greedy = build_ctc_decoder({"kind": "greedy"}, self.tokenizer)
        self.wer = nn.ModuleDict({split: WordErrorRate() for split in ("val", "test")})
        self.cer = nn.ModuleDict({split: CharErrorRate() for split in ("val", "test")})
        self.samples: list[tuple[str, str, str]] = []
        self.predictions: list[tuple[str, str, str]] = []

    # -- model --------------------------------------------------------------------------------
    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(B, n_mels, F)`` -> float32 log-probs ``(B, T', V)`` and lengths ``(B,)``."""
        encoded, encoded_lengths = self.encoder(features, lengths)
        logits = self.head(encoded)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            log_probs = logits.float().log_softmax(dim=-1)
        return log_probs, encoded_lengths

    def output_frames(self, num_samples: int) -> int:
        """Encoder frames for a clip of ``num_samples`` samples."""
        return encoder_frames(self.frontend, self.encoder, num_samples)

    def check_example(self, num_samples: int, target: torch.Tensor) -> str | None:
        return ctc_length_problem(self.output_frames(num_samples), target)

    def set_decoding(self, options: Mapping[str, Any]) -> None:
        """Update the decoding options (e.g. ``{"kind": "beam", "lm": "lm.arpa"}``)."""
        self.decoding = {**self.decoding, **options}
        self._decoder = None

    @property
    def decoder(self) -> TextDecoder:
        if self._decoder is None:
            self._decoder = build_ctc_decoder(self.decoding, self.tokenizer)
        return self._decoder

    @torch.no_grad()
    def transcribe(self, audio: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Waveforms ``(B, T)`` at the frontend's rate with sample counts ``(B,)`` -> texts."""
        features, feature_lengths = self.frontend(audio, lengths)
        log_probs, out_lengths = self(features, feature_lengths)
        return self.decoder(log_probs.cpu(), out_lengths.cpu())

    # -- steps --------------------------------------------------------------------------------
    def _loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        log_probs, lengths = self(batch.features, batch.feature_lengths)
        with torch.autocast(device_type=log_probs.device.type, enabled=False):
            loss = F.ctc_loss(
                log_probs.transpose(0, 1),
                batch.targets,
                lengths,
                batch.target_lengths,
                blank=0,
                reduction="mean",
                zero_infinity=True,
            )
        return loss, log_probs, lengths

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if len(batch) == 0:
            return self.empty_batch_loss()
        loss, _, _ = self._loss(batch)
        self.log("train/loss", loss, batch_size=len(batch), prog_bar=True)
        return loss

    def _evaluate(self, batch: Batch, split: str) -> list[tuple[str, str, str]]:
        loss, log_probs, lengths = self._loss(batch)
        decoder = self._greedy if split == "val" else self.decoder
        hypotheses = decoder(log_probs.detach().cpu(), lengths.cpu())
        references = batch_references(self.tokenizer, batch)
        self.wer[split](hypotheses, references)
        self.cer[split](hypotheses, references)
        size = len(batch)
        self.log(f"{split}/loss", loss, batch_size=size, sync_dist=True)
        self.log(f"{split}/wer", self.wer[split], batch_size=size, prog_bar=True)
        self.log(f"{split}/cer", self.cer[split], batch_size=size, prog_bar=True)
        return list(zip(batch.ids, references, hypotheses, strict=True))

    def on_validation_epoch_start(self) -> None:
        self.samples = []

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        rows = self._evaluate(batch, "val")
        self.samples.extend(rows[: max(0, self.num_logged_samples - len(self.samples))])

    def on_validation_epoch_end(self) -> None:
        if self.samples and not self.trainer.sanity_checking:
            log_table(self.trainer, "val/samples", ["id", "reference", "hypothesis"], self.samples)

    def on_test_epoch_start(self) -> None:
        self.predictions = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        self.predictions.extend(self._evaluate(batch, "test"))
