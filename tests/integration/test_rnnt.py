"""The RNN transducer end to end: train, test, evaluate and transcribe a tiny model=rnnt."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import soundfile as sf
import torch
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from speechlab.audio.io import read_audio
from speechlab.checkpoint.recipe import load_checkpoint
from speechlab.data.collate import Batch
from speechlab.run.evaluate import run as evaluate
from speechlab.run.train import run as train
from speechlab.tasks.rnnt import TOO_LONG_FOR_JOINER
from speechlab.text.tokenizers import CharTokenizer
from tests.conftest import REPO, composed, one_torch_thread
from tests.integration.test_configs import build_all
from tests.integration.test_ctc import mini_voice  # noqa: F401  (session fixture)
from tests.integration.test_las import NUM_UTTERANCES, predictions, tiny_voice  # noqa: F401

EPOCHS = 4  # one batch of the 8 utterances per epoch
VAL_EVERY = 2

# A tiny transducer (~40 k parameters): what is checked here is the plumbing (train, test, files,
# evaluate, transcribe); that the transducer learns is checked in tests/unit/test_transducer.py.
TINY_RNNT = [
    "model=rnnt",
    "data=mini_voice",
    "data.prepare=null",
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
    f"trainer.check_val_every_n_epoch={VAL_EVERY}",
    "callbacks.progress_bar=null",
    "callbacks.early_stopping=null",
    "model.augment=null",
    "model.encoder.subsampling_channels=[8,8]",
    "model.encoder.projection_dim=32",
    "model.encoder.hidden_size=32",
    "model.encoder.num_layers=1",
    "model.encoder.dropout=0.0",
    "model.prediction.embedding_dim=16",
    "model.prediction.hidden_size=32",
    "model.prediction.dropout=0.0",
    "model.joiner.joint_dim=32",
    "model.scheduler=null",
    "model.optimizer.lr=5e-3",
    "model.decoding.kind=beam",  # test decodes with the beam search
    "model.decoding.beam_size=2",
]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def rnnt_run(tiny_voice: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """The tiny transducer trained for ``EPOCHS`` epochs on the 8 utterances: dir and metrics."""
    run_dir = tmp_path_factory.mktemp("rnnt_run")
    overrides = [
        *TINY_RNNT,
        f"data.reader.root={tiny_voice}",
        f"paths.data_dir={tmp_path_factory.mktemp('rnnt_data')}",
        f"trainer.max_epochs={EPOCHS}",
    ]
    with one_torch_thread(), composed("train", overrides, run_dir) as cfg:
        metrics = train(cfg)
    return run_dir, metrics


def best_checkpoint(run_dir: Path) -> Path:
    (best,) = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    return best


def test_rnnt_training_writes_metrics_samples_predictions_and_checkpoints(rnnt_run):
    run_dir, metrics = rnnt_run
    assert {"val/loss", "val/wer", "val/cer", "test/loss", "test/wer", "test/cer"} <= set(metrics)
    assert torch.isfinite(torch.tensor([metrics["test/loss"], metrics["test/cer"]])).all()
    rows = predictions(run_dir / "predictions.tsv")
    assert len(rows) == NUM_UTTERANCES
    samples = sorted((run_dir / "tables").glob("val_samples_epoch*.tsv"))
    assert len(samples) == EPOCHS // VAL_EVERY
    assert samples[-1].read_text().count("\n") == NUM_UTTERANCES + 1  # header + pairs
    with (run_dir / "csv" / "metrics.csv").open() as f:
        losses = [float(row["train/loss"]) for row in csv.DictReader(f) if row.get("train/loss")]
    assert len(losses) == EPOCHS and losses[-1] < losses[0], losses
    recipe = load_checkpoint(best_checkpoint(run_dir))["speechlab"]
    assert recipe["model"]["joiner"]["_target_"] == "speechlab.nn.transducer.Joiner"
    assert "vocab_size" not in recipe["model"]["prediction"]  # taken from the tokenizer


def test_evaluate_reproduces_the_test_error_rates_and_decodes_greedily_on_request(
    rnnt_run, tmp_path
):
    run_dir, metrics = rnnt_run
    overrides = [f"ckpt_path={best_checkpoint(run_dir)}", "trainer.accelerator=cpu"]
    with composed("evaluate", overrides, tmp_path / "beam") as cfg:
        evaluated = evaluate(cfg)
    assert evaluated["test/cer"] == pytest.approx(metrics["test/cer"], abs=1e-6)
    assert evaluated["test/wer"] == pytest.approx(metrics["test/wer"], abs=1e-6)
    assert predictions(tmp_path / "beam" / "predictions.tsv") == predictions(
        run_dir / "predictions.tsv"
    )
    with composed("evaluate", [*overrides, "+decoding.kind=greedy"], tmp_path / "greedy") as cfg:
        greedy = evaluate(cfg)
    assert (
        json.loads((tmp_path / "greedy" / "metrics.json").read_text())["test/cer"]
        == greedy["test/cer"]
    )
    assert (
        predictions(tmp_path / "greedy" / "predictions.tsv").keys()
        == predictions(run_dir / "predictions.tsv").keys()
    )
    # held-out utterances: the beam (the run's test decoding) is never worse than greedy
    assert evaluated["test/cer"] <= greedy["test/cer"] + 1e-6


def test_resume_continues_training_at_the_next_epoch(rnnt_run, tiny_voice, tmp_path):  # noqa: F811
    run_dir, _ = rnnt_run
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    epoch, step = saved["epoch"], saved["global_step"]
    more = 2
    overrides = [
        *TINY_RNNT,
        f"data.reader.root={tiny_voice}",
        f"paths.data_dir={tmp_path / 'data'}",
        f"trainer.max_epochs={epoch + 1 + more}",
        f"ckpt_path={last}",
        "test=false",
    ]
    with one_torch_thread(), composed("train", overrides, tmp_path / "resumed") as cfg:
        train(cfg)
    with (tmp_path / "resumed" / "csv" / "metrics.csv").open() as f:
        logged = [row for row in csv.DictReader(f) if row.get("train/loss")]
    assert [int(row["epoch"]) for row in logged] == list(range(epoch + 1, epoch + 1 + more))
    assert [int(row["step"]) for row in logged] == list(range(step, step + more))


def test_transcribe_an_rnnt_checkpoint(rnnt_run, tiny_voice, tmp_path):  # noqa: F811
    run_dir, _ = rnnt_run
    clip = tiny_voice / "clips" / "eval_0.mp3"
    wav = tmp_path / "clip.wav"
    sf.write(wav, read_audio(clip, 16000).numpy(), 16000)
    result = subprocess.run(
        [sys.executable, "-m", "speechlab.cli", "transcribe", str(best_checkpoint(run_dir))]
        + [str(clip), str(wav)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [path for path, _ in lines] == [str(clip), str(wav)]
    _, hypothesis = predictions(run_dir / "predictions.tsv")["eval_0"]
    assert lines[0][1] == lines[1][1] == hypothesis

    from speechlab.cli import main

    with pytest.raises(SystemExit, match="speechlab transcribe: .*takes no LM or lexicon"):
        main(["transcribe", str(best_checkpoint(run_dir)), str(wav), "--lm", "lm.arpa"])


@pytest.mark.parametrize("encoder", ["lstm", "conformer"])
def test_rnnt_with_any_encoder_backpropagates_decodes_and_bounds_the_joiner(encoder, tmp_path):
    overrides = ["model=rnnt", f"model/encoder={encoder}", "model.max_joint_elements=4000000"]
    with composed("train", overrides, tmp_path) as cfg:
        tokenizer = CharTokenizer.train(["yes no up down"])
        task = hydra.utils.instantiate(cfg.model, tokenizer=tokenizer.state())
    texts = ["yes no", "up down up"]
    targets = [torch.tensor(tokenizer.encode(text)) for text in texts]
    audio_lengths = torch.tensor([16000, 12000])
    batch = Batch(
        ids=["a", "b"],
        audio=torch.randn(2, 16000),
        audio_lengths=audio_lengths,
        targets=torch.nn.utils.rnn.pad_sequence(targets, batch_first=True),
        target_lengths=torch.tensor([len(t) for t in targets]),
    )
    task.train()
    batch = task.on_after_batch_transfer(batch, 0)
    loss, _ = task._loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert task.joiner.output.weight.grad is not None
    assert task.prediction.embedding.weight.grad is not None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.encoder.parameters())
    assert task.ctc_head.weight.grad.abs().sum() > 0  # the auxiliary CTC loss (ctc_weight 0.5)
    # 1 s: 25 frames x 7 label positions x (256 + 12) fits; 30 s with 200 labels does not
    assert task.check_example(16000, targets[0]) is None
    assert task.check_example(30 * 16000, torch.ones(200, dtype=torch.long)) == TOO_LONG_FOR_JOINER
    with pytest.raises(ValueError, match="takes no LM or lexicon"):
        task.set_decoding({"lm": "lm.arpa"})
    task.set_decoding({"kind": "beam", "beam_size": 2})
    with one_torch_thread():
        texts = task.transcribe(batch.audio, audio_lengths)
    assert len(texts) == 2 and all(isinstance(text, str) for text in texts)


def test_the_auxiliary_ctc_loss_is_weighted_in_and_off_at_zero(tmp_path):
    tokenizer = CharTokenizer.train(["yes no up down"])
    tasks = {}
    for weight in (0.0, 0.5):
        with composed("train", ["model=rnnt", f"model.ctc_weight={weight}"], tmp_path) as cfg:
            torch.manual_seed(0)
            tasks[weight] = hydra.utils.instantiate(cfg.model, tokenizer=tokenizer.state())
    assert tasks[0.0].ctc_head is None
    target = torch.tensor(tokenizer.encode("yes no up"))
    batch = Batch(
        ids=["a"],
        audio=torch.randn(1, 16000),
        audio_lengths=torch.tensor([16000]),
        targets=target[None],
        target_lengths=torch.tensor([len(target)]),
    )
    losses = {}
    for weight, task in tasks.items():
        task.eval()  # no dropout or SpecAugment: the two tasks share every other weight
        losses[weight], _ = task._loss(task.on_after_batch_transfer(batch, 0))
    log_probs, lengths = tasks[0.5].ctc_head(*tasks[0.5](*_features(tasks[0.5], batch)))
    ctc = torch.nn.functional.ctc_loss(  # summed over the tokens, as the transducer loss
        log_probs.transpose(0, 1),
        target[None],
        lengths,
        torch.tensor([len(target)]),
        reduction="sum",
    )
    torch.testing.assert_close(losses[0.5], 0.5 * losses[0.0] + 0.5 * ctc)
    # 25 frames of 40 ms cannot emit 30 labels by CTC: dropped before training, with the reason
    assert "CTC cannot emit" in tasks[0.5].check_example(16000, torch.ones(30, dtype=torch.long))
    assert tasks[0.0].check_example(16000, torch.ones(30, dtype=torch.long)) is None
    with (
        composed("train", ["model=rnnt", "model.ctc_weight=1.0"], tmp_path) as cfg,
        pytest.raises(InstantiationException, match=r"ctc_weight must be in \[0, 1\)"),
    ):
        hydra.utils.instantiate(cfg.model, tokenizer=tokenizer.state())


def _features(task, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    batch = task.on_after_batch_transfer(batch, 0)
    return batch.features, batch.feature_lengths


def test_the_ctc_optuna_search_space_applies_to_rnnt_unchanged(tmp_path):
    """``-m hparams_search=ctc_optuna model=rnnt``: every searched key exists in the transducer's
    config, and the sweep's config builds a transducer."""
    with composed("train", ["hparams_search=ctc_optuna", "model=rnnt"], tmp_path) as cfg:
        assert cfg.model._target_ == "speechlab.tasks.rnnt.RNNTTask"
        for key in cfg.hydra.sweeper.params:
            assert OmegaConf.select(cfg, key, throw_on_missing=True) is not None, key
        build_all(cfg)
