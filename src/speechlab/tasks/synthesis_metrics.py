"""Synthesis metrics: mel-cepstral distortion with DTW, and intelligibility by a recognizer."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import torch
import torchaudio

from speechlab.audio.io import resample

log = logging.getLogger(__name__)

# 10 / ln(10) * sqrt(2): the usual MCD constant, in dB.
_MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)


def mel_cepstra(log_mel: torch.Tensor, n_mfcc: int = 13) -> torch.Tensor:
    """Mel-cepstra ``c1..c{n_mfcc}`` of a natural log-mel ``(n_mels, T)`` -> ``(T, n_mfcc)``:
    ``c_n = (2/M) sum_m log A_m cos(pi n (m + 1/2) / M)`` over the ``M`` bands of the
    log-amplitude mel spectrum (the log-mel is of power, so halved), ``c0`` (energy) left out,
    as MCD uses them."""
    n_mels = log_mel.shape[0]
    dct = torchaudio.functional.create_dct(n_mfcc + 1, n_mels, norm="ortho").to(log_mel)
    # the orthonormal DCT has sqrt(2/M) for n >= 1; the cepstrum has 2/M
    return (0.5 * log_mel.T @ dct)[:, 1:] * math.sqrt(2.0 / n_mels)


def dtw_path(cost: np.ndarray) -> list[tuple[int, int]]:
    """The minimum-cost monotonic alignment of a ``(N, M)`` cost matrix (steps (1,0), (0,1),
    (1,1)), from ``(0, 0)`` to ``(N-1, M-1)``."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for i in range(1, n + 1):
        row = cost[i - 1]
        above, diagonal = total[i - 1, 1:], total[i - 1, :-1]
        best = np.minimum(above, diagonal)  # from (i-1, j) or (i-1, j-1)
        current = total[i]
        for j in range(1, m + 1):
            current[j] = row[j - 1] + min(best[j - 1], current[j - 1])
    path = []
    i, j = n, m
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        moves = (total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])
        step = int(np.argmin(moves))
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    return path[::-1]


def mel_cepstral_distortion(
    predicted: torch.Tensor, target: torch.Tensor, n_mfcc: int = 13
) -> float:
    """MCD in dB between two natural log-mels ``(n_mels, T1)`` and ``(n_mels, T2)`` of any
    lengths, averaged over the frames of their DTW alignment."""
    a = mel_cepstra(predicted.float().cpu(), n_mfcc)
    b = mel_cepstra(target.float().cpu(), n_mfcc)
    if a.shape[0] == 0 or b.shape[0] == 0:
        raise ValueError("mel-cepstral distortion needs at least one frame on each side")
    distances = torch.cdist(a, b).numpy()  # Euclidean distance between frames
    path = dtw_path(distances)
    return float(_MCD_SCALE * np.mean([distances[i, j] for i, j in path]))


class IntelligibilityJudge:
    """A speechlab recognizer checkpoint that transcribes synthesized speech (greedy decoding).

    Kept out of the synthesis model's modules and state: it is only a measuring instrument.

    Args:
        checkpoint: a recognition checkpoint written by train.py (e.g. ``model=ctc_lstm``).
    """

    def __init__(self, checkpoint: str | Path) -> None:
        from speechlab.checkpoint.recipe import load_checkpoint, restore_task

        task = restore_task(
            load_checkpoint(
                checkpoint,
                key="model.judge_ckpt",
                expected="a checkpoint of a speechlab recognizer (e.g. model=ctc_lstm)",
            )
        )
        if not hasattr(task, "transcribe"):
            raise ValueError(
                f"model.judge_ckpt={checkpoint} holds a {type(task).__name__}, which does not "
                "transcribe; pass a recognizer checkpoint (model=ctc_*, las)"
            )
        if hasattr(task, "set_decoding"):
            task.set_decoding({"kind": "greedy"})
        self.checkpoint = str(checkpoint)
        self.task = task.requires_grad_(False)
        self.sample_rate: int = task.frontend.sample_rate

    @torch.no_grad()
    def transcribe(self, waveforms: list[torch.Tensor], sample_rate: int) -> list[str]:
        """``(T,)`` waveforms at ``sample_rate`` -> texts."""
        device = next(self.task.parameters()).device
        audio = [
            resample(w.detach().float().cpu(), sample_rate, self.sample_rate) for w in waveforms
        ]
        lengths = torch.tensor([a.numel() for a in audio])
        batch = torch.nn.utils.rnn.pad_sequence(audio, batch_first=True)
        return self.task.transcribe(batch.to(device), lengths.to(device))

    def to(self, device: torch.device | str) -> IntelligibilityJudge:
        self.task.to(device)
        return self


def judge_on(
    judge: IntelligibilityJudge | None, checkpoint: str | None, device: torch.device
) -> IntelligibilityJudge | None:
    """``judge``, loaded from ``checkpoint`` on first use, on ``device``; ``None`` without a
    checkpoint (the CER is then not measured).

    Raises:
        FileNotFoundError, ValueError: as :class:`IntelligibilityJudge`.
    """
    if checkpoint and judge is None:
        judge = IntelligibilityJudge(checkpoint)
        log.info("intelligibility judge: %s", checkpoint)
    return judge.to(device) if judge is not None else None


def reference_texts(trainer: object) -> dict[str, str]:
    """The text of every utterance of the trainer's datamodule, by utterance id: the
    references the judge's transcripts are scored against."""
    datamodule = getattr(trainer, "datamodule", None)
    texts: dict[str, str] = {}
    for dataset in getattr(datamodule, "datasets", {}).values():
        texts.update({u.id: u.text for u in dataset.utterances if u.text})
    return texts
