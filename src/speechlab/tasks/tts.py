"""Speech synthesis: text -> log-mel (Tacotron 2) -> waveform (a vocoder)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.text import CharErrorRate

from speechlab.audio.features import lengths_to_mask
from speechlab.data.collate import Batch
from speechlab.nn.tacotron2 import Tacotron2, Tacotron2Output, diagonal_score, guided_attention_loss
from speechlab.nn.vocoders.griffin_lim import GriffinLimVocoder
from speechlab.tasks.artifacts import log_figure, log_synthesized_sample
from speechlab.tasks.base import (
    OptimizerFactory,
    SchedulerFactory,
    SpeechTask,
    refuse_feature_augment,
)
from speechlab.tasks.figures import alignment_figure
from speechlab.tasks.step_guard import NonFiniteStepGuard
from speechlab.tasks.synthesis_metrics import (
    IntelligibilityJudge,
    judge_on,
    mel_cepstral_distortion,
    reference_texts,
)
from speechlab.text.tokenizers import load_tokenizer

log = logging.getLogger(__name__)

ModelFactory = Callable[..., Tacotron2]


class TTSTask(SpeechTask):
    """Symbols -> Tacotron 2 -> log-mel frames (targets computed from the audio on the device by
    the frontend, globally normalised) -> vocoder -> waveform.

    Loss: L1 + MSE of the mel before and after the postnet (valid frames only), binary
    cross-entropy of the stop token (1 from the step holding the last frame on), and the guided
    attention loss. Validation and test also synthesize each utterance from its text alone
    (free-running, at most twice the steps of the recording) and measure the mel-cepstral
    distortion (dB, DTW-aligned) against the recording's log-mel: ``mcd`` of the synthesized
    speech (the vocoder's waveform analysed again by the frontend), ``mel_mcd`` of the predicted
    log-mel before the vocoder; and, with ``judge_ckpt``, the CER of a speechlab recognizer on
    the synthesized audio. The first ``num_logged_samples`` validation
    utterances (a fixed set: validation is not shuffled) go to the loggers every epoch as audio,
    predicted-vs-target mel images and attention images.

    Args:
        frontend: :class:`speechlab.audio.features.LogMelFrontend` with ``normalize`` global or
            none.
        model: ``(vocab_size, n_mels) -> Tacotron2`` (a Hydra ``_partial_``).
        tokenizer: the symbol set (``Tokenizer.state()``), given by the datamodule.
        vocoder: log-mel -> waveform; ``None`` = Griffin-Lim with the frontend's settings. A
            trained HiFi-GAN: ``model/vocoder=hifigan model.vocoder.ckpt=<file>``
            (:func:`speechlab.tasks.vocoder.load_vocoder`); validation and test then speak
            through it.
        guided_attention_sigma/weight: width ``g`` and weight of the guided attention loss.
        stop_pos_weight: weight of the (rare) positive stop targets.
        judge_ckpt: a recognizer checkpoint for the CER metric, or ``None`` to skip it.
        num_logged_samples: validation utterances sent to the loggers each epoch.
        num_synthesized: validation utterances synthesized for MCD/CER per epoch (None = all).
        augment: ``None`` only (``model.augment=null``): the features are the targets.
    """

    target_field = "text"
    metric_namespace = "tts"

    def __init__(
        self,
        frontend: nn.Module,
        model: ModelFactory,
        tokenizer: Mapping[str, Any],
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        vocoder: nn.Module | None = None,
        guided_attention_sigma: float = 0.2,
        guided_attention_weight: float = 1.0,
        stop_pos_weight: float = 5.0,
        judge_ckpt: str | None = None,
        num_logged_samples: int = 3,
        num_synthesized: int | None = None,
        monitor: str = "val/mel_l1",
        monitor_mode: str = "min",
        step_guard: NonFiniteStepGuard | None = None,
        augment: None = None,
    ) -> None:
        refuse_feature_augment(augment, "speech synthesis (Tacotron 2)")
        super().__init__(frontend, optimizer, scheduler, None, monitor, monitor_mode, step_guard)
        if getattr(frontend, "normalize", "utterance") == "utterance":
            raise ValueError(
                "synthesis needs log-mel a vocoder can invert: set model.frontend.normalize=global "
                "(or none), not utterance"
            )
        self.tokenizer = load_tokenizer(tokenizer)
        self.model = model(vocab_size=self.tokenizer.vocab_size, n_mels=frontend.n_mels)
        if vocoder is None:
            vocoder = GriffinLimVocoder(
                frontend.sample_rate, frontend.n_fft, frontend.hop_length, frontend.n_mels,
                frontend.win_length, frontend.f_min, frontend.f_max, eps=frontend.eps,
            )  # fmt: skip
        self.vocoder = vocoder.requires_grad_(False)
        if self.vocoder.hop_length != frontend.hop_length:
            raise ValueError(
                f"the vocoder's hop_length {self.vocoder.hop_length} differs from the frontend's "
                f"{frontend.hop_length}; they must describe the same frames"
            )
        self.guided_attention_sigma = guided_attention_sigma
        self.guided_attention_weight = guided_attention_weight
        self.stop_pos_weight = stop_pos_weight
        self.judge_ckpt = judge_ckpt
        self.num_logged_samples = num_logged_samples
        self.num_synthesized = num_synthesized
        self.cer = nn.ModuleDict({split: CharErrorRate() for split in ("val", "test")})
        # MCD of the speech (its waveform analysed again) and of the predicted mel alone
        self.mcd = nn.ModuleDict({split: MeanMetric() for split in ("val", "test")})
        self.mel_mcd = nn.ModuleDict({split: MeanMetric() for split in ("val", "test")})
        self._judge: IntelligibilityJudge | None = None
        self._judge_noted = False
        self._texts: dict[str, str] = {}
        self._synthesized = 0
        self.samples: list[dict[str, Any]] = []
        self.predictions: list[tuple[str, str, str]] = []

    # -- text -----------------------------------------------------------------------------
    def encode_text(self, text: str) -> torch.Tensor:
        """``text`` (normalised as the corpus reader does) -> symbol ids ``(L,)``; a clear
        ``ValueError`` for an empty text or symbols outside the checkpoint's symbol set."""
        if not text or not text.strip():
            raise ValueError(
                f"cannot synthesize {text!r}: the text is empty after normalisation; give words "
                "to speak"
            )
        unknown = self.tokenizer.unknown(text)
        if unknown:
            known = "".join(self.tokenizer.tokens[2:])
            raise ValueError(
                f"cannot synthesize {text!r}: symbols {''.join(sorted(unknown))!r} are not in "
                f"the model's {self.tokenizer.kind} symbol set {known!r}; rewrite the text with "
                "these symbols (spell out numbers, drop foreign characters) or train on a corpus "
                "that has them"
            )
        ids = self.tokenizer.encode(text)
        if not ids:
            raise ValueError(f"cannot synthesize {text!r}: it spells no symbols")
        return torch.tensor(ids, dtype=torch.long)

    @torch.no_grad()
    def synthesize(
        self, texts: list[str], max_steps: int | None = None
    ) -> tuple[list[torch.Tensor], Tacotron2Output]:
        """Texts -> waveforms ``(T_i,)`` at :attr:`sample_rate`, and the model's output."""
        symbols = [self.encode_text(t) for t in texts]
        lengths = torch.tensor([s.numel() for s in symbols], device=self.device)
        padded = nn.utils.rnn.pad_sequence(symbols, batch_first=True).to(self.device)
        output = self.model.infer(padded, lengths, max_steps)
        return self._waveforms(output), output

    @property
    def sample_rate(self) -> int:
        return int(self.vocoder.sample_rate)

    def _speak(self, output: Tacotron2Output) -> tuple[torch.Tensor, torch.Tensor]:
        """The vocoder's audio ``(B, T)`` of the predicted log-mel, on the device, and each
        utterance's length ``(B,)`` in samples (its frames times the hop)."""
        log_mel = self.frontend.denormalize(output.mel_postnet)
        # Griffin-Lim draws its initial phases: on a forked generator, so that the mels of the
        # next utterances (the prenet's dropout draws) do not depend on which vocoder spoke
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            audio = self.vocoder(log_mel)
        samples = (output.lengths * self.vocoder.hop_length).clamp(max=audio.shape[1])
        return audio, samples

    @staticmethod
    def _cut(audio: torch.Tensor, samples: torch.Tensor) -> list[torch.Tensor]:
        """Waveforms ``(T_i,)`` on the CPU, each cut to its length."""
        return [audio[i, : int(n)].cpu() for i, n in enumerate(samples)]

    def _waveforms(self, output: Tacotron2Output) -> list[torch.Tensor]:
        return self._cut(*self._speak(output))

    def _heard_log_mels(self, audio: torch.Tensor, samples: torch.Tensor) -> list[torch.Tensor]:
        """Natural log-mel ``(n_mels, F_i)`` of each synthesized utterance (``audio`` ``(B, T)``
        cut to ``samples``), as the frontend analyses a recording: what the vocoder made of the
        predicted mel."""
        total = max(1, int(samples.max()))
        audio = audio[:, :total] * lengths_to_mask(samples, total)  # silence past each end
        features, frames = self.frontend(audio, samples.clamp(min=1))
        log_mel = self.frontend.denormalize(features)
        return [log_mel[i, :, : max(1, int(n))] for i, n in enumerate(frames)]

    # -- training -------------------------------------------------------------------------
    def _losses(self, batch: Batch) -> tuple[dict[str, torch.Tensor], Tacotron2Output]:
        mels, frames = batch.features, batch.feature_lengths
        output = self.model(batch.targets, batch.target_lengths, mels)
        total = output.mel.shape[-1]
        target = F.pad(mels, (0, total - mels.shape[-1]))
        mask = lengths_to_mask(frames, total).unsqueeze(1)
        count = mask.sum().clamp(min=1) * mels.shape[1]

        def mel_loss(predicted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            error = (predicted - target) * mask
            return error.abs().sum() / count, (error**2).sum() / count

        l1_before, mse_before = mel_loss(output.mel)
        l1_after, mse_after = mel_loss(output.mel_postnet)
        r = self.model.reduction
        steps = torch.div(frames + r - 1, r, rounding_mode="floor")
        positions = torch.arange(output.stop_logits.shape[1], device=mels.device)
        stop_target = (positions.unsqueeze(0) >= (steps - 1).unsqueeze(1)).float()
        stop = F.binary_cross_entropy_with_logits(
            output.stop_logits,
            stop_target,
            pos_weight=torch.tensor(self.stop_pos_weight, device=mels.device),
        )
        attention = guided_attention_loss(
            output.alignments, batch.target_lengths, steps, self.guided_attention_sigma
        )
        mel = l1_before + l1_after + mse_before + mse_after
        losses = {
            "loss": mel + stop + self.guided_attention_weight * attention,
            "mel_loss": mel,
            "stop_loss": stop,
            "attention_loss": attention,
            # in natural log-mel units, after the postnet
            "mel_l1": l1_after * getattr(self.frontend, "std", 1.0),
            "diagonal": diagonal_score(output.alignments, batch.target_lengths, steps).mean(),
        }
        return losses, output

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if len(batch) == 0:
            return self.empty_batch_loss()
        losses, _ = self._losses(batch)
        size = len(batch)
        self.log("train/loss", losses["loss"], batch_size=size, prog_bar=True)
        for name in ("mel_loss", "stop_loss", "attention_loss", "diagonal"):
            self.log(f"train/{name}", losses[name], batch_size=size)
        return losses["loss"]

    # -- evaluation -----------------------------------------------------------------------
    def on_validation_start(self) -> None:
        self._judge = judge_on(self._judge, self.judge_ckpt, self.device)
        if not self.judge_ckpt and not self._judge_noted:
            log.info("model.judge_ckpt is null: the CER of synthesized speech is not measured")
            self._judge_noted = True
        self._texts.update(reference_texts(self.trainer))

    def on_test_start(self) -> None:
        self.on_validation_start()

    def _evaluate(self, batch: Batch, split: str) -> None:
        losses, _ = self._losses(batch)
        size = len(batch)
        self.log(f"{split}/loss", losses["loss"], batch_size=size, sync_dist=True)
        self.log(f"{split}/mel_loss", losses["mel_loss"], batch_size=size, sync_dist=True)
        self.log(
            f"{split}/mel_l1", losses["mel_l1"], batch_size=size, sync_dist=True, prog_bar=True
        )
        self.log(f"{split}/diagonal", losses["diagonal"], batch_size=size, sync_dist=True)
        if self.trainer.sanity_checking:
            return
        limit = self.num_synthesized if split == "val" else None
        if limit is not None and self._synthesized >= limit:
            return
        self._synthesized += size
        r = self.model.reduction
        frames = batch.feature_lengths
        max_steps = int(math.ceil(int(frames.max()) / r) * 2 + 10)
        output = self.model.infer(batch.targets, batch.target_lengths, max_steps)
        audio, samples = self._speak(output)
        waveforms = self._cut(audio, samples)
        predicted = self.frontend.denormalize(output.mel_postnet)
        target = self.frontend.denormalize(batch.features)
        heard = self._heard_log_mels(audio, samples)
        for i in range(size):
            n = max(1, int(output.lengths[i]))
            reference = target[i, :, : int(frames[i])]
            self.mel_mcd[split].update(mel_cepstral_distortion(predicted[i, :, :n], reference))
            self.mcd[split].update(mel_cepstral_distortion(heard[i], reference))
        self.log(f"{split}/mcd", self.mcd[split], batch_size=size)
        self.log(f"{split}/mel_mcd", self.mel_mcd[split], batch_size=size)
        references = [
            self._texts.get(uid) or self.tokenizer.decode(t[:n].tolist())
            for uid, t, n in zip(batch.ids, batch.targets, batch.target_lengths, strict=True)
        ]
        hypotheses = [""] * size
        if self._judge is not None:
            hypotheses = self._judge.transcribe(waveforms, self.sample_rate)
            self.cer[split](hypotheses, references)
            self.log(f"{split}/cer", self.cer[split], batch_size=size, prog_bar=True)
        if split == "test":
            self.predictions.extend(zip(batch.ids, references, hypotheses, strict=True))
        for i in range(min(size, self.num_logged_samples - len(self.samples))):
            n = int(output.lengths[i])
            self.samples.append(
                {
                    "id": batch.ids[i],
                    "text": references[i],
                    "heard": hypotheses[i],
                    "audio": waveforms[i],
                    "predicted": predicted[i, :, :n].cpu(),
                    "target": target[i, :, : int(frames[i])].cpu(),
                    "alignment": output.alignments[
                        i, : max(1, n // r), : batch.target_lengths[i]
                    ].cpu(),
                }
            )

    def on_validation_epoch_start(self) -> None:
        self.samples = []
        self._synthesized = 0

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        if len(batch):
            self._evaluate(batch, "val")

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        for k, sample in enumerate(self.samples):
            title = log_synthesized_sample(
                self.trainer, k, sample, "predicted", self.sample_rate, self._judge is not None
            )
            log_figure(
                self.trainer, f"val/alignment_{k}", alignment_figure(sample["alignment"], title)
            )

    def on_test_epoch_start(self) -> None:
        self.predictions = []
        self.samples = []

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        if len(batch):
            self._evaluate(batch, "test")
