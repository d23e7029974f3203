"""CoVoST 2 speech translation: Common Voice clips joined with ``covost_v2.<src>_<tgt>.tsv``.

Layout (as the CoVoST 2 release and Common Voice ship them):

    <root>/covost_v2.<src>_<tgt>.tsv    path, translation, split (and, in some copies, sentence
                                        and client_id); tab-separated, header row
    <cv_root>/validated.tsv             the Common Voice rows (path, sentence, client_id, ...)
    <cv_root>/clips/<path>              the clips
    <cv_root>/clip_durations.tsv        optional: clip, duration[ms]

``cv_root`` defaults to ``<root>/<src>``. Each CoVoST row is joined by ``path`` with the source
sentence and speaker of ``validated.tsv`` (the CoVoST row's own ``sentence``/``client_id`` win
when it has them). ``split`` values ``train`` and ``train_covost`` are the train split, ``dev``
the validation split, ``test`` the test split. Each record holds the normalised source sentence
(``text``), the translation as written (``translation``, whitespace collapsed) and the source
language. Rows whose clip is missing or unreadable, whose sentence is unknown or normalises to
nothing, or whose translation is empty are skipped and counted, never fatal. Clip lookup,
durations, probing and the source normalizer are those of :class:`CommonVoiceReader`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from speechlab.corpora.common_voice import (
    COMMON_VOICE_SAMPLE_RATE,
    CommonVoiceReader,
    is_utf8,
    tsv_rows,
)
from speechlab.data.reader import SPLITS, CorpusLayoutError, ScanReport
from speechlab.data.utterance import Utterance
from speechlab.text.normalize import TextNormalizer

log = logging.getLogger(__name__)

COVOST_COLUMNS = ("path", "translation", "split")
VALIDATED_TSV = "validated.tsv"
VALIDATED_COLUMNS = ("path", "sentence", "client_id")
SPLIT_VALUES = {"train": ("train", "train_covost"), "validation": ("dev",), "test": ("test",)}


class CoVoST2Reader:
    """Reads one CoVoST 2 language pair; see the module docstring.

    Args:
        root: the folder holding ``covost_v2.<source_lang>_<target_lang>.tsv``.
        source_lang, target_lang: the pair, e.g. ``fr`` and ``en``.
        cv_root: the Common Voice locale folder of ``source_lang`` (``clips/``,
            ``validated.tsv``); ``None``: ``<root>/<source_lang>``.
        normalizer: of the source sentence (see :class:`CommonVoiceReader`); the translation
            is kept as written.
        clip_sample_rate, probe: see :class:`CommonVoiceReader`.
    """

    name = "covost2"

    def __init__(
        self,
        root: str | Path,
        source_lang: str = "fr",
        target_lang: str = "en",
        cv_root: str | Path | None = None,
        normalizer: TextNormalizer | Mapping | None = None,
        clip_sample_rate: int = COMMON_VOICE_SAMPLE_RATE,
        probe: bool = False,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.source_lang = str(source_lang)
        self.target_lang = str(target_lang)
        locale = Path(cv_root).expanduser() if cv_root else self.root / self.source_lang
        self.common_voice = CommonVoiceReader(
            locale,
            normalizer=normalizer,
            language=self.source_lang,
            clip_sample_rate=clip_sample_rate,
            probe=probe,
        )
        self._sentences: dict[str, tuple[str, str]] | None = None

    @property
    def covost_tsv(self) -> Path:
        return self.root / f"covost_v2.{self.source_lang}_{self.target_lang}.tsv"

    @property
    def validated_tsv(self) -> Path:
        return self.common_voice.root / VALIDATED_TSV

    # -- protocol ---------------------------------------------------------------------------------

    def check_layout(self) -> None:
        """Raise :class:`CorpusLayoutError` unless the CoVoST tsv and the locale are in place."""
        if not self.covost_tsv.is_file():
            raise self._layout_error(f"{self.covost_tsv} does not exist")
        if not self.common_voice.clips.is_dir():
            raise self._layout_error(
                f"the Common Voice folder has no clips/ at {self.common_voice.clips}"
            )
        header = self.common_voice.columns(self.covost_tsv, COVOST_COLUMNS)
        if not {"sentence", "client_id"} <= set(header):
            if not self.validated_tsv.is_file():
                raise self._layout_error(
                    f"{self.covost_tsv.name} has no sentence column and {self.validated_tsv} "
                    "does not exist to join it from"
                )
            self.common_voice.columns(self.validated_tsv, VALIDATED_COLUMNS)
        self._sentences = None
        self.common_voice._durations = None

    def options(self) -> dict:
        return {
            "source_lang": self.source_lang,
            "target_lang": self.target_lang,
            "common_voice": {"root": str(self.common_voice.root), **self.common_voice.options()},
        }

    def fingerprint_paths(self) -> Iterable[Path]:
        """The CoVoST tsv, ``validated.tsv`` and ``clip_durations.tsv``; not the clips."""
        paths = [self.covost_tsv, self.validated_tsv, self.common_voice.root / "clip_durations.tsv"]
        return sorted(p for p in paths if p.is_file())

    def scan(self, split: str, report: ScanReport) -> Iterator[Utterance]:
        """Yield the pairs of ``split``; unusable rows and clips go to ``report``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        tsv = self.covost_tsv
        header = self.common_voice.columns(tsv, COVOST_COLUMNS)
        column = {name: header.index(name) for name in header}
        values = SPLIT_VALUES[split]
        joined = {"sentence", "client_id"} <= set(column)
        sentences = {} if joined else self._validated()
        durations = {} if self.common_voice.probe else self.common_voice.clip_durations()
        seen: set[str] = set()
        rows = tsv_rows(tsv)
        next(rows, None)
        for line, row in enumerate(rows, start=2):
            where = f"{tsv.name} line {line}"
            if not any(field.strip() for field in row):
                continue
            if not is_utf8(row) or len(row) != len(header):
                report.skip(
                    f"{tsv}:{line}",
                    f"is not {len(header)} tab-separated UTF-8 fields ({' '.join(header)}); "
                    "fix or delete the row",
                )
                continue
            if row[column["split"]].strip() not in values:
                continue
            name = row[column["path"]].strip()
            if not name or name in seen:
                continue
            seen.add(name)
            translation = " ".join(row[column["translation"]].split())
            if joined:
                sentence, speaker = row[column["sentence"]], row[column["client_id"]].strip()
            elif name in sentences:
                sentence, speaker = sentences[name]
            else:
                report.skip(
                    self.common_voice.clips / name,
                    f"listed in {where} but not in {self.validated_tsv}: no source sentence",
                )
                continue
            if not translation:
                report.skip(self.common_voice.clips / name, f"{where} has an empty translation")
                continue
            utterance = self.common_voice.clip_utterance(
                name, sentence, speaker or None, self.source_lang, durations, where, report
            )
            if utterance is not None:
                yield dataclasses.replace(utterance, translation=translation)

    # -- helpers ----------------------------------------------------------------------------------

    def _validated(self) -> dict[str, tuple[str, str]]:
        """``path -> (sentence, client_id)`` of ``validated.tsv``."""
        if self._sentences is None:
            header = self.common_voice.columns(self.validated_tsv, VALIDATED_COLUMNS)
            path, sentence, speaker = (header.index(c) for c in VALIDATED_COLUMNS)
            self._sentences = {}
            rows = tsv_rows(self.validated_tsv)
            next(rows, None)
            for row in rows:
                if len(row) == len(header) and is_utf8(row):
                    self._sentences[row[path].strip()] = (row[sentence], row[speaker].strip())
        return self._sentences

    def _layout_error(self, problem: str) -> CorpusLayoutError:
        return CorpusLayoutError(
            f"{problem}. Expected CoVoST 2 for {self.source_lang}->{self.target_lang}: "
            f"<root>/covost_v2.{self.source_lang}_{self.target_lang}.tsv (tab-separated columns "
            f"{' '.join(COVOST_COLUMNS)}, from the CoVoST 2 release) and the Common Voice "
            f"{self.source_lang} locale at <cv_root> (default <root>/{self.source_lang}) with "
            "clips/ and validated.tsv. Set data.reader.root and data.reader.cv_root."
        )
