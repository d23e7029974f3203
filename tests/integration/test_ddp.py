"""Two processes of DDP on CPU: they train, validate and test together, and rank 0 alone writes."""

from __future__ import annotations

import csv
import json
import re

import pytest

from tests.conftest import REPO
from tests.integration.test_train import mini_commands  # noqa: F401  (session fixture)
from tests.integration.tiny_kws import finish, train_process


@pytest.mark.slow
@pytest.mark.usefixtures("mini_commands")
def test_two_process_ddp_on_cpu_trains_validates_tests_and_rank0_alone_writes(data_dir, tmp_path):
    run_dir = tmp_path / "ddp"
    process = train_process(run_dir, data_dir, "trainer=ddp_cpu", "trainer.limit_test_batches=null")
    output = finish(process)
    assert "Starting with 2 processes" in output or "MEMBER: 2/2" in output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val/acc", "test/acc"} <= set(metrics)
    # Predictions come from both ranks: every test utterance once.
    log_text = (run_dir / "train.log").read_text()
    assert log_text.count("train: ") == 1, "only rank 0 writes the run log"
    test_size = int(re.search(r"test: (\d+) utterances", log_text).group(1))
    ids = [row[0] for row in csv.reader((run_dir / "predictions.tsv").open(), delimiter="\t")]
    assert len(ids[1:]) == len(set(ids[1:])) == test_size
    # One run dir, one set of checkpoints, one CSV log.
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert len(names) == 2 and names[0].startswith("epoch_") and names[1] == "last.ckpt"
    assert [p.name for p in (run_dir / "csv").iterdir() if p.suffix == ".csv"] == ["metrics.csv"]
    assert not (REPO / "outputs").exists() and not (tmp_path / "outputs").exists()
