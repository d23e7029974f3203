"""LibriSpeech in its real layout: ``<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac``.

Each chapter folder holds one ``<speaker>-<chapter>.trans.txt`` with a line per utterance,
``<speaker>-<chapter>-<utt> TRANSCRIPT`` (the id, one space, the upper-case transcript). The
archives of openslr.org/12 unpack to ``LibriSpeech/<subset>/``; ``root`` may be that
``LibriSpeech/`` folder or the folder holding it.

LibriSpeech ships its split as subsets (``train-clean-100``, ``train-clean-360``,
``train-other-500``, ``dev-clean``, ``dev-other``, ``test-clean``, ``test-other``, or mini
LibriSpeech's ``train-clean-5`` / ``dev-clean-2``): each of ``train``, ``validation`` and
``test`` reads the subsets listed for it. The transcript goes through the text normalizer
(lower case by default). Durations (seconds) come from each FLAC's header, read once when the
manifest is built; the manifest cache keeps them.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from speechlab.audio import io as audio_io
from speechlab.audio.io import AudioError, AudioInfo
from speechlab.data.reader import SPLITS, CorpusLayoutError, ScanReport
from speechlab.data.utterance import Utterance
from speechlab.text.normalize import TextNormalizer

log = logging.getLogger(__name__)

CORPUS_FOLDER = "LibriSpeech"
TRANSCRIPT_SUFFIX = ".trans.txt"
AUDIO_SUFFIX = ".flac"
UTTERANCE_ID = re.compile(r"^(?P<speaker>\d+)-(?P<chapter>\d+)-(?P<utt>\d+)$")
EXPECTED_LAYOUT = (
    "<root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac with one "
    "<speaker>-<chapter>.trans.txt per chapter folder (lines '<speaker>-<chapter>-<utt> "
    "TRANSCRIPT'), where root is the LibriSpeech/ folder or the folder holding it"
)


def _subdirectories(path: Path) -> list[Path]:
    """The visible sub-folders of ``path``, sorted by name (empty when it is not a folder)."""
    try:
        with os.scandir(path) as entries:
            found = [Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(found, key=lambda p: p.name)


def _subset_list(split: str, subsets: str | Sequence[str]) -> tuple[str, ...]:
    names = (subsets,) if isinstance(subsets, str) else tuple(str(s) for s in subsets)
    if not names:
        raise ValueError(f"{split}_subsets is empty: expected one or more LibriSpeech subsets")
    for name in names:
        if not name or name in (".", "..") or "/" in name or os.sep in name:
            raise ValueError(
                f"{split}_subsets has {name!r}: expected the name of a subset folder "
                "(e.g. train-clean-100), not a path"
            )
    return names


class LibriSpeechReader:
    """Reads LibriSpeech subsets as the train, validation and test splits; see the module docstring.

    Args:
        root: the ``LibriSpeech/`` folder holding the subset folders, or the folder above it.
        train_subsets, validation_subsets, test_subsets: the subset folders read as each split
            (a list, or one name). A subset named in two splits puts the same utterances in
            both (logged as a warning; fine for a smoke test, a leak for a real evaluation).
        normalizer: a :class:`TextNormalizer` or its options; ``None`` uses its defaults (lower
            case, punctuation removed but intra-word apostrophes kept, NFKC).
        probe: reads a FLAC header (path -> :class:`~speechlab.audio.io.AudioInfo`, raising
            :class:`~speechlab.audio.io.AudioError` for an unusable file); the default is
            :func:`speechlab.audio.io.probe`.

    Raises:
        ValueError: a split has no subsets, or a subset name is a path.
    """

    name = "librispeech"

    def __init__(
        self,
        root: str | Path,
        train_subsets: str | Sequence[str] = ("train-clean-100",),
        validation_subsets: str | Sequence[str] = ("dev-clean",),
        test_subsets: str | Sequence[str] = ("test-clean",),
        normalizer: TextNormalizer | Mapping | None = None,
        probe: Callable[[Path], AudioInfo] = audio_io.probe,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.subsets = {
            "train": _subset_list("train", train_subsets),
            "validation": _subset_list("validation", validation_subsets),
            "test": _subset_list("test", test_subsets),
        }
        self.normalizer = TextNormalizer.coerce(normalizer)
        self.probe = probe
        for i, first in enumerate(SPLITS):
            for second in SPLITS[i + 1 :]:
                shared = sorted(set(self.subsets[first]) & set(self.subsets[second]))
                if shared:
                    log.warning(
                        "LibriSpeech subsets %s are read as both %s and %s: the two splits hold "
                        "the same utterances",
                        ", ".join(shared),
                        first,
                        second,
                    )

    @property
    def corpus_dir(self) -> Path:
        """The folder holding the subset folders: ``root``, or ``root/LibriSpeech`` when ``root``
        holds none of the configured subsets but has a ``LibriSpeech/`` folder."""
        wanted = {name for names in self.subsets.values() for name in names}
        if any((self.root / name).is_dir() for name in wanted):
            return self.root
        nested = self.root / CORPUS_FOLDER
        return nested if nested.is_dir() else self.root

    def check_layout(self) -> None:
        """Raise :class:`CorpusLayoutError` unless every configured subset is a folder of chapters.

        The message names the missing subset, the folder it was looked for in, and the subsets
        found there.
        """
        if not self.root.is_dir():
            raise self._layout_error(f"the LibriSpeech root {self.root} does not exist")
        corpus = self.corpus_dir
        for split in SPLITS:
            for subset in self.subsets[split]:
                folder = corpus / subset
                if not folder.is_dir():
                    raise self._layout_error(
                        f"the LibriSpeech subset {subset!r} ({split} split) is not in {corpus}; "
                        f"the subsets found there: {self._found(corpus)}{self._subset_hint(corpus)}"
                    )
                if next(folder.glob(f"*/*/*{TRANSCRIPT_SUFFIX}"), None) is None:
                    raise self._layout_error(
                        f"the LibriSpeech subset folder {folder} ({split} split) holds no "
                        f"<speaker>/<chapter>/*{TRANSCRIPT_SUFFIX}"
                    )

    def options(self) -> dict:
        """The options that change the output, as plain data."""
        return {
            "subsets": {split: list(names) for split, names in self.subsets.items()},
            "normalizer": self.normalizer.options(),
        }

    def fingerprint_paths(self) -> Iterable[Path]:
        """Every ``.trans.txt`` and ``.flac`` file of the configured subsets.

        The FLACs are listed because adding or removing one changes what is read or skipped. The
        walk lists each chapter folder once; the manifest cache then stats every file on each run
        (about 290,000 files for the 960 hours).
        """
        corpus = self.corpus_dir
        subsets = dict.fromkeys(name for split in SPLITS for name in self.subsets[split])
        for subset in subsets:
            for _, _, chapter in self._chapters(corpus / subset):
                with os.scandir(chapter) as entries:
                    yield from sorted(
                        Path(e.path)
                        for e in entries
                        if e.is_file() and e.name.endswith((TRANSCRIPT_SUFFIX, AUDIO_SUFFIX))
                    )

    def scan(self, split: str, report: ScanReport) -> Iterator[Utterance]:
        """Yield the utterances of ``split``'s subsets, in subset, speaker, chapter, line order.

        Skipped and recorded in ``report``: a malformed transcript line (``<file>:<line>``), a
        FLAC listed in a transcript but missing, an unreadable FLAC, a FLAC without a transcript
        line, and a transcript that normalises to nothing or leaves the normalizer's alphabet.

        Raises:
            ValueError: ``split`` is not one of :data:`SPLITS`.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        corpus = self.corpus_dir
        for subset in self.subsets[split]:
            for speaker, chapter, folder in self._chapters(corpus / subset):
                yield from self._scan_chapter(speaker, chapter, folder, report)

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _chapters(subset: Path) -> Iterator[tuple[str, str, Path]]:
        """``(speaker, chapter, folder)`` of every ``<subset>/<speaker>/<chapter>/`` folder."""
        for speaker in _subdirectories(subset):
            for chapter in _subdirectories(speaker):
                yield speaker.name, chapter.name, chapter

    def _scan_chapter(
        self, speaker: str, chapter: str, folder: Path, report: ScanReport
    ) -> Iterator[Utterance]:
        transcript = folder / f"{speaker}-{chapter}{TRANSCRIPT_SUFFIX}"
        prefix = f"{speaker}-{chapter}-"
        accounted: set[str] = set()  # ids of lines read (good or reported): not "untranscribed"
        if transcript.is_file():
            for number, uid, raw in self._lines(transcript, prefix, report, accounted):
                utterance = self._utterance(uid, raw, speaker, folder, transcript, number, report)
                if utterance is not None:
                    yield utterance
        for path in sorted(folder.glob(f"*{AUDIO_SUFFIX}")):
            if path.stem in accounted:
                continue
            if transcript.is_file():
                report.skip(
                    path,
                    f"no transcript: {transcript.name} has no well-formed line for {path.stem}",
                )
            else:
                report.skip(path, f"no transcript: {transcript} does not exist")

    @staticmethod
    def _lines(
        transcript: Path, prefix: str, report: ScanReport, accounted: set[str]
    ) -> Iterator[tuple[int, str, str]]:
        """``(line number, id, raw transcript)`` of the well-formed lines; the others reported."""
        first_line: dict[str, int] = {}
        with transcript.open(encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                line = line.strip()
                if not line:
                    continue
                where = f"{transcript}:{number}"
                fields = line.split(maxsplit=1)
                uid = fields[0]
                if UTTERANCE_ID.match(uid) is None or not uid.startswith(prefix):
                    report.skip(
                        where,
                        f"malformed transcript line {line[:80]!r}: expected '{prefix}<utt> "
                        f"TRANSCRIPT' (an utterance id of this chapter, a space, the transcript)",
                    )
                    continue
                accounted.add(uid)
                if len(fields) < 2:
                    report.skip(where, f"malformed transcript line: id {uid} has no transcript")
                    continue
                if uid in first_line:
                    report.skip(
                        where, f"repeats the id {uid} of line {first_line[uid]}; the first is read"
                    )
                    continue
                first_line[uid] = number
                yield number, uid, fields[1]

    def _utterance(
        self,
        uid: str,
        raw: str,
        speaker: str,
        folder: Path,
        transcript: Path,
        number: int,
        report: ScanReport,
    ) -> Utterance | None:
        path = folder / f"{uid}{AUDIO_SUFFIX}"
        if not path.is_file():
            report.skip(
                path,
                f"missing: listed in {transcript.name} line {number} but there is no such file",
            )
            return None
        text = self.normalizer(raw)
        if text is None:
            report.skip(
                path,
                f"transcript {raw!r} ({transcript.name} line {number}) "
                + self.normalizer.rejection(raw),
            )
            return None
        if not text:
            report.skip(
                path, f"transcript {raw!r} ({transcript.name} line {number}) normalises to nothing"
            )
            return None
        try:
            info = self.probe(path)
        except AudioError as error:
            report.skip(path, f"unreadable FLAC: {error}")
            return None
        return Utterance(
            id=uid,
            audio_path=str(path),
            duration=info.duration,
            sample_rate=info.sample_rate,
            text=text,
            speaker=speaker,
            language="en",
        )

    @staticmethod
    def _found(corpus: Path) -> str:
        names = [p.name for p in _subdirectories(corpus)]
        if not names:
            return "none"
        return ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")

    @staticmethod
    def _subset_hint(corpus: Path) -> str:
        if next(corpus.glob(f"*/*/*{TRANSCRIPT_SUFFIX}"), None) is None:
            return ""
        return f" (it looks like a subset folder itself: set data.reader.root={corpus.parent})"

    def _layout_error(self, problem: str) -> CorpusLayoutError:
        return CorpusLayoutError(
            f"{problem}. Expected the LibriSpeech layout: {EXPECTED_LAYOUT}. Set "
            "data.reader.root=<the LibriSpeech folder> (the archives of openslr.org/12 unpack to "
            "LibriSpeech/<subset>/) and data.reader.train_subsets / validation_subsets / "
            "test_subsets to subsets it holds."
        )
