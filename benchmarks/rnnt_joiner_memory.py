"""Memory of the transducer's joiner for the batches of a recipe (default: ``model=rnnt`` on
``data=mini_voice``).

For every batch of one training epoch (the recipe's own duration-bucket sampler, the utterances
the task keeps) it takes ``B``, ``T'`` (encoder frames), ``U`` (labels) and ``V`` and reports
the joiner's tensor of ``B x T' x (U + 1) x (joint_dim + V)`` elements and the chunks
``model.max_joint_elements`` cuts it into; for the largest batch it measures the peak memory
the joiner and the loss allocate in a forward and backward pass (``torch.profiler`` with
``profile_memory=True``) and what they keep for backward (``saved_tensors_hooks``), on random
encoder frames and prediction outputs of that batch's shape (the memory depends on the shapes
only). Reads the corpus manifest; no audio is decoded.

    .venv/bin/python benchmarks/rnnt_joiner_memory.py [overrides, e.g. paths.data_dir=data]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict
from torch.profiler import ProfilerActivity, profile

import speechlab.run.resolvers  # noqa: F401  (config resolvers)
from speechlab.checkpoint.recipe import build_task
from speechlab.data.datamodule import build_datamodule
from speechlab.nn.transducer import joint_chunks, transducer_loss

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20


def joiner_peak_bytes(task, batch: int, frames: int, labels: int, bound: int) -> tuple[int, int]:
    """Peak bytes allocated by the joiner and the loss in a forward and backward pass over a
    ``(batch, frames, labels)`` batch cut into chunks of at most ``bound`` elements, and the bytes they keep for backward (each storage
    once). The peak is the running sum of the allocations ``torch.profiler`` records
    (``profile_memory=True``, each op's own allocations and frees, in order)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    encoded = torch.randn(batch, frames, task.encoder.output_dim, requires_grad=True)
    predicted = torch.randn(batch, labels + 1, task.prediction.output_dim, requires_grad=True)
    targets = torch.randint(1, task.tokenizer.vocab_size, (batch, labels))
    lengths = (torch.full((batch,), frames), torch.full((batch,), labels))
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            loss = transducer_loss(
                task.joiner,
                encoded,
                lengths[0],
                predicted,
                targets,
                lengths[1],
                blank=task.blank,
                max_joint_elements=bound,
            )
        loss.backward()
    allocated = peak = 0
    for event in sorted(profiler.events(), key=lambda event: event.time_range.start):
        allocated += event.self_cpu_memory_usage
        peak = max(peak, allocated)
    return peak, sum(storages.values())


def main(overrides: list[str]) -> None:
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("train", ["model=rnnt", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.paths.root_dir = str(Path.cwd())
    job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    datamodule = build_datamodule(job.data, "text", lock_dir=job.paths.data_dir)
    task = build_task(job.model, datamodule.task_inputs())
    datamodule.drop_inadmissible(task.check_example)
    dataset = datamodule.datasets["train"]
    width = task.joiner.joint_dim + task.joiner.vocab_size
    rows = []
    for indices in datamodule.train_dataloader().batch_sampler:
        utterances = [dataset.utterances[i] for i in indices]
        frames = torch.tensor(
            [task.output_frames(round(u.duration * datamodule.sample_rate)) for u in utterances]
        )
        labels = torch.tensor([len(dataset.target(u)) for u in utterances])
        elements = len(indices) * int(frames.max()) * (int(labels.max()) + 1) * width
        chunks = joint_chunks(frames, labels, width, task.max_joint_elements)
        rows.append((len(indices), int(frames.max()), int(labels.max()), elements, len(chunks)))
    largest = max(rows, key=lambda row: row[3])
    print(
        f"model={OmegaConf.select(cfg, 'hydra.runtime.choices.model') or 'rnnt'} "
        f"data={cfg.hydra.runtime.choices.data}: {len(rows)} train batches, "
        f"V={task.joiner.vocab_size}, joint_dim={task.joiner.joint_dim}, "
        f"max_joint_elements={task.max_joint_elements:,}"
    )
    print("| | B | T' | U | B x T' x (U+1) x (J+V) | float32 | chunks |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    median = sorted(rows, key=lambda row: row[3])[len(rows) // 2]
    for name, row in (("median batch", median), ("largest batch", largest)):
        b, t, u, elements, chunks = row
        print(
            f"| {name} | {b} | {t} | {u} | {elements:,} | {elements * 4 / MIB:.1f} MiB | {chunks} |"
        )
    print(f"batches cut into chunks: {sum(row[4] > 1 for row in rows)} of {len(rows)}")
    print(f"mean utterances per batch: {statistics.mean(row[0] for row in rows):.1f}")
    b, t, u, elements, _ = largest
    peak, saved = joiner_peak_bytes(task, b, t, u, task.max_joint_elements)
    tensor = elements * 4
    print(
        f"largest batch: joiner + loss peak at {peak / MIB:.1f} MiB in forward + backward "
        f"({peak / tensor:.2f} x the B x T' x (U+1) x (J+V) float32 tensor) and keep "
        f"{saved / MIB:.1f} MiB for backward ({saved / tensor:.2f} x)"
    )

    quarter = elements // 4
    peak, _ = joiner_peak_bytes(task, b, t, u, quarter)
    print(
        f"the same batch with max_joint_elements={quarter:,} ({len(joint_chunks(torch.full((b,), t), torch.full((b,), u), width, quarter))} chunks, "
        f"recomputed in backward): peak {peak / MIB:.1f} MiB ({peak / (quarter * 4):.2f} x the bound)"
    )


if __name__ == "__main__":
    torch.manual_seed(0)
    main(sys.argv[1:])
