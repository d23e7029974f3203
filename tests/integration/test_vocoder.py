"""The HiFi-GAN vocoder end to end on the embedded single voice: train a tiny one, load its
checkpoint without running code, and speak through it with Tacotron 2 and `speechlab synthesize`."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch
from hydra.utils import instantiate

from speechlab.checkpoint.recipe import build_recipe, build_task, load_checkpoint
from speechlab.cli import main
from speechlab.data.datamodule import build_datamodule
from speechlab.nn.vocoders.hifigan import HiFiGANVocoder
from speechlab.run.evaluate import run as evaluate
from speechlab.run.train import run as train
from speechlab.tasks.vocoder import HiFiGANTask, load_vocoder
from tests.conftest import composed
from tests.integration.test_ctc import best_checkpoint
from tests.integration.test_tts import TINY_TTS

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_HIFIGAN = [
    "model=hifigan",
    "data=mini_speaker",
    *[o for o in TINY_TTS if o.startswith(("data.", "callbacks."))],
    "data.batch_seconds=8",
    "trainer.accelerator=cpu",
    "trainer.gradient_clip_val=null",
    "trainer.max_epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "model.num_logged_samples=1",
    "model.segment_samples=2048",
    "model.generator.upsample_initial_channel=32",
    "model.generator.resblock_kernel_sizes=[3]",
    "model.generator.resblock_dilation_sizes=[[1,2]]",
    "model.mpd.periods=[2,3]",
    "model.mpd.channels=[4,8,16,16,16]",
    "model.msd.scales=1",
    "model.msd.channels=[16,16,16,16,16,16,16]",
]


@pytest.fixture(scope="module")
def hifigan_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    run_dir = tmp_path_factory.mktemp("hifigan_run")
    with composed("train", [*TINY_HIFIGAN, f"paths.data_dir={data_dir}"], run_dir) as cfg:
        metrics = train(cfg)
    return run_dir, metrics


def test_training_logs_resynthesis_metrics_audio_and_mels(hifigan_run):
    run_dir, metrics = hifigan_run
    assert {"val/mel_l1", "val/mcd", "test/mel_l1", "test/mcd"} <= set(metrics)
    assert metrics["test/mcd"] > 0 and metrics["val/mel_l1"] > 0
    assert "test/cer" not in metrics  # no judge configured: skipped, not faked
    info = sf.info(run_dir / "audio" / "val_audio_0_epoch000.wav")
    assert info.samplerate == 16000 and info.frames > 0
    assert (run_dir / "images" / "val_mel_0_epoch000.png").stat().st_size > 1000


def test_vocoder_checkpoint_loads_without_running_code(hifigan_run):
    ckpt = best_checkpoint(hifigan_run[0])
    raw = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert any(k.startswith("vocoder.generator.") for k in raw["state_dict"])
    assert (
        raw["optimizer_states"] and len(raw["optimizer_states"]) == 2
    )  # generator, discriminators
    checkpoint = load_checkpoint(ckpt)
    assert checkpoint["speechlab"]["model"]["_target_"] == "speechlab.tasks.vocoder.HiFiGANTask"


def tts_checkpoint(data_dir: Path, directory: Path, overrides: list[str]) -> Path:
    """An (untrained) Tacotron 2 checkpoint with its recipe, as train.py writes one."""
    tts = [o for o in TINY_TTS if not (overrides and o.startswith("model.vocoder."))]
    with composed("train", [*tts, f"paths.data_dir={data_dir}", *overrides], directory) as cfg:
        datamodule = build_datamodule(cfg.data, "text")
        task_inputs = datamodule.task_inputs()
        task = build_task(cfg.model, task_inputs)
        path = directory / "tts.ckpt"
        torch.save(
            {"state_dict": task.state_dict(), "speechlab": build_recipe(cfg, task_inputs)}, path
        )
    return path


def test_tacotron2_and_synthesize_speak_through_the_vocoder(hifigan_run, data_dir, tmp_path):
    vocoder_ckpt = best_checkpoint(hifigan_run[0])
    # model/vocoder=hifigan: Tacotron 2 is built with the trained generator as its vocoder
    with_hifigan = tts_checkpoint(
        data_dir, tmp_path, ["model/vocoder=hifigan", f"model.vocoder.ckpt={vocoder_ckpt}"]
    )
    checkpoint = load_checkpoint(with_hifigan)
    assert checkpoint["speechlab"]["model"]["vocoder"]["ckpt"] == str(vocoder_ckpt)
    out = tmp_path / "hifigan.wav"
    assert main(["synthesize", str(with_hifigan), "The red cat.", "-o", str(out)]) == 0
    audio, rate = sf.read(out)
    assert rate == 16000 and sf.info(out).subtype == "PCM_16" and abs(audio).max() > 0
    assert len(audio) % 256 == 0  # whole frames of the 256-sample hop (one sentence, no pause)
    # a Griffin-Lim checkpoint with --vocoder speaks through the given generator instead
    (tmp_path / "gl").mkdir()
    griffin_lim = tts_checkpoint(data_dir, tmp_path / "gl", [])
    out2 = tmp_path / "swapped.wav"
    args = ["synthesize", str(griffin_lim), "The red cat.", "-o", str(out2)]
    assert main([*args, "--vocoder", str(vocoder_ckpt)]) == 0
    assert sf.info(out2).frames > 0 and sf.info(out2).frames % 256 == 0
    with pytest.raises(SystemExit, match="Griffin-Lim's iterations"):
        main([*args, "--vocoder", str(vocoder_ckpt), "--vocoder-iters", "8"])
    with pytest.raises(SystemExit, match="not a vocoder's"):
        main([*args, "--vocoder", str(griffin_lim)])


def test_evaluate_hears_a_synthesis_model_through_another_vocoder(
    hifigan_run, data_dir, tmp_path, monkeypatch
):
    vocoder_ckpt = best_checkpoint(hifigan_run[0])
    griffin_lim = tts_checkpoint(data_dir, tmp_path, [])
    spoken = []
    forward = HiFiGANVocoder.forward
    monkeypatch.setattr(
        HiFiGANVocoder, "forward", lambda self, mel: spoken.append(mel.shape) or forward(self, mel)
    )
    overrides = [
        f"ckpt_path={griffin_lim}",
        f"vocoder={vocoder_ckpt}",
        "trainer.accelerator=cpu",
        "+trainer.limit_test_batches=2",
        "+data.batch_seconds=2",  # two batches: the second's mels follow the first's vocoder
    ]
    with composed("evaluate", overrides, tmp_path / "eval") as cfg:
        metrics = evaluate(cfg)
    assert spoken, "the test synthesized through the given HiFi-GAN, not Griffin-Lim"
    assert metrics["test/mcd"] > 0 and (tmp_path / "eval" / "metrics.json").is_file()
    # the same seed, heard through Griffin-Lim: the same mels (its random phases are drawn on a
    # forked generator), different speech
    with composed("evaluate", overrides[:1] + overrides[2:], tmp_path / "gl") as cfg:
        griffin_lim_metrics = evaluate(cfg)
    assert len(spoken) == 2
    assert griffin_lim_metrics["test/mel_mcd"] == metrics["test/mel_mcd"]
    assert griffin_lim_metrics["test/mcd"] != metrics["test/mcd"]
    overrides[0] = f"ckpt_path={vocoder_ckpt}"  # a vocoder has no vocoder to swap
    with (
        composed("evaluate", overrides, tmp_path / "eval2") as cfg,
        pytest.raises(ValueError, match="no vocoder to replace"),
    ):
        evaluate(cfg)


def test_vocoder_refuses_another_log_mel(hifigan_run, tmp_path):
    vocoder_ckpt = best_checkpoint(hifigan_run[0])
    recipe_frontend = load_checkpoint(vocoder_ckpt)["speechlab"]["model"]["frontend"]
    assert isinstance(load_vocoder(vocoder_ckpt, instantiate(recipe_frontend)), HiFiGANVocoder)
    with pytest.raises(ValueError, match="n_mels"):
        load_vocoder(vocoder_ckpt, instantiate({**recipe_frontend, "n_mels": 64}))


def test_fine_tuning_reads_the_acoustic_models_teacher_forced_mels(
    data_dir, tmp_path, caplog, monkeypatch
):
    acoustic = tts_checkpoint(data_dir, tmp_path, [])
    read = []  # True: a training step read the acoustic model's mels; False: validation did
    original = HiFiGANTask._input_mels
    monkeypatch.setattr(
        HiFiGANTask,
        "_input_mels",
        lambda self, batch: read.append(self.training) or original(self, batch),
    )
    run_dir = tmp_path / "fine_tune"
    overrides = [
        *TINY_HIFIGAN,
        f"paths.data_dir={data_dir}",
        f"model.acoustic_ckpt={acoustic}",
        "trainer.limit_train_batches=1",
        "test=false",
    ]
    with composed("train", overrides, run_dir) as cfg, caplog.at_level("INFO"):
        metrics = train(cfg)
    assert metrics["val/mel_l1"] > 0
    assert f"fine-tuning on the teacher-forced mels of {acoustic}" in caplog.text
    assert True in read and False in read  # checkpoints chosen by what the vocoder will hear
