"""Which Lhotse manifests in a folder hold each split.

A split is a cut manifest (``cuts_<name>.jsonl.gz``, ``<corpus>_cuts_<name>.jsonl.gz``, or
``.jsonl``) or a recipe's recordings + supervisions pair (``<corpus>_recordings_<name>`` with
``<corpus>_supervisions_<name>``), found by the split's name (``train``, ``dev-clean``) or named
by file; the cut manifest wins when both exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from speechlab.data.reader import CorpusLayoutError

SUFFIXES = (".jsonl.gz", ".jsonl")
#: ``[<corpus>_]<kind>_<split>.jsonl[.gz]``, as Lhotse recipes name their manifests.
MANIFEST_NAME = re.compile(
    r"^(?:(?P<corpus>.+?)_)?(?P<kind>cuts|recordings|supervisions)_(?P<split>.+?)\.jsonl(?:\.gz)?$"
)
#: What one split's manifest looks like, for messages (no article: "no such {EXPECTED}").
EXPECTED = (
    "Lhotse cut manifest (cuts_<name>.jsonl.gz or <corpus>_cuts_<name>.jsonl.gz, or .jsonl) "
    "or recordings + supervisions pair (<corpus>_recordings_<name>.jsonl.gz with "
    "<corpus>_supervisions_<name>.jsonl.gz)"
)


@dataclass(frozen=True)
class Source:
    """The manifest(s) of one split: a cut manifest, or a recordings + supervisions pair."""

    cuts: Path | None = None
    recordings: Path | None = None
    supervisions: Path | None = None

    def files(self) -> list[Path]:
        return [p for p in (self.cuts, self.recordings, self.supervisions) if p is not None]

    def __str__(self) -> str:
        return " + ".join(str(p) for p in self.files())


class ManifestFolder:
    """The Lhotse manifests of one folder (``root``), looked up by split name or file name."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def manifests(self) -> list[str]:
        """The names of the JSON-lines manifests in ``root``."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_file() and p.name.endswith(SUFFIXES)
        )

    def where(self) -> str:
        """The folder with the manifests it holds and their split names, for messages."""
        names = self.manifests()
        if not names:
            return f"{self.root} (which holds no Lhotse manifest *.jsonl or *.jsonl.gz)"
        shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
        splits = sorted({m["split"] for m in map(MANIFEST_NAME.match, names) if m})
        if splits:
            shown += f"; the split names {', '.join(splits)}"
        return f"{self.root} (which holds {shown})"

    def find(self, name: str) -> Source | None:
        """The manifest(s) ``name`` stands for: a file under ``root`` or a split name."""
        path = self.root / name
        if path.is_file():
            return self.source_of_file(path)
        names = self.manifests()
        by_kind: dict[str, list[str]] = {"cuts": [], "recordings": [], "supervisions": []}
        for file in names:
            match = MANIFEST_NAME.match(file)
            if match and match["split"] == name:
                by_kind[match["kind"]].append(file)
        if by_kind["cuts"]:
            return Source(cuts=self.root / self._one(by_kind["cuts"], name, "cut"))
        for kind in ("recordings", "supervisions"):  # either brings its partner
            if by_kind[kind]:
                return self.source_of_file(self.root / self._one(by_kind[kind], name, kind))
        return None

    def _one(self, found: list[str], name: str, kind: str) -> str:
        if len(found) > 1:
            raise CorpusLayoutError(
                f"several {kind} manifests for the split {name!r} in {self.root}: "
                f"{', '.join(found)}. Name the one to read, e.g. data.reader.<split>=<file name>"
            )
        return found[0]

    def source_of_file(self, path: Path) -> Source:
        """The manifest(s) a file stands for: itself as cuts, or a recordings or supervisions
        file with its partner (found by name).

        Raises:
            CorpusLayoutError: not a JSON-lines file, or the partner is missing.
        """
        if not path.name.endswith(SUFFIXES):
            raise CorpusLayoutError(
                f"{path} is not a JSON-lines manifest (.jsonl or .jsonl.gz): speechlab reads "
                f"Lhotse manifests line by line. Convert it: lhotse copy {path.name} "
                f"{path.name.split('.')[0]}.jsonl.gz"
            )
        match = MANIFEST_NAME.match(path.name)
        if match is None or match["kind"] == "cuts":
            return Source(cuts=path)
        kind = match["kind"]
        partner = "supervisions" if kind == "recordings" else "recordings"
        prefix = f"{match['corpus']}_" if match["corpus"] else ""
        names = [f"{prefix}{partner}_{match['split']}{suffix}" for suffix in SUFFIXES]
        other = next((self.root / n for n in names if (self.root / n).is_file()), None)
        if other is None:
            raise CorpusLayoutError(
                f"{path} holds Lhotse {kind} but {self.root} has no {names[0]} (or {names[1]}) "
                f"to pair it with: expected a {EXPECTED}"
            )
        pair = {kind: path, partner: other}
        return Source(recordings=pair["recordings"], supervisions=pair["supervisions"])
