"""CTC recognition end to end on the embedded corpus: train, evaluate, transcribe, decode."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import hydra
import numpy as np
import pytest
import soundfile as sf

from speechlab.audio.io import read_audio
from speechlab.checkpoint.recipe import load_checkpoint
from speechlab.run.evaluate import run as evaluate
from speechlab.run.train import run as train
from speechlab.text.tokenizers import load_tokenizer
from tests.conftest import REPO, composed

CTC = [
    "model=ctc_lstm",
    "data=mini_voice",
    "trainer.accelerator=cpu",
    "callbacks.progress_bar=null",
]


@pytest.fixture(scope="session")
def mini_voice(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded read-speech corpus exactly as ``data=mini_voice`` makes it."""
    overrides = [*CTC, f"paths.data_dir={data_dir}"]
    with composed("train", overrides, tmp_path_factory.mktemp("p")) as cfg:
        return hydra.utils.instantiate(cfg.data.prepare)()


@pytest.fixture(scope="session")
def ctc_run(mini_voice: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A short CTC training run: its dir and metrics."""
    run_dir = tmp_path_factory.mktemp("ctc_run")
    # 4 epochs of a quarter of the train split each: off the all-blank output, in a quarter of the time.
    overrides = [
        *CTC,
        f"paths.data_dir={data_dir}",
        "trainer.max_epochs=4",
        "+trainer.limit_train_batches=0.25",
    ]
    with composed("train", overrides, run_dir) as cfg:
        metrics = train(cfg)
    return run_dir, metrics


def best_checkpoint(run_dir: Path) -> Path:
    (best,) = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    return best


def test_ctc_training_writes_metrics_tokenizer_samples_and_predictions(ctc_run):
    run_dir, metrics = ctc_run
    assert {"val/wer", "val/cer", "test/wer", "test/cer"} <= set(metrics)
    assert metrics["test/cer"] < 0.9, "four epochs must get the model off the all-blank output"
    tokenizer = json.loads((run_dir / "tokenizer.json").read_text())
    assert tokenizer["kind"] == "char" and tokenizer["tokens"][:2] == ["<blank>", "|"]
    checkpoint = load_checkpoint(best_checkpoint(run_dir))  # weights_only=True
    assert checkpoint["speechlab"]["task_inputs"]["tokenizer"] == tokenizer
    rows = list(csv.reader((run_dir / "predictions.tsv").open(), delimiter="\t"))
    assert rows[0] == ["id", "reference", "hypothesis"] and len(rows) == 161
    assert all(row[1] == row[1].lower() and "." not in row[1] for row in rows[1:])  # normalised
    samples = sorted((run_dir / "tables").glob("val_samples_epoch*.tsv"))
    assert len(samples) == 4 and samples[-1].read_text().count("\n") == 9  # header + 8 pairs
    logged = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    assert sum(1 for row in logged if row.get("val/cer")) == 4


def test_evaluate_reproduces_the_test_error_rates(ctc_run, tmp_path):
    run_dir, metrics = ctc_run
    overrides = [f"ckpt_path={best_checkpoint(run_dir)}", "trainer.accelerator=cpu"]
    with composed("evaluate", overrides, tmp_path) as cfg:
        evaluated = evaluate(cfg)
    assert evaluated["test/cer"] == pytest.approx(metrics["test/cer"], abs=1e-6)
    assert evaluated["test/wer"] == pytest.approx(metrics["test/wer"], abs=1e-6)
    assert (tmp_path / "predictions.tsv").read_text().count("\n") == 161


def test_transcribe_reads_any_format_rate_and_channels_and_reports_bad_files(
    ctc_run, mini_voice, tmp_path
):
    run_dir, _ = ctc_run
    clip = sorted((mini_voice / "clips").glob("*.mp3"))[0]
    audio = read_audio(clip, 16000).numpy()
    wav = tmp_path / "mono16k.wav"
    sf.write(wav, audio, 16000)
    stereo = tmp_path / "stereo44k.flac"
    upsampled = read_audio(wav, 44100).numpy()
    sf.write(stereo, np.stack([upsampled, upsampled], axis=1), 44100)
    ogg = tmp_path / "clip.ogg"
    sf.write(ogg, audio, 16000, format="OGG")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF this is not audio")
    missing = tmp_path / "missing.mp3"
    short = tmp_path / "short.wav"  # 100 samples: shorter than one STFT window
    sf.write(short, audio[:100], 16000)
    files = [clip, wav, short, corrupt, stereo, missing, ogg]
    result = subprocess.run(
        [sys.executable, "-m", "speechlab.cli", "transcribe", str(best_checkpoint(run_dir))]
        + [str(f) for f in files],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr  # some files failed
    lines = result.stdout.splitlines()
    transcribed = (clip, wav, short, stereo, ogg)
    assert [line.split("\t")[0] for line in lines] == [str(f) for f in transcribed]
    errors = result.stderr.strip().splitlines()
    assert [line.split("\t")[0] for line in errors if "\t" in line] == [str(corrupt), str(missing)]
    texts = [line.split("\t", 1)[1] for line in lines]
    assert texts[0] == texts[1], "the same audio as MP3 and as 16 kHz WAV must read the same"
    assert all(isinstance(t, str) for t in texts)


def test_transcribe_without_a_checkpoint_says_where_it_looked(tmp_path):
    from speechlab.cli import main

    with pytest.raises(SystemExit, match=r"speechlab transcribe: no checkpoint at .*absent\.ckpt"):
        main(["transcribe", str(tmp_path / "absent.ckpt"), "x.wav"])


def test_build_lm_then_beam_search_with_lexicon_and_lm_from_evaluate(ctc_run, tmp_path):
    from speechlab.cli import main

    run_dir, _ = ctc_run
    ckpt = str(best_checkpoint(run_dir))
    lm, lexicon = tmp_path / "lm.arpa", tmp_path / "lexicon.txt"
    assert main(["build-lm", "--ckpt", ckpt, "-o", str(lm), "--lexicon", str(lexicon)]) == 0
    assert "\\data\\" in lm.read_text() and "\\3-grams:" in lm.read_text()
    words = [line.split("\t")[0] for line in lexicon.read_text().splitlines()]
    assert "the" in words and all(w == w.lower() and "." not in w for w in words)  # normalised
    overrides = [
        f"ckpt_path={ckpt}",
        "trainer.accelerator=cpu",
        "+decoding.kind=beam",
        "+decoding.beam_size=8",
        f"+decoding.lm={lm}",
        f"+decoding.lexicon={lexicon}",
    ]
    with composed("evaluate", overrides, tmp_path / "eval") as cfg:
        evaluated = evaluate(cfg)
    hypotheses = [
        row["hypothesis"]
        for row in csv.DictReader((tmp_path / "eval" / "predictions.tsv").open(), delimiter="\t")
    ]
    vocabulary = set(words)
    assert all(set(h.split()) <= vocabulary for h in hypotheses), "lexicon decoding emits words"
    assert 0.0 <= evaluated["test/wer"] <= 1.5


def test_a_sentencepiece_vocabulary_the_texts_cannot_fill_is_recorded_as_built(
    mini_voice, data_dir, tmp_path
):
    """`data.tokenizer.kind=unigram +data.tokenizer.vocab_size=5000` on a corpus whose texts
    allow fewer pieces: hparams.yaml, the loggers and the checkpoint's recipe say how many the
    tokenizer has, not the size asked for."""
    overrides = [
        *CTC,
        f"paths.data_dir={data_dir}",
        "data.tokenizer.kind=unigram",
        "+data.tokenizer.vocab_size=5000",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=1",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
    ]
    with composed("train", overrides, tmp_path) as cfg:
        train(cfg)
    (checkpoint,) = (tmp_path / "checkpoints").glob("epoch_*.ckpt")
    recipe = load_checkpoint(checkpoint)["speechlab"]
    built = recipe["data"]["tokenizer"]["vocab_size"]
    pieces = load_tokenizer(recipe["task_inputs"]["tokenizer"]).pieces
    assert built == pieces < 5000
    (hparams,) = (tmp_path / "csv").rglob("hparams.yaml")
    text = hparams.read_text()
    assert f"vocab_size: {built}" in text and "5000" not in text
