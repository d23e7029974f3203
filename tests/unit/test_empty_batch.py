"""A batch whose every file failed to decode still reaches every parameter (DDP stays in step)."""

from __future__ import annotations

import hydra
import pytest

from speechlab.data.collate import collate_examples
from speechlab.text.tokenizers import CharTokenizer
from tests.conftest import composed


@pytest.mark.parametrize("model", ["kws_cnn", "ctc_lstm", "las", "rnnt"])
def test_an_empty_batch_gives_a_zero_loss_that_reaches_every_parameter(model, tmp_path):
    with composed("train", [f"model={model}"], tmp_path) as cfg:
        if model == "kws_cnn":
            inputs = {"labels": ["yes", "no", "_unknown_"]}
        else:
            inputs = {"tokenizer": CharTokenizer.train(["yes no up down"]).state()}
        task = hydra.utils.instantiate(cfg.model, **inputs)
    empty = collate_examples([])
    loss = task.training_step(empty, 0)
    assert float(loss) == 0.0
    loss.backward()
    assert all(p.grad is not None for p in task.parameters() if p.requires_grad)
