"""The dashboards' names: run names from the model, corpus and overrides; scalars namespaced."""

from __future__ import annotations

from lightning.pytorch.loggers import Logger

from speechlab.run.dashboards import (
    NAME_LIMIT,
    flat_hyperparameters,
    hparams_metric_names,
    namespace_metrics,
    run_name,
)

CHOICES = {"model": "ctc_lstm", "data": "mini_voice", "logger": "many"}


def test_run_name_is_the_model_the_corpus_and_the_overrides_that_set_the_run_apart():
    overrides = [
        "model=ctc_lstm",
        "model.optimizer.lr=0.001",
        "+trainer.limit_train_batches=2",
        "logger=many",
        "paths.log_dir=/tmp/x/logs",
        "hydra.sweep.dir=/tmp/y",
        "ckpt_path=last",
        "data.reader.root=/data/cv en",
    ]
    name = run_name(CHOICES, overrides)
    assert name == (
        "ctc_lstm-mini_voice-model.optimizer.lr=0.001-trainer.limit_train_batches=2"
        "-data.reader.root=_data_cv_en"
    )
    assert run_name(CHOICES, []) == "ctc_lstm-mini_voice"  # a resumed run keeps its name


def test_a_long_run_name_is_cut_visibly():
    name = run_name(CHOICES, [f"model.encoder.option_{i}=1" for i in range(40)])
    assert len(name) == NAME_LIMIT and name.endswith("~")


def test_hyperparameters_are_flat_scalars_the_hparams_plugin_takes():
    flat = flat_hyperparameters(
        {"model": {"optimizer": {"lr": 1e-3}, "channels": [8, 8]}, "x": None}
    )
    assert flat == {"model/optimizer/lr": 1e-3, "model/channels": "[8, 8]", "x": "null"}
    assert hparams_metric_names("val/cer") == ["val/cer", "val/cer_best", "test/cer"]


class Recorder(Logger):
    name = "recorder"
    version = "0"

    def __init__(self) -> None:
        super().__init__()
        self.logged: list[dict] = []

    def log_metrics(self, metrics, step=None):
        self.logged.append(dict(metrics))

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def test_scalars_are_namespaced_but_axes_and_media_keep_their_names():
    logger = Recorder()
    namespace_metrics(logger, "kws")
    media = object()
    logger.log_metrics({"val/loss": 0.5, "epoch": 1, "val/cm": media, "kws/val/acc": 0.9}, step=3)
    assert logger.logged == [{"kws/val/loss": 0.5, "epoch": 1, "val/cm": media, "kws/val/acc": 0.9}]
