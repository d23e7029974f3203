"""A run on a user's corpus named by a relative data.reader.root records the folder as resolved,
so evaluate.py finds it from any directory; evaluate's layout errors say to type a +."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechlab.checkpoint.recipe import RECIPE_KEY, load_checkpoint
from speechlab.corpora.convert import writer
from speechlab.run.evaluate import run as evaluate
from speechlab.run.train import run as train
from tests.conftest import composed

pytestmark = pytest.mark.usefixtures("one_thread")

ONE_BATCH = [
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
]


def test_a_relative_root_is_recorded_resolved_and_evaluate_runs_from_elsewhere(
    tiny_voice, tmp_path: Path, monkeypatch
):
    writer("manifest")(tiny_voice.splits, tmp_path / "work" / "corpus")
    monkeypatch.chdir(tmp_path / "work")
    overrides = [
        "data=manifest",
        "data.reader.root=corpus",
        f"paths.data_dir={tmp_path}",
        *ONE_BATCH,
    ]
    with composed("train", overrides, tmp_path / "run") as cfg:
        train(cfg)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    recorded = load_checkpoint(checkpoint)[RECIPE_KEY]["data"]["reader"]
    assert recorded["root"] == str(tmp_path / "work" / "corpus")
    assert recorded["columns"]["audio"] == "audio_filepath"  # the rest of the reader kept

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    evaluated = [f"ckpt_path={checkpoint}", "+trainer.limit_test_batches=1"]
    with composed("evaluate", evaluated, tmp_path / "evaluate") as cfg:
        metrics = evaluate(cfg)
    assert "test/cer" in metrics

    moved = [f"ckpt_path={checkpoint}", f"+data.reader.root={tmp_path / 'gone'}"]
    with (
        composed("evaluate", moved, tmp_path / "evaluate2") as cfg,
        pytest.raises(Exception, match=r"evaluate.py takes data settings with a \+"),
    ):
        evaluate(cfg)
