"""Resynthesis of true log-mels: a trained HiFi-GAN against Griffin-Lim, heard by a recognizer.

For every utterance of a split of the vocoder checkpoint's corpus (its recipe's data config),
the frontend's log-mel of the recording is inverted by Griffin-Lim (``model/vocoder=griffin_lim``
as configured for ``model=tacotron2``) and by the HiFi-GAN generator; the judge (a speechlab
recognizer checkpoint, greedy) transcribes the recording and both resyntheses. Reports per
source the judge's CER against the transcripts, the MCD (dB, DTW) of the resynthesis's log-mel
against the recording's, and each vocoder's real-time factor on this machine (vocoder wall time
/ audio duration, one utterance at a time, ``torch`` threads as set).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/vocoder_resynthesis.py \\
        --vocoder <hifigan run>/checkpoints/<best>.ckpt --judge <ctc run>/checkpoints/<best>.ckpt
        [--split test] [--limit N]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import hydra
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torchmetrics.text import CharErrorRate

import speechlab.run.resolvers  # noqa: F401  (config resolvers)
from speechlab.checkpoint.recipe import RECIPE_KEY, load_checkpoint, restore_task
from speechlab.data.datamodule import build_datamodule
from speechlab.tasks.synthesis_metrics import IntelligibilityJudge, mel_cepstral_distortion

CONF = Path(__file__).resolve().parents[1] / "conf"


def griffin_lim_as_configured(frontend: torch.nn.Module) -> torch.nn.Module:
    """Griffin-Lim with ``conf/model/vocoder/griffin_lim.yaml`` and ``frontend``'s settings."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", ["model=tacotron2", "data=mini_speaker"])
    vocoder = OmegaConf.to_container(cfg.model.vocoder, resolve=False)
    for key in ("sample_rate", "n_fft", "hop_length", "n_mels", "f_min", "f_max", "eps"):
        vocoder[key] = getattr(frontend, key)
    return hydra.utils.instantiate(vocoder).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocoder", required=True, help="a model=hifigan checkpoint")
    parser.add_argument("--judge", required=True, help="a recognizer checkpoint")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--limit", type=int, help="at most this many utterances")
    args = parser.parse_args()

    checkpoint = load_checkpoint(args.vocoder)
    task = restore_task(checkpoint)
    recipe = checkpoint[RECIPE_KEY]
    data = OmegaConf.create(recipe["data"])
    data.tokenizer = recipe["task_inputs"]["tokenizer"]
    datamodule = build_datamodule(data, task.target_field)
    datamodule.setup("test" if args.split == "test" else "fit")
    dataset = datamodule.datasets[args.split]
    texts = {u.id: u.text for u in dataset.utterances}
    loader = {
        "train": datamodule.train_dataloader,
        "val": datamodule.val_dataloader,
        "test": datamodule.test_dataloader,
    }[args.split]()
    judge = IntelligibilityJudge(args.judge)
    vocoders = {"griffin_lim": griffin_lim_as_configured(task.frontend), "hifigan": task.vocoder}
    sources = ["recording", *vocoders]
    cer = {name: CharErrorRate() for name in sources}
    mcd: dict[str, list[float]] = {name: [] for name in vocoders}
    seconds = {name: 0.0 for name in vocoders}
    audio_seconds = 0.0
    hop, rate = task.frontend.hop_length, task.sample_rate
    done = 0
    with torch.no_grad():
        for batch in loader:
            batch = task.on_after_batch_transfer(batch, 0)
            target = task.frontend.denormalize(batch.features)
            for i, uid in enumerate(batch.ids):
                if args.limit is not None and done >= args.limit:
                    break
                n = int(batch.feature_lengths[i])
                mel = target[i : i + 1, :, :n]
                heard = {"recording": batch.audio[i, : int(batch.audio_lengths[i])]}
                for name, vocoder in vocoders.items():
                    start = time.perf_counter()
                    heard[name] = vocoder(mel)[0]
                    seconds[name] += time.perf_counter() - start
                    resynthesized = task.log_mel(heard[name][None])[0, :, :n]
                    mcd[name].append(mel_cepstral_distortion(resynthesized, mel[0]))
                audio_seconds += n * hop / rate
                names = list(heard)
                hypotheses = judge.transcribe([heard[k] for k in names], rate)
                for name, hypothesis in zip(names, hypotheses, strict=True):
                    cer[name]([hypothesis], [texts[uid]])
                done += 1
    print(f"# {args.split} split, {done} utterances, {audio_seconds:.1f} s of audio; "
          f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}")  # fmt: skip
    print("| source | judge CER | MCD (dB) | real-time factor |")
    print("|---|---:|---:|---:|")
    for name in sources:
        value = f"{sum(mcd[name]) / len(mcd[name]):.2f}" if name in mcd else "-"
        rtf = f"{seconds[name] / audio_seconds:.3f}" if name in seconds else "-"
        print(f"| {name} | {float(cer[name].compute()):.3f} | {value} | {rtf} |")


if __name__ == "__main__":
    main()
