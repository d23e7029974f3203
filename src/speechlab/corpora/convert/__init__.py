"""Writers of any corpus's manifest in the field's formats (``speechlab convert``).

Each format's writer is ``write(splits, out)``: ``splits`` maps ``train``, ``validation`` and
``test`` to an :class:`~speechlab.data.utterance_table.UtteranceTable`, ``out`` is the folder to
write; its reader (``data=<format> data.reader.root=<out>``) reads the same utterances back: ids,
durations, offsets, texts, translations, labels, speakers and splits. Audio files are named by
absolute path where the format refers to files, so the output works from any folder.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path

from speechlab.data.utterance_table import UtteranceTable

Writer = Callable[[Mapping[str, UtteranceTable], Path], None]

#: ``--to`` name -> the module whose ``write`` writes it (imported when used: the Lhotse and
#: Hugging Face writers bring their libraries).
FORMATS: dict[str, str] = {
    "manifest": "speechlab.corpora.convert.manifest",
    "kaldi": "speechlab.corpora.convert.kaldi",
    "lhotse": "speechlab.corpora.convert.lhotse",
    "hf": "speechlab.corpora.convert.hf",
}


def writer(format: str) -> Writer:
    """The ``write`` function of ``format`` (one of :data:`FORMATS`).

    Raises:
        ValueError: ``format`` is not one of :data:`FORMATS`.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; expected one of {sorted(FORMATS)}")
    return importlib.import_module(FORMATS[format]).write
