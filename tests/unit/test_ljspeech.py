"""The LJ Speech reader on a fixture in the real layout (real recordings from FSDD)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlab.corpora.ljspeech import LJSpeechReader, hash_split
from speechlab.data.reader import SPLITS, CorpusLayoutError, ScanReport
from tests.conftest import shared_data

NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@pytest.fixture
def ljspeech(tmp_path: Path) -> Path:
    """40 real FSDD recordings as ``wavs/LJ001-00NN.wav`` with a real-layout ``metadata.csv``,
    plus a line without its wav, a malformed line and a silent-empty text."""
    recordings = sorted(shared_data("fsdd", "recordings").glob("*_jackson_*.wav"))[:40]
    root = tmp_path / "LJSpeech-1.1"
    (root / "wavs").mkdir(parents=True)
    lines = []
    for n, recording in enumerate(recordings, start=1):
        uid = f"LJ001-{n:04d}"
        shutil.copy(recording, root / "wavs" / f"{uid}.wav")
        digit = int(recording.name[0])
        # column 2 as written (a digit), column 3 normalised (spelled out), like LJ Speech
        lines.append(f"{uid}|Say {digit}!|Say {NUMBERS[digit]}!")
    lines.append("LJ002-0001|Missing wav.|Missing wav.")
    lines.append("just one field")
    sf.write(root / "wavs" / "LJ002-0002.wav", np.zeros(800, np.float32), 8000)
    lines.append("LJ002-0002|...|...")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def scan_all(reader: LJSpeechReader) -> tuple[dict[str, list], ScanReport]:
    report = ScanReport()
    return {split: list(reader.scan(split, report)) for split in SPLITS}, report


def test_reads_the_real_layout_with_a_stable_hash_split(ljspeech: Path):
    reader = LJSpeechReader(ljspeech, validation_fraction=0.2, test_fraction=0.2)
    reader.check_layout()
    splits, report = scan_all(reader)
    ids = [u.id for split in SPLITS for u in splits[split]]
    assert len(ids) == len(set(ids)) == 40  # every good line once, in exactly one split
    assert all(splits[split] for split in SPLITS)
    for split in SPLITS:
        assert all(hash_split(u.id, 0.2, 0.2) == split for u in splits[split])
    first = next(u for s in SPLITS for u in splits[s] if u.id == "LJ001-0001")
    assert first.text.startswith("say ") and first.text.split()[1] in NUMBERS  # normalized column
    assert first.sample_rate == 8000 and 0.1 < first.duration < 2.0
    assert first.speaker == "LJ"
    reasons = "\n".join(f"{p}: {r}" for p, r in report.skipped.items())
    assert "LJ002-0001.wav" in reasons  # listed, but no file
    assert "metadata.csv:42" in reasons and "id|transcription" in reasons
    assert "normalises to nothing" in reasons


def test_split_is_the_same_for_another_reader(ljspeech: Path):
    a, _ = scan_all(LJSpeechReader(ljspeech, 0.2, 0.2))
    b, _ = scan_all(LJSpeechReader(ljspeech, 0.2, 0.2))
    assert {s: [u.id for u in a[s]] for s in SPLITS} == {s: [u.id for u in b[s]] for s in SPLITS}


def test_a_wrong_root_says_what_layout_is_expected(ljspeech: Path, tmp_path: Path):
    with pytest.raises(CorpusLayoutError, match=r"metadata\.csv.*set root to"):
        LJSpeechReader(tmp_path).check_layout()
    with pytest.raises(CorpusLayoutError, match="does not exist"):
        LJSpeechReader(tmp_path / "nowhere").check_layout()
    with pytest.raises(ValueError, match="leave some ids"):
        LJSpeechReader(ljspeech, 0.6, 0.5)
