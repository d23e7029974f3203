"""Partial loads from another checkpoint (model.init_from): exactly which tensors, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from speechlab.checkpoint.init_from import (
    apply_init_from,
    check_init_from_file,
    load_partial,
    without_init_from,
)


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
    with pytest.raises(ValueError, match="under the included prefixes \\['listener'\\]") as error:
        load_partial(st, ckpt, ["listener"])
    # It says what fits instead.
    assert "it has no tensor under them" in str(error.value)
    assert "model.init_from.include=[encoder,frontend]" in str(error.value)


class Recognizer(nn.Module):
    """A frontend of buffers only (an STFT window), as the real frontends are."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.frontend = nn.Module()
        self.frontend.register_buffer("window", torch.hann_window(8))
        self.encoder = nn.Linear(4, width)


def test_init_from_a_checkpoint_of_an_unrelated_model_stops_with_what_it_holds(tmp_path: Path):
    kws = Recognizer(width=12)  # e.g. a keyword spotter's checkpoint given to an ST model
    path = tmp_path / "kws.ckpt"
    recipe = {"model": {"_target_": "speechlab.tasks.kws.KeywordSpottingTask"}}
    recipe["choices"] = {"model": "kws_cnn", "data": "mini_commands"}
    torch.save({"state_dict": kws.state_dict(), "speechlab": recipe}, path)
    st = Recognizer(width=6)
    before = st.encoder.weight.clone()
    expects = "a checkpoint of a recognizer on the source speech (e.g. model=ctc_lstm)"
    with pytest.raises(ValueError) as error:
        apply_init_from(st, {"ckpt": str(path), "expects": expects}, tmp_path / "run")
    message = str(error.value)
    assert "no parameter under the included prefixes ['frontend', 'encoder']" in message
    assert "only buffers, ['frontend.window']" in message  # the one tensor that fitted
    assert "KeywordSpottingTask (model=kws_cnn data=mini_commands)" in message
    assert "tensors start with ['encoder', 'frontend']" in message
    assert f"pass model.init_from.ckpt=<file>: {expects}" in message
    assert torch.equal(st.encoder.weight, before)


def test_init_from_that_leaves_included_tensors_out_warns(tmp_path: Path, caplog):
    ckpt = save(Model(hidden=6, head="head"), tmp_path / "asr.ckpt")
    with caplog.at_level("WARNING", logger="speechlab.checkpoint.init_from"):
        apply_init_from(Model(hidden=5, head="speller"), {"ckpt": str(ckpt)}, None)
    assert "2 mismatched" in caplog.text and "keep their fresh initialisation" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="speechlab.checkpoint.init_from"):
        apply_init_from(Model(hidden=6, head="speller"), {"ckpt": str(ckpt)}, None)
    assert [r.levelname for r in caplog.records] == ["INFO"]


def test_init_from_a_required_checkpoint_left_unset_says_what_the_recipe_takes(tmp_path: Path):
    options = {
        "ckpt": "???",
        "include": ["vocoder"],
        "expects": "a checkpoint of a model=hifigan run",
    }
    for call in (
        lambda: check_init_from_file(options),
        lambda: apply_init_from(Model(6, "head"), options, None),
    ):
        with pytest.raises(ValueError) as error:
            call()
        assert str(error.value).startswith("model.init_from.ckpt is required and was not given;")
        assert "pass model.init_from.ckpt=<file>: a checkpoint of a model=hifigan run" in str(
            error.value
        )
    check_init_from_file({"ckpt": None})  # nothing asked, nothing checked
