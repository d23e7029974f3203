"""Which source holds each split of a user's corpus, and the splits held out when one is missing.

A corpus in a general format comes as one source per split (a manifest file, a data dir, a cut
manifest, a dataset split). A split not given and not found under one of its usual names
(:data:`SPLIT_NAMES`) is held out of the train source: a stable hash of each utterance's speaker
(of its recording when no speaker is known, of its id as a last resort) puts a ``holdout`` share
of the speakers in it, so the held-out split shares no speaker with train. The same hash gives
the same split on every machine and run.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from speechlab.data.reader import SPLITS, CorpusLayoutError
from speechlab.data.utterance import Utterance

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


def holdout_key(utterance: Utterance) -> str:
    """What a held-out split keeps together: the speaker, else the recording, else the id."""
    return utterance.speaker or utterance.audio_path or utterance.id


class SplitSources:
    """The source of each split, found once per scan.

    Args:
        given: ``split -> name`` as configured (``data.reader.train=...``); ``None`` looks for
            the split's usual names (:data:`SPLIT_NAMES`).
        find: ``name -> source`` (a path, or the name itself for a dataset split), or ``None``
            when nothing of that name exists.
        holdout: the share (0-0.5) of train's speakers held out for each missing split.
        where: the corpus, as messages name it.
        expected: what one split's source looks like, for messages.

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
                        f"data.reader.{split}={name!r}: no such {expected} in {where}. Expected "
                        f"{expected}; pass an existing one, or null to look for "
                        f"{'/'.join(SPLIT_NAMES[split])}"
                    )
            else:
                source = next((s for s in map(find, SPLIT_NAMES[split]) if s is not None), None)
            self.sources[split] = source
        if self.sources["train"] is None:
            raise CorpusLayoutError(
                f"no train split in {where}: expected {expected} named "
                f"{'/'.join(SPLIT_NAMES['train'])}, or data.reader.train=<its name>"
            )
        self.held_out = [split for split in SPLITS if self.sources[split] is None]
        if self.held_out and not self.holdout:
            raise CorpusLayoutError(
                f"no {' or '.join(self.held_out)} split in {where} and data.reader.holdout=0: "
                f"give data.reader.{self.held_out[0]}=<its {expected}>, or a holdout share "
                "(e.g. 0.05) of train's speakers"
            )

    def shares(self) -> tuple[float, float]:
        """``(validation, test)`` shares held out of train."""
        validation = self.holdout if "validation" in self.held_out else 0.0
        test = self.holdout if "test" in self.held_out else 0.0
        return validation, test

    def split_of(self, utterance: Utterance) -> str:
        """The split an utterance of the train source belongs to."""
        validation, test = self.shares()
        bucket = holdout_bucket(holdout_key(utterance))
        if bucket < test:
            return "test"
        if bucket < test + validation:
            return "validation"
        return "train"

    def scan(
        self, split: str, read: Callable[[object, str], Iterator[Utterance]]
    ) -> Iterator[Utterance]:
        """The utterances of ``split``: ``read(source, split)`` of its own source, or its share
        of the train source when it has none (the train split then loses that share).

        Raises:
            ValueError: ``split`` is not one of :data:`~speechlab.data.reader.SPLITS`.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        source = self.sources[split]
        if source is not None and not (split == "train" and self.held_out):
            yield from read(source, split)
            return
        count = 0
        for utterance in read(self.sources["train"], split):
            if self.split_of(utterance) == split:
                count += 1
                yield utterance
        if split != "train":
            log.info(
                "%s: no %s split; held out %d utterances (%.0f%% of train's speakers)",
                self.sources["train"],
                split,
                count,
                100 * self.holdout,
            )

    def paths(self) -> list[Path]:
        """The sources that are files or folders (for the manifest fingerprint)."""
        return [s for s in self.sources.values() if isinstance(s, Path)]
