"""Send figures, tables and audio to every logger that takes them, and keep a copy in the run
dir."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L

from speechlab.tasks.figures import mel_figure

log = logging.getLogger(__name__)


def _file_stem(trainer: L.Trainer, name: str) -> str:
    """``val/mel_0`` -> ``val_mel_0_epoch003``: one file per epoch, so none overwrites another;
    a test's artifacts (one per run) keep the bare name."""
    safe = name.replace("/", "_")
    return safe if trainer.testing else f"{safe}_epoch{trainer.current_epoch:03d}"


def log_figure(trainer: L.Trainer, name: str, figure) -> Path:
    """Save ``figure`` (matplotlib) as ``<run dir>/images/<name>_epoch<E>.png`` (a test's:
    ``<name>.png``) and log it to TensorBoard (at the global step), wandb and MLflow (the same
    file name under ``images/``).

    CSV loggers take no images; the PNG in the run dir is then the record.
    """
    import matplotlib.pyplot as plt

    stem = _file_stem(trainer, name)
    path = Path(trainer.default_root_dir) / "images" / f"{stem}.png"
    if trainer.is_global_zero:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=100, bbox_inches="tight")
        step = trainer.global_step
        for logger in trainer.loggers:
            kind = type(logger).__name__
            if kind == "TensorBoardLogger":
                logger.experiment.add_figure(name, figure, global_step=step)
            elif kind == "WandbLogger":
                logger.log_image(key=name, images=[str(path)], step=step)
            elif kind == "MLFlowLogger":
                logger.experiment.log_artifact(logger.run_id, str(path), "images")
    plt.close(figure)
    return path


def log_table(
    trainer: L.Trainer, name: str, columns: Sequence[str], rows: Sequence[Sequence[str]]
) -> Path:
    """Log a small text table (e.g. reference/hypothesis pairs) to the loggers that take tables
    (wandb tables, TensorBoard text, MLflow table artifacts); always written to
    ``<run dir>/tables/<name>_epoch<E>.tsv`` (a test's: ``<name>.tsv``).

    MLflow's tables need pandas (a declared dependency).
    """
    path = Path(trainer.default_root_dir) / "tables" / f"{_file_stem(trainer, name)}.tsv"
    if not trainer.is_global_zero:
        return path
    rows = [[str(v).replace("\t", " ").replace("\n", " ") for v in row] for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "\n".join("\t".join(row) for row in [list(columns), *rows]) + "\n", encoding="utf-8"
    )
    step = trainer.global_step
    for logger in trainer.loggers:
        kind = type(logger).__name__
        if kind == "WandbLogger":
            logger.log_text(key=name, columns=list(columns), data=rows, step=step)
        elif kind == "TensorBoardLogger":
            header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
            body = "".join("| " + " | ".join(row) + " |\n" for row in rows)
            logger.experiment.add_text(name, header + body, global_step=step)
        elif kind == "MLFlowLogger":
            table = {column: [row[i] for row in rows] for i, column in enumerate(columns)}
            logger.experiment.log_table(logger.run_id, table, f"tables/{path.stem}.json")
    return path


def log_audio(trainer: L.Trainer, name: str, waveform, sample_rate: int) -> Path:
    """Log a ``(T,)`` waveform (tensor or array in [-1, 1]) to the loggers that play audio
    (TensorBoard ``add_audio``, wandb ``Audio``, MLflow artifact); always written to
    ``<run dir>/audio/<name>_epoch<E>.wav`` (16-bit PCM).

    wandb gets it at ``trainer/global_step`` like every other value, never at an explicit wandb
    step: those must grow with every ``log`` call, and media logged at a smaller one are dropped.
    """
    import numpy as np
    import soundfile as sf

    path = Path(trainer.default_root_dir) / "audio" / f"{_file_stem(trainer, name)}.wav"
    if not trainer.is_global_zero:
        return path
    samples = np.clip(np.asarray(getattr(waveform, "cpu", lambda: waveform)(), np.float32), -1, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, sample_rate, subtype="PCM_16")
    step = trainer.global_step
    for logger in trainer.loggers:
        kind = type(logger).__name__
        if kind == "TensorBoardLogger":
            logger.experiment.add_audio(name, samples[None], step, sample_rate=sample_rate)
        elif kind == "WandbLogger":
            logger.log_audio(key=name, audios=[samples], step=step, sample_rate=[sample_rate])
        elif kind == "MLFlowLogger":
            logger.experiment.log_artifact(logger.run_id, str(path), "audio")
    return path


def log_synthesized_sample(
    trainer: L.Trainer,
    index: int,
    sample: dict,
    mel_key: str,
    sample_rate: int,
    judged: bool,
) -> str:
    """Log one synthesized validation sample: ``val/audio_<index>`` (its ``(T,)`` waveform at
    ``sample_rate`` Hz) and ``val/mel_<index>`` (``sample[mel_key]`` against ``sample["target"]``,
    each ``(n_mels, frames)``). The title names the utterance, its text, what the judge heard
    (``judged``) and the epoch; it is returned for the caller's further figures."""
    heard = f" | heard: {sample['heard']!r}" if judged else ""
    title = f"{sample['id']}: {sample['text']!r}{heard} (epoch {trainer.current_epoch})"
    log_audio(trainer, f"val/audio_{index}", sample["audio"], sample_rate)
    log_figure(trainer, f"val/mel_{index}", mel_figure(sample[mel_key], sample["target"], title))
    return title
