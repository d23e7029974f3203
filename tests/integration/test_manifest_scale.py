"""benchmarks/manifest_scale.py: the smoke run builds, loads and indexes a manifest in workers."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO, one_torch_thread


@pytest.fixture
def manifest_scale(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # the script imports its sibling
    return importlib.import_module("manifest_scale")


def test_smoke_run_indexes_every_utterance_and_reports_memory(
    manifest_scale: ModuleType, tmp_path: Path
) -> None:
    out = tmp_path / "scale.json"
    with one_torch_thread():
        manifest_scale.main(["--smoke", "--cache-dir", str(tmp_path / "cache"), "--json", str(out)])

    figures = json.loads(out.read_text())
    columnar = figures["columnar"]
    assert figures["utterances"] == columnar["utterances_indexed"] == 20_000
    assert len(columnar["workers"]) == figures["workers"] == 2
    assert all(w["uss"] > 0 and w["extra_uss"] < 50 for w in columnar["workers"])
    assert columnar["load_s"] < 5 and columnar["plan_s"] < 2
    manifest = Path(columnar["manifest_dir"])
    assert json.loads((manifest / "manifest.json").read_text())["counts"]["train"] == 20_000
