"""Speech recognition with connectionist temporal classification (CTC)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from speechlab.data.collate import Batch
from speechlab.decoding.build import TextDecoder, build_ctc_decoder
from speechlab.nn.ctc_loss import ctc_loss
from speechlab.tasks.base import OptimizerFactory, SchedulerFactory
from speechlab.tasks.encoder_compile import CompileOptions
from speechlab.tasks.recognition import Outputs, RecognitionTask, ctc_length_problem
from speechlab.tasks.step_guard import NonFiniteStepGuard


class CTCTask(RecognitionTask):
    """Frontend -> encoder ``(B, T', D)`` -> linear head over the tokens -> CTC.

    The loss is computed in float32 even under mixed precision, with ``zero_infinity``.
    Validation decodes greedily every epoch (WER, CER and a table of sample pairs); test and
    :meth:`transcribe` use ``decoding`` (greedy, or beam search with optional lexicon and n-gram
    LM). Test keeps ``(id, reference, hypothesis)`` rows in :attr:`predictions` (see
    :class:`~speechlab.tasks.recognition.RecognitionTask`).

    Args:
        tokenizer: a saved tokenizer (``Tokenizer.state()``), given by the datamodule.
        decoding: decoder options (``kind`` and, for beam search, the arguments of
            :class:`speechlab.decoding.ctc.BeamSearchCTCDecoder`); the model config gives them,
            see :func:`speechlab.decoding.build.build_ctc_decoder`.
        num_logged_samples: reference/hypothesis pairs logged per validation epoch.
    """

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
        compile: CompileOptions | None = None,
    ) -> None:
        super().__init__(
            frontend,
            encoder,
            tokenizer,
            optimizer,
            scheduler,
            augment,
            decoding=decoding,
            num_logged_samples=num_logged_samples,
            monitor=monitor,
            monitor_mode=monitor_mode,
            step_guard=step_guard,
            waveform_augment=waveform_augment,
            compile=compile,
        )
        self.head = nn.Linear(encoder.output_dim, self.tokenizer.vocab_size)

    # -- model --------------------------------------------------------------------------------
    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> Outputs:
        """Features ``(B, n_mels, F)`` -> float32 log-probs ``(B, T', V)`` and lengths ``(B,)``."""
        encoded, encoded_lengths = self.encoder(features, lengths)
        logits = self.head(encoded)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            log_probs = logits.float().log_softmax(dim=-1)
        return log_probs, encoded_lengths

    def check_example(self, num_samples: int, target: torch.Tensor) -> str | None:
        return ctc_length_problem(self.output_frames(num_samples), target)

    def _build_decoder(self, decoding: Mapping[str, Any]) -> TextDecoder:
        return build_ctc_decoder(decoding, self.tokenizer)

    def _decode(self, decoder: TextDecoder, outputs: Outputs) -> list[str]:
        log_probs, lengths = outputs
        return decoder(log_probs.detach().cpu(), lengths.cpu())

    # -- steps --------------------------------------------------------------------------------
    def _loss(self, batch: Batch) -> tuple[torch.Tensor, Outputs]:
        log_probs, lengths = self(batch.features, batch.feature_lengths)
        loss = ctc_loss(
            log_probs, lengths, batch.targets, batch.target_lengths, blank=0, reduction="mean"
        )
        return loss, (log_probs, lengths)
