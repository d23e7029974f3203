"""Speech synthesis end to end on the embedded single-voice corpus: train a tiny Tacotron 2,
dashboards, evaluate from the checkpoint alone, `speechlab synthesize`, the judge's CER."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import soundfile as sf
from omegaconf import OmegaConf

from speechlab.checkpoint.recipe import load_checkpoint, restore_task
from speechlab.cli import main, split_sentences
from speechlab.data.datamodule import build_datamodule
from speechlab.run.evaluate import run as evaluate
from speechlab.run.train import run as train
from tests.conftest import composed
from tests.integration.test_ctc import best_checkpoint

MAX_STEPS = 60  # decoder steps: 60 * 4 frames * 16 ms = 3.84 s per sentence at most
TINY_TTS = [
    "model=tacotron2",
    "data=mini_speaker",
    "data.prepare.num_sentences=40",
    "data.reader.validation_fraction=0.1",
    "data.reader.test_fraction=0.1",
    "data.batch_seconds=24",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=2",
    "trainer.log_every_n_steps=1",
    "callbacks.progress_bar=null",
    "callbacks.early_stopping=null",
    "model.num_logged_samples=2",
    "model.model.encoder_dim=32",
    "model.model.encoder_convs=1",
    "model.model.prenet_dim=32",
    "model.model.attention_rnn_dim=48",
    "model.model.decoder_rnn_dim=48",
    "model.model.attention_dim=32",
    "model.model.postnet_dim=32",
    "model.model.postnet_layers=2",
    f"model.model.max_decoder_steps={MAX_STEPS}",
    "model.vocoder.n_iter=4",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="session")
def tiny_judge(tts_run, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch tiny CTC recognizer on the same 40 sentences: a real speechlab recognizer
    checkpoint (its accuracy does not matter here; the default recipe makes a good judge)."""
    run_dir = tmp_path_factory.mktemp("judge_run")
    overrides = [
        "model=ctc_lstm",
        *[o for o in TINY_TTS if o.startswith(("data.", "trainer.", "callbacks."))],
        "data=mini_speaker",
        "trainer.max_epochs=1",
        "model.encoder.hidden_size=16",
        "model.encoder.num_layers=1",
        "model.encoder.projection_dim=32",
        f"paths.data_dir={data_dir}",
    ]
    with composed("train", overrides, run_dir) as cfg:
        train(cfg)
    return best_checkpoint(run_dir)


@pytest.fixture(scope="session")
def tts_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A two-epoch run of a tiny Tacotron 2 on a 40-sentence mini_speaker: its dir and metrics."""
    run_dir = tmp_path_factory.mktemp("tts_run")
    with composed("train", [*TINY_TTS, f"paths.data_dir={data_dir}"], run_dir) as cfg:
        metrics = train(cfg)
    return run_dir, metrics


def test_training_logs_losses_mcd_audio_mels_and_alignments(tts_run):
    run_dir, metrics = tts_run
    assert {"val/mel_l1", "val/mcd", "val/diagonal", "test/mel_l1", "test/mcd"} <= set(metrics)
    assert metrics["val/mcd"] > 0 and metrics["val/mel_l1"] > 0 and metrics["val/mel_mcd"] > 0
    assert metrics["val/mcd"] != metrics["val/mel_mcd"]  # the speech's, not the mel's alone
    assert "val/cer" not in metrics  # no judge configured: skipped, not faked
    for k in range(2):
        for epoch in range(2):
            info = sf.info(run_dir / "audio" / f"val_audio_{k}_epoch{epoch:03d}.wav")
            assert info.samplerate == 16000 and info.frames > 0
            for figure in ("mel", "alignment"):
                image = run_dir / "images" / f"val_{figure}_{k}_epoch{epoch:03d}.png"
                assert image.stat().st_size > 1000
    checkpoint = load_checkpoint(best_checkpoint(run_dir))
    assert checkpoint["speechlab"]["task_inputs"]["tokenizer"]["kind"] == "char"


def test_evaluate_restores_the_synthesizer_from_its_checkpoint(tts_run, tmp_path: Path):
    run_dir, _ = tts_run
    overrides = [f"ckpt_path={best_checkpoint(run_dir)}", "trainer.accelerator=cpu"]
    with composed("evaluate", overrides, tmp_path) as cfg:
        metrics = evaluate(cfg)
    assert metrics["test/mel_l1"] > 0 and metrics["test/mcd"] > 0
    assert (tmp_path / "metrics.json").is_file()


def test_synthesize_writes_a_wav_of_plausible_length(tts_run, tmp_path: Path):
    run_dir, _ = tts_run
    out = tmp_path / "speech.wav"
    text = "The red cat sees two dogs. My old friend sings!"
    assert main(["synthesize", str(best_checkpoint(run_dir)), text, "-o", str(out)]) == 0
    audio, rate = sf.read(out)
    assert rate == 16000 and sf.info(out).subtype == "PCM_16"
    longest = MAX_STEPS * 4 * 256 / 16000
    # two sentences of at least one decoder step each, one 0.25 s pause, neither past the limit
    assert 0.25 + 2 * 4 * 256 / 16000 <= len(audio) / rate <= 2 * longest + 0.25 + 1e-6
    assert abs(audio).max() > 0


def test_synthesize_refuses_empty_and_unknown_text_clearly(tts_run, tmp_path: Path):
    ckpt = str(best_checkpoint(run_dir=tts_run[0]))
    with pytest.raises(SystemExit, match="empty"):
        main(["synthesize", ckpt, "  ", "-o", str(tmp_path / "a.wav")])
    with pytest.raises(SystemExit, match=r"symbols '日本' are not in the model's char symbol set"):
        main(["synthesize", ckpt, "The cat 日本.", "-o", str(tmp_path / "b.wav")])
    with pytest.raises(SystemExit, match="empty after normalisation"):
        main(["synthesize", ckpt, "?!", "-o", str(tmp_path / "c.wav")])
    assert not list(tmp_path.glob("*.wav"))


def test_sentences_are_split_for_long_text():
    assert split_sentences("One two. Three? Four!\nFive") == ["One two.", "Three?", "Four!", "Five"]


def test_judge_transcribes_synthesized_speech_for_cer(tts_run, tiny_judge: Path, tmp_path: Path):
    """A recognizer checkpoint as judge: the test split gets a CER of the synthesized audio."""
    run_dir, _ = tts_run
    checkpoint = load_checkpoint(best_checkpoint(run_dir))
    task = restore_task(checkpoint)
    task.judge_ckpt = str(tiny_judge)
    recipe = checkpoint["speechlab"]
    data = OmegaConf.create(recipe["data"])
    data.tokenizer = recipe["task_inputs"]["tokenizer"]
    datamodule = build_datamodule(data, "text")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                        default_root_dir=str(tmp_path))  # fmt: skip
    (metrics,) = trainer.test(task, datamodule=datamodule)
    assert 0.0 <= metrics["test/cer"] <= 5.0
    assert task.predictions and all(len(row) == 3 for row in task.predictions)
