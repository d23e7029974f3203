"""Sharded streaming: shards written with their index, streamed disjointly to 2 ranks x 2
workers from a local folder and from an HTTP server, reshuffled every epoch, resumed mid-epoch."""

from __future__ import annotations

import functools
import http.server
import io
import json
import shutil
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from torch.utils.data import DataLoader

from speechlab.audio.io import read_audio
from speechlab.data.collate import Batch, collate_examples
from speechlab.data.sampler import padding_efficiency
from speechlab.data.shard_index import ShardIndexError, load_shard_index
from speechlab.data.shard_stream import ShardStreamDataset, buffer_batches
from speechlab.data.shard_writer import write_shards
from speechlab.data.targets import ClassLabels
from speechlab.data.utterance import Utterance

RATE = 8000
LABELS = ["yes", "no"]
CLIP = 0.25  # seconds: 32 clips of 0.25 s, shards of 1 s -> 8 shards of 4 clips


def _clips(folder: Path, count: int, seconds: float) -> list[Utterance]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    utterances = []
    for i in range(count):
        path = folder / f"clip.{i:03d}.wav"  # a dot in the id: keys must not come from ids
        sf.write(path, 0.1 * rng.standard_normal(int(seconds * RATE)), RATE, subtype="PCM_16")
        utterances.append(
            Utterance(f"clip.{i:03d}", str(path), seconds, RATE, label=LABELS[i % 2], speaker="s")
        )
    return utterances


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Utterance]]:
    root = tmp_path_factory.mktemp("shards")
    utterances = _clips(root / "audio", 32, CLIP)
    write_shards(utterances, root / "out", "train", shard_seconds=4 * CLIP)
    return root / "out", utterances


@pytest.fixture(scope="module")
def server(corpus: tuple[Path, list[Utterance]]) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` serving the shards' folder from a thread."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(corpus[0]))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _dataset(location: str, rank: int, epoch: int = 0, **options: object) -> ShardStreamDataset:
    settings = dict(batch_seconds=2 * CLIP, buffer_size=8, seed=3, world_size=2, num_workers=2)
    settings.update(options)
    dataset = ShardStreamDataset(
        load_shard_index(location), RATE, ClassLabels(LABELS), rank=rank, **settings
    )
    dataset.set_epoch(epoch)
    return dataset


def _epoch(dataset: ShardStreamDataset) -> list[Batch]:
    loader = DataLoader(
        dataset, batch_size=None, num_workers=dataset.num_workers, collate_fn=collate_examples
    )
    return list(loader)


def test_shards_hold_original_audio_and_records_with_an_index(corpus) -> None:
    out, utterances = corpus
    index = json.loads((out / "train" / "index.json").read_text())
    assert index["utterances"] == 32 and index["skipped"] == 0
    assert [s["name"] for s in index["shards"]] == [f"shard-{i:06d}.tar" for i in range(8)]
    assert all(s["utterances"] == 4 and s["seconds"] == pytest.approx(1.0) for s in index["shards"])
    originals = {u.id: Path(u.audio_path).read_bytes() for u in utterances}
    seen = {}
    for shard in sorted((out / "train").glob("shard-*.tar")):
        with tarfile.open(shard) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if name.endswith(".json"):
                record = json.loads(data)
                seen[record["id"]] = members[name[: -len("json")] + record["audio"]]
                assert record["duration"] == CLIP and record["label"] in LABELS
    assert seen == originals  # every utterance once, its file's bytes unchanged


@pytest.mark.parametrize("where", ["folder", "http", "http_pattern"])
def test_two_ranks_two_workers_see_every_utterance_once_per_epoch(corpus, server, where) -> None:
    out, utterances = corpus
    location = {
        "folder": str(out),
        "http": server,
        "http_pattern": f"{server}/train/shard-{{000000..000007}}.tar",
    }[where]
    orders = []
    for epoch in (0, 1):
        per_rank = [_epoch(_dataset(location, rank, epoch)) for rank in (0, 1)]
        assert len(per_rank[0]) == len(per_rank[1]) == 8  # 16 clips a rank, 2 a batch
        ids = [i for batches in per_rank for batch in batches for i in batch.ids]
        assert sorted(ids) == sorted(u.id for u in utterances)  # disjoint, complete
        assert all(
            not batch.skipped and batch.audio.shape == (2, CLIP * RATE) for batch in per_rank[0]
        )
        orders.append(ids)
    assert orders[0] != orders[1]  # shards and batches reshuffled


def test_uneven_shards_give_every_rank_the_same_batch_count(tmp_path) -> None:
    utterances = _clips(tmp_path / "audio", 29, CLIP)  # 8 shards, the last of 1 clip
    write_shards(utterances, tmp_path / "out", "train", shard_seconds=4 * CLIP)
    datasets = [_dataset(str(tmp_path / "out"), rank) for rank in (0, 1)]
    plans = [dataset.plan() for dataset in datasets]
    assert len(plans[0]) == len(plans[1])
    batches = [_epoch(dataset) for dataset in datasets]
    assert [len(b) for b in batches] == [len(plans[0])] * 2
    ids = [i for rank in batches for batch in rank for i in batch.ids]
    assert len(ids) == len(set(ids))  # never twice
    dropped = sum(plan.dropped for plan in plans)
    assert dropped > 0 and 29 - len(ids) <= 2 * dropped  # only what was left out


def test_resume_continues_with_the_next_unseen_batch_without_reading_done_shards(
    corpus, tmp_path
) -> None:
    out, _ = corpus
    dataset = _dataset(str(out), rank=1, epoch=1)
    full = [batch.ids for batch in _epoch(dataset)]
    shutil.copytree(out, tmp_path / "out")
    plan = dataset.plan()
    for worker in plan.workers:  # 4 batches done: each worker's first shard (2 batches each)
        assert worker[0][0] == worker[1][0] != worker[2][0]
        (tmp_path / "out" / "train" / f"shard-{worker[0][0]:06d}.tar").unlink()
    for done, location in ((3, out), (4, tmp_path / "out")):
        resumed = _dataset(str(location), rank=1)
        resumed.load_state_dict({"epoch": 1, "batches_done": done})
        batches = _epoch(resumed)
        assert [batch.ids for batch in batches] == full[done:]
        assert not any(batch.skipped for batch in batches)  # the deleted shards were not read


def test_resume_after_a_worker_has_ended(tmp_path) -> None:
    utterances = _clips(tmp_path / "audio", 21, CLIP)  # 6 shards: workers of unequal length
    write_shards(utterances, tmp_path / "out", "train", shard_seconds=4 * CLIP)
    dataset = _dataset(str(tmp_path / "out"), rank=0)
    counts = [len(worker) for worker in dataset.plan().workers]
    assert counts[0] != counts[1]
    full = [batch.ids for batch in _epoch(dataset)]
    resumed = _dataset(str(tmp_path / "out"), rank=0)
    resumed.load_state_dict({"epoch": 0, "batches_done": len(full) - 1})
    assert [batch.ids for batch in _epoch(resumed)] == full[-1:]


def test_bad_audio_and_broken_shards_are_skipped_in_their_batch_slots(tmp_path) -> None:
    utterances = _clips(tmp_path / "audio", 8, CLIP)
    Path(utterances[0].audio_path).write_bytes(b"not audio at all")
    missing = Utterance("gone", str(tmp_path / "gone.wav"), CLIP, RATE, label="yes")
    report = write_shards([*utterances, missing], tmp_path / "out", "train", shard_seconds=1.0)
    assert set(report.skipped) == {utterances[0].audio_path, missing.audio_path}
    assert report.index.skipped == 2 and report.index.utterances == 7
    shard = tmp_path / "out" / "train" / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[:20000])  # cut off mid-shard
    dataset = _dataset(str(tmp_path / "out"), rank=0, world_size=1, num_workers=0)
    batches = _epoch(dataset)
    assert len(batches) == len(dataset)
    skipped = [reason for batch in batches for _, reason in batch.skipped]
    kept = [i for batch in batches for i in batch.ids]
    assert skipped and len(skipped) + len(kept) == 7


def test_a_missing_index_says_what_was_expected_where(tmp_path) -> None:
    with pytest.raises(ShardIndexError, match="speechlab shard"):
        load_shard_index(tmp_path)


def test_buffer_bucketing_pads_less_with_a_larger_buffer() -> None:
    durations = np.random.default_rng(0).uniform(1.0, 15.0, 2000)
    efficiency = {}
    for size in (8, 64, 512):
        batches = buffer_batches(durations, size, 60.0, None, np.random.default_rng(0))
        assert sorted(i for b in batches for i in b) == list(range(2000))
        assert all(durations[b].max() * len(b) <= 60.0 for b in batches if len(b) > 1)
        efficiency[size] = padding_efficiency(durations, batches)
    assert efficiency[8] < efficiency[64] < efficiency[512]
    assert efficiency[512] > 0.95


def test_a_segment_of_a_long_recording_is_stored_alone(tmp_path) -> None:
    (recording,) = _clips(tmp_path / "audio", 1, 3.0)
    cut = Utterance("cut", recording.audio_path, 0.5, RATE, offset=1.0, label="no")
    write_shards([cut], tmp_path / "out", "train", shard_seconds=1.0)
    with tarfile.open(tmp_path / "out" / "train" / "shard-000000.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert sorted(members) == ["000000000.flac", "000000000.json"]
    stored, rate = sf.read(io.BytesIO(members["000000000.flac"]), dtype="float32")
    expected = read_audio(recording.audio_path, RATE, offset=1.0, duration=0.5).numpy()
    assert rate == RATE and np.array_equal(stored, expected)


def test_a_loader_with_another_worker_count_than_planned_is_refused(corpus) -> None:
    dataset = _dataset(str(corpus[0]), rank=0, num_workers=2)
    with pytest.raises(ValueError, match="num_workers=2"):
        next(iter(DataLoader(dataset, batch_size=None, num_workers=0)))
