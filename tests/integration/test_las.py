"""Listen, Attend and Spell end to end: overfit a few utterances, resume, evaluate, transcribe."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import soundfile as sf
import torch

from speechlab.audio.io import read_audio
from speechlab.checkpoint.recipe import load_checkpoint
from speechlab.run.evaluate import run as evaluate
from speechlab.run.train import run as train
from speechlab.text.tokenizers import CharTokenizer
from tests.conftest import CONF, REPO, composed, one_torch_thread, write_tsv
from tests.integration.test_configs import build_all
from tests.integration.test_ctc import mini_voice  # noqa: F401  (session fixture)

NUM_UTTERANCES = 8
EPOCHS = 150  # one batch of all 8 utterances per epoch: 150 steps
VAL_EVERY = 25

# A tiny joint CTC-attention LAS (the default conv 4x + BiLSTM listener, narrowed) that memorises
# its 8 utterances in ~150 steps of full-batch Adam: no augmentation, dropout, label smoothing or scheduled sampling.
TINY_LAS = [
    "model=las",
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
    "model.speller.embedding_dim=16",
    "model.speller.hidden_size=64",
    "model.speller.attention_dim=32",
    "model.speller.dropout=0.0",
    "model.label_smoothing=0.0",
    "model.sampling_rate=0.0",
    "model.sampling_ramp_epochs=0",
    "model.scheduler=null",
    "model.optimizer.lr=5e-3",
    "model.optimizer.weight_decay=0.0",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def tiny_voice(mini_voice: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """8 short train utterances of mini_voice (distinct sentences) in the Common Voice layout,
    whose dev and test splits are the same clips under other names (a clip listed in dev.tsv or
    test.tsv is left out of train), so validation and test measure the training utterances."""
    root = tmp_path_factory.mktemp("tiny_voice")
    (root / "clips").mkdir()
    with (mini_voice / "train.tsv").open(encoding="utf-8") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header, rows = list(reader.fieldnames or []), list(reader)
    with (mini_voice / "clip_durations.tsv").open(encoding="utf-8") as f:
        durations = {row["clip"]: row["duration[ms]"] for row in csv.DictReader(f, delimiter="\t")}
    sentences: set[str] = set()
    picked = []
    for row in rows:
        if row["sentence"] not in sentences and int(durations[row["path"]]) < 2200:
            sentences.add(row["sentence"])
            picked.append(row)
        if len(picked) == NUM_UTTERANCES:
            break
    splits: dict[str, list[dict[str, str]]] = {"train": [], "eval": []}
    clip_durations = ["clip\tduration[ms]"]
    for index, row in enumerate(picked):
        for kind, split_rows in splits.items():
            name = f"{kind}_{index}.mp3"
            shutil.copy(mini_voice / "clips" / row["path"], root / "clips" / name)
            split_rows.append({**row, "path": name})
            clip_durations.append(f"{name}\t{durations[row['path']]}")
    for name, split_rows in (
        ("train.tsv", splits["train"]),
        ("dev.tsv", splits["eval"]),
        ("test.tsv", splits["eval"]),
    ):
        write_tsv(root / name, split_rows, header)
    (root / "clip_durations.tsv").write_text("\n".join(clip_durations) + "\n", encoding="utf-8")
    return root


def tiny_overrides(tiny_voice: Path, data_dir: Path) -> list[str]:
    return [*TINY_LAS, f"data.reader.root={tiny_voice}", f"paths.data_dir={data_dir}"]


@pytest.fixture(scope="session")
def las_run(tiny_voice: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny LAS trained for ``EPOCHS`` epochs on the 8 utterances: its dir and metrics."""
    run_dir = tmp_path_factory.mktemp("las_run")
    overrides = [
        *tiny_overrides(tiny_voice, tmp_path_factory.mktemp("las_data")),
        f"trainer.max_epochs={EPOCHS}",
    ]
    with one_torch_thread(), composed("train", overrides, run_dir) as cfg:
        metrics = train(cfg)
    return run_dir, metrics


def predictions(path: Path) -> dict[str, tuple[str, str]]:
    with path.open(encoding="utf-8") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return {row["id"]: (row["reference"], row["hypothesis"]) for row in rows}


def best_checkpoint(run_dir: Path) -> Path:
    (best,) = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    return best


def test_las_overfits_its_training_utterances_and_logs_samples_and_attention(las_run):
    run_dir, metrics = las_run
    assert metrics["test/cer"] <= 0.02, metrics
    assert metrics["test/wer"] <= 0.1, metrics
    rows = predictions(run_dir / "predictions.tsv")
    assert len(rows) == NUM_UTTERANCES
    assert sum(ref == hyp for ref, hyp in rows.values()) >= NUM_UTTERANCES - 1, rows
    assert {"train/att_loss", "train/ctc_loss", "val/att_loss", "val/ctc_loss"} <= set(metrics)
    validations = EPOCHS // VAL_EVERY
    samples = sorted((run_dir / "tables").glob("val_samples_epoch*.tsv"))
    assert len(samples) == validations  # not during the sanity check
    assert samples[-1].read_text().count("\n") == NUM_UTTERANCES + 1  # header + pairs
    images = sorted((run_dir / "images").glob("val_attention_epoch*.png"))
    assert len(images) == validations  # one per validation: none overwrites another
    assert all(i.stat().st_size > 1000 and i.read_bytes()[:4] == b"\x89PNG" for i in images)
    with (run_dir / "csv" / "metrics.csv").open() as f:
        logged = list(csv.DictReader(f))
    assert sum(1 for row in logged if row.get("val/cer")) == validations
    recipe = load_checkpoint(best_checkpoint(run_dir))["speechlab"]
    assert recipe["model"]["speller"]["_target_"] == "speechlab.nn.speller.Speller"
    assert "encoder_dim" not in recipe["model"]["speller"]  # taken from the encoder


def test_resume_continues_training_at_the_next_epoch(las_run, tiny_voice, tmp_path):
    run_dir, _ = las_run
    # last.ckpt is rewritten after every epoch (callbacks.last_checkpoint)
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    epoch, step = saved["epoch"], saved["global_step"]
    assert step == epoch + 1  # one batch per epoch
    more = 10
    overrides = [
        *tiny_overrides(tiny_voice, tmp_path / "data"),
        f"trainer.max_epochs={epoch + 1 + more}",
        "trainer.check_val_every_n_epoch=5",
        f"ckpt_path={last}",
        "test=false",
    ]
    with composed("train", overrides, tmp_path / "resumed") as cfg:
        metrics = train(cfg)
    with (tmp_path / "resumed" / "csv" / "metrics.csv").open() as f:
        logged = [row for row in csv.DictReader(f) if row.get("train/loss")]
    assert [int(row["epoch"]) for row in logged] == list(range(epoch + 1, epoch + 1 + more))
    assert [int(row["step"]) for row in logged] == list(range(step, step + more))
    assert metrics["val/cer"] <= 0.05, "the resumed model starts from the trained weights"


def test_evaluate_reproduces_the_test_error_rates(las_run, tmp_path):
    run_dir, metrics = las_run
    overrides = [f"ckpt_path={best_checkpoint(run_dir)}", "trainer.accelerator=cpu"]
    with composed("evaluate", overrides, tmp_path) as cfg:
        evaluated = evaluate(cfg)
    assert evaluated["test/cer"] == pytest.approx(metrics["test/cer"], abs=1e-6)
    assert evaluated["test/wer"] == pytest.approx(metrics["test/wer"], abs=1e-6)
    assert predictions(tmp_path / "predictions.tsv") == predictions(run_dir / "predictions.tsv")


@pytest.mark.parametrize(
    "decoding",
    [
        ["+decoding.kind=greedy"],
        ["+decoding.ctc_weight=0.0", "+decoding.beam_size=3", "+decoding.length_penalty=1.0"],
        ["+decoding.ctc_weight=0.5", "+decoding.lm_unit=word", "+decoding.lm_weight=0.5"],
        ["+decoding.lm_unit=token", "+decoding.lm_weight=0.3", "+decoding.ctc_pre_beam=6"],
    ],
    ids=["greedy", "attention-only", "ctc+word-lm", "token-lm"],
)
def test_evaluate_with_other_decodings_and_n_gram_lms(las_run, tmp_path, decoding):
    from speechlab.cli import main

    run_dir, _ = las_run
    ckpt = str(best_checkpoint(run_dir))
    overrides = [f"ckpt_path={ckpt}", "trainer.accelerator=cpu", *decoding]
    if any("lm_unit" in option for option in decoding):
        unit = "token" if "+decoding.lm_unit=token" in decoding else "word"
        lm = tmp_path / f"{unit}.arpa"
        assert main(["build-lm", "--ckpt", ckpt, "-o", str(lm), "--unit", unit]) == 0
        overrides.append(f"+decoding.lm={lm}")
    with composed("evaluate", overrides, tmp_path / "eval") as cfg:
        evaluated = evaluate(cfg)
    assert evaluated["test/cer"] <= 0.1, evaluated  # the memorised utterances stay recognised


def test_transcribe_a_las_checkpoint(las_run, tiny_voice, tmp_path):
    run_dir, _ = las_run
    clip = tiny_voice / "clips" / "eval_0.mp3"
    wav = tmp_path / "clip.wav"
    sf.write(wav, read_audio(clip, 16000).numpy(), 16000)
    result = subprocess.run(
        [sys.executable, "-m", "speechlab.cli", "transcribe", str(best_checkpoint(run_dir))]
        + [str(clip), str(wav), "--beam-size", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [path for path, _ in lines] == [str(clip), str(wav)]
    reference, hypothesis = predictions(run_dir / "predictions.tsv")["eval_0"]
    assert lines[0][1] == lines[1][1] == hypothesis
    assert hypothesis == reference


def las_task(*overrides: str, tmp_path: Path):
    with composed("train", ["model=las", *overrides], tmp_path) as cfg:
        tokenizer = CharTokenizer.train(["yes no up down"]).state()
        return hydra.utils.instantiate(cfg.model, tokenizer=tokenizer)


@pytest.mark.parametrize("data", sorted(p.stem for p in (CONF / "data").glob("*.yaml")))
@pytest.mark.parametrize("encoder", ["pyramidal_lstm", "lstm"])
def test_las_composes_with_every_corpus_and_encoder(data: str, encoder: str, tmp_path: Path):
    with composed(
        "train", ["model=las", f"data={data}", f"model/encoder={encoder}"], tmp_path
    ) as cfg:
        build_all(cfg)


def test_las_without_ctc_and_decoding_options(tmp_path: Path):
    task = las_task("model.ctc_weight=0", tmp_path=tmp_path)
    assert task.ctc_head is None
    assert task.check_example(1600, torch.ones(100, dtype=torch.long)) is None
    assert task.decoder.ctc_weight == 0.0  # no CTC head to score with
    audio = torch.randn(2, 8000)
    texts = task.eval().transcribe(audio, torch.tensor([8000, 6000]))
    assert len(texts) == 2 and all(isinstance(text, str) for text in texts)
    with pytest.raises(ValueError, match="lexicon"):
        task.set_decoding({"lexicon": "lexicon.txt"})
    with pytest.raises(ValueError, match="kind"):
        task.set_decoding({"kind": "exhaustive"})
    task.set_decoding({"kind": "greedy"})
    assert task.decoder.kind == "greedy"

    joint = las_task(tmp_path=tmp_path)  # the lstm listener's 40 ms frames, one CTC frame each
    assert joint.ctc_head is not None and joint.ctc_weight == 0.5
    one_second = 16000
    assert joint.output_frames(one_second) == 26
    assert joint.check_example(one_second, torch.arange(26) % 9 + 1) is None
    assert joint.check_example(one_second, torch.arange(27) % 9 + 1) is not None

    pyramidal = las_task(
        "model/encoder=pyramidal_lstm", "model.ctc_upsampling=2", tmp_path=tmp_path
    )  # 80 ms frames, two CTC frames each
    assert pyramidal.output_frames(one_second) == 13
    assert pyramidal.check_example(one_second, torch.arange(1, 27)) is None
    assert pyramidal.check_example(one_second, torch.arange(1, 28)) is not None
