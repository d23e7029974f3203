"""The dashboards' names: run names from the model, corpus and overrides; scalars namespaced."""

from __future__ import annotations

from lightning.pytorch.loggers import Logger

from speechlab.run.dashboards import (
    NAME_LIMIT,
    flat_hyperparameters,
    hparams_columns,
    hparams_metric_names,
    hparams_summaries,
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


# A resolved config as train.py sends it (trimmed): what the HParams table picks from.
CONFIG = {
    "seed": 12345,
    "model": {
        "_target_": "speechlab.tasks.ctc.CTCTask",
        "encoder": {"_target_": "speechlab.nn.encoders.LSTMEncoder", "hidden_size": 256},
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": 0.001, "weight_decay": 0.01},
    },
    "data": {"batch_seconds": 32, "num_buckets": 20, "reader": {"root": "/data/mini_voice"}},
    "trainer": {"max_epochs": 7, "precision": "32-true", "limit_train_batches": 2},
    "callbacks": {"model_checkpoint": {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint"}},
    "paths": {"log_dir": "/tmp/x/logs"},
}
COMPARED = [
    "model",
    "network",
    "data",
    "model.optimizer",
    "model.optimizer.weight_decay",
    "data.batch_seconds",
    "trainer.max_epochs",
    "seed",
    "trainer.precision",
]


def test_the_hparams_table_leads_with_the_overrides_then_what_runs_are_compared_by():
    overrides = [
        "model=ctc_lstm",
        "model.optimizer.lr=1e-3",
        "+trainer.limit_train_batches=2",
        "model.encoder.hidden_size=256",
        "~callbacks.early_stopping",
        "logger=many",
        "paths.log_dir=/tmp/x/logs",
    ]
    columns = hparams_columns(CONFIG, CHOICES, overrides)
    labels = [column.label for column in columns]
    assert labels == [
        "model.optimizer.lr",  # overridden: first, under its compared column's name
        "callbacks.early_stopping",
        "model.encoder.hidden_size",
        "trainer.limit_train_batches",
        *COMPARED,  # the model and corpus chosen lead them, as in the run name
    ]
    values = {column.label: column.value for column in columns}
    assert values["model.optimizer.lr"] == 0.001  # typed, from the config: filtered by range
    assert values["callbacks.early_stopping"] == "removed"
    assert values["model"] == "ctc_lstm" and values["network"] == "LSTMEncoder"
    assert values["model.optimizer"] == "AdamW" and values["trainer.precision"] == "32-true"
    assert [column.overridden for column in columns] == [True] * 4 + [False] * 9
    # The order TensorBoard imposes (differs first, then by name) is the one sent.
    assert columns == sorted(columns, key=lambda c: (not c.overridden, c.name))


def test_a_key_has_one_column_name_whether_overridden_or_not():
    plain = {c.label: c.name for c in hparams_columns(CONFIG, CHOICES, [])}
    swept = {c.label: c.name for c in hparams_columns(CONFIG, CHOICES, ["model.optimizer.lr=3e-4"])}
    assert plain == swept  # so two runs' rows line up in the same columns
    assert [c.label for c in hparams_columns(CONFIG, CHOICES, [])] == [
        "model",
        "network",
        "data",
        "model.optimizer",
        "model.optimizer.lr",
        *COMPARED[4:],
    ]
    tts = {"model": {"model": {"_target_": "speechlab.nn.tacotron2.Tacotron2"}}}
    (network,) = [c for c in hparams_columns(tts, {}, []) if c.label == "network"]
    assert network.value == "Tacotron2"  # no encoder: the synthesis network


def test_the_trial_id_is_the_whole_run_name_and_the_table_shows_the_labels():
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    overrides = [f"model.encoder.option_{i}=1" for i in range(40)]
    columns = hparams_columns(CONFIG, CHOICES, overrides)
    experiment, start = (
        plugin_data_pb2.HParamsPluginData.FromString(s.value[0].metadata.plugin_data.content)
        for s in hparams_summaries(columns, ["asr/val/cer"], run_name(CHOICES, overrides, None))
    )
    trial = start.session_start_info.group_name
    assert trial.startswith("ctc_lstm-mini_voice-model.encoder.option_0=1-")
    assert trial.endswith("option_39=1") and len(trial) > NAME_LIMIT  # never cut: no two merge
    assert run_name(CHOICES, overrides).rstrip("~") in trial
    infos = experiment.experiment.hparam_infos
    assert [info.display_name for info in infos] == [c.label for c in columns]
    assert set(start.session_start_info.hparams) == {info.name for info in infos}
    (lr,) = [info for info in infos if info.display_name == "model.optimizer.lr"]
    assert lr.type == api_pb2.DATA_TYPE_FLOAT64 and not lr.differs
    assert start.session_start_info.hparams[lr.name].number_value == 0.001
    assert [m.name.tag for m in experiment.experiment.metric_infos] == ["asr/val/cer"]
