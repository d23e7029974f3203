"""Trainer overhead: a training step through Lightning's Trainer vs a plain PyTorch loop.

Both run the same task module (frontend, SpecAugment, encoder, loss), the same optimizer,
scheduler and gradient clipping, on the same pre-collated batches and device, in one process.
The plain loop calls the task's own ``on_after_batch_transfer`` and ``training_step``, then
backward, clip, step; the Trainer runs with the run's callbacks (best and last checkpoints every
epoch end, LR monitor, early stopping) and the CSV logger, as ``train.py`` does, minus the progress
bar. Each step's wall time is the gap between consecutive step ends; the first ``--warmup`` steps
are dropped. Reports the median step time of each and their ratio (target <= 1.02x), alternating
the two loops ``--repeats`` times.

    .venv/bin/python benchmarks/overhead.py [--model ctc_lstm --data mini_voice] [--steps 40]
        [--repeats 3] [--threads 2] [--accelerator cpu|gpu] [--precision 32-true|bf16-mixed]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, open_dict

import speechlab.run.resolvers  # noqa: F401  (config resolvers)
from speechlab.data.datamodule import build_datamodule
from speechlab.run.train import instantiate_group

CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_recipe(model: str, data: str, run_dir: Path, extra: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", [f"model={model}", f"data={data}", *extra], return_hydra_config=True)
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.root_dir = str(Path.cwd())
            cfg.paths.output_dir = str(run_dir)
    return cfg


class StepClock(Callback):
    """Times of every training step's end."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())


def step_times(ends: list[float], warmup: int) -> list[float]:
    gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return gaps[warmup:]


def plain_loop(cfg: DictConfig, task_inputs: dict, batches: list, device: torch.device) -> list:
    """Step end times of a hand-written loop over ``batches`` with the task's own pieces."""
    L.seed_everything(0)
    task = hydra.utils.instantiate(cfg.model, **task_inputs).to(device)
    task.train()
    optimizer = task.optimizer_factory(task.parameters())
    total_steps = len(batches)
    scheduler = (
        task.scheduler_factory(optimizer, total_steps=total_steps)
        if task.scheduler_factory
        else None
    )
    clip = cfg.trainer.get("gradient_clip_val")
    autocast = cfg.trainer.precision == "bf16-mixed"
    ends = []
    for index, batch in enumerate(batches):
        batch = task.on_after_batch_transfer(move_data_to_device(batch, device), 0)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = task.training_step(batch, index)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(task.parameters(), clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        ends.append(time.perf_counter())
    return ends


def trainer_loop(cfg: DictConfig, task_inputs: dict, batches: list, run_dir: Path) -> list:
    """Step end times of ``Trainer.fit`` over ``batches`` with the run's callbacks and logger."""
    L.seed_everything(0)
    task = hydra.utils.instantiate(cfg.model, **task_inputs)
    clock = StepClock()
    callbacks = [*instantiate_group(cfg.callbacks), clock]
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=instantiate_group(cfg.logger),
        max_epochs=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)
    trainer.fit(task, train_dataloaders=loader)
    return clock.ends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="ctc_lstm")
    parser.add_argument("--data", default="mini_voice")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--precision", default="32-true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        extra = [
            f"trainer.accelerator={args.accelerator}",
            f"trainer.precision={args.precision}",
            "callbacks.progress_bar=null",
            "callbacks.early_stopping=null",  # no validation here: nothing to stop on
        ]
        cfg = compose_recipe(args.model, args.data, run_dir, extra)
        task_class = hydra.utils.get_class(cfg.model._target_)
        datamodule = build_datamodule(cfg.data, task_class.target_field)
        task_inputs = datamodule.task_inputs()
        batches = []
        for batch in datamodule.train_dataloader():
            if len(batch):
                batches.append(batch)
            if len(batches) == args.steps:
                break
        plain, through_trainer = [], []
        for repeat in range(args.repeats):
            plain += step_times(plain_loop(cfg, task_inputs, batches, device), args.warmup)
            ends = trainer_loop(cfg, task_inputs, batches, run_dir / f"trainer{repeat}")
            through_trainer += step_times(ends, args.warmup)

    plain_median = statistics.median(plain)
    trainer_median = statistics.median(through_trainer)
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor()
    print(
        f"model={args.model} data={args.data} device={device_name or device.type} "
        f"threads={args.threads} precision={args.precision} steps={args.steps} "
        f"warmup={args.warmup} repeats={args.repeats}"
    )
    print(f"plain loop   median step {plain_median * 1000:8.1f} ms  ({len(plain)} steps)")
    print(
        f"Trainer      median step {trainer_median * 1000:8.1f} ms  ({len(through_trainer)} steps)"
    )
    print(f"ratio Trainer / plain: {trainer_median / plain_median:.3f}x (target <= 1.02x)")


if __name__ == "__main__":
    main()
