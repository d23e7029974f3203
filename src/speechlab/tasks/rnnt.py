"""Speech recognition with the RNN transducer (RNN-T; Graves, 2012).

Any encoder is the transcription network; an LSTM prediction network reads the tokens emitted
so far (the blank, id 0 of every tokenizer, is its start symbol); a joiner combines the two into
token logits for every (frame, label position) pair, and the transducer loss sums over all
alignments. Parts in :mod:`speechlab.nn.transducer`, search in
:mod:`speechlab.decoding.transducer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from speechlab.data.collate import Batch
from speechlab.decoding.build import TransducerDecoder, build_transducer_decoder
from speechlab.nn.ctc_loss import ctc_loss
from speechlab.nn.las import CTCHead
from speechlab.nn.transducer import Joiner, PredictionNetwork, transducer_loss
from speechlab.tasks.base import OptimizerFactory, SchedulerFactory
from speechlab.tasks.encoder_compile import CompileOptions
from speechlab.tasks.recognition import Outputs, RecognitionTask, ctc_length_problem
from speechlab.tasks.step_guard import NonFiniteStepGuard
from speechlab.text.tokenizers import BLANK

PredictionFactory = Callable[..., PredictionNetwork]
JoinerFactory = Callable[..., Joiner]

# The reason an utterance is dropped before training when its joiner tensors alone exceed the
# bound (a fixed text: the datamodule counts utterances per reason).
TOO_LONG_FOR_JOINER = (
    "frames x (labels + 1) x (joint_dim + vocab) above model.max_joint_elements "
    "(raise it, or lower data.max_duration)"
)


class RNNTTask(RecognitionTask):
    """Frontend -> encoder ``(B, T', D)`` + prediction network ``(B, U + 1, H)`` -> joiner
    ``(B, T', U + 1, V)`` -> transducer loss.

    The loss is :func:`torchaudio.functional.rnnt_loss` with fused log-softmax, joiner and loss
    in float32 even under mixed precision, mean over utterances; with ``ctc_weight > 0`` it is
    ``(1 - ctc_weight) * transducer + ctc_weight * CTC``, the CTC loss (summed over each
    utterance's tokens and averaged over utterances, as the transducer loss) of a linear head on
    the encoder frames (an auxiliary loss, as in ESPnet's and icefall's transducer recipes: it
    aligns the encoder to the audio before the prediction network can learn to ignore it; the
    head is not used in decoding). The joiner's memory is bounded:
    the batch goes through the joiner in chunks of at most ``max_joint_elements`` elements of
    ``B_chunk x T' x (U + 1) x (joint_dim + V)`` (see
    :func:`speechlab.nn.transducer.transducer_loss`), and training drops, before it starts and
    with a count, any utterance above the bound on its own.

    Validation decodes greedily every epoch (WER, CER and a table of sample pairs); test and
    :meth:`transcribe` use ``decoding`` (greedy, or torchaudio's RNN-T beam search). Test keeps
    ``(id, reference, hypothesis)`` rows in :attr:`predictions` (see :class:`RecognitionTask`).

    Args:
        frontend: waveform -> features module.
        encoder: features ``(B, n_mels, F)`` -> frames ``(B, T', D)``; needs ``output_dim`` and
            ``output_lengths``.
        prediction: ``(vocab_size=, blank=) -> PredictionNetwork`` (a Hydra partial) or a
            built module.
        joiner: ``(encoder_dim=, prediction_dim=, vocab_size=) -> Joiner`` or a built module.
        tokenizer: a saved tokenizer (``Tokenizer.state()``), given by the datamodule; its
            blank is the transducer's blank.
        optimizer, scheduler, augment, monitor, monitor_mode, step_guard, waveform_augment,
            compile: see :class:`SpeechTask`.
        max_joint_elements: the joiner's memory bound above, in elements (float32: 4 bytes).
        ctc_weight: weight in ``[0, 1)`` of the auxiliary CTC loss; 0 builds no CTC head.
        decoding: every option of :data:`speechlab.decoding.build.TRANSDUCER_OPTIONS`.
        num_logged_samples: reference/hypothesis pairs logged per validation epoch.

    Raises:
        ValueError: the tokenizer has no blank, ``max_joint_elements`` is not positive,
            ``ctc_weight`` is outside ``[0, 1)``, or a decoding option is unknown, missing or
            out of range.
    """

    def __init__(
        self,
        frontend: nn.Module,
        encoder: nn.Module,
        prediction: PredictionFactory | nn.Module,
        joiner: JoinerFactory | nn.Module,
        tokenizer: Mapping[str, Any],
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        augment: nn.Module | None = None,
        *,
        max_joint_elements: int,
        ctc_weight: float,
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
        if BLANK not in self.tokenizer.tokens:
            raise ValueError(f"the tokenizer has no {BLANK!r} token for the transducer's blank")
        if max_joint_elements < 1:
            raise ValueError(f"model.max_joint_elements must be positive, got {max_joint_elements}")
        self.blank = self.tokenizer.tokens.index(BLANK)
        vocab_size = self.tokenizer.vocab_size
        self.prediction = (
            prediction
            if isinstance(prediction, nn.Module)
            else prediction(vocab_size=vocab_size, blank=self.blank)
        )
        self.joiner = (
            joiner
            if isinstance(joiner, nn.Module)
            else joiner(
                encoder_dim=encoder.output_dim,
                prediction_dim=self.prediction.output_dim,
                vocab_size=vocab_size,
            )
        )
        self.max_joint_elements = int(max_joint_elements)
        if not 0.0 <= ctc_weight < 1.0:
            raise ValueError(f"model.ctc_weight must be in [0, 1), got {ctc_weight}")
        self.ctc_weight = float(ctc_weight)
        self.ctc_head = CTCHead(encoder.output_dim, vocab_size) if self.ctc_weight > 0 else None
        self._decoder = self._build_decoder(self.decoding)  # checks the options now

    # -- model --------------------------------------------------------------------------------
    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> Outputs:
        """Features ``(B, n_mels, F)`` -> encoder frames ``(B, T', D)`` and lengths ``(B,)``."""
        return self.encoder(features, lengths)

    def joint_elements(self, num_samples: int, num_labels: int) -> int:
        """Elements of one utterance's joiner tensors: ``T' x (U + 1) x (joint_dim + V)``."""
        width = self.joiner.joint_dim + self.joiner.vocab_size
        return self.output_frames(num_samples) * (num_labels + 1) * width

    def check_example(self, num_samples: int, target: torch.Tensor) -> str | None:
        if self.joint_elements(num_samples, target.numel()) > self.max_joint_elements:
            return TOO_LONG_FOR_JOINER
        if self.ctc_head is not None:
            return ctc_length_problem(self.output_frames(num_samples), target)
        return None

    def _build_decoder(self, decoding: Mapping[str, Any]) -> TransducerDecoder:
        return build_transducer_decoder(decoding)

    def _decode(self, decoder: TransducerDecoder, outputs: Outputs) -> list[str]:
        encoded, lengths = outputs
        sequences = decoder(self.prediction, self.joiner, encoded, lengths)
        return [self.tokenizer.decode(ids) for ids in sequences]

    def _loss(self, batch: Batch) -> tuple[torch.Tensor, Outputs]:
        """The mean transducer loss of ``batch``, with the encoder frames and their lengths."""
        assert batch.target_lengths is not None
        encoded, lengths = self(batch.features, batch.feature_lengths)
        predicted = self.prediction(batch.targets)
        loss = transducer_loss(
            self.joiner,
            encoded,
            lengths,
            predicted,
            batch.targets,
            batch.target_lengths,
            blank=self.blank,
            max_joint_elements=self.max_joint_elements,
        )
        if self.ctc_head is not None:
            log_probs, ctc_lengths = self.ctc_head(encoded, lengths)
            auxiliary = ctc_loss(
                log_probs,
                ctc_lengths,
                batch.targets,
                batch.target_lengths,
                blank=self.blank,
                reduction="utterance",  # summed over its tokens: the transducer loss's scale
            )
            loss = (1.0 - self.ctc_weight) * loss + self.ctc_weight * auxiliary
        return loss, (encoded, lengths)
