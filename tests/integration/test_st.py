"""Speech translation end to end: a tiny model overfits a few mini_covost pairs to BLEU 100,
resumes from its checkpoint, is evaluated from the checkpoint alone, and translates files."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
import torch

from speechlab.checkpoint.recipe import load_checkpoint
from speechlab.corpora.embedded.mini_covost import ensure_mini_covost
from speechlab.run.evaluate import run as evaluate
from speechlab.run.train import run as train
from tests.conftest import composed, one_torch_thread, write_tsv

NUM_PAIRS = 6
EPOCHS = 120  # one batch of all pairs per epoch
VAL_EVERY = 30

# A tiny ST model (~60 k parameters) with auxiliary source CTC: no augmentation, dropout,
# label smoothing or scheduled sampling, so full-batch Adam memorises its pairs.
TINY_ST = [
    "model=st_las",
    "data=mini_covost",
    "data.prepare=null",
    "data.tokenizer.vocab_size=40",
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
    "model.decoding.beam_size=2",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="session")
def tiny_covost(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``NUM_PAIRS`` generated mini_covost train pairs in the CoVoST 2 layout, listed again
    under other clip names as the dev and test splits, so evaluation measures memorisation."""
    generated = ensure_mini_covost(
        tmp_path_factory.mktemp("gen") / "mini_covost",
        train_sentences=NUM_PAIRS,
        dev_sentences=1,
        test_sentences=1,
        train_speakers=1,
        dev_speakers=1,
        test_speakers=1,
        train_readings=1,
        eval_readings=1,
    )
    root = tmp_path_factory.mktemp("tiny_covost")
    (root / "fr" / "clips").mkdir(parents=True)
    validated = read_tsv(generated / "fr" / "validated.tsv")
    by_path = {row["path"]: row for row in validated}
    durations = {
        r["clip"]: r["duration[ms]"] for r in read_tsv(generated / "fr" / "clip_durations.tsv")
    }
    pairs = [r for r in read_tsv(generated / "covost_v2.fr_en.tsv") if r["split"] == "train"]
    covost, cv, clip_durations = ["path\ttranslation\tsplit"], [], ["clip\tduration[ms]"]
    for index, pair in enumerate(pairs):
        for split in ("train", "dev", "test"):
            name = f"{split}_{index}.mp3"
            shutil.copy(generated / "fr" / "clips" / pair["path"], root / "fr" / "clips" / name)
            covost.append(f"{name}\t{pair['translation']}\t{split}")
            cv.append({**by_path[pair["path"]], "path": name})
            clip_durations.append(f"{name}\t{durations[pair['path']]}")
    (root / "covost_v2.fr_en.tsv").write_text("\n".join(covost) + "\n", encoding="utf-8")
    (root / "fr" / "clip_durations.tsv").write_text("\n".join(clip_durations) + "\n", "utf-8")
    write_tsv(root / "fr" / "validated.tsv", cv, list(validated[0]))
    return root


def tiny_overrides(root: Path, data_dir: Path) -> list[str]:
    return [*TINY_ST, f"data.reader.root={root}", f"paths.data_dir={data_dir}"]


@pytest.fixture(scope="session")
def st_run(tiny_covost: Path, tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp("st_run")
    overrides = [
        *tiny_overrides(tiny_covost, tmp_path_factory.mktemp("st_data")),
        f"trainer.max_epochs={EPOCHS}",
    ]
    with one_torch_thread(), composed("train", overrides, run_dir) as cfg:
        metrics = train(cfg)
    return run_dir, metrics


def best_checkpoint(run_dir: Path) -> Path:
    return next(p for p in (run_dir / "checkpoints").glob("epoch_*.ckpt"))


def test_tiny_model_overfits_its_pairs_to_bleu_100(st_run):
    run_dir, metrics = st_run
    assert metrics["test/bleu"] == pytest.approx(100.0), metrics
    assert metrics["test/chrf"] == pytest.approx(100.0), metrics
    assert metrics["val/ctc_loss"] < 1.0, "the auxiliary CTC head learns the source transcripts"
    rows = read_tsv(run_dir / "predictions.tsv")
    assert list(rows[0]) == ["id", "source", "reference", "hypothesis"]
    assert len(rows) == NUM_PAIRS
    for row in rows:
        assert row["hypothesis"] == row["reference"] and row["reference"].endswith(".")
        assert row["source"] and row["source"] == row["source"].lower()  # normalised French
    samples = sorted((run_dir / "tables").glob("val_samples_epoch*.tsv"))
    assert (
        samples and samples[-1].read_text().splitlines()[0] == "id\tsource\treference\thypothesis"
    )
    recipe = load_checkpoint(best_checkpoint(run_dir))["speechlab"]
    assert {"tokenizer", "source_tokenizer"} <= set(recipe["task_inputs"])
    assert recipe["task_inputs"]["tokenizer"]["kind"] == "unigram"
    assert (run_dir / "tokenizer.json").is_file() and (run_dir / "source_tokenizer.json").is_file()


def test_resume_continues_at_the_next_epoch(st_run, tiny_covost, tmp_path):
    run_dir, _ = st_run
    last = run_dir / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    epoch, step = saved["epoch"], saved["global_step"]
    more = 5  # divides VAL_EVERY: the saved epoch's validation is on the resumed schedule too
    overrides = [
        *tiny_overrides(tiny_covost, tmp_path / "data"),
        f"trainer.max_epochs={epoch + 1 + more}",
        f"trainer.check_val_every_n_epoch={more}",
        f"ckpt_path={last}",
        "test=false",
    ]
    with composed("train", overrides, tmp_path / "resumed") as cfg:
        metrics = train(cfg)
    logged = [
        r for r in read_tsv_csv(tmp_path / "resumed" / "csv" / "metrics.csv") if r.get("train/loss")
    ]
    assert [int(r["epoch"]) for r in logged] == list(range(epoch + 1, epoch + 1 + more))
    assert [int(r["step"]) for r in logged] == list(range(step, step + more))
    assert metrics["val/bleu"] >= 90.0, "the resumed model starts from the trained weights"


def read_tsv_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_evaluate_and_translate_from_the_checkpoint_alone(st_run, tiny_covost, tmp_path, capsys):
    from speechlab.cli import main

    run_dir, metrics = st_run
    ckpt = best_checkpoint(run_dir)
    with composed("evaluate", [f"ckpt_path={ckpt}", "trainer.accelerator=cpu"], tmp_path) as cfg:
        evaluated = evaluate(cfg)
    assert evaluated["test/bleu"] == pytest.approx(metrics["test/bleu"], abs=1e-6)
    assert read_tsv(tmp_path / "predictions.tsv") == read_tsv(run_dir / "predictions.tsv")

    clip = tiny_covost / "fr" / "clips" / "test_0.mp3"
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"not audio")
    capsys.readouterr()
    assert main(["translate", str(ckpt), str(clip), str(broken)]) == 1
    out, err = capsys.readouterr()
    expected = {r["id"]: r["reference"] for r in read_tsv(run_dir / "predictions.tsv")}["test_0"]
    assert out.splitlines() == [f"{clip}\t{expected}"]
    assert err.startswith(f"{broken}\tcannot read") and len(err.splitlines()) == 1
