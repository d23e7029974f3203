"""An EMA run evaluates, and the average of its checkpoints evaluates."""

from __future__ import annotations

import pytest
import torch

from speechlab.run.train import run as train
from tests.conftest import composed
from tests.integration.test_train import mini_commands  # noqa: F401  (session fixture)
from tests.integration.tiny_kws import TINY


@pytest.mark.slow
@pytest.mark.usefixtures("mini_commands")
def test_ema_run_then_checkpoint_average_evaluates(data_dir, tmp_path):
    from speechlab.checkpoint.recipe import load_checkpoint
    from speechlab.cli import main as speechlab
    from speechlab.run.evaluate import run as evaluate

    run_dir = tmp_path / "ema"
    overrides = [
        *TINY,
        f"paths.data_dir={data_dir}",
        "callbacks=ema",
        "callbacks.ema.decay=0.9",
        "callbacks.progress_bar=null",
        "callbacks.last_checkpoint.every_n_train_steps=4",
        "callbacks.model_checkpoint.save_top_k=-1",
    ]
    with composed("train", overrides, run_dir) as cfg:
        metrics = train(cfg)
    assert metrics["test/acc"] > 1 / 12
    epochs = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    assert len(epochs) == 2
    # The EMA callback keeps the running average; checkpoints hold the averaged weights.
    saved = load_checkpoint(epochs[-1])
    assert any("Averaging" in key for key in saved["callbacks"])

    averaged_path = tmp_path / "average.ckpt"
    assert speechlab(["average", *map(str, epochs), "-o", str(averaged_path)]) == 0
    averaged = load_checkpoint(averaged_path)
    first, second = (load_checkpoint(p)["state_dict"] for p in epochs)
    name = next(n for n, t in first.items() if t.is_floating_point() and t.numel() > 10)
    assert torch.allclose(averaged["state_dict"][name], (first[name] + second[name]) / 2)
    with composed(
        "evaluate", [f"ckpt_path={averaged_path}", "trainer.accelerator=cpu"], tmp_path / "e"
    ) as cfg:
        assert 0.0 <= evaluate(cfg)["test/acc"] <= 1.0

    with pytest.raises(SystemExit, match="at least two"):
        speechlab(["average", str(epochs[0]), "-o", str(tmp_path / "x.ckpt")])
