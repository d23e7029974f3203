"""Robustness to noise the model never heard: FSDD with and without waveform augmentation.

Trains two recipes each for keyword spotting and CTC recognition on the Free Spoken Digit Dataset,
through ``train.py`` as a user runs it: the plain one (``experiment=kws_fsdd``,
``experiment=ctc_fsdd``) and the augmented one (``experiment=kws_fsdd_noise``,
``experiment=ctc_fsdd_noise``), whose noise comes from one real Speech Commands background
recording (``running_tap.wav``). Each checkpoint is then evaluated with ``evaluate.py`` on the
clean test takes and on copies mixed with the other recording (``dude_miaowing.wav``, never
heard in training) at 10 dB and 0 dB SNR. Prints accuracy (KWS) and WER (CTC) side by side and
exits 1 when augmentation does not halve the error at 0 dB or costs more than 1 point clean.

    .venv/bin/python benchmarks/noise_robustness.py [--fsdd DIR] [--noise DIR] [--only kws|ctc]
        [--augmented OVERRIDE ...] [--skip-plain]

``--augmented`` adds Hydra overrides to the augmented runs only (another preset:
``model/waveform_augment=noise``; other epochs: ``trainer.max_epochs=30``); ``--skip-plain``
trains the augmented recipes alone, to tune them, and checks no target.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
TRAIN_NOISE, TEST_NOISE = "running_tap.wav", "dude_miaowing.wav"
# recipe -> (plain experiment, augmented experiment, metric, higher is better)
RECIPES = {
    "kws": ("experiment=kws_fsdd", "experiment=kws_fsdd_noise", "test/acc", True),
    "ctc": ("experiment=ctc_fsdd", "experiment=ctc_fsdd_noise", "test/wer", False),
}
SNRS = (10.0, 0.0)


def python(script: str, *overrides: str) -> None:
    subprocess.run([sys.executable, str(REPO / script), *overrides], check=True)


def noisy_copy(fsdd: Path, noise_file: Path, snr_db: float, out: Path) -> Path:
    """FSDD with every test take (0-4) mixed with ``noise_file`` at ``snr_db``; train files
    are links to the originals."""
    noise, rate = sf.read(noise_file, dtype="float32")
    noise = torch.from_numpy(noise)
    generator = torch.Generator().manual_seed(int(snr_db) + 1)
    (out / "recordings").mkdir(parents=True)
    resampled: dict[int, torch.Tensor] = {}
    for path in sorted((fsdd / "recordings").glob("*.wav")):
        target = out / "recordings" / path.name
        if int(path.stem.split("_")[2]) >= 5:
            target.symlink_to(path.resolve())
            continue
        clip, clip_rate = sf.read(path, dtype="float32")
        clip = torch.from_numpy(clip)
        if clip_rate not in resampled:
            resampled[clip_rate] = AF.resample(noise, rate, clip_rate)
        source = resampled[clip_rate]
        start = int(torch.randint(source.numel() - clip.numel(), (), generator=generator))
        segment = source[start : start + clip.numel()]
        mixed = AF.add_noise(clip[None], segment[None], torch.tensor([snr_db]))[0]
        sf.write(target, mixed.clamp(-1, 1).numpy(), clip_rate, subtype="PCM_16")
    return out


def train(experiment: str, fsdd: Path, work: Path, extra: list[str]) -> Path:
    logs = work / "logs"
    python(
        "train.py",
        experiment,
        f"data.reader.root={fsdd}",
        f"paths.data_dir={work / 'data'}",
        f"paths.log_dir={logs}",
        "callbacks.progress_bar=null",
        "callbacks.early_stopping=null",
        *extra,
    )
    (best,) = logs.glob("*/runs/*/checkpoints/epoch_*.ckpt")
    return best


def evaluate(checkpoint: Path, root: Path, work: Path) -> dict:
    logs = work / f"eval-{root.name}"
    python(
        "evaluate.py",
        f"ckpt_path={checkpoint}",
        f"+data.reader.root={root}",
        f"paths.data_dir={work / 'data'}",
        f"paths.log_dir={logs}",
    )
    (metrics,) = logs.glob("*/runs/*/metrics.json")
    return json.loads(metrics.read_text())


def error(score: float, higher_is_better: bool) -> float:
    """An accuracy as an error rate; a WER as it is."""
    return 1 - score if higher_is_better else score


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fsdd", type=Path, default=SHARED / "fsdd")
    parser.add_argument(
        "--noise",
        type=Path,
        default=SHARED / "layouts" / "speech_commands_v0.02" / "_background_noise_",
    )
    parser.add_argument("--only", choices=sorted(RECIPES))
    parser.add_argument(
        "--augmented",
        nargs="*",
        default=[],
        metavar="OVERRIDE",
        help="Hydra overrides for the augmented runs only",
    )
    parser.add_argument(
        "--skip-plain",
        action="store_true",
        help="train the augmented recipes only (to tune them); checks no target",
    )
    args = parser.parse_args()
    for needed in (args.fsdd / "recordings", args.noise / TRAIN_NOISE, args.noise / TEST_NOISE):
        if not needed.exists():
            print(f"missing {needed}: pass --fsdd / --noise", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="noise-robustness-"))
    train_noise = work / "train_noise"
    train_noise.mkdir()
    (train_noise / TRAIN_NOISE).symlink_to((args.noise / TRAIN_NOISE).resolve())
    roots = {"clean": args.fsdd.resolve()}
    for snr in SNRS:
        roots[f"{snr:g} dB"] = noisy_copy(
            args.fsdd, args.noise / TEST_NOISE, snr, work / f"fsdd_{snr:g}dB"
        )
    results, failed = {}, []
    for recipe in [args.only] if args.only else list(RECIPES):
        plain_experiment, augmented_experiment, metric, higher = RECIPES[recipe]
        augmented_overrides = [f"model.waveform_augment.noise_dir={train_noise}", *args.augmented]
        runs = [("plain", plain_experiment, [])] * (not args.skip_plain)
        for label, experiment, extra in (
            *runs,
            ("augmented", augmented_experiment, augmented_overrides),
        ):
            start = time.perf_counter()
            run_dir = work / f"{recipe}-{label}"
            best = train(experiment, args.fsdd.resolve(), run_dir, extra)
            seconds = time.perf_counter() - start
            scores = {name: evaluate(best, root, run_dir)[metric] for name, root in roots.items()}
            results[f"{recipe} {label}"] = {**scores, "train_s": round(seconds)}
        if args.skip_plain:
            continue
        plain, augmented = results[f"{recipe} plain"], results[f"{recipe} augmented"]
        if error(augmented["0 dB"], higher) > error(plain["0 dB"], higher) / 2:
            failed.append(f"{recipe}: augmentation does not halve the 0 dB error")
        if error(augmented["clean"], higher) > error(plain["clean"], higher) + 0.01:
            failed.append(f"{recipe}: augmentation costs more than 1 point on clean test")
    print(f"\n{'run':22s}" + "".join(f"{name:>10s}" for name in roots) + f"{'train s':>10s}")
    for name, scores in results.items():
        metric = RECIPES[name.split()[0]][2]
        cells = "".join(f"{100 * scores[root]:9.1f}%" for root in roots)
        print(f"{name + ' ' + metric:22s}{cells}{scores['train_s']:10d}")
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"results in {work / 'results.json'}")
    for problem in failed:
        print("MISSED:", problem, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
