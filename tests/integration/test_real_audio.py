"""Real recordings through the same pipelines as the embedded corpora."""

from pathlib import Path

from speechlab.run.train import run as train
from tests.conftest import composed, shared_data


def test_fsdd_digits_reach_90_percent_on_the_official_test_takes(tmp_path: Path):
    fsdd = shared_data("fsdd")
    overrides = [
        "experiment=kws_fsdd",
        f"data.reader.root={fsdd}",
        f"paths.data_dir={tmp_path / 'data'}",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=10",
        "callbacks.progress_bar=null",
        "callbacks.early_stopping=null",
    ]
    with composed("train", overrides, tmp_path / "run") as cfg:
        metrics = train(cfg)
    assert metrics["test/acc"] >= 0.90, metrics


def test_fsdd_digits_as_recognition_reach_10_percent_wer_on_the_test_takes(tmp_path: Path):
    fsdd = shared_data("fsdd")
    overrides = [
        "experiment=ctc_fsdd",
        f"data.reader.root={fsdd}",
        f"paths.data_dir={tmp_path / 'data'}",
        "trainer.accelerator=cpu",
        "callbacks.progress_bar=null",
        "callbacks.early_stopping=null",
    ]
    with composed("train", overrides, tmp_path / "run") as cfg:
        metrics = train(cfg)
    assert metrics["test/wer"] <= 0.10, metrics
