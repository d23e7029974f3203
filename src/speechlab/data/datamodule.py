"""One LightningDataModule for every corpus and task."""

from __future__ import annotations

import fcntl
import functools
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from speechlab.data.audio_cache import AUDIO_CACHE_KINDS, DecodedAudioCache
from speechlab.data.collate import collate_examples
from speechlab.data.dataset import SpeechDataset
from speechlab.data.loader import ResumableDataLoader, StreamingDataLoader
from speechlab.data.manifest import SKIPPED_FILE, Manifest, load_or_build_manifest
from speechlab.data.reader import SPLITS, CorpusReader
from speechlab.data.sampler import DurationBucketSampler
from speechlab.data.shard_index import ShardIndex, load_shard_index
from speechlab.data.shard_stream import ShardStreamDataset
from speechlab.data.targets import ClassLabels, TokenTargets
from speechlab.data.utterance_table import UtteranceTable
from speechlab.text.tokenizers import cached_tokenizer, check_tokenizer_spec, save_tokenizer

log = logging.getLogger(__name__)

TARGET_FIELDS = ("label", "text", "translation")
SKIPPED_SHOWN = 20  # skipped corpus entries logged one by one; the rest are counted
FEW_VALIDATION = 100  # fewer validation utterances select checkpoints noisily: a warning
AUTO = "auto"  # data.batch_seconds sized to the corpus (see SpeechDataModule)

# (num_samples, target) -> a reason to drop the training example, or None (see SpeechTask.check).
ExampleCheck = Callable[[int, torch.Tensor], "str | None"]


class SpeechDataModule(L.LightningDataModule):
    """Reader -> cached manifest -> filtered records -> datasets -> duration-bucketed loaders.

    Args:
        reader: a corpus reader (one on-disk layout).
        target_field: the :class:`Utterance` field the task learns (set by the task class).
        sample_rate: rate every clip is resampled to.
        batch_seconds: padded seconds of audio per batch (``max duration x batch size``), or
            ``"auto"``: the train split's seconds (per process) divided by
            ``updates_per_epoch``, at most ``max_batch_seconds`` and at least its longest
            utterance, so a small corpus still gets that many updates an epoch and a large one
            batches of ``max_batch_seconds``.
        max_batch_seconds: with ``batch_seconds="auto"``: the largest batch (memory).
        updates_per_epoch: with ``batch_seconds="auto"``: the batches per epoch aimed at.
        max_duration: clips longer than this (seconds) are dropped and counted; ``None`` keeps all.
        num_buckets: duration buckets of the training sampler.
        max_batch_size: optional cap on utterances per batch.
        num_workers: dataloader worker processes.
        audio_cache: keep decoded, resampled audio for the next epoch: ``None`` (decode every
            epoch), ``memory`` (per process) or ``disk`` (``.npy`` files in the manifest's
            folder, shared by workers and runs, invalidated with the manifest).
        cache_dir: where manifests are cached.
        prepare: optional callable run once before reading (e.g. generate the embedded corpus).
        labels: the class labels in model order; ``None`` takes them from the reader (or the
            sorted labels of the train split). A restored checkpoint passes its own.
        tokenizer: for text targets: the tokenizer to train on the train split
            (``{kind: char}``, ``{kind: bpe|unigram, vocab_size: N}``), or a saved one
            (a checkpoint passes its own).
        seed: sampler seed (the order also depends on the epoch).
        source_field: a second text field the task learns from (speech translation: ``text``,
            the source transcript, for an auxiliary CTC loss); records without it are dropped
            and counted. ``None``: none.
        source_tokenizer: the tokenizer of ``source_field`` (spec or saved), like
            ``tokenizer``; default ``{kind: char}``.
        source_lang, target_lang: the language pair of a translation corpus (its reader takes
            them by interpolation); informational here.
        speaker: the one voice of a multi-speaker corpus to keep (``data.speaker=<client_id>``
            for synthesis; its reader takes it by interpolation); informational here.
        shards: stream the train split from the tar shards ``speechlab shard`` wrote there (a
            folder, an http(s) URL of it, or a brace pattern of shard URLs; see
            :func:`~speechlab.data.shard_index.load_shard_index`) instead of reading the
            manifest's files; ``None``: map-style. Validation and test stay map-style, and the
            tokenizer or label set still comes from the corpus's manifest.
        shard_buffer: utterances sorted together to form duration buckets on the stream.
        shard_max_dropped: the share (0-1) of an epoch's streamed utterances that giving every
            DDP rank the same batch count may leave out; planning an epoch that would leave out
            more is an error (see :mod:`.shard_stream`). ``None``: no limit.
    """

    def __init__(
        self,
        reader: CorpusReader,
        cache_dir: str | Path,
        target_field: str = "label",
        sample_rate: int = 16000,
        batch_seconds: float | str = 64.0,
        max_duration: float | None = None,
        num_buckets: int = 50,
        max_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        audio_cache: str | None = None,
        prepare: Callable[[], object] | None = None,
        labels: list[str] | None = None,
        tokenizer: Mapping[str, Any] | None = None,
        seed: int = 0,
        source_field: str | None = None,
        source_tokenizer: Mapping[str, Any] | None = None,
        source_lang: str | None = None,
        target_lang: str | None = None,
        speaker: str | None = None,
        shards: str | None = None,
        shard_buffer: int | None = None,
        shard_max_dropped: float | None = None,
        max_batch_seconds: float | None = None,
        updates_per_epoch: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("target_field", target_field), ("source_field", source_field)):
            if value is not None and value not in TARGET_FIELDS:
                raise ValueError(f"{name} must be one of {TARGET_FIELDS}, got {value!r}")
        checks = (
            ("sample_rate", sample_rate, sample_rate > 0, "a positive rate in Hz"),
            (
                "batch_seconds",
                batch_seconds,
                batch_seconds == AUTO or (not isinstance(batch_seconds, str) and batch_seconds > 0),
                f"positive seconds of audio, or {AUTO}",
            ),
            (
                "max_batch_seconds",
                max_batch_seconds,
                batch_seconds != AUTO or (max_batch_seconds or 0) > 0,
                "positive seconds of audio with data.batch_seconds=auto",
            ),
            (
                "updates_per_epoch",
                updates_per_epoch,
                batch_seconds != AUTO or (updates_per_epoch or 0) >= 1,
                "a whole number >= 1 with data.batch_seconds=auto",
            ),
            ("max_duration", max_duration, max_duration is None or max_duration > 0, "null or > 0"),
            ("num_buckets", num_buckets, num_buckets >= 1, ">= 1"),
            ("num_workers", num_workers, num_workers >= 0, ">= 0"),
            (
                "audio_cache",
                audio_cache,
                audio_cache is None or audio_cache in AUDIO_CACHE_KINDS,
                "null, memory or disk",
            ),
            (
                "shard_buffer",
                shard_buffer,
                shards is None or (isinstance(shard_buffer, int) and shard_buffer >= 1),
                "a whole number >= 1 with data.shards",
            ),
            (
                "shard_max_dropped",
                shard_max_dropped,
                shard_max_dropped is None
                or (
                    isinstance(shard_max_dropped, (int, float))
                    and not isinstance(shard_max_dropped, bool)
                    and 0 <= shard_max_dropped <= 1
                ),
                "null (no limit) or a share in [0, 1]",
            ),
            (
                "max_batch_size",
                max_batch_size,
                max_batch_size is None or max_batch_size >= 1,
                "null or >= 1",
            ),
        )
        for name, value, ok, expected in checks:
            if not ok:
                raise ValueError(f"data.{name} must be {expected}, got {value!r}")
        self.reader = reader
        self.cache_dir = Path(cache_dir)
        self.target_field = target_field
        self.sample_rate = sample_rate
        self.batch_seconds = batch_seconds
        self.max_batch_seconds = max_batch_seconds
        self.updates_per_epoch = updates_per_epoch
        self.batch_seconds_used: float | None = None  # set when the train loader is built
        self.max_duration = max_duration
        self.num_buckets = num_buckets
        self.max_batch_size = max_batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.audio_cache = audio_cache
        self.prepare = prepare
        self.fixed_labels = list(labels) if labels is not None else None
        self.tokenizer_spec = dict(tokenizer) if tokenizer is not None else {"kind": "char"}
        self.seed = seed
        self.source_field = source_field
        self.source_tokenizer_spec = dict(source_tokenizer or {"kind": "char"})
        check_tokenizer_spec(self.tokenizer_spec)  # before any corpus is read
        check_tokenizer_spec(self.source_tokenizer_spec, "data.source_tokenizer")
        self.source_lang, self.target_lang = source_lang, target_lang
        self.speaker = speaker
        self.shards = shards or None  # `data.shards=` (empty) is off, as null
        self.shard_index: ShardIndex | None = None
        self.shard_buffer = shard_buffer
        self.shard_max_dropped = shard_max_dropped
        self.checks: list[ExampleCheck] = []  # admissibility tests the train stream applies
        self.source: TokenTargets | None = None
        self.manifest: Manifest | None = None
        self.target: ClassLabels | TokenTargets | None = None
        self.datasets: dict[str, SpeechDataset] = {}
        self.dropped: dict[str, Counter] = {}

    # -- preparation -------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Generate (embedded corpora) or check the corpus, and build its manifest cache."""
        if self.manifest is not None:
            return  # Lightning calls this again in fit and test; the corpus was checked already
        if self.prepare is not None:
            self.prepare()
        self.manifest = load_or_build_manifest(self.reader, self.cache_dir)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if self.manifest is None:
            self.manifest = load_or_build_manifest(self.reader, self.cache_dir)
        if self.shards is not None:  # a wrong location fails now, before any model is built
            self.shard_index = load_shard_index(self.shards, "train")
        self._report_skipped()  # before anything that may fail for want of what was skipped
        self.target = self._build_target(self.manifest)
        if self.source_field is not None:
            self.source = self._tokens(self.manifest, self.source_field, self.source_tokenizer_spec)
        cache = DecodedAudioCache.for_manifest(
            self.audio_cache, self.sample_rate, self.manifest.directory
        )
        for split in SPLITS:
            kept = self._filter(split, self.manifest.splits[split])
            self.datasets[split] = SpeechDataset(
                kept, self.sample_rate, self.target, self.source, cache=cache
            )
        self._report()

    def _build_target(self, manifest: Manifest) -> ClassLabels | TokenTargets:
        if self.target_field == "label":
            return ClassLabels(self._labels(manifest))
        return self._tokens(manifest, self.target_field, self.tokenizer_spec)

    def _tokens(self, manifest: Manifest, field: str, spec: Mapping[str, Any]) -> TokenTargets:
        """Token targets of ``field`` with the tokenizer ``spec`` (trained on train's texts)."""
        texts = [text for text in manifest.splits["train"].column(field) if text]
        if not texts:
            corpora = (
                "covost2, mini_covost"
                if field == "translation"
                else "common_voice, mini_voice, fsdd, speech_commands ..."
            )
            raise ValueError(
                f"the train split of {self.reader.name} at {self.reader.root} has no "
                f"{field} to train a tokenizer on{self._what_was_read(manifest)}; this task "
                f"needs a corpus with {field} ({corpora}, or your own: data=manifest, kaldi, "
                "lhotse, hf)"
            )
        return TokenTargets(cached_tokenizer(spec, texts, manifest.directory), field)

    def _labels(self, manifest: Manifest) -> list[str]:
        if self.fixed_labels is not None:
            return self.fixed_labels
        labels = getattr(self.reader, "labels", None)
        if callable(labels):
            return list(labels())
        found = sorted(set(manifest.splits["train"].column("label")) - {None})
        if not found:
            raise ValueError(
                f"the train split of {self.reader.name} at {self.reader.root} has no labels"
                f"{self._what_was_read(manifest)}; this task learns a label per utterance: "
                "use a corpus with labels (speech_commands, mini_commands, fsdd, or your own "
                "with a label column, utt2label file or label field)"
            )
        return found

    def _what_was_read(self, manifest: Manifest) -> str:
        """`` (N utterances read; M entries skipped, see the warnings above)`` for messages."""
        read = len(manifest.splits["train"])
        skipped = len(manifest.skipped)
        where = f" and {manifest.directory / 'skipped.tsv'}" if manifest.directory else ""
        return f" ({read} utterances read" + (
            f"; {skipped} corpus entries skipped, see the warnings above{where})"
            if skipped
            else ")"
        )

    def check_not_empty(self, *splits: str) -> None:
        """Raise a ``ValueError`` for the first of ``splits`` that kept no utterance, saying
        what was dropped or skipped: a run calls this for the splits it will use before it
        builds a model, not after training. A train split streamed from shards is not checked."""
        if not self.datasets:
            self.setup()
        for split in splits:
            if not (split == "train" and self.shards is not None):
                self._check_not_empty(split)

    def _check_not_empty(self, split: str) -> None:
        """Raise when ``split`` kept no utterance, saying what was dropped or skipped."""
        if len(self.datasets[split]):
            return
        assert self.manifest is not None
        read = len(self.manifest.splits[split])
        dropped = ", ".join(f"{n} {why}" for why, n in self.dropped.get(split, {}).items())
        holdout = getattr(self.reader, "holdout", None)
        hint = (
            f"; a split the corpus lacks is held out of train (data.reader.holdout={holdout})"
            if holdout is not None and split != "train"
            else ""
        )
        skipped = len(self.manifest.skipped)
        raise ValueError(
            f"the {split} split of {self.reader.name} at {self.reader.root} has no usable "
            f"utterances ({read} read"
            + (f", all dropped: {dropped}" if dropped else "")
            + (
                f"; {skipped} corpus entries skipped while reading, see the warnings above"
                if skipped
                else ""
            )
            + f"){hint}; check the corpus layout and the data.* settings"
        )

    def _filter(self, split: str, utterances: UtteranceTable) -> UtteranceTable:
        """The utterances of ``split`` the task can learn from, as a selection of the table
        (one column read at a time, no record built); each dropped one counted by reason."""
        dropped: Counter = Counter()
        checks = [self.target] + ([self.source] if self.source is not None else [])
        problems: list[str | None] = [None] * len(utterances)
        for check in checks:
            values = utterances.column(check.field)
            problems = [
                problem if problem is not None else check.problem_of(value)
                for problem, value in zip(problems, values, strict=True)
            ]
        if self.max_duration is not None:
            too_long = f"longer than max_duration={self.max_duration}s"
            for row in np.flatnonzero(utterances.durations > self.max_duration).tolist():
                problems[row] = problems[row] or too_long
        keep = np.fromiter((problem is None for problem in problems), bool, len(problems))
        dropped.update(problem for problem in problems if problem is not None)
        self.dropped[split] = dropped
        return utterances.mask(keep)

    def drop_inadmissible(self, check: ExampleCheck, split: str = "train") -> int:
        """Drop the ``split`` examples ``check(num_samples, target)`` rejects, counting each
        reason (e.g. CTC: fewer encoder frames than the label needs). Returns how many."""
        if not self.datasets:
            self.setup()
        dataset = self.datasets[split]
        table = dataset.utterances
        seconds = table.durations.tolist()
        values = table.column(self.target.field)
        problems = [
            check(round(duration * self.sample_rate), self.target.tensor_of(value))
            for duration, value in zip(seconds, values, strict=True)
        ]
        if split == "train":
            self.checks.append(check)  # a streamed train split skips what it rejects
        dropped: Counter = Counter(problem for problem in problems if problem is not None)
        dataset.utterances = table.mask(np.array([problem is None for problem in problems], bool))
        self.dropped.setdefault(split, Counter()).update(dropped)
        total = sum(dropped.values())
        if total and (self.trainer is None or self.trainer.global_rank == 0):
            reasons = ", ".join(f"{n} {why}" for why, n in dropped.items())
            log.warning("%s: dropped %d utterance(s) before training: %s", split, total, reasons)
        return total

    def save_target(self, directory: Path) -> Path | None:
        """Write the tokenizer (``tokenizer.json``) into ``directory``, for text targets, and
        the source tokenizer (``source_tokenizer.json``) when there is a source field."""
        if self.source is not None:
            save_tokenizer(self.source.tokenizer, Path(directory) / "source_tokenizer.json")
        if isinstance(self.target, TokenTargets):
            return save_tokenizer(self.target.tokenizer, Path(directory) / "tokenizer.json")
        return None

    def _report_skipped(self) -> None:
        """Log the corpus entries the reader skipped (audio files and metadata rows alike:
        missing clips, malformed rows, empty transcripts), in file and line order; past
        :data:`SKIPPED_SHOWN` of them, the count and the file that lists them all."""
        if self.trainer is not None and self.trainer.global_rank != 0:
            return
        assert self.manifest is not None
        skipped = sorted(self.manifest.skipped.items(), key=lambda item: _natural(item[0]))
        for path, reason in skipped[:SKIPPED_SHOWN]:
            log.warning("skipped %s: %s", path, reason)
        if len(skipped) > SKIPPED_SHOWN:
            listed = self.manifest.directory / SKIPPED_FILE if self.manifest.directory else None
            log.warning(
                "... and %d more skipped entries%s",
                len(skipped) - SKIPPED_SHOWN,
                f", all listed in {listed}" if listed else "",
            )
        if skipped:
            log.warning(
                "%d corpus entries skipped while reading %s, each with its reason",
                len(skipped),
                self.reader.root,
            )

    def _report(self) -> None:
        if self.trainer is not None and self.trainer.global_rank != 0:
            return
        for split in ("validation", "test"):
            lost = sum(self.dropped[split].values())
            if lost:
                log.warning(
                    "%s: %d of %d utterances dropped (%s); its metrics cover the other %d",
                    split,
                    lost,
                    lost + len(self.datasets[split]),
                    ", ".join(f"{n} {why}" for why, n in self.dropped[split].items()),
                    len(self.datasets[split]),
                )
        if 0 < len(self.datasets["validation"]) < FEW_VALIDATION:
            log.warning(
                "validation: only %d utterances: checkpoint selection and early stopping on so "
                "few are noisy (about %d or more rank checkpoints reliably); give a larger "
                "validation split (data.reader.holdout for a held-out one)",
                len(self.datasets["validation"]),
                FEW_VALIDATION,
            )
        for split in SPLITS:
            too_long = sum(n for why, n in self.dropped[split].items() if "max_duration" in why)
            read = len(self.datasets[split]) + sum(self.dropped[split].values())
            if read and too_long > read / 2:
                log.warning(
                    "%s: %d of its %d utterances are longer than data.max_duration=%s s and "
                    "dropped; raise data.max_duration (padded batches grow with it)",
                    split,
                    too_long,
                    read,
                    self.max_duration,
                )
        for split in SPLITS:
            counts = ", ".join(f"{n} {why}" for why, n in self.dropped[split].items())
            log.info(
                "%s: %d utterances (%.1f h)%s",
                split,
                len(self.datasets[split]),
                float(self.datasets[split].durations.sum()) / 3600,
                f"; dropped {counts}" if counts else "",
            )

    # -- what the model needs to know ----------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        if self.target is None:
            self.setup()
        if not isinstance(self.target, ClassLabels):
            raise AttributeError(f"a {self.target_field} target has no class labels")
        return self.target.labels

    def task_inputs(self) -> dict[str, object]:
        """What the task's constructor needs from the data (plain data, stored in checkpoints):
        ``labels`` for classification, ``tokenizer`` (its saved state) for text targets, and
        ``source_tokenizer`` with a source field."""
        if not self.datasets:
            self.setup()
        if isinstance(self.target, TokenTargets):
            inputs: dict[str, object] = {"tokenizer": self.target.tokenizer.state()}
            if self.source is not None:
                inputs["source_tokenizer"] = self.source.tokenizer.state()
            return inputs
        return {"labels": list(self.labels)}

    def built_options(self) -> dict[str, dict[str, Any]]:
        """The data options as built where they differ from those asked for: a SentencePiece
        tokenizer whose training texts allowed fewer pieces than ``vocab_size`` is recorded
        (config, hyperparameters, loggers) with the pieces it has, e.g.
        ``{"tokenizer": {"kind": "unigram", "vocab_size": 93}}``."""
        if not self.datasets:
            self.setup()
        built: dict[str, dict[str, Any]] = {}
        for key, spec, targets in (
            ("tokenizer", self.tokenizer_spec, self.target),
            ("source_tokenizer", self.source_tokenizer_spec, self.source),
        ):
            pieces = getattr(getattr(targets, "tokenizer", None), "pieces", None)
            if pieces is not None and spec.get("vocab_size") not in (None, pieces):
                built[key] = {**spec, "vocab_size": pieces}
        return built

    # -- loaders ---------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if not self.datasets:
            self.setup()
        if split == "train" and self.shards is not None:
            return self._stream_loader()
        self._check_not_empty(split)
        dataset = self.datasets[split]
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = DurationBucketSampler(
            dataset.durations,
            batch_seconds=self.batch_seconds_for(world),
            num_buckets=self.num_buckets,
            shuffle=shuffle,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            max_batch_size=self.max_batch_size,
        )
        options = dict(
            batch_sampler=sampler,
            collate_fn=collate_examples,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )
        if split == "train":
            return ResumableDataLoader(dataset, batches_done=self._train_batches_done, **options)
        return DataLoader(dataset, **options)

    def _stream_loader(self) -> StreamingDataLoader:
        """The train loader over the shards at ``self.shards`` (see :mod:`.shard_stream`)."""
        world, rank = 1, 0
        if self.trainer is not None:
            world, rank = self.trainer.world_size, self.trainer.global_rank
        dataset = ShardStreamDataset(
            self.shard_index or load_shard_index(self.shards, "train"),
            self.sample_rate,
            self.target,
            batch_seconds=self.batch_seconds_for(world),
            buffer_size=self.shard_buffer,
            source=self.source,
            max_batch_size=self.max_batch_size,
            max_duration=self.max_duration,
            seed=self.seed,
            rank=rank,
            world_size=world,
            num_workers=self.num_workers,
            check=functools.partial(_first_problem, tuple(self.checks)) if self.checks else None,
            max_dropped=self.shard_max_dropped,
        )
        return StreamingDataLoader(
            dataset,
            epoch=self._current_epoch,
            batches_done=self._train_batches_done,
            collate_fn=collate_examples,
            pin_memory=self.pin_memory,
        )

    def batch_seconds_for(self, world_size: int = 1) -> float:
        """Padded seconds of audio per batch: ``batch_seconds``, or with ``"auto"`` the train
        split's seconds per process over ``updates_per_epoch``, between its longest utterance
        and ``max_batch_seconds`` (logged once with how it was reached)."""
        if self.batch_seconds != AUTO:
            self.batch_seconds_used = float(self.batch_seconds)
            return self.batch_seconds_used
        if not self.datasets:
            self.setup()
        durations = self.datasets["train"].durations
        seconds = float(durations.sum()) / max(1, world_size)
        longest = float(durations.max()) if len(durations) else 1.0
        chosen = max(longest, min(float(self.max_batch_seconds), seconds / self.updates_per_epoch))
        if chosen != self.batch_seconds_used:
            log.info(
                "data.batch_seconds=auto: %.1f s per batch (%.2f h of train audio per process / "
                "data.updates_per_epoch=%d, at most data.max_batch_seconds=%s, at least the "
                "longest utterance, %.1f s)",
                chosen,
                seconds / 3600,
                self.updates_per_epoch,
                self.max_batch_seconds,
                longest,
            )
        self.batch_seconds_used = chosen
        return chosen

    def _current_epoch(self) -> int:
        return 0 if self.trainer is None else self.trainer.current_epoch

    def _train_batches_done(self) -> int:
        """Training batches of the current epoch finished so far (0 outside a fit)."""
        if self.trainer is None:
            return 0
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def _natural(where: str) -> tuple[str, int, str]:
    """Sort key of a skipped entry: ``file:12`` before ``file:100``."""
    head, _, tail = where.rpartition(":")
    return (head, int(tail), "") if head and tail.isdigit() else (where, 0, "")


def _first_problem(
    checks: tuple[ExampleCheck, ...], num_samples: int, target: torch.Tensor
) -> str | None:
    """The first reason one of ``checks`` gives to drop an example, or ``None``."""
    return next((r for check in checks if (r := check(num_samples, target)) is not None), None)


def build_datamodule(
    data_cfg: DictConfig | Mapping[str, Any],
    target_field: str,
    source_field: str | None = None,
    lock_dir: str | Path | None = None,
) -> SpeechDataModule:
    """The datamodule for ``data_cfg`` (a ``data`` config node), set up for the task's
    ``target_field`` (and ``source_field``, a second text the task learns from, if any).

    With ``lock_dir``, data preparation (download, generation, manifest, tokenizer) runs under a
    file lock there, so processes started together (DDP ranks, parallel sweep jobs) prepare the
    corpus once: the first does the work, the others then find it ready.
    """
    extra = {"source_field": source_field} if source_field else {}
    datamodule = hydra.utils.instantiate(data_cfg, target_field=target_field, **extra)
    if lock_dir is None:
        datamodule.prepare_data()
    else:
        Path(lock_dir).mkdir(parents=True, exist_ok=True)
        with (Path(lock_dir) / ".prepare.lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                datamodule.prepare_data()
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    datamodule.setup()
    return datamodule
