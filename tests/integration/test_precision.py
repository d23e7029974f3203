"""Mixed precision: bf16 trains on CPU."""

from __future__ import annotations

import pytest
import torch

from speechlab.run.train import run as train
from tests.conftest import composed
from tests.integration.test_train import mini_commands  # noqa: F401  (session fixture)
from tests.integration.tiny_kws import TINY


@pytest.mark.slow
@pytest.mark.usefixtures("mini_commands")
def test_bf16_mixed_precision_trains_on_cpu(data_dir, tmp_path):
    overrides = [*TINY, f"paths.data_dir={data_dir}", "trainer.precision=bf16-mixed"]
    with composed("train", overrides, tmp_path) as cfg:
        metrics = train(cfg)
    assert metrics["test/acc"] > 1 / 12 and torch.isfinite(torch.tensor(metrics["val/loss"]))
