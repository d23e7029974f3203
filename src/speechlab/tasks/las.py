"""Speech recognition with Listen, Attend and Spell (Chan et al., 2016), trained jointly with CTC.

The encoder ("listener") reads the features, an attention LSTM decoder ("speller") spells the
transcript token by token, and an optional linear CTC head over the same encoder frames adds a
CTC loss (joint CTC-attention training, Watanabe et al., 2017): it pushes the attention towards
monotonic alignments early in training and, at decoding, the CTC prefix score keeps the beam
search from skipping, repeating or ending a transcript too soon.

Token convention (see :mod:`speechlab.nn.speller`): id 0 is the CTC blank and the speller's
``<sos>``/``<eos>``, so the CTC head and the speller share the tokenizer's vocabulary.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torchmetrics.text import CharErrorRate, WordErrorRate

from speechlab.data.collate import Batch
from speechlab.decoding.build import AttentionDecoder, build_attention_decoder
from speechlab.nn.ctc_loss import ctc_loss
from speechlab.nn.las import CTCHead, SpellerFactory, build_speller
from speechlab.nn.speller import append_eos, label_smoothed_nll
from speechlab.tasks.artifacts import log_figure, log_table
from speechlab.tasks.base import OptimizerFactory, SchedulerFactory, SpeechTask
from speechlab.tasks.encoder_compile import CompileOptions
from speechlab.tasks.figures import attention_figure
from speechlab.tasks.recognition import batch_references, ctc_length_problem, encoder_frames
from speechlab.tasks.step_guard import NonFiniteStepGuard
from speechlab.text.tokenizers import Tokenizer, load_tokenizer

log = logging.getLogger(__name__)


class LASTask(SpeechTask):
    """Frontend -> encoder ``(B, T', D)`` -> attention speller (+ CTC head) -> tokens.

    Training loss: ``(1 - ctc_weight) * attention + ctc_weight * CTC``. The attention loss is
    the label-smoothed cross-entropy of the teacher-forced speller over ``targets + <eos>``, with
    scheduled sampling (the speller's own previous prediction as input with probability
    ``sampling_rate``, ramped up linearly from 0 over ``sampling_ramp_epochs`` epochs); the CTC
    loss is computed in float32 with ``zero_infinity``. ``ctc_weight=0`` drops the CTC head (and
    then CTC scoring at decoding).

    Validation decodes greedily every epoch (WER, CER, a table of sample pairs) and draws the
    teacher-forced attention of the first validation utterance (``images/val_attention.png`` and
    the loggers that take images). Test and :meth:`transcribe` use ``decoding`` (greedy, or
    batched beam search with joint CTC scoring and optional n-gram shallow fusion). Test keeps
    ``(id, reference, hypothesis)`` rows in :attr:`predictions`.

    Args:
        frontend: waveform -> features module.
        encoder: features ``(B, n_mels, F)`` -> frames ``(B, T', D)``; needs ``output_dim`` and
            ``output_lengths``.
        speller: ``(vocab_size=, encoder_dim=) -> decoder`` (e.g. a partial of
            :class:`speechlab.nn.speller.Speller`), its Hydra config, or a built module.
        tokenizer: a saved tokenizer (``Tokenizer.state()``), given by the datamodule.
        optimizer, scheduler, augment: see :class:`SpeechTask`.
        ctc_weight: weight ``lambda`` in ``[0, 1)`` of the CTC loss; 0 drops the CTC head.
            This and the options below have no default here: ``conf/model/las.yaml`` (and
            ``st_las.yaml``) is the one source of them.
        ctc_upsampling: CTC frames per encoder frame: the head predicts this many token
            distributions per frame (see :class:`speechlab.nn.las.CTCHead`).
        label_smoothing: of the attention cross-entropy.
        sampling_rate: scheduled-sampling probability (after the ramp).
        sampling_ramp_epochs: epochs over which the rate grows linearly from 0 (0: constant).
        gradient_clip: gradient-norm clipping when the trainer sets none (``None``: no clipping).
        decoding: options of test/transcribe decoding: every option of
            :data:`speechlab.decoding.build.ATTENTION_OPTIONS` (the model config gives them).
        validation_decoding: the options validation decodes with, over ``decoding`` and
            without its LM: ``{"kind": "beam", "beam_size": 2}`` is test's joint CTC-attention
            search with a small beam, so ``val/cer`` ranks checkpoints as test will (a free-
            running greedy speller loops on real speech and reads CER above 1 while test
            improves). ``None``: greedy search within the length limits.
        num_logged_samples: reference/hypothesis pairs logged per validation epoch.
        monitor, monitor_mode: see :class:`SpeechTask`.
    """

    target_field = "text"
    metric_namespace = "asr"
    prediction_columns: tuple[str, ...] = ("id", "reference", "hypothesis")

    def __init__(
        self,
        frontend: nn.Module,
        encoder: nn.Module,
        speller: SpellerFactory | Mapping[str, Any] | nn.Module,
        tokenizer: Mapping[str, Any],
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        augment: nn.Module | None = None,
        *,
        ctc_weight: float,
        ctc_upsampling: int,
        label_smoothing: float,
        sampling_rate: float,
        sampling_ramp_epochs: int,
        gradient_clip: float | None,
        decoding: Mapping[str, Any],
        validation_decoding: Mapping[str, Any] | None = None,
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
        if not 0.0 <= ctc_weight < 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1), got {ctc_weight}")
        if ctc_upsampling < 1:
            raise ValueError(f"ctc_upsampling must be at least 1, got {ctc_upsampling}")
        if not 0.0 <= sampling_rate <= 1.0:
            raise ValueError(f"sampling_rate must be in [0, 1], got {sampling_rate}")
        self.tokenizer = load_tokenizer(tokenizer)
        self.encoder = encoder
        self.speller = build_speller(speller, self.tokenizer.vocab_size, encoder.output_dim)
        self.ctc_weight = float(ctc_weight)
        self.ctc_upsampling = int(ctc_upsampling)
        self.ctc_head = (
            CTCHead(encoder.output_dim, self.ctc_tokenizer.vocab_size, self.ctc_upsampling)
            if self.ctc_weight > 0
            else None
        )
        self.label_smoothing = label_smoothing
        self.sampling_rate = sampling_rate
        self.sampling_ramp_epochs = sampling_ramp_epochs
        self.gradient_clip = gradient_clip
        self.num_logged_samples = num_logged_samples
        self.decoding: dict[str, Any] = dict(decoding)
        self._decoder: AttentionDecoder | None = None
        build_attention_decoder({**self.decoding, "lm": None}, [], None)  # check the options
        self.validation_decoding: dict[str, Any] = dict(validation_decoding or {"kind": "greedy"})
        self._validation_decoder: AttentionDecoder | None = None
        self._validation_options()  # checked now, not at the first validation
        self._init_metrics()
        self.samples: list[tuple[str, ...]] = []
        self.predictions: list[tuple[str, ...]] = []
        self._alignment: tuple[torch.Tensor, list[str], str] | None = None

    @property
    def ctc_tokenizer(self) -> Tokenizer:
        """The tokenizer of what the CTC head spells: the targets' here."""
        return self.tokenizer

    def _ctc_targets(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The padded token ids ``(B, L)`` and lengths ``(B,)`` the CTC head learns."""
        assert batch.target_lengths is not None
        return batch.targets, batch.target_lengths

    def _no_ctc_scores(self) -> str | None:
        """Why decoding cannot use CTC prefix scores of the targets, or ``None`` if it can."""
        return "this model has no CTC head" if self.ctc_head is None else None

    def _init_metrics(self) -> None:
        """The metric modules of validation and test (WER and CER here)."""
        self.wer = nn.ModuleDict({split: WordErrorRate() for split in ("val", "test")})
        self.cer = nn.ModuleDict({split: CharErrorRate() for split in ("val", "test")})

    def _score(self, split: str, hypotheses: list[str], references: list[str]) -> None:
        """Update and log the metrics of ``split`` with a batch of decoded texts."""
        size = len(hypotheses)
        self.wer[split](hypotheses, references)
        self.cer[split](hypotheses, references)
        self.log(f"{split}/wer", self.wer[split], batch_size=size, prog_bar=True)
        self.log(f"{split}/cer", self.cer[split], batch_size=size, prog_bar=True)

    def _rows(self, batch: Batch, references: list[str], hypotheses: list[str]) -> list[tuple]:
        """Prediction rows of ``batch`` in :attr:`prediction_columns` order."""
        return list(zip(batch.ids, references, hypotheses, strict=True))

    # -- model --------------------------------------------------------------------------------
    def encode(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Features ``(B, n_mels, F)`` -> encoder frames ``(B, T', D)``, their lengths ``(B,)``,
        and float32 CTC log-probs ``(B, T' * ctc_upsampling, V)`` with their lengths (``None``
        without a CTC head)."""
        encoded, encoded_lengths = self.encoder(features, lengths)
        if self.ctc_head is None:
            return encoded, encoded_lengths, None, None
        log_probs, ctc_lengths = self.ctc_head(encoded, encoded_lengths)
        return encoded, encoded_lengths, log_probs, ctc_lengths

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor,
        target_lengths: torch.Tensor,
        sampling_rate: float = 0.0,
    ) -> dict[str, torch.Tensor | None]:
        """Teacher-forced pass: speller ``logits`` ``(B, L + 1, V)`` over ``targets + <eos>``,
        ``attention`` ``(B, L + 1, T')``, and the outputs of :meth:`encode` (``encoded``,
        ``encoded_lengths``, ``ctc_log_probs``, ``ctc_lengths``; the CTC ones may be ``None``)."""
        encoded, encoded_lengths, ctc_log_probs, ctc_lengths = self.encode(features, lengths)
        logits, attention = self.speller(
            encoded, encoded_lengths, targets, target_lengths, sampling_rate=sampling_rate
        )
        return {
            "encoded": encoded,
            "logits": logits,
            "attention": attention,
            "encoded_lengths": encoded_lengths,
            "ctc_log_probs": ctc_log_probs,
            "ctc_lengths": ctc_lengths,
        }

    def output_frames(self, num_samples: int) -> int:
        """Encoder frames for a clip of ``num_samples`` samples."""
        return encoder_frames(self.frontend, self.encoder, num_samples)

    def check_example(self, num_samples: int, target: torch.Tensor) -> str | None:
        if self.ctc_head is None:
            return None
        return ctc_length_problem(self.output_frames(num_samples) * self.ctc_upsampling, target)

    @property
    def current_sampling_rate(self) -> float:
        """The scheduled-sampling rate of the current epoch (ramped, see the class docstring)."""
        if self.sampling_ramp_epochs <= 0:
            return self.sampling_rate
        epoch = self.trainer.current_epoch if self._trainer is not None else 0
        return self.sampling_rate * min(1.0, epoch / self.sampling_ramp_epochs)

    # -- decoding -----------------------------------------------------------------------------
    def set_decoding(self, options: Mapping[str, Any]) -> None:
        """Update the decoding options (e.g. ``{"beam_size": 10, "lm": "lm.arpa"}``)."""
        decoding = {**self.decoding, **options}
        build_attention_decoder({**decoding, "lm": None}, [], None)  # check before keeping
        self.decoding = decoding
        self._decoder = None
        self._validation_decoder = None

    @property
    def decoder(self) -> AttentionDecoder:
        """The test/transcribe decoder built from :attr:`decoding` (its LM loaded once)."""
        if self._decoder is None:
            decoding = dict(self.decoding)
            why = self._no_ctc_scores()
            if why and decoding.get("ctc_weight"):
                log.info("model.decoding.ctc_weight ignored: %s", why)
                decoding["ctc_weight"] = 0.0
            self._decoder = build_attention_decoder(
                decoding, self.tokenizer.tokens, self.tokenizer.word_delimiter
            )
        return self._decoder

    def _validation_options(self) -> dict[str, Any]:
        """:attr:`validation_decoding` over :attr:`decoding`, without the LM; no CTC weight
        when the model has no CTC head.

        Raises:
            ValueError: an option :func:`build_attention_decoder` does not take.
        """
        options = {**self.decoding, **self.validation_decoding, "lm": None}
        if self._no_ctc_scores():
            options["ctc_weight"] = 0.0
        build_attention_decoder(options, [], None)
        return options

    @property
    def validation_decoder(self) -> AttentionDecoder:
        """The search validation scores with (see ``validation_decoding``)."""
        if self._validation_decoder is None:
            self._validation_decoder = build_attention_decoder(
                self._validation_options(), self.tokenizer.tokens, self.tokenizer.word_delimiter
            )
        return self._validation_decoder

    def _decode(
        self,
        decoder: AttentionDecoder,
        encoded: torch.Tensor,
        encoded_lengths: torch.Tensor,
        ctc_log_probs: torch.Tensor | None,
        ctc_lengths: torch.Tensor | None,
    ) -> list[str]:
        sequences = decoder(self.speller, encoded, encoded_lengths, ctc_log_probs, ctc_lengths)
        return [self.tokenizer.decode(ids) for ids in sequences]

    @torch.no_grad()
    def transcribe(self, audio: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Waveforms ``(B, T)`` at the frontend's rate with sample counts ``(B,)`` -> texts."""
        training = self.training
        self.eval()
        try:
            features, feature_lengths = self.frontend(audio, lengths)
            encoded, encoded_lengths, ctc_log_probs, ctc_lengths = self.encode(
                features, feature_lengths
            )
            return self._decode(self.decoder, encoded, encoded_lengths, ctc_log_probs, ctc_lengths)
        finally:
            self.train(training)

    # -- steps --------------------------------------------------------------------------------
    def _losses(self, batch: Batch, outputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        assert batch.target_lengths is not None
        expected = append_eos(batch.targets, batch.target_lengths)
        attention_loss = label_smoothed_nll(
            outputs["logits"], expected, batch.target_lengths + 1, self.label_smoothing
        )
        losses = {"att_loss": attention_loss}
        loss = attention_loss
        if outputs["ctc_log_probs"] is not None:
            log_probs = outputs["ctc_log_probs"]
            ctc_targets, ctc_target_lengths = self._ctc_targets(batch)
            auxiliary = ctc_loss(
                log_probs,
                outputs["ctc_lengths"],
                ctc_targets,
                ctc_target_lengths,
                blank=0,
                reduction="mean",
            )
            losses["ctc_loss"] = auxiliary
            loss = (1.0 - self.ctc_weight) * attention_loss + self.ctc_weight * auxiliary
        losses["loss"] = loss
        return losses

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if len(batch) == 0:
            return self.empty_batch_loss()
        rate = self.current_sampling_rate
        outputs = self(
            batch.features, batch.feature_lengths, batch.targets, batch.target_lengths, rate
        )
        losses = self._losses(batch, outputs)
        size = len(batch)
        self.log("train/loss", losses["loss"], batch_size=size, prog_bar=True)
        for name in ("att_loss", "ctc_loss"):
            if name in losses:
                self.log(f"train/{name}", losses[name], batch_size=size)
        if self.sampling_ramp_epochs > 0:
            self.log("train/sampling_rate", rate, batch_size=size)
        return losses["loss"]

    def _evaluate(self, batch: Batch, split: str) -> list[tuple]:
        outputs = self(batch.features, batch.feature_lengths, batch.targets, batch.target_lengths)
        losses = self._losses(batch, outputs)
        decoder = self.validation_decoder if split == "val" else self.decoder
        hypotheses = self._decode(
            decoder,
            outputs["encoded"],
            outputs["encoded_lengths"],
            outputs["ctc_log_probs"],
            outputs["ctc_lengths"],
        )
        references = batch_references(self.tokenizer, batch)
        size = len(batch)
        for name, value in losses.items():
            self.log(f"{split}/{name}", value, batch_size=size, sync_dist=True)
        self._score(split, hypotheses, references)
        if split == "val" and self._alignment is None and outputs["attention"] is not None:
            self._alignment = self._first_alignment(batch, outputs, references[0], hypotheses[0])
        return self._rows(batch, references, hypotheses)

    def _first_alignment(
        self, batch: Batch, outputs: dict[str, Any], reference: str, hypothesis: str
    ) -> tuple[torch.Tensor, list[str], str]:
        """The teacher-forced attention of the batch's first utterance, its token labels and a
        title, kept for :meth:`on_validation_epoch_end`."""
        assert batch.target_lengths is not None
        steps = int(batch.target_lengths[0]) + 1
        frames = int(outputs["encoded_lengths"][0])
        weights = outputs["attention"][0, :steps, :frames].detach().float().cpu()
        tokens = [self.tokenizer.tokens[i] for i in batch.targets[0, : steps - 1].tolist()]
        title = f"{batch.ids[0]}  epoch {self.current_epoch}\nref: {reference}\nhyp: {hypothesis}"
        return weights, [*tokens, "<eos>"], title

    def on_validation_epoch_start(self) -> None:
        self.samples = []
        self._alignment = None

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        rows = self._evaluate(batch, "val")
        self.samples.extend(rows[: max(0, self.num_logged_samples - len(self.samples))])

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        if self.samples:
            log_table(self.trainer, "val/samples", self.prediction_columns, self.samples)
        if self._alignment is not None:
            weights, tokens, title = self._alignment
            log_figure(self.trainer, "val/attention", attention_figure(weights, tokens, title))

    def on_test_epoch_start(self) -> None:
        self.predictions = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        self.predictions.extend(self._evaluate(batch, "test"))

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """The trainer's ``gradient_clip_val`` if set, else :attr:`gradient_clip` (by norm):
        the speller's LSTM recurrences train more steadily with clipped gradients."""
        value = gradient_clip_val if gradient_clip_val is not None else self.gradient_clip
        if value:
            self.clip_gradients(optimizer, value, gradient_clip_algorithm)
