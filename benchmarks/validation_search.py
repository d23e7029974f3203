"""What validation's search costs and reads, against test's: a LAS checkpoint's validation split
decoded greedily (the old validation), with ``model.validation_decoding`` (a small joint CTC
beam, the new default) and with the test search (``model.decoding``), and its test split with the
test search. Seconds of decoding per pass and CER of each.

    .venv/bin/python benchmarks/validation_search.py <run>/checkpoints/last.ckpt [--batches N]
        [--validation-beam 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
from torchmetrics.text import CharErrorRate

from speechlab.checkpoint.recipe import RECIPE_KEY, load_checkpoint, restore_task
from speechlab.data.datamodule import build_datamodule
from speechlab.decoding.build import build_attention_decoder


def decode(task, loader, decoder, batches: int | None) -> tuple[float, float]:
    """Seconds spent in the search and the CER over the batches of ``loader``."""
    cer = CharErrorRate()
    spent = 0.0
    with torch.no_grad():
        for number, batch in enumerate(loader):
            if batches is not None and number >= batches:
                break
            batch = task.on_after_batch_transfer(batch, 0)
            features, lengths = batch.features, batch.feature_lengths
            encoded, encoded_lengths, ctc_log_probs, ctc_lengths = task.encode(features, lengths)
            start = time.perf_counter()
            hypotheses = task._decode(decoder, encoded, encoded_lengths, ctc_log_probs, ctc_lengths)
            spent += time.perf_counter() - start
            references = [
                task.tokenizer.decode(t[:n].tolist())
                for t, n in zip(batch.targets, batch.target_lengths, strict=True)
            ]
            cer.update(hypotheses, references)
    return spent, float(cer.compute())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--batches", type=int, help="at most this many batches per split")
    parser.add_argument(
        "--validation-beam",
        type=int,
        help="validate with a joint CTC beam of this size (a checkpoint from before "
        "model.validation_decoding validates greedily)",
    )
    args = parser.parse_args(argv)
    checkpoint = load_checkpoint(args.checkpoint)
    recipe = checkpoint[RECIPE_KEY]
    task = restore_task(checkpoint).eval()
    if args.validation_beam:
        task.validation_decoding = {"kind": "beam", "beam_size": args.validation_beam}
        task._validation_decoder = None
    data = {**recipe["data"], "tokenizer": recipe["task_inputs"]["tokenizer"], "num_workers": 0}
    datamodule = build_datamodule(data, task.target_field)
    greedy = build_attention_decoder(
        {**task.decoding, "kind": "greedy", "lm": None}, task.tokenizer.tokens, None
    )
    searches = {
        "validation, greedy (before)": ("val", greedy),
        f"validation, {task.validation_decoding} (now)": ("val", task.validation_decoder),
        f"validation, test's search {task.decoding['kind']} {task.decoding['beam_size']}": (
            "val",
            task.decoder,
        ),
        "test, test's search": ("test", task.decoder),
    }
    loaders = {"val": datamodule.val_dataloader(), "test": datamodule.test_dataloader()}
    print("| search | seconds | CER |\n|---|---:|---:|")
    for name, (split, decoder) in searches.items():
        seconds, cer = decode(task, loaders[split], decoder, args.batches)
        print(f"| {name} | {seconds:.1f} | {cer:.3f} |")


if __name__ == "__main__":
    main()
