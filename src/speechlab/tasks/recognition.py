"""What the recognition tasks share: CTC feasibility of an example, reference texts, and
:class:`RecognitionTask`, the steps, metrics and outputs of recognizers that decode encoder
frames into a transcript (CTC, transducer).

Used by the CTC, transducer, LAS and translation tasks; no task imports another for these.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchmetrics.text import CharErrorRate, WordErrorRate

from speechlab.audio.features import frame_lengths
from speechlab.data.collate import Batch
from speechlab.tasks.artifacts import log_table
from speechlab.tasks.base import OptimizerFactory, SchedulerFactory, SpeechTask
from speechlab.tasks.encoder_compile import CompileOptions
from speechlab.tasks.step_guard import NonFiniteStepGuard
from speechlab.text.tokenizers import Tokenizer, load_tokenizer


def ctc_required_frames(target: torch.Tensor) -> int:
    """Fewest CTC frames that can emit ``target`` ``(L,)``: one per label, plus a blank between
    each pair of equal neighbours."""
    if target.numel() == 0:
        return 0
    return int(target.numel() + (target[1:] == target[:-1]).sum())


def ctc_length_problem(frames: int, target: torch.Tensor) -> str | None:
    """The reason to drop an example whose ``frames`` CTC frames cannot emit ``target``."""
    if frames < ctc_required_frames(target):
        return "subsampled length shorter than the label (CTC cannot emit it)"
    return None


def encoder_frames(frontend: nn.Module, encoder: nn.Module, num_samples: int) -> int:
    """Encoder frames ``encoder`` makes of a clip of ``num_samples`` samples."""
    frames = frame_lengths(torch.tensor([num_samples]), frontend.hop_length)
    return int(encoder.output_lengths(frames)[0])


def batch_references(tokenizer: Tokenizer, batch: Batch) -> list[str]:
    """The reference texts of ``batch``'s padded token targets."""
    return [
        tokenizer.decode(target[:length].tolist())
        for target, length in zip(batch.targets, batch.target_lengths, strict=True)
    ]


# What a recognizer's forward pass gives its decoder: frames (or log-probs) and their lengths.
Outputs = tuple[torch.Tensor, torch.Tensor]


class RecognitionTask(SpeechTask):
    """Frontend -> encoder -> an objective of the subclass -> a transcript, scored alike.

    What the CTC and transducer tasks share: the tokenizer, the encoder, WER and CER per split
    (torchmetrics), the validation table of sample pairs, the test rows of
    ``(id, reference, hypothesis)`` in :attr:`predictions`, :meth:`transcribe`, and
    ``decoding`` (test and :meth:`transcribe` decode with it; validation always greedily).
    A subclass implements :meth:`forward` (features -> :data:`Outputs`), :meth:`_loss`,
    :meth:`_decode` and :meth:`_build_decoder`.

    Args:
        frontend, optimizer, scheduler, augment, monitor, monitor_mode, step_guard,
            waveform_augment, compile: see :class:`SpeechTask`.
        encoder: features ``(B, n_mels, F)`` -> frames ``(B, T', D)``; needs ``output_dim`` and
            ``output_lengths``.
        tokenizer: a saved tokenizer (``Tokenizer.state()``), given by the datamodule.
        decoding: the options of test/transcribe decoding (the model config gives them).
        num_logged_samples: reference/hypothesis pairs logged per validation epoch.

    Raises:
        ValueError: a decoding option the subclass's decoder rejects.
    """

    target_field = "text"
    metric_namespace = "asr"
    prediction_columns: tuple[str, ...] = ("id", "reference", "hypothesis")

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
            optimizer,
            scheduler,
            augment,
            monitor,
            monitor_mode,
            step_guard,
            waveform_augment,
            compile,
        )
        self.tokenizer: Tokenizer = load_tokenizer(tokenizer)
        self.encoder = encoder
        self.decoding = dict(decoding)
        self.num_logged_samples = num_logged_samples
        self._decoder: Any = None
        self._greedy: Any = None
        self.wer = nn.ModuleDict({split: WordErrorRate() for split in ("val", "test")})
        self.cer = nn.ModuleDict({split: CharErrorRate() for split in ("val", "test")})
        self.samples: list[tuple[str, str, str]] = []
        self.predictions: list[tuple[str, str, str]] = []

    # -- what a subclass gives ---------------------------------------------------------------
    def _build_decoder(self, decoding: Mapping[str, Any]) -> Any:
        """The decoder of ``decoding`` options (raises ``ValueError`` on a bad one)."""
        raise NotImplementedError

    def _loss(self, batch: Batch) -> tuple[torch.Tensor, Outputs]:
        """The loss of ``batch`` and the forward outputs to decode."""
        raise NotImplementedError

    def _decode(self, decoder: Any, outputs: Outputs) -> list[str]:
        """The texts ``decoder`` reads from ``outputs``."""
        raise NotImplementedError

    # -- decoding -----------------------------------------------------------------------------
    def output_frames(self, num_samples: int) -> int:
        """Encoder frames for a clip of ``num_samples`` samples."""
        return encoder_frames(self.frontend, self.encoder, num_samples)

    def set_decoding(self, options: Mapping[str, Any]) -> None:
        """Update the decoding options (e.g. ``{"kind": "beam", "beam_size": 8}``)."""
        decoding = {**self.decoding, **options}
        self._decoder = self._build_decoder(decoding)
        self.decoding = decoding
        self._greedy = None

    @property
    def decoder(self) -> Any:
        """The test/transcribe decoder of :attr:`decoding` (built once)."""
        if self._decoder is None:
            self._decoder = self._build_decoder(self.decoding)
        return self._decoder

    @property
    def greedy_decoder(self) -> Any:
        """The validation decoder: :attr:`decoding` with ``kind=greedy`` (built once)."""
        if self._greedy is None:
            self._greedy = self._build_decoder({**self.decoding, "kind": "greedy"})
        return self._greedy

    @torch.no_grad()
    def transcribe(self, audio: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Waveforms ``(B, T)`` at the frontend's rate with sample counts ``(B,)`` -> texts."""
        training = self.training
        self.eval()
        try:
            features, feature_lengths = self.frontend(audio, lengths)
            return self._decode(self.decoder, self(features, feature_lengths))
        finally:
            self.train(training)

    # -- steps --------------------------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if len(batch) == 0:
            return self.empty_batch_loss()
        loss, _ = self._loss(batch)
        self.log("train/loss", loss, batch_size=len(batch), prog_bar=True)
        return loss

    def _evaluate(self, batch: Batch, split: str, decoder: Any) -> list[tuple[str, str, str]]:
        loss, outputs = self._loss(batch)
        hypotheses = self._decode(decoder, outputs)
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
        rows = self._evaluate(batch, "val", self.greedy_decoder)
        self.samples.extend(rows[: max(0, self.num_logged_samples - len(self.samples))])

    def on_validation_epoch_end(self) -> None:
        if self.samples and not self.trainer.sanity_checking:
            log_table(self.trainer, "val/samples", self.prediction_columns, self.samples)

    def on_test_epoch_start(self) -> None:
        self.predictions = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        self.predictions.extend(self._evaluate(batch, "test", self.decoder))
