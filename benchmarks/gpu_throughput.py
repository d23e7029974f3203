"""Training throughput through the real Trainer path, on synthetic LibriSpeech-like batches.

The task, the config's callbacks (checkpoints, LR monitor) and logger, the trainer and its
precision are built from the composed config (``--model``, ``--data`` and any Hydra override) as
``train.py`` builds them, and trained with ``trainer.fit``; only the data are synthetic:
utterance durations drawn from a lognormal (median ``--median-seconds``, clipped to
``[--min-seconds, --max-seconds]`` and to ``data.max_duration``), batched by the project's
``DurationBucketSampler`` with ``data.batch_seconds``, noise audio at ``data.sample_rate`` and
random token targets (``--tokens-per-second``), made once and kept on the device, so that the
loader costs nothing. ``trainer.fit`` runs ``--warmup`` steps (with ``model.compile.enabled=true``:
one pass over every timed batch, so that each padded size is compiled first), then the
``--steps`` timed ones; a callback times each step's end (after ``torch.cuda.synchronize``).

Prints the audio seconds trained per second (median over the timed steps, and all timed audio
over their total time), minutes per epoch of the 960 h LibriSpeech train set, model GFLOP per
audio second (``torch.utils.flop_counter`` over each timed batch's forward and backward), the
achieved TFLOP/s and its fraction of ``--peak-tflops``, peak memory
(``torch.cuda.max_memory_allocated``; the process's max RSS on a CPU; the synthetic batches
are in it, and their share is printed), and with compilation the padding to the compiled sizes
and the first-step time of each size. ``--json PATH`` writes the same figures.

    .venv/bin/python benchmarks/gpu_throughput.py [--model ctc_conformer --data librispeech]
        [override ...] [--steps 30 --warmup 5] [--peak-tflops 989] [--json out.json]
    .venv/bin/python benchmarks/gpu_throughput.py --smoke     # a tiny conformer on the CPU
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import resource
import statistics
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig
from overhead import StepClock, compose_recipe, step_times
from torch.utils.flop_counter import FlopCounterMode

from speechlab.checkpoint.recipe import build_task
from speechlab.data.collate import Batch
from speechlab.data.sampler import DurationBucketSampler, padding_efficiency
from speechlab.run.callbacks import adapt_to_no_validation
from speechlab.run.train import instantiate_group
from speechlab.tasks.encoder_compile import padded_frames
from speechlab.text.tokenizers import CharTokenizer

EPOCH_HOURS = 960.0  # LibriSpeech train-clean-100 + train-clean-360 + train-other-500

# A conformer small enough to train a few steps on a CPU in seconds.
SMOKE = [
    "trainer=cpu",
    "data.batch_seconds=6",
    "model.encoder.d_model=32",
    "model.encoder.num_heads=2",
    "model.encoder.ffn_dim=64",
    "model.encoder.num_layers=1",
    "model.encoder.subsampling_channels=[8,8]",
    "model.encoder.depthwise_conv_kernel_size=3",
]
SMOKE_FLAGS = {
    "steps": 2,
    "warmup": 1,
    "utterances": 32,
    "median_seconds": 1.5,
    "min_seconds": 0.5,
    "max_seconds": 2.5,
}


@dataclasses.dataclass
class SyntheticBatch:
    batch: Batch
    seconds: float  # audio, without padding


def synthetic_durations(
    count: int, median: float, sigma: float, low: float, high: float, seed: int
) -> np.ndarray:
    """``count`` lognormal durations in seconds (median ``median``), clipped to ``[low, high]``."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.lognormal(math.log(median), sigma, count), low, high)


def synthetic_batches(
    cfg: DictConfig,
    durations: np.ndarray,
    count: int,
    vocab_size: int,
    tokens_per_second: float,
    device: torch.device,
    seed: int,
) -> tuple[list[SyntheticBatch], float]:
    """The first ``count`` batches of the bucket sampler's epoch over ``durations`` as padded
    batches on ``device`` (noise audio, random non-blank token targets), and their padding
    efficiency (real over padded seconds)."""
    sampler = DurationBucketSampler(
        durations,
        cfg.data.batch_seconds,
        num_buckets=cfg.data.num_buckets,
        seed=seed,
        max_batch_size=cfg.data.max_batch_size,
    )
    plan = list(sampler)
    if len(plan) < count:
        raise ValueError(
            f"{len(durations)} utterances make only {len(plan)} batches of "
            f"data.batch_seconds={cfg.data.batch_seconds}, fewer than the {count} needed; "
            "raise --utterances"
        )
    plan = plan[:count]
    generator = torch.Generator().manual_seed(seed)
    sample_rate = int(cfg.data.sample_rate)
    batches = []
    for indices in plan:
        seconds = durations[indices]
        samples = torch.from_numpy(np.round(seconds * sample_rate).astype(np.int64))
        audio = 0.1 * torch.randn(len(indices), int(samples.max()), generator=generator)
        audio *= torch.arange(audio.shape[1]) < samples.unsqueeze(1)
        target_lengths = torch.from_numpy(np.maximum(1, np.round(seconds * tokens_per_second)))
        shape = (len(indices), int(target_lengths.max()))
        targets = torch.randint(1, vocab_size, shape, generator=generator)
        targets *= torch.arange(targets.shape[1]) < target_lengths.unsqueeze(1)
        batch = Batch(
            ids=[f"synthetic-{i}" for i in indices],
            audio=audio.to(device),
            audio_lengths=samples.to(device),
            targets=targets.to(device),
            target_lengths=target_lengths.long().to(device),
        )
        batches.append(SyntheticBatch(batch, float(seconds.sum())))
    return batches, padding_efficiency(durations, plan)


def tokenizer_state(cfg: DictConfig) -> dict[str, Any]:
    """A character tokenizer with the config's vocabulary size (``data.tokenizer.vocab_size``,
    else 32 symbols): the output layer is the size the real tokenizer would give."""
    vocab_size = int(cfg.data.tokenizer.get("vocab_size") or 32)
    return CharTokenizer(chr(0x4E00 + i) for i in range(vocab_size - 2)).state()


def count_flops(task: L.LightningModule, batches: Sequence[SyntheticBatch]) -> float:
    """FLOPs of one training forward and backward over each of ``batches``, summed."""
    task.train()
    with FlopCounterMode(display=False) as counter, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log() without a trainer
        for item in batches:
            batch = task.on_after_batch_transfer(dataclasses.replace(item.batch), 0)
            task.training_step(batch, 0).backward()
    return float(counter.get_total_flops())


def compile_padding_efficiency(
    batches: Sequence[SyntheticBatch], hop_length: int, sizes: Sequence[int]
) -> float:
    """Real feature frames over the frames of the batches padded to the compiled ``sizes``."""
    real = padded = 0
    for item in batches:
        frames = torch.div(item.batch.audio_lengths, hop_length, rounding_mode="floor") + 1
        real += int(frames.sum())
        padded += len(frames) * padded_frames(int(frames.max()), sizes)
    return real / padded


def batches_gib(batches: Sequence[SyntheticBatch]) -> float:
    """Memory the synthetic batches hold throughout the run (counted in the device's peak)."""
    tensors = [t for item in batches for t in vars(item.batch).values() if torch.is_tensor(t)]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**30


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def measure(args: argparse.Namespace, cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run the benchmark for the composed ``cfg``; return its figures."""
    task_class = hydra.utils.get_class(cfg.model._target_)
    if task_class.target_field != "text":
        raise ValueError(
            f"gpu_throughput.py feeds recognizers (token targets); model {cfg.model._target_} "
            f"learns {task_class.target_field!r}: pick a CTC, LAS or transducer model"
        )
    if cfg.trainer.devices not in (1, "1"):
        raise ValueError(
            f"trainer.devices={cfg.trainer.devices}: this benchmark runs on one device"
        )
    accelerator = cfg.trainer.accelerator
    if accelerator == "gpu" and not torch.cuda.is_available():
        raise ValueError(
            "trainer.accelerator=gpu but no GPU is visible: use --smoke or trainer=cpu"
        )
    use_cuda = accelerator == "gpu" or (accelerator == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if use_cuda else "cpu")

    L.seed_everything(cfg.seed)
    inputs = {"tokenizer": tokenizer_state(cfg)}
    task = build_task(cfg.model, inputs)
    compiling = task.encoder_compiler is not None
    high = min(args.max_seconds, float(cfg.data.max_duration or math.inf))
    durations = synthetic_durations(
        args.utterances, args.median_seconds, args.sigma, args.min_seconds, high, cfg.seed
    )
    vocab_size = len(inputs["tokenizer"]["tokens"])
    batches, efficiency = synthetic_batches(
        cfg, durations, args.steps + 1, vocab_size, args.tokens_per_second, device, cfg.seed
    )
    timed = batches[1:]  # the gap before a step's end is that step's time
    warmup = batches[1:] if compiling else batches[1 : 1 + args.warmup]
    feed = [batches[0], *warmup, *timed]

    clock = StepClock()
    callbacks = [*instantiate_group(cfg.get("callbacks")), clock]
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=instantiate_group(cfg.get("logger")) or False,
        max_epochs=1,
        max_steps=len(feed),
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
    )
    adapt_to_no_validation(trainer)
    loader = torch.utils.data.DataLoader([item.batch for item in feed], batch_size=None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer.fit(task, train_dataloaders=loader)
    gaps = step_times(clock.ends, len(feed) - len(timed) - 1)
    if len(gaps) != len(timed):
        raise RuntimeError(f"timed {len(gaps)} steps, expected {len(timed)}")
    memory = peak_memory_gib(device)
    compiled = compiling and task.encoder_compiler.compiled  # by the trainer's configure_model

    flop_task = build_task(cfg.model, inputs).to(device)  # eager: never given to a trainer
    flops = count_flops(flop_task, timed)
    del flop_task

    audio = [item.seconds for item in timed]
    per_step = statistics.median(a / g for a, g in zip(audio, gaps, strict=True))
    overall = sum(audio) / sum(gaps)
    gflop_per_audio_second = flops / sum(audio) / 1e9
    achieved = gflop_per_audio_second * overall / 1e3
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "model": cfg.model._target_,
        "overrides": list(args.overrides),
        "device": device_name or platform.processor() or device.type,
        "precision": str(cfg.trainer.precision),
        "parameters": sum(p.numel() for p in task.parameters()),
        "compile": compiled,
        "timed_steps": len(timed),
        "warmup_steps": len(feed) - len(timed),
        "batch_seconds": float(cfg.data.batch_seconds),
        "padding_efficiency": efficiency,
        "compile_padding_efficiency": compile_padding_efficiency(
            timed, int(cfg.model.frontend.hop_length), task.encoder_compiler.frames
        )
        if compiling
        else None,
        "median_step_s": statistics.median(gaps),
        "audio_seconds_per_second": per_step,
        "audio_seconds_per_second_overall": overall,
        "minutes_per_960h_epoch": EPOCH_HOURS * 3600 / overall / 60,
        "gflop_per_audio_second": gflop_per_audio_second,
        "achieved_tflops": achieved,
        "peak_tflops": args.peak_tflops,
        "flop_utilisation": achieved / args.peak_tflops if args.peak_tflops else None,
        "peak_memory_gib": memory,
        "synthetic_batches_gib": batches_gib(batches),
        "compile_first_step_s": dict(task.encoder_compiler.seconds) if compiling else {},
    }


def report(figures: dict[str, Any]) -> None:
    print(
        f"{figures['model']} on {figures['device']}, precision {figures['precision']}, "
        f"{figures['parameters'] / 1e6:.3g} M parameters, compile={figures['compile']}"
    )
    print(
        f"  {figures['timed_steps']} timed steps after {figures['warmup_steps']} warm-up; "
        f"batches of {figures['batch_seconds']:g} padded s, padding efficiency "
        f"{figures['padding_efficiency']:.3f}; median step {figures['median_step_s'] * 1e3:.1f} ms"
    )
    if figures["compile_padding_efficiency"] is not None:
        print(
            "  padded to the compiled sizes: padding efficiency "
            f"{figures['compile_padding_efficiency']:.3f}"
        )
    print(
        f"  audio-s/s: {figures['audio_seconds_per_second']:.1f} (median step), "
        f"{figures['audio_seconds_per_second_overall']:.1f} (overall)"
    )
    print(f"  minutes per 960 h epoch: {figures['minutes_per_960h_epoch']:.1f}")
    utilisation = figures["flop_utilisation"]
    print(
        f"  model GFLOP per audio second: {figures['gflop_per_audio_second']:.3g}; achieved "
        f"{figures['achieved_tflops']:.3g} TFLOP/s"
        + (f" = {utilisation:.1%} of {figures['peak_tflops']:g}" if utilisation else "")
    )
    print(
        f"  peak memory: {figures['peak_memory_gib']:.2f} GiB, of which the synthetic batches "
        f"{figures['synthetic_batches_gib']:.2f} GiB"
    )
    for key, seconds in figures["compile_first_step_s"].items():
        print(f"  compiled {key}: first step {seconds:.1f} s")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. trainer=gpu")
    parser.add_argument("--model", default="ctc_conformer")
    parser.add_argument("--data", default="librispeech", help="gives batch_seconds, sample_rate")
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's peak")
    parser.add_argument("--utterances", type=int, default=4000)
    parser.add_argument("--median-seconds", type=float, default=12.5)
    parser.add_argument("--sigma", type=float, default=0.4, help="of the log-duration")
    parser.add_argument("--min-seconds", type=float, default=1.5)
    parser.add_argument("--max-seconds", type=float, default=35.0)
    parser.add_argument("--tokens-per-second", type=float, default=6.0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--smoke", action="store_true", help="a tiny conformer on the CPU")
    args = parser.parse_args(argv)
    if args.smoke:
        args.model, args.overrides = "ctc_conformer", [*SMOKE, *args.overrides]
        for name, value in SMOKE_FLAGS.items():
            setattr(args, name, value)
    elif not any(o.startswith("trainer=") for o in args.overrides):
        args.overrides = ["trainer=gpu", *args.overrides]
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be at least 1 and --warmup at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        extra = ["callbacks.progress_bar=null", *args.overrides]
        cfg = compose_recipe(args.model, args.data, Path(tmp), extra)
        figures = measure(args, cfg, Path(tmp))
    report(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
