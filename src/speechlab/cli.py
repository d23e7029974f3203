"""The ``speechlab`` command: use trained checkpoints and build decoding resources.

speechlab transcribe CKPT AUDIO...          one "<path>\\t<text>" line per file
speechlab translate CKPT AUDIO...           one "<path>\\t<translation>" line per file
speechlab synthesize CKPT "text" -o out.wav  speech from text (any length, split into sentences)
                      [--vocoder HIFIGAN_CKPT]  through a trained HiFi-GAN instead of Griffin-Lim
speechlab build-lm TRANSCRIPTS -o lm.arpa   word n-gram LM (+ lexicon) for beam search
speechlab average CKPT CKPT... -o avg.ckpt  average the weights of checkpoints of one model
speechlab shard data=CORPUS [KEY=VALUE...] -o DIR   tar shards of every split, to stream
speechlab convert data=CORPUS --to FORMAT -o DIR     the corpus as manifest|kaldi|lhotse|hf files
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

log = logging.getLogger("speechlab")

# Shards close at this size when neither --shard-size nor --shard-seconds is given: the shard
# size WebDataset's own examples and the Hugging Face Hub's WebDataset guide use.
DEFAULT_SHARD_SIZE = "1GB"


def _load_task(ckpt: str, device: str, decoding: dict[str, object], command: str = "transcribe"):
    from speechlab.checkpoint.recipe import load_checkpoint, restore_task

    try:
        task = restore_task(load_checkpoint(ckpt))
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"speechlab {command}: {error}") from None
    if not hasattr(task, command):
        kinds = (
            "a translation model (model=st_las)"
            if command == "translate"
            else ("a recognition model (model=ctc_*, las, rnnt)")
        )
        raise SystemExit(
            f"speechlab {command}: {ckpt} holds a {type(task).__name__}, which does not "
            f"{command}; pass a checkpoint of {kinds}"
        )
    if decoding:
        try:
            task.set_decoding(decoding)
        except ValueError as error:  # an option this model's search does not take
            raise SystemExit(f"speechlab {command}: {error}") from None
    return task.to(device)


def transcribe(args: argparse.Namespace) -> int:
    """Print one ``<path>\\t<transcript>`` line per readable file, in order; each unreadable
    file gets one line on stderr and a non-zero exit status, and the others still come out."""
    decoding = {
        key: value
        for key, value in {
            "kind": args.decoding,
            "beam_size": args.beam_size,
            "lm": args.lm,
            "lexicon": args.lexicon,
            "lm_weight": args.lm_weight,
        }.items()
        if value is not None
    }
    if ("lm" in decoding or "lexicon" in decoding) and decoding.get("kind") is None:
        decoding["kind"] = "beam"
    task = _load_task(args.checkpoint, args.device, decoding)
    return _print_outputs(task.transcribe, task.frontend.sample_rate, args.audio, args.device)


def translate(args: argparse.Namespace) -> int:
    """Print one ``<path>\\t<translation>`` line per readable file, in order; each unreadable
    file gets one line on stderr and a non-zero exit status, and the others still come out."""
    decoding = {
        key: value
        for key, value in {"kind": args.decoding, "beam_size": args.beam_size}.items()
        if value is not None
    }
    task = _load_task(args.checkpoint, args.device, decoding, command="translate")
    return _print_outputs(task.translate, task.frontend.sample_rate, args.audio, args.device)


def _print_outputs(model, sample_rate: int, paths: Sequence[str], device: str) -> int:
    """``model(waveforms (1, T), lengths (1,)) -> [text]`` on each file: ``path\\ttext`` lines
    on stdout, ``path\\tcannot read: ...`` on stderr; 1 if any file was unreadable."""
    import torch

    from speechlab.audio.io import AudioError, read_audio

    failures = 0
    for path in paths:
        try:
            audio = read_audio(path, sample_rate)
        except (AudioError, OSError) as error:
            failures += 1
            print(f"{path}\tcannot read: {error}", file=sys.stderr, flush=True)
            continue
        batch = audio.unsqueeze(0).to(device)
        lengths = torch.tensor([audio.numel()], device=device)
        (text,) = model(batch, lengths)
        print(f"{path}\t{text}", flush=True)
    return 1 if failures else 0


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``: cut after ``.``, ``!``, ``?``, ``;`` or a line break."""
    import re

    parts = re.split(r"(?<=[.!?;])\s+|\n+", text)
    return [part.strip() for part in parts if part.strip()]


def synthesize(args: argparse.Namespace) -> int:
    """Write ``args.text`` as speech to ``args.output`` (16-bit WAV): each sentence synthesized
    on its own, normalised as the checkpoint's corpus reader normalised its transcripts, joined
    with short pauses."""
    import numpy as np
    import soundfile as sf
    import torch

    from speechlab.checkpoint.recipe import RECIPE_KEY, load_checkpoint, restore_task
    from speechlab.text.normalize import TextNormalizer

    try:
        checkpoint = load_checkpoint(args.checkpoint)
        if args.vocoder is not None:
            from speechlab.tasks.vocoder import restore_with_vocoder

            task = restore_with_vocoder(checkpoint, args.vocoder)
        else:
            task = restore_task(checkpoint)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"speechlab synthesize: {error}") from None
    if not hasattr(task, "synthesize"):
        raise SystemExit(
            f"speechlab synthesize: {args.checkpoint} holds a {type(task).__name__}, which does "
            "not synthesize; pass a checkpoint of a synthesis model (model=tacotron2)"
        )
    task.to(args.device)
    if args.vocoder_iters is not None:
        if not hasattr(task.vocoder, "n_iter"):
            raise SystemExit(
                "speechlab synthesize: --vocoder-iters sets Griffin-Lim's iterations, but this "
                f"model speaks through a {type(task.vocoder).__name__}; drop --vocoder-iters"
            )
        task.vocoder.n_iter = args.vocoder_iters
    reader = checkpoint[RECIPE_KEY]["data"].get("reader", {})
    normalizer = TextNormalizer.coerce(reader.get("normalizer"))
    sentences = split_sentences(args.text)
    if not sentences:
        raise SystemExit(
            f"speechlab synthesize: the text {args.text!r} is empty; give words to speak"
        )
    pause = torch.zeros(int(args.pause * task.sample_rate))
    pieces = []
    for sentence in sentences:
        text = normalizer(sentence) or ""
        try:
            (audio,), output = task.synthesize([text])
        except ValueError as error:
            raise SystemExit(f"speechlab synthesize: {error}") from None
        if int(output.lengths[0]) >= task.model.max_decoder_steps * task.model.reduction:
            log.warning(
                "the stop token never fired for %r: cut at the model's longest output", sentence
            )
        pieces += [audio, pause]
    samples = torch.cat(pieces[:-1]).numpy()
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    if peak > 0.99:
        samples = samples * (0.99 / peak)
    output_path = Path(args.output)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(output_path), samples, task.sample_rate, subtype="PCM_16")
    print(
        f"wrote {output_path} ({len(samples) / task.sample_rate:.2f} s, {task.sample_rate} Hz, "
        f"{len(sentences)} sentence(s))"
    )
    return 0


def build_lm(args: argparse.Namespace) -> int:
    """Write an ARPA n-gram LM (interpolated Kneser-Ney) and a lexicon for beam search.

    With ``--ckpt``, the transcripts are the (normalised) train split of the checkpoint's corpus
    and the lexicon is spelled with its tokenizer. A word LM is decoded with the lexicon;
    ``--unit token`` writes an LM over the tokenizer's symbols for lexicon-free decoding.
    """
    from speechlab.decoding.ngram import build_arpa, spell_sentences, write_lexicon

    tokenizer, train_texts = _checkpoint_text(args.ckpt) if args.ckpt else (None, [])
    sentences = (
        _read_transcripts(args.transcripts, args.column) if args.transcripts else train_texts
    )
    if not sentences:
        raise SystemExit(
            "speechlab build-lm: no transcripts; pass a transcript file or --ckpt <checkpoint> "
            "(whose corpus's train split is then used)"
        )
    if tokenizer is None and (args.unit == "token" or args.lexicon):
        raise SystemExit(
            "speechlab build-lm: --lexicon and --unit token need --ckpt <checkpoint> (its "
            "tokenizer spells the words)"
        )
    if args.unit == "token":
        units = spell_sentences(sentences, tokenizer.spell, tokenizer.word_delimiter)
        path = build_arpa(units, args.output, order=args.order)
    else:
        path = build_arpa(sentences, args.output, order=args.order)
    print(f"wrote {path} ({args.order}-gram over {args.unit}s, {len(sentences)} sentences)")
    if args.lexicon:
        words = sorted({word for sentence in sentences for word in sentence.split()})
        write_lexicon(words, tokenizer.spell, args.lexicon, word_delimiter=tokenizer.word_delimiter)
        print(f"wrote {args.lexicon} ({len(words)} words)")
    return 0


def _checkpoint_text(ckpt: str):
    """The tokenizer of ``ckpt`` and the normalised train transcripts of its corpus."""
    from omegaconf import OmegaConf

    from speechlab.checkpoint.recipe import RECIPE_KEY, load_checkpoint
    from speechlab.data.datamodule import build_datamodule
    from speechlab.text.tokenizers import load_tokenizer

    recipe = load_checkpoint(ckpt)[RECIPE_KEY]
    state = recipe["task_inputs"].get("tokenizer")
    if state is None:
        raise SystemExit(f"speechlab build-lm: {ckpt} has no tokenizer (not a recognizer)")
    data_cfg = OmegaConf.create(recipe["data"])
    data_cfg.tokenizer = state
    datamodule = build_datamodule(data_cfg, target_field="text")
    texts = [u.text for u in datamodule.datasets["train"].utterances if u.text]
    return load_tokenizer(state), texts


def _read_transcripts(path: str, column: str | None) -> list[str]:
    """Sentences of a text file (one per line), a manifest ``.jsonl`` (the ``text`` field) or a
    ``.tsv`` with a header (``column``, default ``sentence``)."""
    import csv
    import json

    source = Path(path)
    if not source.is_file():
        raise SystemExit(f"speechlab build-lm: no transcript file at {source}")
    with source.open(encoding="utf-8") as f:
        if source.suffix == ".jsonl":
            rows = (json.loads(line).get(column or "text") for line in f if line.strip())
            return [row for row in rows if row]
        if source.suffix == ".tsv":
            reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            return [row[column or "sentence"] for row in reader if row.get(column or "sentence")]
        return [line.strip() for line in f if line.strip()]


def average(args: argparse.Namespace) -> int:
    """Write the average of the given checkpoints' weights to ``args.output``."""
    import torch

    from speechlab.checkpoint.average import average_checkpoints

    try:
        averaged = average_checkpoints(args.checkpoints)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"speechlab average: {error}") from None
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(averaged, output)
    print(f"{output}\taverage of {len(args.checkpoints)} checkpoints")
    return 0


def _config_dir(config_dir: str | None, command: str) -> Path:
    """The config folder: ``config_dir``, else ``./conf``, else the ``conf/`` of the checkout
    speechlab is installed from (the first holding ``train.yaml``)."""
    candidates = [Path(config_dir)] if config_dir else []
    candidates += [Path.cwd() / "conf", Path(__file__).resolve().parents[2] / "conf"]
    found = next((c for c in candidates if (c / "train.yaml").is_file()), None)
    if found is None:
        raise SystemExit(
            f"speechlab {command}: no train.yaml in {' or '.join(map(str, candidates))}; run it "
            "from the speechlab checkout or pass --config-dir <its conf/>"
        )
    return found


def _compose_data(overrides: Sequence[str], config_dir: str | None, command: str = "shard"):
    """The ``data`` node of ``conf/train.yaml`` composed with ``overrides``, as train.py would,
    and checked as train.py checks it (:func:`speechlab.run.config_check.check_config`).

    The config folder is ``config_dir``, else ``./conf``, else the ``conf/`` of the checkout
    speechlab is installed from."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from speechlab.run import resolvers  # noqa: F401  (config resolvers)

    found = _config_dir(config_dir, command)
    from speechlab.run.config_check import ConfigValueError, check_config

    try:
        with initialize_config_dir(config_dir=str(found.resolve()), version_base="1.3"):
            cfg = compose(config_name="train", overrides=list(overrides))
            check_config(cfg, overrides, sections=("data",))  # before any data is read
            return cfg.data
    except (HydraException, ConfigValueError) as error:
        raise SystemExit(f"speechlab {command}: {error}") from None


def _parse_size(text: str) -> int:
    """``"64MB"``, ``"1.5GB"``, ``"4096"`` (bytes) -> bytes."""
    units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}
    upper = text.strip().upper()
    for unit, factor in units.items():
        if upper.endswith(unit):
            return int(float(upper[: -len(unit)]) * factor)
    return int(float(upper))


def shard(args: argparse.Namespace) -> int:
    """Write each split of the composed corpus as tar shards with an ``index.json`` (see
    :mod:`speechlab.data.shard_writer`); print one line per split and the skipped files."""
    import hydra

    from speechlab.data.reader import SPLITS, CorpusLayoutError
    from speechlab.data.shard_writer import write_shards

    size = args.shard_size
    if size is None and args.shard_seconds is None:
        size = DEFAULT_SHARD_SIZE
    try:
        shard_bytes = _parse_size(size) if size else None
    except (ValueError, OverflowError):
        raise SystemExit(
            f"speechlab shard: --shard-size {args.shard_size!r} is not a size (e.g. 256MB)"
        ) from None
    if shard_bytes is not None and shard_bytes < 1:
        raise SystemExit(
            f"speechlab shard: --shard-size {size} is less than one byte; give a positive size "
            "(e.g. 256MB)"
        )
    shard_seconds = args.shard_seconds
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise SystemExit(
            f"speechlab shard: -o {args.output} is a file; the shards go into a folder "
            "(<output>/<split>/shard-*.tar): name a new or existing folder"
        )
    data_cfg = _compose_data(args.overrides, args.config_dir)
    if args.shard_size is None and args.shard_seconds is None:
        print(f"speechlab shard: shards of at most {size} (--shard-size)", file=sys.stderr)
    datamodule = hydra.utils.instantiate(data_cfg, target_field="label")
    try:
        datamodule.prepare_data()  # the corpus reader and its cached manifest
    except CorpusLayoutError as error:
        raise SystemExit(f"speechlab shard: {error}") from None
    manifest = datamodule.manifest
    skipped_total = len(manifest.skipped)
    for split in args.splits or SPLITS:
        table = manifest.splits[split]
        try:
            report = write_shards(
                [table[i] for i in range(len(table))],
                args.output,
                split,
                shard_seconds=shard_seconds,
                shard_bytes=shard_bytes,
                seed=args.seed,
                corpus=datamodule.reader.name,
            )
        except ValueError as error:
            raise SystemExit(f"speechlab shard: {error}") from None
        index = report.index
        print(
            f"{Path(args.output) / split}\t{len(index.shards)} shards, {index.utterances} "
            f"utterances, {index.seconds / 3600:.3f} h, {len(report.skipped)} skipped"
        )
        for path, reason in sorted(report.skipped.items()):
            print(f"skipped {path}: {reason}", file=sys.stderr)
        skipped_total += len(report.skipped)
    if skipped_total:
        print(
            f"{skipped_total} utterance(s) or corpus entries skipped in all "
            f"({len(manifest.skipped)} while reading the corpus, the rest unreadable audio)",
            file=sys.stderr,
        )
    return 0


def _require_corpus(overrides: Sequence[str], config_dir: str | None) -> None:
    """Refuse a ``convert`` that names no corpus (``data=<corpus>``): the default corpus of
    ``conf/train.yaml`` is seldom the one meant."""
    import re

    if any(re.match(r"\+{0,2}data=", override) for override in overrides):
        return
    stems = sorted(p.stem for p in (_config_dir(config_dir, "convert") / "data").glob("*.yaml"))
    raise SystemExit(
        "speechlab convert: name the corpus to convert: data=<corpus>, one of "
        f"{', '.join(stems)} (your own files: data=manifest|kaldi|lhotse|hf "
        "data.reader.root=<folder>)"
    )


def _overlap(out: Path, corpus: Path) -> str | None:
    """How the output folder ``out`` overlaps the ``corpus`` folder being read, or ``None``."""
    out, corpus = out.resolve(), corpus.resolve()
    if out == corpus:
        return "is the folder of"
    if corpus in out.parents:
        return "lies inside"
    if out in corpus.parents:
        return "holds"
    return None


def _check_output(out: Path, corpus: Path | None, overwrite: bool) -> list[Path]:
    """Refuse an output folder that overlaps the corpus being read (always) or is not empty
    (unless ``overwrite``); return what ``--overwrite`` is to remove."""
    how = _overlap(out, corpus) if corpus is not None else None
    if how is not None:
        raise SystemExit(
            f"speechlab convert: -o {out} {how} the corpus being read ({corpus}): the output "
            "would mix with or replace the corpus's own files; name a folder outside it "
            "(--overwrite does not lift this)"
        )
    held = sorted(out.iterdir()) if out.is_dir() else []
    if held and not overwrite:
        names = ", ".join(p.name for p in held[:5]) + (", ..." if len(held) > 5 else "")
        raise SystemExit(
            f"speechlab convert: -o {out} is not empty (holds {names}): name a new folder, or "
            "pass --overwrite to replace its contents"
        )
    return held


def _audio_inside(out: Path, audio_paths: Iterable[str | None]) -> str | None:
    """The first audio file under ``out`` (as given or with links resolved), or ``None``."""
    import os

    prefixes = tuple({os.path.join(os.path.abspath(out), ""), os.path.join(out.resolve(), "")})
    inside = (p for p in audio_paths if p and os.path.abspath(p).startswith(prefixes))
    return next(inside, None)


def convert(args: argparse.Namespace) -> int:
    """Write every split of the composed corpus in ``args.to``'s format into ``args.output``
    (see :mod:`speechlab.corpora.convert`); print one line per split, the skipped entries and
    the command that trains on the output.

    The corpus must be named (``data=<corpus>``). The output folder must be new or empty, or
    ``--overwrite`` given (its contents are removed after the corpus is read, before writing);
    a folder that is, holds or lies inside the corpus being read, or holds its audio files, is
    refused either way."""
    import shutil

    import hydra

    from speechlab.corpora.convert import writer
    from speechlab.data.reader import CorpusLayoutError

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise SystemExit(
            f"speechlab convert: -o {out} is a file; the {args.to} files go into a folder: name "
            "a new or existing folder"
        )
    _require_corpus(args.overrides, args.config_dir)
    data_cfg = _compose_data(args.overrides, args.config_dir, command="convert")
    datamodule = hydra.utils.instantiate(data_cfg, target_field="label")
    corpus = getattr(datamodule.reader, "root", None)
    held = _check_output(out, Path(corpus) if corpus is not None else None, args.overwrite)
    try:
        datamodule.prepare_data()  # the corpus reader and its cached manifest
    except CorpusLayoutError as error:
        raise SystemExit(f"speechlab convert: {error}") from None
    manifest = datamodule.manifest
    if held:
        for split, table in manifest.splits.items():
            inside = _audio_inside(out, table.column("audio_path"))
            if inside is not None:
                raise SystemExit(
                    f"speechlab convert: -o {out} holds audio of the corpus being read ({inside}, "
                    f"{split} split): --overwrite would delete it; name a folder outside the "
                    "corpus's audio"
                )
        for path in held:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    try:
        writer(args.to)(manifest.splits, out)
    except (OSError, ValueError) as error:
        raise SystemExit(f"speechlab convert: writing {args.to} files to {out}: {error}") from None
    for split, table in manifest.splits.items():
        hours = float(table.durations.sum()) / 3600
        print(f"{out}\t{split}: {len(table)} utterances, {hours:.3f} h")
    for path, reason in sorted(manifest.skipped.items()):
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if manifest.skipped:
        print(
            f"{len(manifest.skipped)} corpus entries skipped while reading (above); the "
            "others were written",
            file=sys.stderr,
        )
    print(f"train on it: python train.py data={args.to} data.reader.root={out}", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="speechlab", description=__doc__.split("\n")[0])
    commands = main.add_subparsers(dest="command", required=True)

    t = commands.add_parser("transcribe", help="transcribe audio files with a checkpoint")
    t.add_argument("checkpoint", help="a .ckpt written by train.py (model=ctc_*, las, rnnt)")
    t.add_argument("audio", nargs="+", help="audio files: WAV/FLAC/OGG/MP3, any rate, any channels")
    t.add_argument("--decoding", choices=("greedy", "beam"), help="override the checkpoint's")
    t.add_argument("--beam-size", type=int)
    t.add_argument("--lm", help="ARPA/KenLM n-gram file (implies --decoding beam)")
    t.add_argument("--lexicon", help="lexicon file for beam search")
    t.add_argument("--lm-weight", type=float)
    t.add_argument("--device", default="cpu")
    t.set_defaults(run=transcribe)

    r = commands.add_parser("translate", help="translate speech files with an ST checkpoint")
    r.add_argument("checkpoint", help="a .ckpt written by train.py (model=st_las)")
    r.add_argument("audio", nargs="+", help="audio files: WAV/FLAC/OGG/MP3, any rate, any channels")
    r.add_argument("--decoding", choices=("greedy", "beam"), help="override the checkpoint's")
    r.add_argument("--beam-size", type=int)
    r.add_argument("--device", default="cpu")
    r.set_defaults(run=translate)
    s = commands.add_parser("synthesize", help="speak a text with a synthesis checkpoint")
    s.add_argument("checkpoint", help="a .ckpt written by train.py (model=tacotron2)")
    s.add_argument("text", help="the text to speak; long texts are split into sentences")
    s.add_argument("-o", "--output", required=True, help="WAV file to write (16-bit PCM)")
    s.add_argument(
        "--vocoder-iters", type=int, help="Griffin-Lim iterations (default: the model's)"
    )
    s.add_argument(
        "--vocoder",
        help="a HiFi-GAN checkpoint (model=hifigan) to speak through instead of the model's "
        "vocoder (default: the one it was trained with, Griffin-Lim unless configured)",
    )
    s.add_argument("--pause", type=float, default=0.25, help="seconds of silence between sentences")
    s.add_argument("--device", default="cpu")
    s.set_defaults(run=synthesize)

    b = commands.add_parser("build-lm", help="build a word n-gram LM from transcripts")
    b.add_argument(
        "transcripts",
        nargs="?",
        help="text file (a sentence per line), manifest .jsonl or corpus .tsv; default: the "
        "train split of --ckpt's corpus",
    )
    b.add_argument("--ckpt", help="a recognizer checkpoint: its tokenizer and train transcripts")
    b.add_argument("-o", "--output", required=True, help="ARPA file to write")
    b.add_argument("--order", type=int, default=3)
    b.add_argument(
        "--unit",
        choices=("word", "token"),
        default="word",
        help="word LM (decode with --lexicon) or token LM (lexicon-free decoding)",
    )
    b.add_argument("--column", help="field of .jsonl (text) / column of .tsv (sentence)")
    b.add_argument("--lexicon", help="also write a lexicon of the transcripts' words here")
    b.set_defaults(run=build_lm)

    a = commands.add_parser("average", help="average the weights of checkpoints of one model")
    a.add_argument("checkpoints", nargs="+", help="e.g. a run's top-k: checkpoints/epoch_*.ckpt")
    a.add_argument("-o", "--output", required=True, help="the averaged .ckpt to write")
    a.set_defaults(run=average)

    h = commands.add_parser(
        "shard", help="write a corpus's splits as tar shards (WebDataset layout) to stream"
    )
    h.add_argument(
        "overrides",
        nargs="*",
        help="config overrides as for train.py: data=<corpus> data.reader.root=... (Hydra)",
    )
    h.add_argument("-o", "--output", required=True, help="folder: <output>/<split>/shard-*.tar")
    h.add_argument(
        "--shard-seconds",
        type=float,
        help="close a shard at this much audio (s); with neither this nor --shard-size, shards "
        f"close at {DEFAULT_SHARD_SIZE}",
    )
    h.add_argument(
        "--shard-size",
        help="close a shard at this size: bytes, or 64MB, 1GB (default: "
        f"{DEFAULT_SHARD_SIZE}, the shard size of WebDataset's and the Hugging Face Hub's "
        "guides, when --shard-seconds is not given either)",
    )
    h.add_argument("--splits", nargs="+", choices=("train", "validation", "test"))
    h.add_argument("--seed", type=int, default=0, help="seed of the utterance order in shards")
    h.add_argument("--config-dir", help="the conf/ folder (default: ./conf, then the checkout's)")
    h.set_defaults(run=shard)

    c = commands.add_parser(
        "convert", help="write a corpus's splits as manifest, Kaldi, Lhotse or Hugging Face files"
    )
    c.add_argument(
        "overrides",
        nargs="*",
        help="config overrides as for train.py: data=<corpus> data.reader.root=... (Hydra)",
    )
    c.add_argument(
        "--to",
        required=True,
        choices=("manifest", "kaldi", "lhotse", "hf"),
        help="manifest: <split>.jsonl (NeMo keys); kaldi: <split>/wav.scp, text, utt2spk, ...; "
        "lhotse: cuts_<split>.jsonl.gz; hf: a datasets save_to_disk folder (audio embedded)",
    )
    c.add_argument("-o", "--output", required=True, help="the folder to write: new or empty")
    c.add_argument(
        "--overwrite",
        action="store_true",
        help="empty a non-empty -o folder first (never the corpus being read, nor a folder "
        "holding it or its audio)",
    )
    c.add_argument("--config-dir", help="the conf/ folder (default: ./conf, then the checkout's)")
    c.set_defaults(run=convert)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
