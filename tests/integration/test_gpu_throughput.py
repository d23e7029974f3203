"""benchmarks/gpu_throughput.py: the smoke run trains through the Trainer and reports every figure."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.conftest import REPO, one_torch_thread


@pytest.fixture
def gpu_throughput(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # the script imports its sibling
    return importlib.import_module("gpu_throughput")


def test_smoke_run_with_a_compiled_encoder_reports_every_figure(
    gpu_throughput: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "throughput.json"
    argv = ["--smoke", "--peak-tflops", "1", "--json", str(out)]
    # The eager backend: dynamo captures the encoder, no C++ is generated (seconds, not minutes).
    argv += ["model.compile.enabled=true", "model.compile.backend=eager"]
    with one_torch_thread():
        gpu_throughput.main(argv)

    figures = json.loads(out.read_text())
    assert figures["timed_steps"] == 2 and figures["compile"] is True
    for name in (
        "audio_seconds_per_second",
        "audio_seconds_per_second_overall",
        "minutes_per_960h_epoch",
        "gflop_per_audio_second",
        "achieved_tflops",
        "peak_memory_gib",
    ):
        assert figures[name] > 0, name
    epoch_minutes = 960 * 60 / figures["audio_seconds_per_second_overall"]
    assert figures["minutes_per_960h_epoch"] == pytest.approx(epoch_minutes)
    assert 0 < figures["flop_utilisation"] < 1
    assert 0 < figures["compile_padding_efficiency"] < figures["padding_efficiency"] <= 1
    assert figures["compile_first_step_s"]["train/256"] > 0  # clips <= 2.5 s: one padded size
    printed = capsys.readouterr().out
    assert "audio-s/s" in printed and "minutes per 960 h epoch" in printed
    assert "compiled train/256: first step" in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "kws_cnn", "trainer=cpu"], "learns 'label'"),
        pytest.param(
            ["trainer=gpu"],
            "no GPU is visible",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible"),
        ),
    ],
)
def test_a_run_it_cannot_measure_stops_before_training(
    gpu_throughput: ModuleType, argv: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        gpu_throughput.main(argv)
