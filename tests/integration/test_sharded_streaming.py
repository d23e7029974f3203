"""`speechlab shard data=<corpus> -o <dir>` writes every split of a real corpus as tar shards, and
`data.shards=<dir>` streams the train split from them, resumable mid-epoch, to every DDP rank
alike whatever the shard sizes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from speechlab.cli import main
from speechlab.data.datamodule import build_datamodule
from speechlab.data.loader import StreamingDataLoader
from speechlab.data.shard_index import ShardIndexError, load_shard_index
from speechlab.run.train import run as train
from tests.conftest import REPO, composed, one_torch_thread, shared_data

SPEECH_COMMANDS = [
    "data=speech_commands",
    "data.reader.download=false",
    "data.reader.label_set=all",
    "trainer.accelerator=cpu",
]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], str]:
    """Shards of the real Speech Commands clips (3 s each) and the command's output."""
    root = shared_data("layouts", "speech_commands_v0.02")
    tmp = tmp_path_factory.mktemp("sharded")
    overrides = [*SPEECH_COMMANDS, f"data.reader.root={root}", f"paths.data_dir={tmp}/data"]
    args = ["shard", *overrides, "-o", str(tmp / "shards"), "--shard-seconds", "3"]
    with pytest.MonkeyPatch.context() as patch:
        lines: list[str] = []
        patch.setattr("builtins.print", lambda *a, **k: lines.append(" ".join(map(str, a))))
        assert main([*args, "--config-dir", str(REPO / "conf")]) == 0
    return tmp, overrides, "\n".join(lines)


def test_shard_writes_each_split_with_its_index(sharded) -> None:
    tmp, _, output = sharded
    manifest = next((tmp / "data" / "manifests").glob("speech_commands-*/manifest.json"))
    counts = json.loads(manifest.read_text())["counts"]
    assert counts["train"] > 3
    for split, count in counts.items():
        index = load_shard_index(tmp / "shards", split)
        assert index.utterances == count and index.skipped == 0
        assert all(shard.seconds >= 3 for shard in index.shards[:-1])
        for shard in index.shards:
            with tarfile.open(shard.url) as tar:
                assert len(tar.getnames()) == 2 * shard.utterances
    assert f"{counts['train']} utterances" in output


def test_data_shards_streams_the_train_split_and_resumes_mid_epoch(sharded) -> None:
    tmp, overrides, _ = sharded
    with composed("train", [*overrides, f"data.shards={tmp / 'shards'}"], tmp / "run") as cfg:
        datamodule = build_datamodule(cfg.data, target_field="label")
    loader = datamodule.train_dataloader()
    assert isinstance(loader, StreamingDataLoader)
    batches = [batch.ids for batch in loader]
    assert len(batches) == len(loader.dataset.plan()) > 1
    ids = sorted(i for batch in batches for i in batch)
    assert ids == sorted(u.id for u in datamodule.datasets["train"].utterances)
    loader.load_state_dict({"epoch": 0, "batches_done": 1})
    assert [batch.ids for batch in loader] == batches[1:]
    # What the task rejects (e.g. too short for CTC) is skipped on the stream, in its slot.
    datamodule.drop_inadmissible(lambda samples, target: "too short for the model")
    rejected = list(datamodule.train_dataloader())
    assert len(rejected) == len(batches) and not any(batch.ids for batch in rejected)
    assert {reason for batch in rejected for _, reason in batch.skipped} == {
        "too short for the model"
    }


def test_shard_of_a_missing_corpus_says_where_it_looked(tmp_path) -> None:
    overrides = [*SPEECH_COMMANDS, f"data.reader.root={tmp_path}/nowhere"]
    with pytest.raises(SystemExit, match="nowhere"):
        main(["shard", *overrides, "-o", str(tmp_path / "shards"), "--shard-seconds", "3"])


def test_a_run_whose_every_train_shard_is_lost_stops_instead_of_finishing_untrained(
    sharded, tmp_path
) -> None:
    tmp, overrides, _ = sharded
    shards = tmp_path / "shards"
    shutil.copytree(tmp / "shards", shards)
    for tar in (shards / "train").glob("*.tar"):
        tar.unlink()  # the index still lists them: every read fails
    run = [
        *overrides,
        "model=kws_cnn",
        f"data.shards={shards}",
        "trainer.max_epochs=1",
        "+trainer.limit_val_batches=0",  # this layout sample has no validation clips
        "test=false",  # nor test clips (a run checks the splits it will use before training)
        "callbacks.progress_bar=null",
    ]
    with (
        one_torch_thread(),
        composed("train", run, tmp_path / "run") as cfg,
        pytest.raises(RuntimeError, match="epoch 0 trained on nothing"),
    ):
        train(cfg)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "failed"
    assert not list((tmp_path / "run").glob("metrics.json"))  # nothing tested as if done


def test_a_wrong_shard_location_fails_when_the_data_is_set_up(sharded, tmp_path) -> None:
    tmp, overrides, _ = sharded
    with (
        composed("train", [*overrides, f"data.shards={tmp_path}/none"], tmp / "run") as cfg,
        pytest.raises(ShardIndexError, match="no shard index for the train split"),
    ):
        build_datamodule(cfg.data, target_field="label").setup()  # before any model is built
    with composed("train", [*overrides, "data.shards="], tmp / "run") as cfg:
        assert build_datamodule(cfg.data, target_field="label").shards is None  # empty: off


@pytest.mark.slow
def test_shards_of_8_and_1_clips_under_two_process_ddp_train_every_clip(tmp_path) -> None:
    """Before, each rank ran the smallest rank's batch count: the rank given the 1-clip shard
    made one batch, so the epoch trained 2 of its batches and the run said "finished"."""
    root = shared_data("layouts", "speech_commands_v0.02")
    data = [*SPEECH_COMMANDS, f"data.reader.root={root}", f"paths.data_dir={tmp_path}/data"]
    shards = tmp_path / "shards"
    args = ["shard", *data, "-o", str(shards), "--shard-seconds", "8", "--splits", "train"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("builtins.print", lambda *a, **k: None)
        assert main([*args, "--config-dir", str(REPO / "conf")]) == 0
    assert [shard.utterances for shard in load_shard_index(shards).shards] == [8, 1]
    for name in ("train.py", "conf"):
        (tmp_path / name).symlink_to(REPO / name)
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "train.py",
        "trainer=ddp_cpu",
        "model=kws_cnn",
        *data,
        f"data.shards={shards}",
        "data.batch_seconds=2",  # two clips a batch: 4 and 5 clips make 2 and 3 batches
        "trainer.max_epochs=1",
        "+trainer.limit_val_batches=0",  # this layout sample has no validation or test clips
        "test=false",
        "callbacks.progress_bar=null",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished"
    # Each rank got 4 or 5 clips; the rank with 2 batches split one to run 3, as the other.
    assert record["stream_epochs"] == [
        {"epoch": 0, "batches": 3, "utterances": 9, "dropped_batches": 0, "dropped_utterances": 0}
    ]
    assert record["dropped_batches"] == record["dropped_utterances"] == 0
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 3  # steps trained per rank (before: 1)
    assert "left out" not in result.stdout + result.stderr


def test_shard_without_a_size_uses_the_usual_one_gigabyte_and_says_so(tmp_path, capsys) -> None:
    root = shared_data("layouts", "speech_commands_v0.02")
    overrides = [*SPEECH_COMMANDS, f"data.reader.root={root}", f"paths.data_dir={tmp_path}/data"]
    args = ["shard", *overrides, "-o", str(tmp_path / "shards"), "--splits", "train"]
    assert main([*args, "--config-dir", str(REPO / "conf")]) == 0
    assert "shards of at most 1GB" in capsys.readouterr().err
    index = load_shard_index(tmp_path / "shards", "train")
    assert len(index.shards) == 1 and index.utterances > 3  # a few MB: one shard
    with pytest.raises(SystemExit) as shown:
        main(["shard", "--help"])
    assert shown.value.code == 0
    assert "1GB" in capsys.readouterr().out
