"""Checkpoints written before the package layout change still load, evaluate and decode as then,
and a resumable one continues its run.

The fixtures (``tests/fixtures/checkpoints_0.1/``, see its README) name the old module paths
in their recipes; ``expected.json`` holds what evaluating and decoding them gave when they were
written.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import lightning as L
import pytest
import torch

from speechlab.checkpoint.recipe import load_checkpoint, restore_task
from speechlab.cli import main as speechlab
from speechlab.run.evaluate import run as evaluate
from speechlab.run.train import run as train
from tests.conftest import REPO, composed, shared_data

FIXTURES = REPO / "tests" / "fixtures" / "checkpoints_0.1"
EXPECTED = json.loads((FIXTURES / "expected.json").read_text())

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", ["ctc_fsdd", "kws_fsdd", "las_fsdd", "tts_fsdd"])
def test_old_checkpoint_evaluates_to_the_same_metrics_and_predictions(name, tmp_path: Path):
    fsdd = shared_data("fsdd")
    overrides = [
        f"ckpt_path={FIXTURES / name}.ckpt",
        "trainer.accelerator=cpu",
        "+trainer.limit_test_batches=2",
        "+trainer.enable_progress_bar=false",
        f"+data.reader.root={fsdd}",
        f"+data.cache_dir={tmp_path / 'manifests'}",
    ]
    L.seed_everything(0)  # the synthesizer's prenet keeps its dropout at inference
    with composed("evaluate", overrides, tmp_path / "evaluate") as cfg:
        metrics = evaluate(cfg)
    expected = EXPECTED[name]
    assert metrics == pytest.approx(expected["metrics"], abs=1e-6)
    predictions = (tmp_path / "evaluate" / "predictions.tsv").read_text().splitlines()
    assert predictions == expected["predictions"]


@pytest.mark.parametrize(
    ("name", "command", "clips"),
    [
        (
            "ctc_fsdd",
            "transcribe",
            ["fsdd/recordings/0_george_0.wav", "fsdd/recordings/7_theo_3.wav"],
        ),
        (
            "las_fsdd",
            "transcribe",
            ["fsdd/recordings/0_george_0.wav", "fsdd/recordings/7_theo_3.wav"],
        ),
        ("st_mini_covost", "translate", ["common_voice_clips/fr/clips"]),
    ],
)
def test_old_checkpoint_decodes_the_same_texts(name, command, clips):
    paths = []
    for clip in clips:
        path = shared_data(*clip.split("/"))
        paths += sorted(map(str, path.glob("*.mp3")))[:2] if path.is_dir() else [str(path)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = speechlab([command, str(FIXTURES / f"{name}.ckpt"), *paths])
    assert status == 0
    texts = [line.split("\t", 1)[1] for line in out.getvalue().splitlines()]
    assert texts == EXPECTED[name]["outputs"]


def test_old_synthesis_checkpoint_speaks_the_same_samples():
    expected = EXPECTED["tts_fsdd"]["synthesized"]
    L.seed_everything(0)  # as when expected.json was written: the seed, then the rebuild
    task = restore_task(load_checkpoint(FIXTURES / "tts_fsdd.ckpt"))
    (audio,), _ = task.synthesize([expected["text"]])
    assert audio.numel() == expected["samples"]
    assert float(audio.abs().sum()) == pytest.approx(expected["abs_sum"], rel=1e-5)
    assert torch.isfinite(audio).all()


def test_old_checkpoint_resumes_training(tmp_path: Path):
    """``ckpt_path=<old checkpoint>`` continues its run: the recipe of ctc_fsdd.ckpt (see the
    fixtures' README) for one more epoch of 2 batches, from its epoch and step."""
    fsdd = shared_data("fsdd")
    old = FIXTURES / "ctc_fsdd.ckpt"
    overrides = [
        "experiment=ctc_fsdd",
        f"data.reader.root={fsdd}",
        f"paths.data_dir={tmp_path / 'data'}",
        "model/encoder=lstm",
        "model.frontend.n_mels=16",
        "model.encoder.subsampling_channels=[4,4]",
        "model.encoder.projection_dim=16",
        "model.encoder.hidden_size=8",
        "model.encoder.num_layers=1",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=2",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "callbacks.progress_bar=null",
        "callbacks.early_stopping=null",
        f"ckpt_path={old}",
    ]
    with composed("train", overrides, tmp_path / "run") as cfg:
        metrics = train(cfg)
    assert "test/cer" in metrics
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    before = torch.load(old, weights_only=True)
    assert (last["epoch"], last["global_step"]) == (1, before["global_step"] + 2)
    assert last["speechlab"]["model"]["_target_"] == "speechlab.tasks.ctc.CTCTask"
