"""FSDDReader on a generated recordings/ tree and on the real shared FSDD copy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlab.corpora.fsdd import DIGIT_WORDS, FSDDReader, split_by_take
from speechlab.data.reader import SPLITS, CorpusLayoutError, ScanReport

SHARED_FSDD = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "fsdd"
RATE = 8_000
SPEAKERS = ("george", "theo")
DIGITS = (0, 3, 9)
TAKES = range(14)


def make_fsdd(root: Path) -> None:
    recordings = root / "recordings"
    recordings.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for digit in DIGITS:
        for speaker in SPEAKERS:
            for take in TAKES:
                samples = rng.normal(0, 0.1, RATE // 20).astype(np.float32)
                sf.write(recordings / f"{digit}_{speaker}_{take}.wav", samples, RATE)


def scan_all(reader: FSDDReader) -> tuple[dict[str, list], ScanReport]:
    reader.check_layout()
    report = ScanReport()
    return {split: list(reader.scan(split, report)) for split in SPLITS}, report


def test_split_by_take() -> None:
    assert [split_by_take(t) for t in (0, 4, 5, 9, 10, 49)] == [
        "test",
        "test",
        "validation",
        "validation",
        "train",
        "train",
    ]
    assert split_by_take(5, validation_takes=()) == "train"


def test_generated_tree(tmp_path: Path) -> None:
    make_fsdd(tmp_path)
    reader = FSDDReader(tmp_path)
    splits, report = scan_all(reader)
    assert not report.skipped
    per_take = len(DIGITS) * len(SPEAKERS)
    assert {s: len(u) for s, u in splits.items()} == {
        "train": 4 * per_take,
        "validation": 5 * per_take,
        "test": 5 * per_take,
    }
    for split, utterances in splits.items():
        for u in utterances:
            digit, speaker, take = u.id.split("_")
            assert split_by_take(int(take)) == split
            assert u.label == u.text == DIGIT_WORDS[int(digit)]
            assert u.speaker == speaker and u.language == "en"
            assert u.sample_rate == RATE and u.duration == pytest.approx(0.05)
    assert reader.labels() == list(DIGIT_WORDS)
    assert len(list(reader.fingerprint_paths())) == per_take * len(TAKES)


def test_validation_takes_are_configurable(tmp_path: Path) -> None:
    make_fsdd(tmp_path)
    reader = FSDDReader(tmp_path, validation_takes=[12, 13])
    splits, _ = scan_all(reader)
    assert {u.id.rsplit("_", 1)[1] for u in splits["validation"]} == {"12", "13"}
    assert reader.options() != FSDDReader(tmp_path).options()
    with pytest.raises(ValueError, match="test takes"):
        FSDDReader(tmp_path, validation_takes=[4, 5])


def test_bad_files_are_reported(tmp_path: Path) -> None:
    make_fsdd(tmp_path)
    sf.write(tmp_path / "recordings" / "0_george_20.wav", np.zeros(0, np.float32), RATE)
    (tmp_path / "recordings" / "notes.wav").write_bytes(b"x")
    splits, report = scan_all(FSDDReader(tmp_path))
    skipped = {Path(p).name: why for p, why in report.skipped.items()}
    assert "empty" in skipped["0_george_20.wav"]
    assert "{digit}_{speaker}_{take}" in skipped["notes.wav"]
    assert all(u.id != "0_george_20" for u in splits["train"])


def test_layout_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusLayoutError, match="does not exist") as missing:
        FSDDReader(tmp_path / "nowhere").check_layout()
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusLayoutError, match="no recordings/") as empty:
        FSDDReader(tmp_path / "empty").check_layout()
    for error in (missing, empty):
        assert "recordings/{digit}_{speaker}_{take}.wav" in str(error.value)
        assert "data.reader.root=" in str(error.value)
    make_fsdd(tmp_path / "fsdd")
    with pytest.raises(CorpusLayoutError, match="recordings/ itself"):
        FSDDReader(tmp_path / "fsdd" / "recordings").check_layout()


def test_real_fsdd() -> None:
    if not (SHARED_FSDD / "recordings").is_dir():
        pytest.skip(f"the shared FSDD copy is absent ({SHARED_FSDD})")
    splits, report = scan_all(FSDDReader(SHARED_FSDD))
    assert not report.skipped
    assert {s: len(u) for s, u in splits.items()} == {
        "train": 2400,
        "validation": 300,
        "test": 300,
    }
    test = splits["test"]
    assert {u.sample_rate for us in splits.values() for u in us} == {8_000}
    assert Counter(u.label for u in test) == {word: 30 for word in DIGIT_WORDS}
    assert len({u.speaker for u in test}) == 6
