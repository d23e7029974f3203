"""A config value of the wrong shape or type stops the run before any data is prepared, with a
message that names the key, what was given and what to write instead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest

from speechlab.run.config_check import ConfigValueError, check_config, fits
from tests.conftest import composed
from tests.integration.test_configs import job_config


def check(overrides: list[str], tmp_path: Path) -> None:
    with composed("train", overrides, tmp_path) as cfg:
        check_config(job_config(cfg), overrides)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # a dot typed for a group's key: the group replaced by a value
        (
            ["model=ctc_conformer", "model.compile=true"],
            ["model.compile=true", "model.compile.enabled=true", "conf/model/compile/"],
        ),
        # a dot typed for a slash: a group option given as a value
        (["model.encoder=conformer"], ["model.encoder=conformer", "model/encoder=conformer"]),
        (["model.augment=light"], ["model/augment=<option>", "specaugment_light"]),
        # values of the wrong type for an argument
        (["trainer.max_epochs=ten"], ["trainer.max_epochs=ten", "an int or null", "string"]),
        (["trainer.precision=fp16"], ["fp16", "bf16-mixed", "16-mixed"]),
        (["model.optimizer.lr=fast"], ["lr", "a number"]),
        (["data.batch_seconds=[8,16]"], ["data.batch_seconds", "a number", "a list"]),
        (["model=kws_cnn", "data=mini_commands", "model.label_smoothing=true"], ["a number"]),
        # a key the object does not take
        (["+model.encoder.hiden_size=3"], ["hiden_size", "hidden_size", "~model.encoder"]),
    ],
)
def test_a_value_of_the_wrong_shape_or_type_names_the_key_and_what_to_write(
    overrides: list[str], expected: list[str], tmp_path: Path
):
    with pytest.raises(ConfigValueError) as caught:
        check(overrides, tmp_path)
    message = str(caught.value)
    for text in expected:
        assert text in message, message
    assert "(on the command line)" in message


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.step_guard=null"],  # a group turned off
        ["trainer.devices=auto", "trainer.precision=bf16-mixed", "trainer.max_epochs=3"],
        ["+trainer.limit_train_batches=0.5", "trainer.gradient_clip_val=null"],
        ["model=ctc_conformer", "model.compile.enabled=true"],
        ["model/encoder=conformer", "model.optimizer.lr=3e-4"],
        ["model=tacotron2", "data=mini_speaker", "debug=overfit"],  # model.augment=null
        ["model=hifigan", "data=mini_speaker", "debug=overfit"],
        ["model=st_las", "data=mini_covost", "model.init_from.ckpt=x.ckpt"],
    ],
)
def test_what_users_type_to_change_a_setting_passes(overrides: list[str], tmp_path: Path):
    check(overrides, tmp_path)


def test_a_value_set_in_a_config_file_is_named_as_such(tmp_path: Path):
    with composed("train", [], tmp_path) as cfg:
        job = job_config(cfg)
        job.trainer.max_epochs = "seven"
        with pytest.raises(ConfigValueError, match=r"trainer.max_epochs=seven \(in the config\)"):
            check_config(job)


@pytest.mark.parametrize(
    ("value", "hint", "expected"),
    [
        (3, int, True),
        (True, int, False),  # a bool is not a count
        (3.5, int, False),
        (3, float, True),
        ("3", float, False),
        (None, int | None, True),
        (None, int, False),
        ("bf16", Literal["bf16", "32"], True),
        ("fp16", Literal["bf16", "32"], False),
        (16, Literal["16"], False),  # a Literal's values keep their type
        ([1, 2], Sequence[int], True),
        ([1, "a"], list[int], False),
        ("ab", Sequence[int], False),
        ({"a": 1}, Mapping[str, Any], True),
        (True, Mapping[str, Any] | None, False),
        ({"_target_": "torch.nn.Identity"}, int, False),
        ({"_target_": "torch.nn.Identity"}, Any, True),
        ("path/to/file", Path, True),
    ],
)
def test_a_config_value_fits_a_type_hint(value: Any, hint: Any, expected: bool):
    assert fits(value, hint) is expected
