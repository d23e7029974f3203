"""Checkpoint options as users type them: a file that is no checkpoint, a missing judge or
vocoder, a recipe's required checkpoint left unset. Each stops before any data is prepared, with
the option's own key and what to pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from speechlab.run.evaluate import run as evaluate
from speechlab.run.train import run as train
from tests.conftest import composed

pytestmark = pytest.mark.usefixtures("one_thread")


def train_in(run_dir: Path, data_dir: Path, *overrides: str) -> None:
    with composed("train", [f"paths.data_dir={data_dir}", *overrides], run_dir) as cfg:
        train(cfg)


def test_train_or_evaluate_from_a_file_that_is_not_a_checkpoint_says_what_to_pass(tmp_path):
    not_a_checkpoint = tmp_path / "notackpt.ckpt"
    not_a_checkpoint.write_text("hi\n")
    fresh = tmp_path / "data"
    with pytest.raises(ValueError) as error:
        train_in(tmp_path / "run", fresh, f"ckpt_path={not_a_checkpoint}")
    assert str(error.value).startswith(f"ckpt_path={not_a_checkpoint}: not a PyTorch checkpoint")
    assert "pass ckpt_path=<file>: a checkpoint of the speechlab run to resume" in str(error.value)
    assert not fresh.exists(), "checked before any data is prepared"

    overrides = [f"ckpt_path={not_a_checkpoint}", "trainer.accelerator=cpu"]
    with (
        composed("evaluate", overrides, tmp_path / "evaluate") as cfg,
        pytest.raises(ValueError) as error,
    ):
        evaluate(cfg)
    assert str(error.value).startswith(f"ckpt_path={not_a_checkpoint}: not a PyTorch checkpoint")
    assert "weights_only" not in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "error", "expected"),
    [
        (
            ["model=tacotron2", "data=mini_speaker", "model.judge_ckpt=/nope.ckpt"],
            FileNotFoundError,
            "model.judge_ckpt=/nope.ckpt: no such file; pass model.judge_ckpt=<file>",
        ),
        (
            ["model=tacotron2", "data=mini_speaker", "model/vocoder=hifigan"]
            + ["model.vocoder.ckpt=/nope.ckpt"],
            FileNotFoundError,
            "model.vocoder.ckpt=/nope.ckpt: no such file; pass model.vocoder.ckpt=<file>",
        ),
        (
            ["model=tacotron2", "data=mini_speaker", "model/vocoder=hifigan"],
            ValueError,
            "model.vocoder.ckpt is required and was not given; pass model.vocoder.ckpt=<file>",
        ),
        (
            ["experiment=hifigan_finetune_mini_speaker"],
            Exception,  # raised by the recipe's ${required:...}, wrapped by OmegaConf in process
            "model.acoustic_ckpt is required by this recipe and was not given: pass "
            "model.acoustic_ckpt=<a checkpoint of a model=tacotron2 run",
        ),
        (
            ["model=st_las", "data=mini_covost", "model.init_from.ckpt=/nope.ckpt"],
            FileNotFoundError,
            "model.init_from.ckpt=/nope.ckpt: no such file; pass model.init_from.ckpt=<file>: "
            "a checkpoint of a recognizer",
        ),
    ],
    ids=["judge", "vocoder", "vocoder_unset", "finetune_unset", "init_from"],
)
def test_train_with_a_missing_model_checkpoint_names_its_own_key(
    tmp_path, overrides, error, expected
):
    fresh = tmp_path / "data"
    with pytest.raises(error) as raised:
        train_in(tmp_path / "run", fresh, *overrides)
    assert expected in str(raised.value)
    assert "ckpt_path" not in str(raised.value)  # which would resume training
    assert not fresh.exists(), "checked before any data is prepared"
