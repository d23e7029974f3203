"""Files a run leaves behind for people: metrics.json, predictions.tsv, a printed table."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table


def plain_metrics(metrics: Mapping[str, object]) -> dict[str, float]:
    """Tensors and numbers -> ``{name: float}``."""
    return {name: float(value) for name, value in sorted(metrics.items())}


def write_metrics(path: Path, metrics: Mapping[str, float]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(metrics), indent=2) + "\n")
    return path


def write_predictions(
    path: Path,
    rows: Iterable[tuple[str, ...]],
    columns: Sequence[str] = ("id", "reference", "hypothesis"),
) -> Path:
    """TSV with a header row of ``columns`` (default ``id``, ``reference``, ``hypothesis``;
    a translation task adds ``source``), tabs and newlines escaped."""

    def clean(value: str) -> str:
        return str(value).replace("\t", " ").replace("\n", " ")

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write("\t".join(columns) + "\n")
        for row in rows:
            f.write("\t".join(clean(value) for value in row) + "\n")
    return path


def print_metrics(title: str, metrics: Mapping[str, float]) -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}")
    Console().print(table)
