"""Which source holds each split of a user's corpus, and the splits held out when one is missing.

A corpus in a general format comes as one source per split (a manifest file, a data dir, a cut
manifest, a dataset split). A split not given and not found under one of its usual names
(:data:`SPLIT_NAMES`) is held out of the train source: a ``holdout`` share of train's speakers (of
its recordings when no speaker is known), at least one, taken in the order of a stable hash, so
the held-out split shares no speaker with train and is the same on every machine and run. A
train source with too few speakers for that holds utterances out instead, and says so.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from speechlab.data.reader import SPLITS, CorpusLayoutError
from speechlab.data.utterance import Utterance
from speechlab.data.utterance_table import UtteranceTable

log = logging.getLogger(__name__)

#: The names a split's source goes by in the field's recipes, tried in order.
SPLIT_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("validation", "dev", "valid", "val"),
    "test": ("test", "eval"),
}


def holdout_bucket(key: str) -> float:
    """A number in ``[0, 1)`` fixed by ``key`` (CRC-32), the same on every machine and run."""
    return (zlib.crc32(key.encode("utf-8")) % 10_000) / 10_000


class SplitSources:
    """The source of each split, found once per scan.

    Args:
        given: ``split -> name`` as configured (``data.reader.train=...``); ``None`` looks for
            the split's usual names (:data:`SPLIT_NAMES`).
        find: ``name -> source`` (a path, or the name itself for a dataset split), or ``None``
            when nothing of that name exists.
        holdout: the share (0-0.5) of train's speakers held out for each missing split.
        where: the corpus, as messages name it.
        expected: what one split's source looks like, for messages, without an article
            ("manifest file (.jsonl, ...)": messages say "a ...", "no such ...", "<its ...>").

    Raises:
        CorpusLayoutError: a configured source does not exist, no train source is found, or a
            split is missing and ``holdout`` is 0.
    """

    def __init__(
        self,
        given: Mapping[str, str | None],
        find: Callable[[str], object | None],
        holdout: float,
        where: str,
        expected: str,
    ) -> None:
        if not 0 <= holdout < 0.5:
            raise ValueError(f"data.reader.holdout must be in [0, 0.5), got {holdout!r}")
        self.holdout = float(holdout)
        self.sources: dict[str, object | None] = {}
        for split in SPLITS:
            name = given.get(split)
            if name not in (None, ""):
                source = find(str(name))
                if source is None:
                    raise CorpusLayoutError(
                        f"data.reader.{split}={name!r}: no such {expected} in {where}. Expected a "
                        f"{expected}; pass an existing one, or null to look for "
                        f"{'/'.join(SPLIT_NAMES[split])}"
                    )
            else:
                source = next((s for s in map(find, SPLIT_NAMES[split]) if s is not None), None)
            self.sources[split] = source
        if self.sources["train"] is None:
            raise CorpusLayoutError(
                f"no train split in {where}: expected a {expected} named "
                f"{'/'.join(SPLIT_NAMES['train'])}, or data.reader.train=<its name>"
            )
        self.held_out = [split for split in SPLITS if self.sources[split] is None]
        self._pending = {"train", *self.held_out}  # the splits the train source serves
        self._train: tuple[UtteranceTable, np.ndarray] | None = None
        if self.held_out and not self.holdout:
            raise CorpusLayoutError(
                f"no {' or '.join(self.held_out)} split in {where} and data.reader.holdout=0: "
                f"give data.reader.{self.held_out[0]}=<its {expected}>, or a holdout share "
                "(e.g. 0.05) of train's speakers"
            )

    def scan(
        self, split: str, read: Callable[[object, str], Iterator[Utterance]]
    ) -> Iterator[Utterance]:
        """The utterances of ``split``: ``read(source, split)`` of its own source, or its share
        of the train source when it has none (the train split then loses that share). The train
        source is then read once, for every split it serves, and held as a columnar table until
        each of them has been scanned.

        Raises:
            ValueError: ``split`` is not one of :data:`~speechlab.data.reader.SPLITS`.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        source = self.sources[split]
        if source is not None and not (split == "train" and self.held_out):
            yield from read(source, split)
            return
        table, assigned = self._train_assignment(read)
        for row in np.flatnonzero(assigned == SPLITS.index(split)).tolist():
            yield table[row]
        self._pending.discard(split)
        if not self._pending:
            self._train = None  # every split it serves is built: free it

    def _train_assignment(
        self, read: Callable[[object, str], Iterator[Utterance]]
    ) -> tuple[UtteranceTable, np.ndarray]:
        """The train source's utterances and the split (index in ``SPLITS``) of each."""
        if self._train is None:
            table = UtteranceTable.from_utterances(read(self.sources["train"], "train"))
            self._train = (table, self._assign(table))
        return self._train

    def _assign(self, table: UtteranceTable) -> np.ndarray:
        """Each held-out split gets ``holdout`` of the train source's groups (speakers, else
        recordings), at least one; the groups are taken in the order of their hash, so the
        choice is the same on every run. With too few groups for that, utterances are held out
        one by one instead (the held-out splits then share speakers with train), with a warning.
        """
        speakers = table.column("speaker")
        keys = [
            speaker or path
            for speaker, path in zip(speakers, table.column("audio_path"), strict=True)
        ]
        what = "speakers" if all(speakers) else "speakers or recordings"
        splits = len(self.held_out)
        if len(set(keys)) < splits + 2:  # each held-out split one group, train at least two
            if len(keys) < splits + 1:
                log.warning(
                    "%s holds %d usable utterance(s): too few to hold a %s split out of; it "
                    "stays empty (give data.reader.%s=<its own source>, or more training data)",
                    self.sources["train"],
                    len(keys),
                    " and a ".join(self.held_out),
                    self.held_out[0],
                )
                return np.zeros(len(keys), np.int8)
            log.warning(
                "%s: only %d %s in train, too few to hold %s out by speaker: holding out "
                "utterances instead (the held-out splits share speakers with train)",
                self.sources["train"],
                len(set(keys)),
                what,
                " and ".join(self.held_out),
            )
            keys, what = table.column("id"), "utterances"
        groups = sorted(set(keys), key=lambda key: (holdout_bucket(key), key))
        share = max(1, round(self.holdout * len(groups)))
        chosen: dict[str, int] = {}
        for number, split in enumerate(self.held_out):
            for key in groups[number * share : (number + 1) * share]:
                chosen[key] = SPLITS.index(split)
        assigned = np.fromiter((chosen.get(key, 0) for key in keys), np.int8, len(keys))
        for split in self.held_out:
            count = int((assigned == SPLITS.index(split)).sum())
            log.info(
                "%s: no %s split; held out %d of train's %d %s (%d utterances)",
                self.sources["train"],
                split,
                share,
                len(groups),
                what,
                count,
            )
        return assigned

    def paths(self) -> list[Path]:
        """The sources that are files or folders (for the manifest fingerprint)."""
        return [s for s in self.sources.values() if isinstance(s, Path)]
