"""Vocoder training: HiFi-GAN (generator + MPD + MSD) on the synthesis frontend's log-mel.

The task trains on random segments of the utterances, cut on the device after the frontend ran
on whole utterances (so a segment's mel frames are exactly the frames an acoustic model predicts
for that stretch of audio), and validates on whole held-out utterances: mel L1, MCD and, with a
recognizer as judge, the CER of the resynthesized recordings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import hydra
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.text import CharErrorRate

from speechlab.audio.features import lengths_to_mask
from speechlab.checkpoint.read import named, what_to_pass
from speechlab.checkpoint.recipe import RECIPE_KEY, build_task, load_checkpoint, restore_task
from speechlab.data.collate import Batch
from speechlab.nn.vocoders.hifigan import (
    HiFiGANGenerator,
    HiFiGANVocoder,
    discriminator_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from speechlab.tasks.artifacts import log_synthesized_sample
from speechlab.tasks.base import OptimizerFactory, SpeechTask, refuse_feature_augment
from speechlab.tasks.synthesis_metrics import (
    IntelligibilityJudge,
    judge_on,
    mel_cepstral_distortion,
    reference_texts,
)
from speechlab.text.tokenizers import load_tokenizer

log = logging.getLogger(__name__)

EpochSchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]

# Frontend settings a vocoder and the acoustic model feeding it must share (they define a frame).
FRAME_SETTINGS = ("sample_rate", "n_fft", "hop_length", "n_mels", "f_min", "f_max", "eps")


def _frame_settings(frontend: nn.Module | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(frontend, Mapping):
        settings = {k: frontend.get(k) for k in FRAME_SETTINGS}
        settings["win_length"] = frontend.get("win_length") or frontend.get("n_fft")
    else:
        settings = {k: getattr(frontend, k) for k in FRAME_SETTINGS}
        settings["win_length"] = getattr(frontend, "win_length", None) or frontend.n_fft
    return {k: float(v) if isinstance(v, int | float) else v for k, v in settings.items()}


def _check_same_frames(ours: nn.Module, theirs: nn.Module | Mapping[str, Any], what: str) -> None:
    a, b = _frame_settings(ours), _frame_settings(theirs)
    differ = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    if differ:
        raise ValueError(
            f"{what} was trained on another log-mel: (this model's, its) settings differ in "
            f"{differ}; use model.frontend settings equal to those of the {what}"
        )


class HiFiGANTask(SpeechTask):
    """HiFi-GAN vocoder training (Kong et al. 2020) with Lightning's manual optimisation: per
    batch one discriminator step (MPD + MSD, least-squares loss) and one generator step
    (``mel_weight`` x mel L1 + least-squares adversarial + ``feature_weight`` x feature matching).

    Training input: the frontend's log-mel of whole utterances, then one random window per
    utterance of ``segment_samples // hop_length`` frames (fewer if the batch's shortest
    utterance is shorter) and the audio under those frames, cut on the device; the generator
    maps the window's natural log-mel ``(B, n_mels, N)`` to ``(B, 1, N * hop_length)`` samples.
    With ``acoustic_ckpt`` (fine-tuning) the windows come from the acoustic model's
    teacher-forced mel instead of the recording's, as the paper fine-tunes on Tacotron 2 output.
    Until ``discriminator_start_step`` generator steps have run the discriminators rest and the
    generator learns from the mel L1 alone (a warm-up as in Parallel WaveGAN, Yamamoto et al.
    2020; 0 = the paper's schedule).

    Validation and test resynthesize every held-out utterance (``num_synthesized`` in
    validation) from the log-mel the generator learns to invert (the recording's, or with
    ``acoustic_ckpt`` the acoustic model's teacher-forced prediction, so that checkpoints are
    chosen by what the fine-tuned vocoder will hear) and log, against the recording's log-mel,
    ``mel_l1`` (natural log-mel units, valid frames), ``mcd`` (dB, DTW) and, with
    ``judge_ckpt``, ``cer`` of a recognizer hearing the resynthesis; the first
    ``num_logged_samples`` go to the loggers as audio and mel images.

    Args:
        frontend: :class:`speechlab.audio.features.LogMelFrontend` (global or no normalisation).
        generator: the :class:`HiFiGANGenerator`; its upsampling product must be the frontend's
            ``hop_length``.
        mpd, msd: the multi-period and multi-scale discriminators.
        optimizer: ``params -> Optimizer``, used for the generator and the discriminators.
        scheduler: ``optimizer -> LRScheduler`` stepped once per epoch (the paper: exponential
            decay 0.999), or ``None``.
        tokenizer: the corpus's symbol set (given by the datamodule): decodes reference texts.
        segment_samples: training window in samples (a multiple of ``hop_length``).
        mel_weight, feature_weight: the loss weights (the paper: 45 and 2).
        discriminator_start_step: generator steps trained on the mel L1 alone.
        acoustic_ckpt: a ``model=tacotron2`` checkpoint whose teacher-forced mels the generator
            learns from, or ``None`` for the recordings' mels.
        judge_ckpt: a recognizer checkpoint for the CER, or ``None``.
        num_logged_samples: validation utterances sent to the loggers.
        num_synthesized: validation utterances resynthesized per epoch (``None``: all).
        augment: ``None`` only (``model.augment=null``): the features are the targets.

    Raises:
        ValueError: per-utterance normalisation, a generator whose hop differs from the
            frontend's, or ``segment_samples`` that is not a positive multiple of it.
    """

    target_field = "text"
    metric_namespace = "vocoder"

    def __init__(
        self,
        frontend: nn.Module,
        generator: HiFiGANGenerator,
        mpd: nn.Module,
        msd: nn.Module,
        optimizer: OptimizerFactory,
        tokenizer: Mapping[str, Any],
        segment_samples: int,
        mel_weight: float,
        feature_weight: float,
        discriminator_start_step: int = 0,
        scheduler: EpochSchedulerFactory | None = None,
        acoustic_ckpt: str | None = None,
        judge_ckpt: str | None = None,
        num_logged_samples: int = 3,
        num_synthesized: int | None = None,
        monitor: str = "val/mel_l1",
        monitor_mode: str = "min",
        augment: None = None,
    ) -> None:
        refuse_feature_augment(augment, "a vocoder (HiFi-GAN)")
        super().__init__(frontend, optimizer, None, None, monitor, monitor_mode, None)
        self.automatic_optimization = False
        if getattr(frontend, "normalize", "utterance") == "utterance":
            raise ValueError(
                "a vocoder inverts log-mel: set model.frontend.normalize=global (or none), not "
                "utterance"
            )
        hop = frontend.hop_length
        if segment_samples <= 0 or segment_samples % hop:
            raise ValueError(
                f"model.segment_samples={segment_samples} must be a positive multiple of the "
                f"frontend's hop_length {hop} (e.g. {32 * hop})"
            )
        self.vocoder = HiFiGANVocoder(generator, frontend.sample_rate, hop)
        self.mpd = mpd
        self.msd = msd
        self.epoch_scheduler_factory = scheduler
        self.tokenizer = load_tokenizer(tokenizer)
        self.segment_frames = segment_samples // hop
        self.mel_weight = mel_weight
        self.feature_weight = feature_weight
        self.discriminator_start_step = discriminator_start_step
        self.acoustic_ckpt = acoustic_ckpt
        self.judge_ckpt = judge_ckpt
        self.num_logged_samples = num_logged_samples
        self.num_synthesized = num_synthesized
        # generator steps taken: in the checkpoint, so a resumed run keeps the warm-up's end
        self.register_buffer("generator_steps", torch.zeros((), dtype=torch.long))
        self.cer = nn.ModuleDict({split: CharErrorRate() for split in ("val", "test")})
        self.mcd = nn.ModuleDict({split: MeanMetric() for split in ("val", "test")})
        self._acoustic: list[nn.Module] = []  # a plain list: not a submodule, not in the state
        self._judge: IntelligibilityJudge | None = None
        self._texts: dict[str, str] = {}
        self._synthesized = 0
        self.samples: list[dict[str, Any]] = []
        self.predictions: list[tuple[str, str, str]] = []

    @property
    def sample_rate(self) -> int:
        return int(self.vocoder.sample_rate)

    # -- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        discriminators = [*self.mpd.parameters(), *self.msd.parameters()]
        optimizers = [
            self.optimizer_factory(self.vocoder.parameters()),
            self.optimizer_factory(discriminators),
        ]
        if self.epoch_scheduler_factory is None:
            return optimizers
        return optimizers, [self.epoch_scheduler_factory(o) for o in optimizers]

    def on_train_epoch_end(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    # -- training -------------------------------------------------------------------------
    def _load_acoustic(self) -> nn.Module:
        if not self._acoustic:
            task = restore_task(
                load_checkpoint(
                    self.acoustic_ckpt,
                    key="model.acoustic_ckpt",
                    expected="a checkpoint of a model=tacotron2 run on this corpus",
                )
            )
            if not hasattr(task, "model") or not hasattr(task.model, "reduction"):
                raise ValueError(
                    f"model.acoustic_ckpt={self.acoustic_ckpt} holds a {type(task).__name__}; "
                    "pass a synthesis checkpoint (model=tacotron2)"
                )
            _check_same_frames(
                self.frontend, task.frontend, f"the acoustic model {self.acoustic_ckpt}"
            )
            if task.tokenizer.state() != self.tokenizer.state():
                raise ValueError(
                    f"the acoustic model {self.acoustic_ckpt} spells with another symbol set than "
                    "this corpus's tokenizer; fine-tune on the corpus and data.tokenizer it was "
                    "trained with"
                )
            log.info("fine-tuning on the teacher-forced mels of %s", self.acoustic_ckpt)
            self._acoustic.append(task.requires_grad_(False).eval())
        acoustic = self._acoustic[0].to(self.device)
        return acoustic

    @torch.no_grad()
    def _input_mels(self, batch: Batch) -> torch.Tensor:
        """Natural log-mel ``(B, n_mels, F)`` the generator learns to invert: the recording's,
        or the acoustic model's teacher-forced prediction of it."""
        features = batch.features
        if self.acoustic_ckpt:
            acoustic = self._load_acoustic()
            output = acoustic.model(batch.targets, batch.target_lengths, features)
            features = output.mel_postnet[..., : features.shape[-1]]
            features = (
                features * lengths_to_mask(batch.feature_lengths, features.shape[-1])[:, None]
            )
        return self.frontend.denormalize(features)

    def _segments(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One random window per utterance: log-mel ``(B, n_mels, N)`` and audio
        ``(B, 1, N * hop_length)``, with ``N = min(segment frames, shortest utterance)``."""
        hop = self.frontend.hop_length
        mels = self._input_mels(batch)
        whole_frames = torch.div(batch.audio_lengths, hop, rounding_mode="floor")  # full hops
        n = max(1, min(self.segment_frames, int(whole_frames.min())))
        span = (whole_frames - n).clamp(min=0)
        starts = (torch.rand(len(batch), device=span.device) * (span + 1)).long().clamp(max=span)
        frame_index = starts[:, None] + torch.arange(n, device=span.device)
        mel = torch.gather(mels, 2, frame_index[:, None, :].expand(-1, mels.shape[1], -1))
        sample_index = starts[:, None] * hop + torch.arange(n * hop, device=span.device)
        audio = torch.gather(batch.audio, 1, sample_index.clamp(max=batch.audio.shape[1] - 1))
        return mel, audio.unsqueeze(1)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """Natural log-mel ``(B, n_mels, F)`` of ``(B, T)`` audio, with the task's frontend."""
        lengths = torch.full((audio.shape[0],), audio.shape[-1], device=audio.device)
        return self.frontend.denormalize(self.frontend(audio, lengths)[0])

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        optimizer_g, optimizer_d = self.optimizers()
        mel, real = self._segments(batch)
        fake = self.vocoder.generator(mel)
        size = len(batch)
        adversarial = int(self.generator_steps) >= self.discriminator_start_step

        if adversarial:
            mpd_real, _ = self.mpd(real)
            mpd_fake, _ = self.mpd(fake.detach())
            msd_real, _ = self.msd(real)
            msd_fake, _ = self.msd(fake.detach())
            loss_d = discriminator_loss(mpd_real, mpd_fake) + discriminator_loss(msd_real, msd_fake)
            optimizer_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d)
            optimizer_d.step()
            self.log("train/loss_d", loss_d, batch_size=size)

        mel_l1 = F.l1_loss(self.log_mel(fake.squeeze(1)), self.log_mel(real.squeeze(1)))
        loss_g = self.mel_weight * mel_l1
        if adversarial:
            mpd_real, mpd_real_maps = self.mpd(real)
            mpd_fake, mpd_fake_maps = self.mpd(fake)
            msd_real, msd_real_maps = self.msd(real)
            msd_fake, msd_fake_maps = self.msd(fake)
            adversarial_loss = generator_adversarial_loss(mpd_fake) + generator_adversarial_loss(
                msd_fake
            )
            features = feature_matching_loss(mpd_real_maps, mpd_fake_maps) + feature_matching_loss(
                msd_real_maps, msd_fake_maps
            )
            loss_g = loss_g + adversarial_loss + self.feature_weight * features
            self.log("train/loss_adversarial", adversarial_loss, batch_size=size)
            self.log("train/loss_feature", features, batch_size=size)
        optimizer_g.zero_grad(set_to_none=True)
        self.manual_backward(loss_g)
        optimizer_g.step()
        self.generator_steps += 1
        self.log("train/loss", loss_g, batch_size=size, prog_bar=True)
        self.log("train/mel_l1", mel_l1, batch_size=size, prog_bar=True)

    # -- evaluation -----------------------------------------------------------------------
    def on_validation_start(self) -> None:
        self._judge = judge_on(self._judge, self.judge_ckpt, self.device)
        self._texts.update(reference_texts(self.trainer))

    def on_test_start(self) -> None:
        self.on_validation_start()

    @torch.no_grad()
    def resynthesize(self, batch: Batch) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Whole utterances of ``batch`` from the log-mel the generator learns to invert
        (:meth:`_input_mels`): waveforms ``(F_i * hop,)`` on the CPU, the recording's log-mel
        ``(B, n_mels, F)`` and the resynthesis's log-mel (natural log, frames beyond
        ``feature_lengths`` meaningless)."""
        target = self.frontend.denormalize(batch.features)
        audio = self.vocoder(self._input_mels(batch))
        hop = self.frontend.hop_length
        frames = batch.feature_lengths
        waveforms = [audio[i, : int(n) * hop].cpu() for i, n in enumerate(frames)]
        resynthesized = self.log_mel(audio)[..., : target.shape[-1]]
        return waveforms, target, resynthesized

    def _evaluate(self, batch: Batch, split: str) -> None:
        limit = self.num_synthesized if split == "val" else None
        if limit is not None and self._synthesized >= limit:
            return
        self._synthesized += len(batch)
        waveforms, target, resynthesized = self.resynthesize(batch)
        frames = batch.feature_lengths
        mask = lengths_to_mask(frames, target.shape[-1]).unsqueeze(1)
        count = mask.sum().clamp(min=1) * target.shape[1]
        mel_l1 = ((resynthesized - target).abs() * mask).sum() / count
        size = len(batch)
        self.log(f"{split}/mel_l1", mel_l1, batch_size=size, prog_bar=True, sync_dist=True)
        self.log(f"{split}/loss", mel_l1, batch_size=size, sync_dist=True)
        if self.trainer.sanity_checking:
            return
        for i in range(size):
            n = int(frames[i])
            self.mcd[split].update(
                mel_cepstral_distortion(resynthesized[i, :, :n], target[i, :, :n])
            )
        self.log(f"{split}/mcd", self.mcd[split], batch_size=size)
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
            n = int(frames[i])
            self.samples.append(
                {
                    "id": batch.ids[i],
                    "text": references[i],
                    "heard": hypotheses[i],
                    "audio": waveforms[i],
                    "resynthesized": resynthesized[i, :, :n].cpu(),
                    "target": target[i, :, :n].cpu(),
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
            log_synthesized_sample(
                self.trainer, k, sample, "resynthesized", self.sample_rate, self._judge is not None
            )

    def on_test_epoch_start(self) -> None:
        self.predictions = []
        self.samples = []
        self._synthesized = 0

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        if len(batch):
            self._evaluate(batch, "test")


def load_vocoder(
    ckpt: str | Path, frontend: nn.Module, key: str | None = "model.vocoder.ckpt"
) -> HiFiGANVocoder:
    """The generator of a ``model=hifigan`` checkpoint as a vocoder for a synthesis model whose
    mels come from ``frontend`` (read with ``weights_only=True``; the discriminators are left
    out). ``model/vocoder=hifigan model.vocoder.ckpt=<file>`` builds it; ``key`` is the option
    the messages name (None: none).

    Raises:
        FileNotFoundError: no file at ``ckpt``.
        ValueError: ``ckpt`` is ``???`` (not given), not a HiFi-GAN checkpoint, or one trained
            on another log-mel (sample rate, STFT, mel bands).
    """
    expected = "a checkpoint of a model=hifigan run"
    checkpoint = load_checkpoint(ckpt, key=key, expected=expected)
    model_cfg = checkpoint[RECIPE_KEY]["model"]
    if "generator" not in model_cfg:
        raise ValueError(
            f"{named(key, ckpt)} is a {model_cfg.get('_target_')} checkpoint, not a vocoder's; "
            f"{what_to_pass(key, expected)}"
        )
    _check_same_frames(frontend, model_cfg["frontend"], f"the vocoder {ckpt}")
    generator = hydra.utils.instantiate(model_cfg["generator"])
    prefix = "vocoder.generator."
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    generator.load_state_dict(state)
    return HiFiGANVocoder(generator, frontend.sample_rate, frontend.hop_length).eval()


def restore_with_vocoder(
    checkpoint: dict, vocoder_ckpt: str | Path, key: str | None = None
) -> SpeechTask:
    """The synthesis task of ``checkpoint`` speaking through the HiFi-GAN generator of
    ``vocoder_ckpt`` instead of the vocoder it was trained with (whose file, if it had one, need
    not exist any more); ``key``: the option ``vocoder_ckpt`` came from, named in messages.

    Raises:
        FileNotFoundError: no file at ``vocoder_ckpt``.
        ValueError: not a vocoder checkpoint, or one trained on another log-mel.
    """
    recipe = checkpoint[RECIPE_KEY]
    model_cfg = dict(recipe["model"])
    if "vocoder" not in model_cfg:
        raise ValueError("this checkpoint has no vocoder to replace; pass a model=tacotron2 one")
    del model_cfg["vocoder"]  # built with the default (Griffin-Lim), then replaced
    task = build_task(model_cfg, recipe["task_inputs"])
    state = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("vocoder.")}
    missing, unexpected = task.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("vocoder.")]
    if missing or unexpected:
        raise ValueError(
            f"the checkpoint does not fit its own recipe: missing {missing}, unexpected {unexpected}"
        )
    task.vocoder = load_vocoder(vocoder_ckpt, task.frontend, key).requires_grad_(False)
    return task.eval()
