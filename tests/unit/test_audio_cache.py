"""The decoded-audio cache: the same samples as decoding, read back instead of decoded, shared by
datasets of one manifest, invalidated with it, and never a failure when it cannot be written."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechlab.audio import io as audio_io
from speechlab.data.audio_cache import DecodedAudioCache
from speechlab.data.datamodule import SpeechDataModule
from tests.unit.test_manifest import FolderReader


def write_tone(path: Path, rate: int = 22050, seconds: float = 0.4, hz: float = 440.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(rate * seconds)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate, subtype="PCM_16")


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for split in ("train", "validation", "test"):
        write_tone(root / split / f"{split}_a.wav")
        write_tone(root / split / f"{split}_b.wav", hz=660.0)
    return root


def datamodule(corpus: Path, cache_dir: Path, audio_cache: str | None) -> SpeechDataModule:
    module = SpeechDataModule(
        FolderReader(corpus), cache_dir=cache_dir, target_field="label", audio_cache=audio_cache
    )
    module.setup()
    return module


class CountingDecoder:
    """Counts calls of read_audio (the decode every cached read avoids)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = audio_io.read_audio

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr("speechlab.data.dataset.read_audio", counted)


@pytest.mark.parametrize("kind", ["disk", "memory"])
def test_cached_audio_equals_decoded_audio_and_skips_the_decode(
    kind: str, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    plain = datamodule(corpus, tmp_path / "cache", None).datasets["train"]
    cached = datamodule(corpus, tmp_path / "cache", kind).datasets["train"]
    decoder = CountingDecoder(monkeypatch)
    first = [cached[i].audio for i in range(len(cached))]
    assert decoder.calls == len(cached)
    again = [cached[i].audio for i in range(len(cached))]
    assert decoder.calls == len(cached)  # the second epoch decodes nothing
    expected = [plain[i].audio for i in range(len(plain))]
    for a, b, c in zip(first, again, expected, strict=True):
        assert a.dtype == torch.float32 and torch.equal(a, c) and torch.equal(b, c)
    if kind == "disk":
        manifest_dir = cached.cache.directory.parent
        assert cached.cache.directory.name == "decoded-16000Hz"
        assert manifest_dir == datamodule(corpus, tmp_path / "cache", None).manifest.directory
        assert len(list(cached.cache.directory.rglob("*.npy"))) == len(cached)


def test_the_disk_cache_is_shared_by_runs_and_rebuilt_with_the_manifest(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    first = datamodule(corpus, tmp_path / "cache", "disk").datasets["train"]
    _ = [first[i] for i in range(len(first))]
    decoder = CountingDecoder(monkeypatch)
    second_run = datamodule(corpus, tmp_path / "cache", "disk").datasets["train"]
    _ = [second_run[i] for i in range(len(second_run))]
    assert decoder.calls == 0  # another run over the same manifest decodes nothing

    clip = corpus / "train" / "train_a.wav"
    write_tone(clip, hz=880.0)  # the corpus changes: a new manifest, so a new cache
    os.utime(clip, ns=(1, 1))
    changed = datamodule(corpus, tmp_path / "cache", "disk").datasets["train"]
    assert changed.cache.directory != second_run.cache.directory
    index = [u.id for u in changed.utterances].index("train_a")
    assert torch.equal(changed[index].audio, audio_io.read_audio(clip, 16000))
    assert decoder.calls == 1


def test_an_unwritable_cache_warns_once_and_training_data_still_comes(
    corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    dataset = datamodule(corpus, tmp_path / "cache", "disk").datasets["train"]
    blocker = dataset.cache.directory
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the cache folder should be")
    examples = [dataset[i] for i in range(len(dataset))]
    assert all(example.audio.numel() > 0 for example in examples)
    warnings = [r for r in caplog.records if "decoded-audio cache off" in r.getMessage()]
    assert len(warnings) == 1 and "data.audio_cache=null" in warnings[0].getMessage()


@pytest.mark.parametrize(
    "damage",
    [b"", b"\x93NUMPY damaged", "cut", "int16", "2-D"],
    ids=["empty", "garbage", "cut", "int16", "2-D"],
)
def test_a_damaged_cache_entry_is_decoded_again(damage, corpus: Path, tmp_path: Path):
    dataset = datamodule(corpus, tmp_path / "cache", "disk").datasets["train"]
    expected = dataset[0].audio
    entry = next(dataset.cache.directory.rglob("*.npy"))
    if damage == "cut":
        entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    elif damage == "int16":
        np.save(entry, (expected.numpy() * 32767).astype(np.int16))
    elif damage == "2-D":
        np.save(entry, expected.numpy()[None, :])
    else:
        entry.write_bytes(damage)
    assert torch.equal(dataset[0].audio, expected)
    assert torch.equal(dataset[0].audio, expected)  # rewritten: read back whole


def test_an_unknown_cache_kind_is_refused_with_the_choices(corpus: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="data.audio_cache must be null, memory or disk"):
        SpeechDataModule(FolderReader(corpus), cache_dir=tmp_path, audio_cache="ram")
    assert DecodedAudioCache.for_manifest(None, 16000, tmp_path) is None
