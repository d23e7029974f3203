"""Checkpoints written before the package layout change still load, evaluate and decode as then.

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
