"""Sharded streaming: shards written with their index, streamed disjointly to 2 ranks x 2
workers from a local folder and from an HTTP server, reshuffled every epoch, resumed mid-epoch;
ranks given equal seconds and batch counts whatever the shard sizes."""

from __future__ import annotations

import functools
import http.server
import io
import json
import logging
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
from speechlab.data.shard_index import ShardIndex, ShardIndexError, ShardInfo, load_shard_index
from speechlab.data.shard_stream import ShardStreamDataset, buffer_batches, plan_epoch
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


def test_uneven_shards_stream_every_clip_once_with_the_same_batch_count_per_rank(tmp_path) -> None:
    utterances = _clips(tmp_path / "audio", 29, CLIP)  # 8 shards, the last of 1 clip
    write_shards(utterances, tmp_path / "out", "train", shard_seconds=4 * CLIP)
    datasets = [_dataset(str(tmp_path / "out"), rank) for rank in (0, 1)]
    plans = [dataset.plan() for dataset in datasets]
    assert len(plans[0]) == len(plans[1])
    batches = [_epoch(dataset) for dataset in datasets]
    assert [len(b) for b in batches] == [len(plans[0])] * 2
    ids = [i for rank in batches for batch in rank for i in batch.ids]
    assert sorted(ids) == sorted(u.id for u in utterances)  # all, once, none left out
    assert [len([i for batch in rank for i in batch.ids]) for rank in batches] in (
        [14, 15],
        [15, 14],
    )
    assert plans[0].dropped == plans[0].epoch_dropped_batches == 0


def _index(*sizes: int, seconds: float = 2.5) -> ShardIndex:
    """Index metadata alone: shards of ``sizes`` utterances of ``seconds`` each (1.5-3.5 s
    when ``seconds`` is 0), no audio behind them."""
    rng = np.random.default_rng(sum(sizes))
    return ShardIndex(
        tuple(
            ShardInfo(
                f"shard-{i:06d}.tar",
                tuple(rng.uniform(1.5, 3.5, n) if not seconds else [seconds] * n),
            )
            for i, n in enumerate(sizes)
        )
    )


def _plans(index: ShardIndex, ranks: int, workers: int, epoch: int = 0, **options) -> list:
    def batch(durations: np.ndarray, rng: np.random.Generator) -> list[list[int]]:
        return buffer_batches(durations, 1000, 32.0, None, rng)

    return [plan_epoch(index, epoch, 0, r, ranks, workers, batch, **options) for r in range(ranks)]


@pytest.mark.parametrize(
    "sizes",
    [(1279, 1), (1, 1279), (273, 263, 267, 269, 208), (1000, 0, 0, 3), (640, 640)],
    ids=["1279+1", "1+1279", "600s-shards", "empty-shards", "even"],
)
@pytest.mark.parametrize("ranks,workers", [(2, 0), (2, 2), (3, 4), (8, 1)])
def test_ranks_get_equal_seconds_and_batch_counts_whatever_the_shard_sizes(
    sizes, ranks, workers
) -> None:
    index = _index(*sizes, seconds=0)
    for epoch in (0, 1):
        plans = _plans(index, ranks, workers, epoch, max_dropped=0.0)
        assert len({len(plan) for plan in plans}) == 1  # the same steps on every rank
        assert all(plan.epoch_dropped_utterances == plan.dropped == 0 for plan in plans)
        taken = [
            [(shard, p) for worker in plan.workers for shard, batch in worker for p in batch]
            for plan in plans
        ]
        every = [(s, p) for s, shard in enumerate(index.shards) for p in range(shard.utterances)]
        assert sorted(x for rank in taken for x in rank) == every  # each utterance once
        seconds = [sum(index.shards[s].durations[p] for s, p in rank) for rank in taken]
        assert max(seconds) - min(seconds) <= 2 * 3.5  # within an utterance of the mean


def test_a_rank_gets_no_utterance_only_when_there_are_fewer_utterances_than_ranks() -> None:
    plans = _plans(_index(3, 0, 0), ranks=3, workers=2)  # 3 shards, two of them empty
    assert [sum(len(b) for w in plan.workers for _, b in w) for plan in plans] == [1, 1, 1]
    with pytest.raises(ValueError, match="2 utterance\\(s\\) to train on.*fewer than the 3 rank"):
        _plans(_index(2, 0, 0, 0), ranks=3, workers=0)
    with pytest.raises(ValueError, match="longer than max_duration=2.0s"):
        _plans(_index(4, 4), ranks=2, workers=0, max_duration=2.0)


def test_an_epoch_leaving_out_more_than_the_allowed_share_stops_with_what_to_do(caplog) -> None:
    # One 100 s utterance, then 40 of 2.5 s: the seconds split gives rank 0 the long one alone,
    # and rank 1 makes 4 batches of 32 s, which rank 0 cannot match.
    index = ShardIndex((ShardInfo("shard-000000.tar", (100.0, *[2.5] * 40)),))
    with pytest.raises(
        ValueError, match="leaves out 3 batch.*more than data.shard_max_dropped=0.05"
    ):
        _plans(index, ranks=2, workers=0, max_dropped=0.05)
    plans = _plans(index, ranks=2, workers=0, max_dropped=1.0)
    assert [len(plan) for plan in plans] == [1, 1]
    assert plans[1].dropped == plans[0].epoch_dropped_batches == 3
    assert plans[0].epoch_dropped_utterances == 28 and plans[0].epoch_utterances == 41
    dataset = ShardStreamDataset(index, RATE, ClassLabels(LABELS), 32.0, 1000, world_size=2)
    with caplog.at_level(logging.WARNING, logger="speechlab.data.shard_stream"):
        summary = dataset.epoch_summary(0)
    assert summary == {
        "batches": 1,
        "utterances": 41,
        "dropped_batches": 3,
        "dropped_utterances": 28,
    }
    assert "3 batch(es) holding 28 of 41 utterances (68.3 %) left out" in caplog.text


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
