"""Decoding speed: greedy vs beam search on the same encoder output, for CTC and LAS checkpoints.

CTC checkpoints: greedy vs beam search with and without an n-gram LM (below). LAS checkpoints
(``model=las``): greedy search vs batched beam search (all hypotheses of a batch step together),
attention-only and with joint CTC scoring, on the same encoder output; same report.

Runs a trained CTC checkpoint over the test split of its corpus once to get the emissions (the
model time), then decodes those emissions with each decoder. Reports the real-time factor (seconds
of compute per second of audio, lower is faster) of the model and of each decoder, the end-to-end
ratio ``(model + decoder) / (model + greedy)`` (target: beam + LM <= 1.3x), and the WER/CER of
each decoder. The LM is a word 3-gram built from the train transcripts with a lexicon of the train
words (``speechlab build-lm``). Medians over ``--repeats`` passes.

    .venv/bin/python benchmarks/decoding.py --ckpt logs/train/runs/<run>/checkpoints/<best>.ckpt
        [--beam-size 20] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torchmetrics.text import CharErrorRate, WordErrorRate

from speechlab.checkpoint.recipe import RECIPE_KEY, load_checkpoint, restore_task
from speechlab.data.datamodule import build_datamodule
from speechlab.decoding.build import build_ctc_decoder
from speechlab.decoding.ngram import build_arpa, write_lexicon
from speechlab.tasks.recognition import batch_references


def latest_checkpoint() -> Path:
    found = sorted(Path("logs/train/runs").glob("*/checkpoints/epoch_*.ckpt"))
    if not found:
        raise SystemExit("no checkpoint under logs/train/runs; run `make train` or pass --ckpt")
    return found[-1]


def emissions(task, datamodule) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list, float]:
    """Log-probs per test batch, references, and the model's wall time (frontend + network)."""
    batches, references = [], []
    elapsed = 0.0
    with torch.inference_mode():
        for batch in datamodule.test_dataloader():
            if len(batch) == 0:
                continue
            started = time.perf_counter()
            features, lengths = task.frontend(batch.audio, batch.audio_lengths)
            log_probs, out_lengths = task(features, lengths)
            elapsed += time.perf_counter() - started
            batches.append((log_probs, out_lengths))
            references += batch_references(task.tokenizer, batch)
    return batches, references, elapsed


def decode_all(decoder, batches) -> tuple[list[str], float]:
    started = time.perf_counter()
    texts = [text for log_probs, lengths in batches for text in decoder(log_probs, lengths)]
    return texts, time.perf_counter() - started


def attention_benchmark(task, datamodule, audio_seconds: float, args) -> None:
    """Greedy vs batched beam search of a LAS checkpoint on the same encoder output."""
    from speechlab.decoding.build import build_attention_decoder

    batches, references, model_times = [], [], []
    for _ in range(args.repeats):
        batches, references, elapsed = [], [], 0.0
        with torch.inference_mode():
            for batch in datamodule.test_dataloader():
                if len(batch) == 0:
                    continue
                started = time.perf_counter()
                features, lengths = task.frontend(batch.audio, batch.audio_lengths)
                batches.append(task.encode(features, lengths))
                elapsed += time.perf_counter() - started
                references += batch_references(task.tokenizer, batch)
        model_times.append(elapsed)
    # the checkpoint's decoding options (no LM), with these limits, kinds and CTC weights
    base = {**task.decoding, "lm": None, "max_length_ratio": 2.0, "max_length": 256}
    beam = {**base, "kind": "beam", "beam_size": args.las_beam}
    decoders = {
        "greedy": build_attention_decoder({**base, "kind": "greedy"}, [], None),
        f"beam {args.las_beam}, attention only": build_attention_decoder(
            {**beam, "ctc_weight": 0.0}, [], None
        ),
        f"beam {args.las_beam}, joint CTC 0.5": build_attention_decoder(
            {**beam, "ctc_weight": 0.5}, [], None
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in decoders}
    scores = {}
    with torch.inference_mode():
        for _ in range(args.repeats):
            for name, decoder in decoders.items():
                started = time.perf_counter()
                texts = [
                    task.tokenizer.decode(ids)
                    for encoded, lengths, ctc, ctc_lengths in batches
                    for ids in decoder(task.speller, encoded, lengths, ctc, ctc_lengths)
                ]
                times[name].append(time.perf_counter() - started)
                scores[name] = (
                    float(WordErrorRate()(texts, references)),
                    float(CharErrorRate()(texts, references)),
                )
    model = statistics.median(model_times)
    greedy = statistics.median(times["greedy"])
    print(f"model (frontend + listener + CTC head): RTF {model / audio_seconds:.5f}\n")
    print("| decoder | decode RTF | vs greedy (decode) | end-to-end vs greedy | WER | CER |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, runs in times.items():
        decode = statistics.median(runs)
        wer, cer = scores[name]
        print(
            f"| {name} | {decode / audio_seconds:.5f} | {decode / greedy:.2f}x | "
            f"{(model + decode) / (model + greedy):.2f}x | {wer:.3f} | {cer:.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--beam-size", type=int, default=20)
    parser.add_argument("--lm-weight", type=float, default=1.0)
    parser.add_argument("--word-score", type=float, default=0.0)
    parser.add_argument("--las-beam", type=int, default=5, help="beam size for LAS checkpoints")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    path = args.ckpt or latest_checkpoint()
    checkpoint = load_checkpoint(path)
    recipe = checkpoint[RECIPE_KEY]
    task = restore_task(checkpoint)
    data_cfg = OmegaConf.create(recipe["data"])
    data_cfg.tokenizer = recipe["task_inputs"]["tokenizer"]
    datamodule = build_datamodule(data_cfg, task.target_field)
    audio_seconds = sum(datamodule.datasets["test"].durations)
    print(f"checkpoint: {path}; test split: {audio_seconds:.1f} s of audio")
    if hasattr(task, "speller"):
        attention_benchmark(task, datamodule, audio_seconds, args)
        return
    train_texts = [u.text for u in datamodule.datasets["train"].utterances if u.text]
    tokenizer = task.tokenizer

    workdir = Path(tempfile.mkdtemp(prefix="speechlab-decoding-"))
    lm = build_arpa(train_texts, workdir / "lm.arpa", order=3)
    words = sorted({w for text in train_texts for w in text.split()})
    lexicon = write_lexicon(
        words, tokenizer.spell, workdir / "lexicon.txt", word_delimiter=tokenizer.word_delimiter
    )
    beam = {"kind": "beam", "beam_size": args.beam_size}
    decoders = {
        "greedy": {"kind": "greedy"},
        f"beam {args.beam_size}, lexicon-free, no LM": beam,
        f"beam {args.beam_size}, lexicon + word 3-gram LM": {
            **beam,
            "lexicon": str(lexicon),
            "lm": str(lm),
            "lm_weight": args.lm_weight,
            "word_score": args.word_score,
        },
    }

    model_times, results = [], {name: [] for name in decoders}
    scores = {}
    for _ in range(args.repeats):
        batches, references, model_time = emissions(task, datamodule)
        model_times.append(model_time)
        for name, options in decoders.items():
            decoder = build_ctc_decoder(options, tokenizer)
            texts, seconds = decode_all(decoder, batches)
            results[name].append(seconds)
            scores[name] = (
                float(WordErrorRate()(texts, references)),
                float(CharErrorRate()(texts, references)),
            )

    model = statistics.median(model_times)
    greedy = statistics.median(results["greedy"])
    print(f"checkpoint: {path}")
    print(
        f"test split: {len(references)} utterances, {audio_seconds:.1f} s of audio; "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats}"
    )
    print(f"model (frontend + encoder + head): RTF {model / audio_seconds:.5f}\n")
    print("| decoder | decode RTF | end-to-end RTF | end-to-end vs greedy | WER | CER |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, times in results.items():
        decode = statistics.median(times)
        total = model + decode
        wer, cer = scores[name]
        print(
            f"| {name} | {decode / audio_seconds:.5f} | {total / audio_seconds:.5f} | "
            f"{total / (model + greedy):.2f}x | {wer:.3f} | {cer:.3f} |"
        )


if __name__ == "__main__":
    main()
