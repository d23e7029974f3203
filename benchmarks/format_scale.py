"""Building a manifest from a user's corpus at scale: JSON lines and Lhotse cuts against the
built-in Common Voice reader, each with the same utterances.

A synthetic corpus of ``--utterances`` train utterances (1,000 each in validation and test) is
written three ways over the same clip files: the Common Voice layout (``train.tsv``, ``dev.tsv``,
``test.tsv``, ``clip_durations.tsv``), NeMo-style JSON lines (``<split>.jsonl``) and Lhotse cut
manifests (``cuts_<split>.jsonl.gz``, Lhotse's own dict layout). The clips are empty files (a
reader only stats a clip whose duration its metadata gives; none is opened). Each reader is built
from its config as ``train.py`` builds it (``data=common_voice|manifest|lhotse
data.reader.root=...``) and runs ``build_manifest`` (every split scanned into columnar tables, no
cache) in a fresh Python process; the figures are its wall time and its peak resident memory
(``ru_maxrss``) above that of a process that only imported the same modules.

    .venv/bin/python benchmarks/format_scale.py [--utterances 1000000] [--dir DIR] [--json PATH]
        [--smoke]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = 1000
WORDS = [
    "the",
    "a",
    "of",
    "to",
    "and",
    "in",
    "is",
    "it",
    "you",
    "that",
    "he",
    "was",
    "for",
    "on",
    "are",
    "with",
    "as",
    "his",
    "they",
    "be",
    "at",
    "one",
    "have",
]
FORMATS = {  # phase -> the data config a user types
    "common_voice": "common_voice",
    "manifest": "manifest",
    "lhotse": "lhotse",
}
CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent\tlocale\tsegment"


def write_corpus(root: Path, utterances: int, seed: int = 0) -> None:
    """The same corpus in the three layouts under ``root`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    clips = root / "common_voice" / "clips"
    clips.mkdir(parents=True)
    (root / "manifest").mkdir()
    (root / "lhotse").mkdir()
    speakers = [f"{value:0128x}" for value in rng.integers(0, 2**62, 20_000).tolist()]
    with (root / "common_voice" / "clip_durations.tsv").open("w", encoding="utf-8") as durations:
        durations.write("clip\tduration[ms]\n")
        for split, count, tsv in (
            ("train", utterances, "train.tsv"),
            ("validation", HELD_OUT, "dev.tsv"),
            ("test", HELD_OUT, "test.tsv"),
        ):
            with (
                (root / "common_voice" / tsv).open("w", encoding="utf-8") as cv,
                (root / "manifest" / f"{split}.jsonl").open("w", encoding="utf-8") as nemo,
                gzip.open(
                    root / "lhotse" / f"cuts_{split}.jsonl.gz", "wt", compresslevel=1
                ) as cuts,
            ):
                cv.write(CV_HEADER + "\n")
                _write_split(split, count, clips, speakers, rng, durations, cv, nemo, cuts)


def _write_split(split, count, clips, speakers, rng, durations, cv, nemo, cuts) -> None:
    milliseconds = np.clip(rng.lognormal(np.log(5000), 0.4, count), 1000, 15000).astype(int)
    for index in range(count):
        name = f"common_voice_en_{split}_{index:08d}.mp3"
        path = clips / name
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        seconds = int(milliseconds[index]) / 1000
        words = rng.integers(0, len(WORDS), rng.integers(4, 17)).tolist()
        text = " ".join(WORDS[w] for w in words)
        speaker = speakers[int(rng.integers(0, len(speakers)))]
        uid = Path(name).stem
        durations.write(f"{name}\t{milliseconds[index]}\n")
        cv.write(f"{speaker}\t{name}\t{text}\t2\t0\t\t\t\ten\t\n")
        record = {"id": uid, "audio_filepath": str(path), "duration": seconds, "text": text}
        nemo.write(json.dumps(record | {"speaker": speaker, "lang": "en"}) + "\n")
        supervision = {
            "id": uid,
            "recording_id": uid,
            "start": 0.0,
            "duration": seconds,
            "channel": 0,
            "text": text,
            "speaker": speaker,
            "language": "en",
        }
        recording = {
            "id": uid,
            "sources": [{"type": "file", "channels": [0], "source": str(path)}],
            "sampling_rate": 48000,
            "num_samples": int(round(seconds * 48000)),
            "duration": seconds,
            "channel_ids": [0],
        }
        cut = {
            "id": uid,
            "start": 0.0,
            "duration": seconds,
            "channel": 0,
            "supervisions": [supervision],
            "recording": recording,
            "type": "MonoCut",
        }
        cuts.write(json.dumps(cut) + "\n")


def phase(name: str, root: Path) -> dict[str, Any]:
    """Build the manifest of ``root``'s ``name`` layout (in this process); ``name=import`` only
    imports what the others do. Returns seconds, peak memory and utterance counts."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    import speechlab.run.resolvers  # noqa: F401  (config resolvers)
    from speechlab.data.manifest import build_manifest

    if name == "import":
        import lhotse  # noqa: F401  (imported by the Lhotse reader)

        return {"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    overrides = [f"data={FORMATS[name]}", f"data.reader.root={root / name}"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    reader = instantiate(cfg.data.reader)
    start = time.perf_counter()
    manifest = build_manifest(reader)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "counts": {split: len(table) for split, table in manifest.splits.items()},
        "skipped": len(manifest.skipped),
    }


def run_phase(name: str, root: Path) -> dict[str, Any]:
    """:func:`phase` in a fresh Python process."""
    done = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--dir", str(root)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"phase {name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown_table(result: dict[str, Any]) -> str:
    base = result["import_peak_mb"]
    lines = [
        f"{result['utterances']:,} train utterances (+{HELD_OUT:,} validation, +{HELD_OUT:,} "
        "test); peak memory above the imports' "
        f"{base:.0f} MB",
        "",
        "| reader (data=...) | build seconds | peak memory (MB) | utterances |",
        "|---|---:|---:|---:|",
    ]
    for name, figures in result["readers"].items():
        total = sum(figures["counts"].values())
        lines.append(
            f"| {name} | {figures['seconds']:.1f} | {figures['peak_mb'] - base:.0f} | {total:,} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--utterances", type=int, default=1_000_000)
    parser.add_argument("--dir", help="where the corpus is written (default: a temporary folder)")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--smoke", action="store_true", help="20,000 utterances")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.phase:
        print(json.dumps(phase(args.phase, Path(args.dir))))
        return {}
    utterances = 20_000 if args.smoke else args.utterances
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="format_scale-"))
    try:
        start = time.perf_counter()
        write_corpus(root, utterances)
        print(f"corpus written in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        result: dict[str, Any] = {
            "utterances": utterances,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "import_peak_mb": run_phase("import", root)["peak_mb"],
            "readers": {name: run_phase(name, root) for name in FORMATS},
        }
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    print(markdown_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
