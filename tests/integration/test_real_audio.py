"""Real recordings through the same pipelines as the embedded corpora.

The recognition recipe on the same recordings (``experiment=ctc_fsdd``, 15 epochs, about 4
minutes) is a long training: ``benchmarks/real_audio.py`` checks its WER target.
"""

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
