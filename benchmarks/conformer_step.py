"""Host work of a Conformer training step: torchaudio's layers vs speechlab's SDPA layers.

Times forward + backward + AdamW step of the Conformer layer stack alone (no subsampling, no
loss beyond a sum) on a padded batch, for

- ``torchaudio``: :class:`torchaudio.models.Conformer` with the padded frames zeroed before each
  depthwise convolution by forward pre-hooks (what ``ConformerEncoder`` ran before), and
- ``speechlab``: :class:`speechlab.nn.encoders.conformer_layers.Conformer` (masks built once per
  batch, ``F.scaled_dot_product_attention``, batch first),

each with the AdamW of the config (``--fused``: torch's fused AdamW; default: torch's default
for the device) and gradient-norm clipping. Under ``--precision bf16-mixed`` the forward runs in
``torch.autocast``. Reports the median wall time per step (CUDA synchronised after each step)
and, from ``torch.profiler`` over ``--profile-steps`` steps, the operator calls per step: all
of them, and the ``aten::copy_``/``aten::_to_copy`` calls (dtype casts and copies).

    .venv/bin/python benchmarks/conformer_step.py [--device cuda] [--precision bf16-mixed]
        [--d-model 256 --layers 12 --heads 4 --ffn 1024 --kernel 31]
        [--batch 32 --frames 400] [--steps 30] [--fused]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from contextlib import nullcontext

import torch
import torchaudio
from torch import nn
from torch.profiler import ProfilerActivity, profile

from speechlab.audio.features import lengths_to_mask
from speechlab.nn.encoders.conformer_layers import Conformer


def torchaudio_conformer(args: argparse.Namespace, state: dict[str, list]) -> nn.Module:
    """torchaudio's Conformer, its depthwise inputs masked by pre-hooks (``state["lengths"]``)."""
    model = torchaudio.models.Conformer(
        args.d_model, args.heads, args.ffn, args.layers, args.kernel, dropout=0.1
    )

    def zero_padding(module: nn.Module, inputs: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        mask = lengths_to_mask(state["lengths"][0], inputs[0].shape[-1]).unsqueeze(1)
        return (inputs[0] * mask.to(inputs[0].dtype),)

    for layer in model.conformer_layers:
        layer.conv_module.sequential[2].register_forward_pre_hook(zero_padding)
    return model


def run(name: str, args: argparse.Namespace) -> dict[str, float]:
    device = torch.device(args.device)
    torch.manual_seed(0)
    state: dict[str, list] = {"lengths": []}
    if name == "torchaudio":
        model = torchaudio_conformer(args, state)
    else:
        model = Conformer(args.d_model, args.heads, args.ffn, args.layers, args.kernel, 0.1)
    model = model.to(device).train()
    options = {"fused": True} if args.fused else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, **options)
    frames = torch.randn(args.batch, args.frames, args.d_model, device=device)
    lengths = torch.linspace(args.frames // 2, args.frames, args.batch).long().to(device)
    lengths[-1] = args.frames  # the batch is padded to its longest utterance
    state["lengths"] = [lengths]
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if args.precision == "bf16-mixed"
        else nullcontext()
    )

    def step() -> None:
        with autocast:
            output, _ = model(frames, lengths)
        output.float().square().mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    synchronize()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        synchronize()
        times.append(time.perf_counter() - start)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, acc_events=True) as profiler:
        for _ in range(args.profile_steps):
            step()
        synchronize()
    events = profiler.key_averages()
    calls = sum(e.count for e in events if e.key.startswith("aten::"))
    copies = sum(e.count for e in events if e.key in ("aten::copy_", "aten::_to_copy"))
    return {
        "ms": 1000 * statistics.median(times),
        "ops": calls / args.profile_steps,
        "copies": copies / args.profile_steps,
        "params": sum(p.numel() for p in model.parameters()) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="bf16-mixed", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--kernel", type=int, default=31)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=400, help="encoder frames (40 ms each)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--profile-steps", type=int, default=3)
    parser.add_argument("--fused", action="store_true", help="torch's fused AdamW")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    )
    print(
        f"# {device}, torch {torch.__version__}, {args.precision}, fused AdamW: {args.fused}, "
        f"batch {args.batch} x {args.frames} frames, d_model {args.d_model}, {args.layers} layers"
    )
    print(
        "| layers | params (M) | ms / step (median) | aten ops / step | copy_ + _to_copy / step |"
    )
    print("|---|---:|---:|---:|---:|")
    for name in ("torchaudio", "speechlab"):
        result = run(name, args)
        print(
            f"| {name} | {result['params']:.2f} | {result['ms']:.1f} | {result['ops']:.0f} "
            f"| {result['copies']:.0f} |"
        )


if __name__ == "__main__":
    main()
