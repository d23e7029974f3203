import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlab.audio.io import AudioError, probe
from speechlab.data import manifest as manifest_module
from speechlab.data.manifest import MANIFEST_VERSION, load_or_build_manifest
from speechlab.data.reader import CorpusLayoutError, ScanReport
from speechlab.data.utterance import Utterance


class FolderReader:
    """A minimal reader: every wav in <root>/<split>/ is one utterance labelled by its stem."""

    name = "folder"

    def __init__(self, root: Path, option: int = 0):
        self.root = Path(root)
        self.option = option
        self.scans = 0

    def check_layout(self) -> None:
        if not self.root.is_dir():
            raise CorpusLayoutError(f"expected a folder at {self.root}")

    def options(self) -> dict:
        return {"option": self.option}

    def fingerprint_paths(self):
        return self.root.rglob("*.wav")

    def scan(self, split: str, report: ScanReport):
        self.scans += 1
        for path in sorted((self.root / split).glob("*.wav")):
            try:
                info = probe(path)
            except AudioError as error:
                report.skip(path, str(error))
                continue
            yield Utterance(path.stem, str(path), info.duration, info.sample_rate, label=path.stem)


def write_clip(path: Path, seconds: float = 0.5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(int(16000 * seconds), dtype=np.float32), 16000, subtype="PCM_16")


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for split in ("train", "validation", "test"):
        write_clip(root / split / f"{split}_a.wav")
    write_clip(root / "train" / "train_b.wav", seconds=1.0)
    (root / "train" / "broken.wav").write_bytes(b"not audio at all")
    return root


def test_manifest_is_built_then_reused(corpus: Path, tmp_path: Path):
    reader = FolderReader(corpus)
    first = load_or_build_manifest(reader, tmp_path / "cache")
    assert [u.id for u in first.splits["train"]] == ["train_a", "train_b"]
    assert first.splits["train"][1].duration == pytest.approx(1.0)
    assert list(first.skipped) == [str(corpus / "train" / "broken.wav")]
    summary = json.loads((first.directory / "manifest.json").read_text())
    assert summary["counts"] == {"train": 2, "validation": 1, "test": 1}
    assert summary["version"] == MANIFEST_VERSION
    assert (first.directory / "train" / "duration.npy").is_file()

    scans = reader.scans
    second = load_or_build_manifest(reader, tmp_path / "cache")
    assert reader.scans == scans, "an unchanged corpus must not be scanned again"
    assert second.splits == first.splits and second.skipped == first.skipped


def test_manifest_is_rebuilt_when_the_corpus_or_options_change(corpus: Path, tmp_path: Path):
    first = load_or_build_manifest(FolderReader(corpus), tmp_path / "cache")
    write_clip(corpus / "test" / "test_new.wav")
    second = load_or_build_manifest(FolderReader(corpus), tmp_path / "cache")
    assert second.directory != first.directory
    assert [u.id for u in second.splits["test"]] == ["test_a", "test_new"]
    third = load_or_build_manifest(FolderReader(corpus, option=1), tmp_path / "cache")
    assert third.directory not in (first.directory, second.directory)


def test_an_old_format_cache_is_rebuilt_not_misread(corpus: Path, tmp_path: Path, monkeypatch):
    # A cache written by version 2 (JSONL splits) lives under another fingerprint: never read.
    monkeypatch.setattr(manifest_module, "MANIFEST_VERSION", 2)
    old_key_reader = FolderReader(corpus)
    old_dir = Path(tmp_path / "cache") / (
        f"folder-{manifest_module.corpus_fingerprint(old_key_reader)[:16]}"
    )
    monkeypatch.undo()
    # And one in the old layout at the current folder (copied by hand, say) is rebuilt in place.
    reader = FolderReader(corpus)
    directory = tmp_path / "cache" / f"folder-{manifest_module.corpus_fingerprint(reader)[:16]}"
    assert directory != old_dir
    directory.mkdir(parents=True)
    stale = Utterance("stale", "/gone.wav", 9.0, 8000, label="stale")
    (directory / "train.jsonl").write_text(stale.to_json() + "\n")
    (directory / "manifest.json").write_text(json.dumps({"counts": {"train": 1}}))

    manifest = load_or_build_manifest(reader, tmp_path / "cache")

    assert reader.scans == 3, "an old-format cache must be rebuilt from the corpus"
    assert manifest.directory == directory
    assert [u.id for u in manifest.splits["train"]] == ["train_a", "train_b"]
    assert not (directory / "train.jsonl").exists()
    assert json.loads((directory / "manifest.json").read_text())["version"] == MANIFEST_VERSION


def test_a_damaged_cache_is_rebuilt(corpus: Path, tmp_path: Path):
    first = load_or_build_manifest(FolderReader(corpus), tmp_path / "cache")
    (first.directory / "train" / "text.offsets.npy").write_bytes(b"cut")
    reader = FolderReader(corpus)
    again = load_or_build_manifest(reader, tmp_path / "cache")
    assert reader.scans == 3
    assert again.splits == first.splits


def test_missing_root_stops_before_anything_is_written(tmp_path: Path):
    with pytest.raises(CorpusLayoutError, match="expected a folder"):
        load_or_build_manifest(FolderReader(tmp_path / "absent"), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_utterance_round_trips_and_rejects_unknown_fields():
    utterance = Utterance("x", "/a.wav", 1.5, 16000, offset=0.5, text="héllo", label="yes")
    import json

    assert Utterance.from_dict(json.loads(utterance.to_json())) == utterance
    with pytest.raises(ValueError, match="unknown fields"):
        Utterance.from_dict({**json.loads(utterance.to_json()), "extra": 1})


def test_a_segment_at_offset_zero_reads_only_its_duration(tmp_path: Path):
    import torch

    from speechlab.data.dataset import SpeechDataset

    noise = tmp_path / "noise.wav"
    write_clip(noise, seconds=3.0)
    segment = Utterance("s", str(noise), duration=1.0, sample_rate=16000, offset=0.0, label="x")
    whole = Utterance("w", str(noise), duration=3.0, sample_rate=16000, label="x")
    dataset = SpeechDataset([segment, whole], 16000, target=lambda u: torch.tensor(0))
    assert dataset[0].audio.numel() == 16000
    assert dataset[1].audio.numel() == 48000
