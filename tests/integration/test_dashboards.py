"""Every task with every logger: a short run of each task with ``logger=many`` (csv, TensorBoard,
wandb offline, MLflow at once), and what each logger wrote, read back the way its UI reads it."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from speechlab.run.dashboards import COMPARED_COLUMNS
from speechlab.run.train import run as train
from tests.conftest import REPO, composed
from tests.integration.test_las import TINY_LAS
from tests.integration.test_readme_commands import CORPUS_LIMITS
from tests.integration.test_st import TINY_ST
from tests.integration.test_tts import TINY_TTS

EPOCHS = 2
SHORT = [
    "logger=many",
    "trainer.accelerator=cpu",
    f"trainer.max_epochs={EPOCHS}",
    "+trainer.limit_train_batches=2",  # fewer than log_every_n_steps (50): curves must still show
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "callbacks.progress_bar=null",
    "callbacks.early_stopping=null",
]
MINI_COVOST = CORPUS_LIMITS["speechlab.corpora.embedded.mini_covost.ensure_mini_covost"]
# The tiny models of the tasks' own tests (what they log does not depend on their size).
TTS_DATA = [o for o in TINY_TTS if o.startswith(("data.", "model.model.", "model.vocoder."))]
LAS_MODEL = [o for o in TINY_LAS if o.startswith("model.")]
ST_MODEL = [o for o in TINY_ST if o.startswith("model.")]

# task -> (namespace, overrides, what its validation logs besides scalars)
TASKS = {
    "kws": ("kws", ["model=kws_cnn", "data=mini_commands"], {}),
    "ctc": ("asr", ["model=ctc_lstm", "data=mini_voice"], {"tables": ["val/samples"]}),
    "las": (
        "asr",
        ["model=las", "data=mini_voice", *LAS_MODEL],
        {"tables": ["val/samples"], "images": ["val/attention"]},
    ),
    "tts": (
        "tts",
        ["model=tacotron2", "data=mini_speaker", "model.num_logged_samples=1", *TTS_DATA],
        {"images": ["val/mel_0", "val/alignment_0"], "audio": ["val/audio_0"]},
    ),
    "st": (
        "st",
        ["model=st_las", "data=mini_covost", *MINI_COVOST, *ST_MODEL],
        {"tables": ["val/samples"]},
    ),
}


@pytest.fixture(scope="module", params=sorted(TASKS))
def logged_run(request, data_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch_env):
    """One short run of the task with every logger: (task, run dir, log dir, metrics)."""
    task = request.param
    run_dir = tmp_path_factory.mktemp(f"{task}_dashboards")
    log_dir = run_dir / "logs"
    overrides = [*SHORT, *TASKS[task][1], f"paths.data_dir={data_dir}", f"paths.log_dir={log_dir}"]
    with composed("train", overrides, run_dir) as cfg:
        metrics = train(cfg)
    return task, run_dir, log_dir, metrics


@pytest.fixture(scope="module")
def monkeypatch_env() -> Iterator[None]:
    """wandb offline whatever the environment holds."""
    mp = pytest.MonkeyPatch()
    mp.delenv("WANDB_API_KEY", raising=False)
    mp.setenv("WANDB_SILENT", "true")
    yield
    mp.undo()


def wandb_records(path: Path) -> Iterator[bytes]:
    """The records of a ``.wandb`` file: wandb's leveldb-style log (a 7-byte file header, then
    32 KiB blocks of chunks with a 7-byte header: crc32, length, type), chunks joined."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a wandb log"
    block, header, offset, record = 32768, 7, 7, b""
    while offset + header <= len(data):
        if block - offset % block < header:  # block trailer padding
            offset += block - offset % block
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + header])
        chunk = data[offset + header : offset + header + length]
        offset += header + length
        if kind == 0 and length == 0:
            break
        record += chunk
        if kind in (1, 4):  # full or last
            yield record
            record = b""


def wandb_log(run_dir: Path) -> tuple[str, list[dict]]:
    """The offline wandb run's display name, and every history row it logged (key -> value)."""
    from wandb.proto import wandb_internal_pb2

    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")
    name, rows = "", []
    for raw in wandb_records(log):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            name = record.run.display_name
        elif kind == "history":
            items = record.history.item  # a key with "/" comes as its parts (nested_key)
            rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items})
    return name, rows


def test_every_logger_shows_scalars_best_hparams_tags_and_media(logged_run):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    task, run_dir, log_dir, metrics = logged_run
    namespace, overrides, media = TASKS[task]
    monitor = json.loads((run_dir / "run.json").read_text())["monitor"]
    best = f"{monitor}_best"
    assert best in metrics

    # CSV: plain names; a training curve although an epoch is shorter than log_every_n_steps.
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    assert sum(1 for row in rows if row.get("train/loss")) >= EPOCHS
    assert sum(1 for row in rows if row.get(best)) == EPOCHS

    # TensorBoard: one run named after the model, the corpus and the overrides.
    (tb_run,) = (run_dir / "tensorboard").iterdir()
    model, data = (o.split("=")[1] for o in overrides[:2])
    assert tb_run.name.startswith(f"{model}-{data}-") and "trainer.max_epochs=2" in tb_run.name
    assert "paths." not in tb_run.name
    events = EventAccumulator(str(tb_run), size_guidance={"images": 0, "audio": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {f"{namespace}/train/loss", f"{namespace}/{monitor}", f"{namespace}/{best}"} <= scalars
    assert not any(tag.startswith(("val/", "train/")) for tag in scalars), scalars
    assert len(events.Scalars(f"{namespace}/{best}")) == EPOCHS
    hparams = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/experiment"])
    start = plugin_data_pb2.HParamsPluginData.FromString(hparams["_hparams_/session_start_info"])
    # The table: this run's overrides, then what runs are compared by, in TensorBoard's order.
    infos = experiment.experiment.hparam_infos
    labels = [info.display_name for info in infos]
    assert [info.differs for info in infos] == sorted((i.differs for i in infos), reverse=True)
    overridden = {info.display_name for info in infos if info.differs}
    assert {"trainer.max_epochs", "trainer.limit_train_batches"} <= overridden
    compared = [label for label, _ in COMPARED_COLUMNS if label not in overridden]
    assert labels[len(overridden) :] == compared
    assert compared[:3] == ["model", "network", "data"] and "model.optimizer.lr" in labels
    assert set(start.session_start_info.hparams) == {info.name for info in infos}
    trial = start.session_start_info.group_name  # the run name, never cut
    assert trial.startswith(tb_run.name.rstrip("~")) and "paths." not in trial
    (config,) = events.Tensors("config/text_summary")  # the whole config: the Text tab
    assert b"batch_seconds:" in config.tensor_proto.string_val[0]
    shown = {info.name.tag for info in experiment.experiment.metric_infos}
    assert f"{namespace}/{best}" in shown and shown <= scalars
    for name in media.get("images", []):
        assert len(events.Images(name)) == EPOCHS, name  # one per epoch, none overwritten
    for name in media.get("audio", []):
        assert len(events.Audio(name)) == EPOCHS, name
    text = set(events.Tags()["tensors"])
    for name in media.get("tables", []):
        assert f"{name}/text_summary" in text, text

    # MLflow: an experiment per task, the run's name, params, real tags, files per epoch.
    client = MlflowClient(tracking_uri=f"sqlite:///{log_dir}/mlflow.db")
    experiment = client.get_experiment_by_name(f"train/{namespace}")
    (mlflow_run,) = client.search_runs([experiment.experiment_id])
    assert mlflow_run.info.run_name == tb_run.name
    assert float(mlflow_run.data.params["model/optimizer/lr"]) > 0
    assert {"dev", "model", "data"} <= set(mlflow_run.data.tags)
    assert mlflow_run.data.tags["model"] == model and "tags" not in mlflow_run.data.params
    assert f"{namespace}/{best}" in mlflow_run.data.metrics
    assert f"{namespace}/test/loss" in mlflow_run.data.metrics

    for folder, suffix in (("images", "png"), ("audio", "wav"), ("tables", "json")):
        logged = {a.path for a in client.list_artifacts(mlflow_run.info.run_id, folder)}
        for name in media.get(folder, []):
            stem = name.replace("/", "_")
            per_epoch = {f"{folder}/{stem}_epoch{e:03d}.{suffix}" for e in range(EPOCHS)}
            assert per_epoch <= logged, (per_epoch, logged)

    # wandb: the same name; every value at a step that never goes backwards, no media dropped.
    name, history = wandb_log(run_dir)
    assert name == tb_run.name
    steps = [row["_step"] for row in history if "_step" in row]
    assert steps == sorted(steps)
    logged = {key for row in history for key in row}
    assert f"{namespace}/{best}" in logged and f"{namespace}/train/loss" in logged
    for name in [*media.get("images", []), *media.get("audio", []), *media.get("tables", [])]:
        assert sum(1 for row in history if f"{name}/_type" in row) == EPOCHS, name
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    for log in offline.rglob("*.log"):
        assert "less than the current step" not in log.read_text(errors="replace"), log


def test_the_mlflow_ui_lists_the_run_under_its_name_with_its_metrics(logged_run, monkeypatch):
    """What the MLflow UI's pages ask its server (the REST API of ``mlflow ui``, served in
    process), checked by ``benchmarks/dashboards.py``'s own check; without the server
    (``make dashboards``), skipped."""
    server = pytest.importorskip(
        "mlflow.server", reason="the MLflow UI's server: make dashboards", exc_type=ImportError
    )
    from mlflow.server import handlers

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    dashboards = importlib.import_module("dashboards")
    task, run_dir, log_dir, _ = logged_run
    namespace = TASKS[task][0]
    monkeypatch.setenv("_MLFLOW_SERVER_FILE_STORE", f"sqlite:///{log_dir}/mlflow.db")
    monkeypatch.setattr(handlers, "_tracking_store", None)  # the store of this task's run
    client = server.app.test_client()

    def post(path: str, body: dict) -> dict:
        response = client.post(f"{dashboards.MLFLOW_API}{path}", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    (tb_run,) = (run_dir / "tensorboard").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run = dashboards.LoggedRun(
        run_dir=run_dir.resolve(),
        name=tb_run.name,
        trial=tb_run.name,
        experiment=f"train/{namespace}",
        namespace=namespace,
        metrics={k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))},
    )
    assert {"val/loss", "test/loss"} <= set(run.metrics)
    assert dashboards.mlflow_rest_problems(post, [run]) == ([], {run.run_dir: only_run_ids(post)})

    # The check fails where the UI would not show what the run logged.
    wrong = dataclasses.replace(
        run,
        name="another-name",
        metrics={**run.metrics, "val/loss": run.metrics["val/loss"] + 1, "val/never": 0.0},
    )
    problems, _ = dashboards.mlflow_rest_problems(post, [wrong])
    assert len(problems) == 3, problems
    assert "names the run" in problems[0] and f"{namespace}/val/loss" in problems[1]
    assert f"lacks {namespace}/val/never" in problems[2]
    elsewhere = dataclasses.replace(run, experiment="train/elsewhere")
    (problem,), _ = dashboards.mlflow_rest_problems(post, [elsewhere])
    assert "no experiment 'train/elsewhere'" in problem


def only_run_ids(post) -> tuple[str, str]:
    """The (experiment id, run id) of the only run in the store."""
    (experiment,) = [
        e
        for e in post("/experiments/search", {"max_results": 100})["experiments"]
        if e["name"] != "Default"
    ]
    (run,) = post("/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    return experiment["experiment_id"], run["info"]["run_id"]
