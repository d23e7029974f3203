"""What a user runs: train on the embedded corpus, evaluate the checkpoint, multirun, bad input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import hydra
import pytest

from speechlab.checkpoint.recipe import load_checkpoint
from speechlab.run.evaluate import run as evaluate
from speechlab.run.train import run as train
from tests.conftest import REPO, composed

KWS = ["model=kws_cnn", "data=mini_commands"]
QUICK = [*KWS, "trainer.max_epochs=3", "trainer.accelerator=cpu", "callbacks.progress_bar=null"]


@pytest.fixture(scope="session")
def mini_commands(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded corpus exactly as ``data=mini_commands`` makes it, generated once."""
    overrides = [*KWS, f"paths.data_dir={data_dir}"]
    with composed("train", overrides, tmp_path_factory.mktemp("p")) as cfg:
        return hydra.utils.instantiate(cfg.data.prepare)()


def run_cli(script: str, *overrides: str, expect_ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, script, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if expect_ok and result.returncode != 0:
        raise AssertionError(
            f"{script} {overrides} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def test_train_tests_best_checkpoint_and_evaluate_restores_it(mini_commands, data_dir, tmp_path):
    run_dir = tmp_path / "train"
    # 3 epochs of 20 batches: enough to beat chance, a fraction of the corpus's full epochs.
    overrides = [f"paths.data_dir={data_dir}", *QUICK, "+trainer.limit_train_batches=20"]
    with composed("train", overrides, run_dir) as cfg:
        metrics = train(cfg)
    assert metrics["test/acc"] > 1 / 12, "the model must learn more than chance in 3 epochs"
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    best = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    assert len(best) == 1
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] == pytest.approx(
        metrics["test/acc"]
    )
    rows = list(csv.reader((run_dir / "predictions.tsv").open(), delimiter="\t"))
    assert rows[0] == ["id", "reference", "hypothesis"] and len(rows) > 10
    assert (run_dir / "images" / "test_confusion_matrix.png").stat().st_size > 1000
    logged = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    assert any(row.get("val/acc") for row in logged) and any(
        row.get("train/loss") for row in logged
    )

    checkpoint = load_checkpoint(best[0])  # weights_only=True: plain data only
    assert checkpoint["speechlab"]["task_inputs"]["labels"][:2] == ["yes", "no"]

    eval_dir = tmp_path / "evaluate"
    with composed("evaluate", [f"ckpt_path={best[0]}", "trainer.accelerator=cpu"], eval_dir) as cfg:
        evaluated = evaluate(cfg)
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert json.loads((eval_dir / "metrics.json").read_text())["test/acc"] == pytest.approx(
        evaluated["test/acc"]
    )
    assert (eval_dir / "predictions.tsv").read_text().count("\n") == len(rows)


def test_corrupt_audio_is_skipped_counted_and_listed_once(mini_commands, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(mini_commands, corpus)
    clips = sorted(corpus.glob("yes/*.wav"))[:3]
    clips[0].write_bytes(b"")  # empty
    clips[1].write_bytes(clips[1].read_bytes()[:2000])  # truncated
    clips[2].write_bytes(b"RIFF garbage that is no wave file at all")  # corrupt
    logs = tmp_path / "logs"
    run_cli(
        "train.py",
        *KWS,
        f"data.reader.root={corpus}",
        "data.prepare=null",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.log_dir={logs}",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=5",  # the clips are found when the corpus is scanned
        "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=2",
        "callbacks.progress_bar=null",
    )
    (run_log,) = logs.glob("train/runs/*/train.log")
    text = run_log.read_text()
    for clip in clips:
        assert text.count(str(clip)) == 1, f"{clip} must be listed exactly once in the run log"
    assert "3 corpus entries skipped" in text
    assert f"skipped {clips[0]}: empty: the file is 0 bytes" in text  # not "does not exist"
    assert (run_log.parent / "metrics.json").exists(), "training must go on to the end"


def test_unknown_choice_lists_the_valid_ones():
    result = run_cli("train.py", "model=no_such_model", expect_ok=False)
    assert result.returncode != 0
    assert "kws_cnn" in result.stderr and "no_such_model" in result.stderr


def test_missing_corpus_stops_before_training_with_the_expected_layout(tmp_path):
    result = run_cli(
        "train.py",
        "data=speech_commands",
        f"data.reader.root={tmp_path / 'nowhere'}",
        "data.reader.download=false",
        f"paths.data_dir={tmp_path}",
        f"paths.log_dir={tmp_path / 'logs'}",
        expect_ok=False,
    )
    assert result.returncode != 0
    message = result.stderr
    assert str(tmp_path / "nowhere") in message
    assert "_nohash_" in message and "validation_list.txt" in message
    assert "Epoch" not in result.stdout
    assert result.returncode == 1 and "Traceback" not in message  # the message alone
