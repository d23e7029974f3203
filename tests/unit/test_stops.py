"""Expected, user-caused stops leave as their message alone; unexpected errors keep their
traceback; a launcher setting that cannot work stops a sweep before any job."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from speechlab.run.config_check import ConfigValueError, check_config
from speechlab.run.stops import CheckBeforeSweep, RunStopped, raised_on_purpose, stops_as_messages
from speechlab.tasks.step_guard import NonFiniteStepGuard, NonFiniteTrainingError
from tests.conftest import composed
from tests.integration.test_configs import job_config


def test_an_error_speechlab_raised_on_purpose_leaves_as_its_message(tmp_path, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    run_log = tmp_path / "train.log"
    handler = logging.FileHandler(run_log)
    logging.getLogger().addHandler(handler)
    try:
        with (
            pytest.raises(RunStopped) as caught,
            stops_as_messages(),
            composed("train", ["model.compile=true"], tmp_path) as cfg,
        ):
            check_config(job_config(cfg), ["model.compile=true"])
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    message = str(caught.value)
    assert message.startswith("Error: model.compile=true")
    assert "Traceback" not in message and f"its traceback is in {run_log}" in message
    assert isinstance(caught.value.__cause__, ConfigValueError)
    logged = run_log.read_text()
    assert "Traceback (most recent call last)" in logged and "ConfigValueError" in logged


def test_a_diverged_run_is_an_expected_stop():
    guard = NonFiniteStepGuard(max_consecutive=2)
    guard.record(False, 0)
    with pytest.raises(NonFiniteTrainingError) as caught:
        guard.record(False, 1)
    assert raised_on_purpose(caught.value)


@pytest.mark.parametrize(
    "error",
    [KeyError("x"), TypeError("'NoneType' object is not callable"), ZeroDivisionError()],
)
def test_an_unexpected_error_keeps_its_type_and_traceback(error, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)

    def fail():
        raise error

    with pytest.raises(type(error)) as caught, stops_as_messages():
        fail()
    assert caught.value is error and not raised_on_purpose(error)


def test_hydra_full_error_keeps_every_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with (
        pytest.raises(ConfigValueError),
        stops_as_messages(),
        composed("train", ["model.compile=true"], tmp_path) as cfg,
    ):
        check_config(job_config(cfg), ["model.compile=true"])


def fake_slurm(folder: Path, *commands: str) -> None:
    """Executables of SLURM's names in ``folder`` (``sbatch``: a login node's)."""
    for command in commands:
        (folder / command).write_text("#!/bin/sh\nexit 0\n")
        (folder / command).chmod(0o755)


def sweep_stop(overrides: list[str], tmp_path: Path, capsys) -> str:
    """What CheckBeforeSweep prints when it stops a multirun of ``overrides`` (exit status 1)."""
    with (
        composed("train", ["launcher=submitit_slurm", *overrides], tmp_path) as cfg,
        pytest.raises(SystemExit) as caught,
    ):
        CheckBeforeSweep().on_multirun_start(config=cfg)
    assert caught.value.code == 1
    printed = capsys.readouterr().err
    assert "Traceback" not in printed
    return printed


def test_a_slurm_sweep_that_cannot_be_sized_stops_before_any_job(tmp_path, monkeypatch, capsys):
    fake_slurm(tmp_path, "sbatch")
    monkeypatch.setenv("PATH", str(tmp_path))  # sbatch, but no sinfo
    printed = sweep_stop(["trainer=ddp"], tmp_path, capsys)
    assert "trainer.devices=auto" in printed and "set trainer.devices=<GPUs per node>" in printed


def test_a_sweep_whose_settings_resolve_starts(tmp_path: Path, monkeypatch):
    fake_slurm(tmp_path, "sbatch")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with composed("train", ["launcher=submitit_slurm", "trainer.devices=2"], tmp_path) as cfg:
        CheckBeforeSweep().on_multirun_start(config=cfg)
        assert OmegaConf.select(cfg, "hydra.launcher.gpus_per_node") == 2


def test_a_slurm_sweep_off_the_cluster_says_where_to_start_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch: not a SLURM login node
    printed = sweep_stop(["trainer.devices=1"], tmp_path, capsys)
    assert "sbatch" in printed and "launcher=submitit_local" in printed


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        # our own check inside a constructor: the message alone, naming the target
        (
            {
                "_target_": "speechlab.audio.augment.WaveformAugment",
                "sample_rate": 16000,
                "noise_prob": 2.0,
            },
            RunStopped,
        ),
        # a library's error inside a constructor: a bug, with its own traceback
        ({"_target_": "torch.nn.Linear", "in_features": -3, "out_features": 2}, RuntimeError),
    ],
)
def test_a_constructor_error_is_judged_by_its_cause(target, expected, monkeypatch):
    import hydra

    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(expected) as caught, stops_as_messages():
        hydra.utils.instantiate(target)
    if expected is RunStopped:
        assert "noise_prob must be in [0, 1]" in str(caught.value)
        assert "speechlab.audio.augment.WaveformAugment" in str(caught.value)
    else:
        assert caught.value.__traceback__ is not None
