"""Evaluate a checkpoint on the test split of the corpus it was trained on (or another)."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from speechlab.checkpoint.recipe import RECIPE_KEY, load_checkpoint, restore_task
from speechlab.data.datamodule import build_datamodule
from speechlab.data.reader import CorpusLayoutError
from speechlab.run import resolvers  # noqa: F401  (config resolvers: paths use ${launch_dir:})
from speechlab.run.callbacks import SkippedAudioReport
from speechlab.run.config_check import check_config
from speechlab.run.console import quiet_console
from speechlab.run.reports import plain_metrics, print_metrics, write_metrics, write_predictions
from speechlab.run.train import hydra_job
from speechlab.tasks.vocoder import restore_with_vocoder

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict[str, float]:
    """Test ``cfg.ckpt_path``; write ``metrics.json`` and ``predictions.tsv`` into the run dir."""
    quiet_console()
    check_config(cfg, hydra_job()[1])  # the trainer's settings, before any checkpoint or data
    checkpoint = load_checkpoint(
        cfg.ckpt_path, key="ckpt_path", expected="a checkpoint of the speechlab run to evaluate"
    )
    recipe = checkpoint[RECIPE_KEY]
    data_cfg = OmegaConf.merge(OmegaConf.create(recipe["data"]), cfg.get("data") or {})
    # the model's own labels or tokenizers, never retrained
    for key in ("labels", "tokenizer", "source_tokenizer"):
        if key in recipe["task_inputs"]:
            data_cfg[key] = recipe["task_inputs"][key]
    if cfg.get("vocoder"):  # a synthesis model heard through another vocoder
        task = restore_with_vocoder(checkpoint, cfg.vocoder, key="vocoder")
    else:
        task = restore_task(checkpoint)
    if cfg.get("decoding"):
        if not hasattr(task, "set_decoding"):
            raise ValueError(f"decoding options do not apply to a {type(task).__name__}")
        task.set_decoding(OmegaConf.to_container(cfg.decoding, resolve=True))
    try:
        datamodule = build_datamodule(
            data_cfg, task.target_field, getattr(task, "source_field", None)
        )
    except CorpusLayoutError as error:  # its advice is train.py's: evaluate.py takes a +
        raise CorpusLayoutError(
            f"{error} (evaluate.py takes data settings with a +: +data.reader.root=<folder>, "
            "+data.reader.test=<file>)"
        ) from error
    datamodule.check_not_empty("test")

    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[SkippedAudioReport()])
    if cfg.get("seed") is not None:  # dropout at inference (Tacotron 2's prenet) draws from it
        L.seed_everything(cfg.seed, workers=True)  # here: building the task drew from it too
    trainer.test(task, datamodule=datamodule)
    metrics = plain_metrics(trainer.callback_metrics)
    output_dir = Path(cfg.paths.output_dir)
    write_metrics(output_dir / "metrics.json", metrics)
    write_predictions(
        output_dir / "predictions.tsv",
        getattr(task, "predictions", []),
        getattr(task, "prediction_columns", ("id", "reference", "hypothesis")),
    )
    print_metrics(f"{Path(cfg.ckpt_path).name} on {datamodule.reader.name}", metrics)
    log.info("wrote %s and %s", output_dir / "metrics.json", output_dir / "predictions.tsv")
    return metrics
