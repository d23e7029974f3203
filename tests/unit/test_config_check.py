"""A config value of the wrong shape or type stops the run before any data is prepared, with a
message that names the key, what was given and what to write instead."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from omegaconf import OmegaConf

from speechlab.run.config_check import ConfigValueError, check_config, fits
from tests.conftest import composed
from tests.integration.test_configs import job_config


def check(overrides: list[str], tmp_path: Path) -> None:
    """The check as a run makes it: on the job's config, its interpolations not yet resolved."""
    with composed("train", overrides, tmp_path) as cfg:
        job = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        check_config(job, overrides)


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
        # a group's option misspelled, or typed as a value; a group placed under another key
        (["model.scheduler=cosine"], ["'cosine' is none of them", "model/scheduler=<option>"]),
        (["model.frontend=logmel_global"], ["model/frontend=logmel_global"]),
        (
            ["model=kws_cnn", "data=mini_commands", "model.encoder=bc_resnet"],
            ["model/kws_encoder@model.encoder=bc_resnet"],
        ),
        # a plain group of keys given a value: the key it is meant for
        (["model.decoding=beam"], ["model.decoding.kind=beam"]),
        (["data.tokenizer=unigram"], ["data.tokenizer.kind=unigram"]),
        # the keys of a typed group (model.compile)
        (["model.compile.enabled=no"], ["model.compile.enabled takes true/false", "string (no)"]),
        (["model.compile.frames=256"], ["model.compile.frames takes a list", "an int (256)"]),
        (["+model.compile.turbo=true"], ["model.compile.turbo is no key of it", "enabled"]),
        # values a type lets through that Lightning refuses
        (["trainer.devices=two"], ["trainer.devices takes a count"]),
        (["trainer.accelerator=tpuu"], ["trainer.accelerator takes one of", "cpu", "gpu"]),
        (["+trainer.strategy=dpp"], ["trainer.strategy takes one of", "ddp"]),
        # plain values of train.yaml
        (["seed=abc"], ["seed=abc", "seed takes an int"]),
        # a value a config leaves to the user (???)
        (
            ["model/waveform_augment=noise"],
            ["model.waveform_augment.noise_dir has no value", "model.waveform_augment.noise_dir="],
        ),
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
    assert "(on the command line)" in message or "has no value" in message


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
        ["trainer.devices=[0,1]", "trainer.accelerator=gpu", "+trainer.strategy=ddp"],
        ["model=kws_cnn", "data=mini_commands", "model/kws_encoder@model.encoder=bc_resnet"],
        ["data.tokenizer.kind=unigram", "+data.tokenizer.vocab_size=256"],
        ["model.decoding.kind=beam", "model.decoding.beam_size=8"],
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
