"""Time per keyword-spotting training step: channels-last vs contiguous (NCHW) activations.

Times forward + backward + AdamW step of :class:`speechlab.nn.kws_cnn.KeywordCNN` alone on a
batch of 1-second log-mels (``--frames`` 101 at a 10 ms hop, lengths drawn between 60 % and 100 %
of it, so the padding masks are exercised), once with ``channels_last=False`` and once with
``channels_last=True``. Prints the median wall time per step of each, their ratio, and the
largest difference between the two layouts' embeddings for the same weights and input.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/kws_step.py
        [--channels 32 64 128 128] [--convs-per-block 2] [--n-mels 40]
        [--batch 32 --frames 101] [--steps 20] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from speechlab.nn.kws_cnn import KeywordCNN


def model(args: argparse.Namespace, channels_last: bool) -> KeywordCNN:
    torch.manual_seed(0)
    return KeywordCNN(
        n_mels=args.n_mels,
        channels=args.channels,
        convs_per_block=args.convs_per_block,
        channels_last=channels_last,
    ).to(args.device)


def batch(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(args.batch, args.n_mels, args.frames, generator=generator)
    lengths = torch.randint(
        int(0.6 * args.frames), args.frames + 1, (args.batch,), generator=generator
    )
    lengths[0] = args.frames
    return features.to(args.device), lengths.to(args.device)


def median_step_seconds(args: argparse.Namespace, channels_last: bool) -> float:
    encoder = model(args, channels_last)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-3)
    features, lengths = batch(args)
    times = []
    for step in range(args.steps + 3):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        encoder(features, lengths).square().mean().backward()
        optimizer.step()
        if features.is_cuda:
            torch.cuda.synchronize()
        if step >= 3:  # the first steps pick kernels and fill allocator caches
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def largest_difference(args: argparse.Namespace) -> float:
    features, lengths = batch(args)
    with torch.no_grad():
        outputs = [model(args, layout).eval()(features, lengths) for layout in (False, True)]
    return float((outputs[0] - outputs[1]).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128, 128])
    parser.add_argument("--convs-per-block", type=int, default=2)
    parser.add_argument("--n-mels", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=101)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}; KeywordCNN "
        f"channels {args.channels} x {args.convs_per_block} convs, batch {args.batch} x "
        f"{args.n_mels} mels x {args.frames} frames"
    )
    contiguous = median_step_seconds(args, channels_last=False)
    channels_last = median_step_seconds(args, channels_last=True)
    print(f"contiguous (NCHW)     {1e3 * contiguous:8.1f} ms per step (median of {args.steps})")
    print(f"channels-last (NHWC)  {1e3 * channels_last:8.1f} ms per step")
    print(f"ratio                 {channels_last / contiguous:8.3f}")
    print(f"largest embedding difference between the layouts: {largest_difference(args):.2e}")


if __name__ == "__main__":
    main()
