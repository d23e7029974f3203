"""Partial loads from another checkpoint (model.init_from): exactly which tensors, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from speechlab.checkpoint.init_from import apply_init_from, load_partial, without_init_from


class Model(nn.Module):
    def __init__(self, hidden: int, head: str) -> None:
        super().__init__()
        self.frontend = nn.LayerNorm(4)
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Linear(8, hidden))
        setattr(self, head, nn.Linear(hidden, 3))


def save(model: nn.Module, path: Path) -> Path:
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)
    return path


def test_partial_load_reports_loaded_skipped_and_mismatched_names(tmp_path: Path):
    torch.manual_seed(0)
    asr = Model(hidden=6, head="head")  # e.g. a CTC recognizer
    st = Model(hidden=5, head="speller")  # its second encoder layer is narrower
    before = {name: tensor.clone() for name, tensor in st.state_dict().items()}
    report = load_partial(st, save(asr, tmp_path / "asr.ckpt"), ["frontend", "encoder"])

    assert report.loaded == [
        "frontend.weight",
        "frontend.bias",
        "encoder.0.weight",
        "encoder.0.bias",
    ]
    assert report.mismatched == {
        "encoder.1.weight": "checkpoint (6, 8) vs model (5, 8)",
        "encoder.1.bias": "checkpoint (6,) vs model (5,)",
    }
    assert report.skipped == {"head.weight": "not included", "head.bias": "not included"}
    assert report.not_initialised == []
    state = st.state_dict()
    for name in report.loaded:
        assert torch.equal(state[name], asr.state_dict()[name])
    for name in ("encoder.1.weight", "speller.weight"):
        assert torch.equal(state[name], before[name])  # left as initialised


def test_included_tensors_absent_from_the_model_are_skipped(tmp_path: Path):
    asr = Model(hidden=6, head="head")
    st = Model(hidden=6, head="speller")
    report = load_partial(st, save(asr, tmp_path / "asr.ckpt"), ["encoder", "head"])
    assert report.skipped == {
        "frontend.weight": "not included",
        "frontend.bias": "not included",
        "head.weight": "absent from the model",
        "head.bias": "absent from the model",
    }
    assert len(report.loaded) == 4 and report.mismatched == {}


def test_apply_init_from_writes_the_report_and_strips_the_key(tmp_path: Path):
    ckpt = save(Model(hidden=6, head="head"), tmp_path / "asr.ckpt")
    st = Model(hidden=6, head="speller")
    assert apply_init_from(st, {"ckpt": None, "include": ["encoder"]}, tmp_path) is None
    report = apply_init_from(st, {"ckpt": str(ckpt), "include": ["encoder"]}, tmp_path / "run")
    written = json.loads((tmp_path / "run" / "init_from.json").read_text())
    assert (
        written["loaded"]
        == report.loaded
        == [f"encoder.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")]
    )
    assert without_init_from({"_target_": "x", "init_from": {"ckpt": None}}) == {"_target_": "x"}


def test_missing_file_or_nothing_to_load_is_a_clear_error(tmp_path: Path):
    st = Model(hidden=6, head="speller")
    with pytest.raises(FileNotFoundError, match="model.init_from.ckpt=.*no such file"):
        load_partial(st, tmp_path / "absent.ckpt")
    ckpt = save(Model(hidden=6, head="head"), tmp_path / "asr.ckpt")
    with pytest.raises(ValueError, match="no tensor .* under \\['listener'\\]"):
        load_partial(st, ckpt, ["listener"])
