"""Every model config runs as typed with a corpus it can learn from: `python train.py model=<X>
data=<Y>` trains, validates and tests one batch (debug=fast_dev_run), with the trainer's own
defaults (gradient clipping, precision), so a model that cannot run with them is caught here.

The corpus of each model follows from its task: keyword spotters learn labels (mini_commands),
translators a translation (mini_covost), synthesizers and vocoders one voice (mini_speaker), the
recognizers read speech (mini_voice). The embedded corpora are generated small, once per session.
"""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import pytest

from speechlab.run.train import run as train
from tests.conftest import CONF, SMALL_CORPORA, composed

pytestmark = pytest.mark.usefixtures("one_thread")

SYNTHESIS = ("tts", "vocoder")  # metric namespaces of the tasks that learn one voice


def corpus_for(model: str) -> str:
    """The embedded corpus a model of this config learns from, by its task."""
    with composed("train", [f"model={model}"], Path("unused")) as cfg:
        task = hydra.utils.get_class(cfg.model._target_)
    if task.target_field == "label":
        return "mini_commands"
    if task.source_field is not None or task.target_field == "translation":
        return "mini_covost"
    return "mini_speaker" if task.metric_namespace in SYNTHESIS else "mini_voice"


MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
PAIRS = [(model, corpus_for(model)) for model in MODELS]


@pytest.mark.parametrize(("model", "data"), PAIRS, ids=[f"{m}-{d}" for m, d in PAIRS])
def test_every_model_config_trains_validates_and_tests_a_batch_as_typed(
    model: str, data: str, data_dir: Path, tmp_path: Path
):
    overrides = [
        f"model={model}",
        f"data={data}",
        *SMALL_CORPORA.get(data, []),
        f"paths.data_dir={data_dir}",
        "debug=fast_dev_run",
    ]
    with composed("train", overrides, tmp_path) as cfg:
        assert cfg.trainer.gradient_clip_val, "the trainer's default clipping stays on"
        metrics = train(cfg)
    tested = {k: v for k, v in metrics.items() if k.startswith("test/")}
    assert tested, f"model={model} data={data} reported no test metric: {sorted(metrics)}"
    assert all(math.isfinite(v) for v in tested.values()), tested
    assert any(k.startswith("train/loss") for k in metrics), sorted(metrics)
