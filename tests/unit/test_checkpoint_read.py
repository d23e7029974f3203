"""Checkpoint files as users give them: not a checkpoint, missing, left ``???``, of another
model; every message names the option the path came from and never advises unsafe loading."""

from __future__ import annotations

import argparse
import logging
import pickle
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from speechlab.checkpoint.last import LastCheckpoint
from speechlab.checkpoint.read import check_checkpoint_options, checkpoint_options
from speechlab.checkpoint.recipe import load_checkpoint
from speechlab.run.resume_check import check_same_model, read_resume_checkpoint, what_to_pass
from speechlab.tasks.synthesis_metrics import IntelligibilityJudge
from speechlab.tasks.vocoder import load_vocoder

RECIPE = {
    "model": {"_target_": "speechlab.tasks.kws.KeywordSpottingTask"},
    "data": {},
    "task_inputs": {"labels": ["yes", "no"]},
}


def a_checkpoint(path: Path, **recipe) -> Path:
    state = {"head.weight": torch.zeros(2, 4), "head.bias": torch.zeros(2)}
    torch.save({"global_step": 15, "state_dict": state, "speechlab": {**RECIPE, **recipe}}, path)
    return path


def text(path: Path) -> None:
    path.write_text("hi\n")


def empty(path: Path) -> None:
    path.write_bytes(b"")


def truncated(path: Path) -> None:
    a_checkpoint(path)
    path.write_bytes(path.read_bytes()[:300])


def zip_of_other_files(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")


def python_objects(path: Path) -> None:  # what weights_only=True refuses to unpickle
    torch.save({"hyper_parameters": argparse.Namespace(lr=0.1)}, path)


def plain_pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps([1, 2], protocol=4))


def a_tensor(path: Path) -> None:
    torch.save(torch.zeros(3), path)


def no_recipe(path: Path) -> None:  # a bare state_dict, or another project's checkpoint
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)


def broken_recipe(path: Path) -> None:  # and in torch's legacy (non-zip) format
    torch.save({"speechlab": {}}, path, _use_new_zipfile_serialization=False)


@pytest.mark.parametrize(
    "write",
    [
        text,
        empty,
        truncated,
        zip_of_other_files,
        python_objects,
        plain_pickle,
        a_tensor,
        no_recipe,
        broken_recipe,
    ],
)
@pytest.mark.parametrize("mmap", [False, True])
def test_evaluate_or_resume_from_a_file_that_is_not_a_checkpoint_is_refused(tmp_path, write, mmap):
    path = tmp_path / "notackpt.ckpt"
    write(path)
    with pytest.raises(ValueError) as error:
        load_checkpoint(path, key="ckpt_path", expected="a checkpoint to evaluate", mmap=mmap)
    message = str(error.value)
    assert message.startswith(f"ckpt_path={path}")  # where
    assert "pass ckpt_path=<file>: a checkpoint to evaluate" in message  # what to do
    assert "logs/train/runs/<run>/checkpoints/" in message
    assert "weights_only" not in message and "trust" not in message  # no unsafe advice
    assert error.value.__cause__ is None or isinstance(error.value.__cause__, ValueError)


def test_a_missing_or_unset_checkpoint_names_the_option_it_came_from(tmp_path):
    absent = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError) as error:
        load_checkpoint(absent, key="model.judge_ckpt", expected="a recognizer's checkpoint")
    assert str(error.value).startswith(f"model.judge_ckpt={absent}: no such file;")
    assert "pass model.judge_ckpt=<file>: a recognizer's checkpoint" in str(error.value)
    with pytest.raises(ValueError, match=r"^model.acoustic_ckpt is required and was not given;"):
        load_checkpoint("???", key="model.acoustic_ckpt")
    # Without an option to name, a neutral message: never 'ckpt_path=', which would resume.
    with pytest.raises(FileNotFoundError) as error:
        load_checkpoint(absent)
    assert f"no checkpoint at {absent}" in str(error.value) and "=" not in str(error.value)


def test_a_judge_or_vocoder_checkpoint_that_is_missing_names_its_own_key(tmp_path):
    absent = tmp_path / "nope.ckpt"
    with pytest.raises(FileNotFoundError, match=rf"^model.judge_ckpt={absent}: no such file"):
        IntelligibilityJudge(absent)
    frontend = SimpleNamespace(sample_rate=22050, hop_length=256)
    with pytest.raises(FileNotFoundError, match=rf"^model.vocoder.ckpt={absent}: no such file"):
        load_vocoder(absent, frontend)
    with pytest.raises(FileNotFoundError, match=rf"^vocoder={absent}: no such file"):
        load_vocoder(absent, frontend, key="vocoder")  # evaluate.py's vocoder=
    kws = a_checkpoint(tmp_path / "kws.ckpt")
    with pytest.raises(ValueError, match=r"pass model.vocoder.ckpt=<file>: a checkpoint of a mod"):
        load_vocoder(kws, frontend)


def test_train_with_a_model_checkpoint_option_unset_or_missing_stops_before_any_data(tmp_path):
    model = {
        "judge_ckpt": None,
        "vocoder": {"_target_": "x", "ckpt": "???"},
        "acoustic_ckpt": str(tmp_path / "nope.ckpt"),
        "encoder": {"hidden": 4},
    }
    assert checkpoint_options(model, "model") == {
        "model.judge_ckpt": None,
        "model.vocoder.ckpt": "???",
        "model.acoustic_ckpt": str(tmp_path / "nope.ckpt"),
    }
    with pytest.raises(ValueError, match=r"^model.vocoder.ckpt is required and was not given"):
        check_checkpoint_options(model, "model")
    model["vocoder"]["ckpt"] = str(a_checkpoint(tmp_path / "v.ckpt"))
    with pytest.raises(FileNotFoundError, match=r"^model.acoustic_ckpt=.*nope.ckpt: no such"):
        check_checkpoint_options(model, "model")


def test_resume_from_a_checkpoint_copied_out_of_its_run_dir_still_says_what_to_pass(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / ".hydra").mkdir()
    # A checkpoint written before recipes kept the run's choices: its run dir's .hydra has them.
    path = a_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    choices = {"model": "kws_cnn", "data": "mini_commands", "experiment": None}
    hydra = {"hydra": {"runtime": {"choices": choices}}}
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    overrides = ["model=kws_cnn", "data=mini_commands", "model.encoder.channels=[8]", "seed=1"]
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    held = read_resume_checkpoint(path, "last")
    assert held.name == f"ckpt_path=last ({path})" and held.shapes["head.weight"] == (2, 4)
    ours = {"model": "ctc_lstm", "data": "mini_voice"}
    assert what_to_pass(held, ours, ["model.optimizer.lr=0.1"]) == (
        ["model=kws_cnn", "data=mini_commands", "model.encoder.channels=[8]"],
        ["model.optimizer.lr=0.1"],
    )
    with pytest.raises(ValueError) as error:
        check_same_model(held, {"_target_": "speechlab.tasks.ctc.CTCTask"}, ours, [])
    message = str(error.value)
    assert "holds a KeywordSpottingTask (model=kws_cnn data=mini_commands)" in message
    assert "this run builds a CTCTask (model=ctc_lstm data=mini_voice)" in message
    assert (
        "To resume it, pass model=kws_cnn data=mini_commands model.encoder.channels=[8]" in message
    )
    # Its recipe's own record wins, wherever the file is.
    copied = a_checkpoint(tmp_path / "copy.ckpt", choices={"model": "kws_bc_resnet"}, overrides=[])
    assert read_resume_checkpoint(copied, str(copied)).choices == {"model": "kws_bc_resnet"}


def test_a_run_that_fails_before_training_says_the_step_its_last_checkpoint_really_holds(
    tmp_path, caplog
):
    callback = LastCheckpoint(tmp_path)
    a_checkpoint(callback.path)  # step 15, the run being resumed
    trainer = SimpleNamespace(
        state=SimpleNamespace(fn="fit"), current_epoch=0, global_step=0, default_root_dir="r1b"
    )
    with caplog.at_level(logging.ERROR, logger="speechlab.checkpoint.last"):
        callback.on_exception(trainer, None, RuntimeError("Error(s) in loading state_dict"))
    assert "failed before training started" in caplog.text
    assert "holds the state of step 15" in caplog.text and "step 0" not in caplog.text
