"""SpeechCommandsReader on a generated v0.02 tree and on the real shared sample."""

from __future__ import annotations

import logging
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlab.audio.io import probe
from speechlab.corpora.speech_commands import (
    COMMAND_WORDS,
    COMMANDS12_LABELS,
    SILENCE_LABEL,
    UNKNOWN_LABEL,
    SpeechCommandsReader,
    noise_region,
    split_by_lists,
)
from speechlab.data.reader import SPLITS, CorpusLayoutError, ScanReport

SHARED_SAMPLE = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "data"
    / "layouts"
    / "speech_commands_v0.02"
)
RATE = 16_000
# word -> clip count; clip i goes to validation when i % 5 == 3, test when i % 5 == 4.
WORDS = {"yes": 10, "no": 5, "down": 5, "cat": 10, "dog": 10, "sheila": 5}
OTHERS = {"cat", "dog", "sheila"}


def write_wav(path: Path, seconds: float, seed: int = 0, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.random.default_rng(seed).normal(0, 0.1, int(seconds * rate)).astype(np.float32)
    sf.write(path, samples, rate, subtype="PCM_16")
    return path


def make_corpus(root: Path, lists: bool = True, noise_seconds: float = 10.0) -> dict[str, str]:
    """Write a v0.02 tree under ``root``; return ``{"word/file.wav": split}``."""
    expected = {}
    for w, (word, count) in enumerate(WORDS.items()):
        for i in range(count):
            clip = f"{word}/{i // 2:04x}{w:04x}_nohash_{i % 2}.wav"
            write_wav(root / clip, 0.1, seed=100 * w + i)
            expected[clip] = {3: "validation", 4: "test"}.get(i % 5, "train")
    if lists:
        for name, split in (("validation_list.txt", "validation"), ("testing_list.txt", "test")):
            entries = sorted(c for c, s in expected.items() if s == split)
            (root / name).write_text("\n".join(entries) + "\n")
    if noise_seconds:
        write_wav(root / "_background_noise_" / "white.wav", noise_seconds, seed=1)
        write_wav(root / "_background_noise_" / "pink.wav", noise_seconds * 1.5, seed=2)
        (root / "_background_noise_" / "README.md").write_text("noise\n")
    write_wav(root / "_silence_" / "0.wav", 0.1)  # not part of the real corpus: ignored
    for name in ("LICENSE", "README.md", ".DS_Store"):
        (root / name).write_text("x")
    return expected


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "speech_commands_v0.02"
    return root, make_corpus(root)


def scan_all(reader: SpeechCommandsReader) -> tuple[dict[str, list], ScanReport]:
    reader.check_layout()
    report = ScanReport()
    return {split: list(reader.scan(split, report)) for split in SPLITS}, report


def command_counts(expected: dict[str, str]) -> dict[str, int]:
    counts = Counter(s for c, s in expected.items() if c.split("/")[0] in COMMAND_WORDS)
    return {split: counts[split] for split in SPLITS}


def test_split_by_lists() -> None:
    assert split_by_lists("yes/a_nohash_0.wav", {"yes/a_nohash_0.wav"}, set()) == "validation"
    assert split_by_lists("yes/a_nohash_0.wav", set(), {"yes/a_nohash_0.wav"}) == "test"
    assert split_by_lists("yes/a_nohash_0.wav", set(), set()) == "train"


def test_all_label_set_follows_lists(corpus: tuple[Path, dict[str, str]]) -> None:
    root, expected = corpus
    reader = SpeechCommandsReader(root, label_set="all")
    splits, report = scan_all(reader)
    assert not report.skipped
    got = {}
    for split, utterances in splits.items():
        for u in utterances:
            clip = str(Path(u.audio_path).relative_to(root.resolve()))
            got[clip] = split
            word, name = clip.split("/")
            assert (u.label, u.text, u.language) == (word, word, "en")
            assert u.speaker == name.split("_nohash_")[0]
            assert u.id == clip.removesuffix(".wav")
            assert u.sample_rate == RATE and u.duration == pytest.approx(0.1)
            assert u.offset == 0.0
    assert got == expected
    assert reader.labels() == sorted(WORDS)


@pytest.mark.parametrize(("silence", "unknown"), [(10.0, 10.0), (25.0, 50.0), (100.0, 200.0)])
def test_commands12_counts_follow_percentages(
    corpus: tuple[Path, dict[str, str]], silence: float, unknown: float
) -> None:
    root, expected = corpus
    reader = SpeechCommandsReader(
        root, silence_percentage=silence, unknown_percentage=unknown, silence_seconds=0.5
    )
    splits, report = scan_all(reader)
    assert not report.skipped
    commands = command_counts(expected)
    for split, utterances in splits.items():
        labels = Counter(u.label for u in utterances)
        others = sum(1 for c, s in expected.items() if s == split and c.split("/")[0] in OTHERS)
        assert labels[UNKNOWN_LABEL] == min(others, math.ceil(commands[split] * unknown / 100))
        assert labels[SILENCE_LABEL] == max(1, math.ceil(commands[split] * silence / 100))
        assert sum(labels[w] for w in COMMAND_WORDS) == commands[split]
        assert set(labels) <= set(COMMANDS12_LABELS)
        for u in utterances:
            if u.label == UNKNOWN_LABEL:
                assert u.text in OTHERS and u.speaker
            elif u.label == SILENCE_LABEL:
                assert u.text is None and u.duration == pytest.approx(0.5)
            else:
                assert u.text == u.label
    assert reader.labels() == [*COMMAND_WORDS, SILENCE_LABEL, UNKNOWN_LABEL]


@pytest.mark.parametrize("unknown", [None, -1.0])
def test_unknown_percentage_none_or_negative_keeps_all(
    corpus: tuple[Path, dict[str, str]], unknown: float | None
) -> None:
    root, expected = corpus
    splits, _ = scan_all(
        SpeechCommandsReader(root, unknown_percentage=unknown, silence_percentage=0.0)
    )
    for split, utterances in splits.items():
        others = sum(1 for c, s in expected.items() if s == split and c.split("/")[0] in OTHERS)
        assert sum(u.label == UNKNOWN_LABEL for u in utterances) == others
        assert not any(u.label == SILENCE_LABEL for u in utterances)


def test_silence_stays_in_split_regions(corpus: tuple[Path, dict[str, str]]) -> None:
    root, _ = corpus
    reader = SpeechCommandsReader(root, silence_percentage=300.0, silence_seconds=0.5)
    splits, _ = scan_all(reader)
    intervals: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for split, utterances in splits.items():
        for u in (u for u in utterances if u.label == SILENCE_LABEL):
            info = probe(u.audio_path)
            first = round(u.offset * info.sample_rate)
            last = first + round(u.duration * info.sample_rate)
            start, end = noise_region(split, info.frames)
            assert start <= first and last <= end, (split, u)
            intervals.setdefault((u.audio_path, split), []).append((first, last))
    noise_files = {path for path, _ in intervals}
    assert len(noise_files) == 2  # both noise recordings are used
    for path in noise_files:
        for a in SPLITS:
            for b in SPLITS:
                if a >= b:
                    continue
                for x0, x1 in intervals.get((path, a), []):
                    for y0, y1 in intervals.get((path, b), []):
                        assert x1 <= y0 or y1 <= x0, f"{a} and {b} share noise in {path}"


def test_deterministic_for_a_seed(corpus: tuple[Path, dict[str, str]]) -> None:
    root, _ = corpus

    def run(seed: int) -> dict[str, list]:
        return scan_all(SpeechCommandsReader(root, unknown_percentage=30.0, seed=seed))[0]

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_unusable_clips_are_skipped_and_reported(corpus: tuple[Path, dict[str, str]]) -> None:
    root, _ = corpus
    corrupt = root / "yes" / "badbad00_nohash_0.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    empty = root / "yes" / "badbad01_nohash_0.wav"
    empty.write_bytes(b"")
    truncated = write_wav(root / "yes" / "badbad02_nohash_0.wav", 0.1)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    bad_noise = root / "_background_noise_" / "broken.wav"
    bad_noise.write_bytes(b"garbage")
    bad = {str(p.resolve()) for p in (corrupt, empty, truncated)}
    for label_set in ("all", "commands12"):
        splits, report = scan_all(SpeechCommandsReader(root, label_set=label_set))
        assert bad <= set(report.skipped)
        assert all(report.skipped[p] for p in bad)
        ids = {u.id for utterances in splits.values() for u in utterances}
        assert not any("badbad" in i for i in ids)
    assert str(bad_noise.resolve()) in report.skipped
    assert "truncated" in report.skipped[str(truncated.resolve())]


def test_listed_missing_clip_is_reported(corpus: tuple[Path, dict[str, str]]) -> None:
    root, _ = corpus
    with (root / "testing_list.txt").open("a") as f:
        f.write("yes/ffffffff_nohash_0.wav\n")
    splits, report = scan_all(SpeechCommandsReader(root))
    missing = str(root.resolve() / "yes" / "ffffffff_nohash_0.wav")
    assert "testing_list.txt" in report.skipped[missing]
    assert splits["test"]


def test_missing_root_and_wrong_layout_raise(tmp_path: Path) -> None:
    with pytest.raises(CorpusLayoutError, match="does not exist") as missing:
        SpeechCommandsReader(tmp_path / "nowhere").check_layout()
    wrong = tmp_path / "wrong"
    write_wav(wrong / "loose.wav", 0.1)  # clips must be in word folders
    (wrong / "empty_word").mkdir()
    with pytest.raises(CorpusLayoutError, match="no word folders") as bad:
        SpeechCommandsReader(wrong).check_layout()
    for error in (missing, bad):
        message = str(error.value)
        for hint in ("<word>/<speaker>_nohash_<n>.wav", "validation_list.txt", "data.reader.root="):
            assert hint in message
        assert "data.reader.download=true" in message


def test_missing_noise_warns_and_makes_no_silence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "sc"
    make_corpus(root, noise_seconds=0)
    with caplog.at_level(logging.WARNING):
        splits, _ = scan_all(SpeechCommandsReader(root))
    assert "_background_noise_" in caplog.text
    assert not any(u.label == SILENCE_LABEL for us in splits.values() for u in us)
    assert any(u.label == UNKNOWN_LABEL for u in splits["train"])


def test_options_and_fingerprint(corpus: tuple[Path, dict[str, str]]) -> None:
    root, expected = corpus
    reader = SpeechCommandsReader(root)
    assert reader.options() != SpeechCommandsReader(root, seed=1).options()
    assert reader.options() != SpeechCommandsReader(root, label_set="all").options()
    names = {str(p.relative_to(root.resolve())) for p in reader.fingerprint_paths()}
    assert set(expected) <= names
    assert {"validation_list.txt", "testing_list.txt", "_background_noise_/white.wav"} <= names
    assert not any(n.startswith("_silence_") or n in ("LICENSE", "README.md") for n in names)
    with pytest.raises(ValueError, match="label_set"):
        SpeechCommandsReader(root, label_set="twelve")  # type: ignore[arg-type]


def shared_sample() -> Path:
    if not SHARED_SAMPLE.is_dir():
        pytest.skip(f"the shared Speech Commands sample is absent ({SHARED_SAMPLE})")
    return SHARED_SAMPLE


def test_real_sample_all_labels() -> None:
    reader = SpeechCommandsReader(shared_sample(), label_set="all")
    splits, report = scan_all(reader)
    assert not report.skipped
    assert reader.labels() == ["backward", "bed", "down", "visual"]
    # 10 real clips, of which one is in _silence_/ (not a word folder of the real corpus).
    assert len(splits["train"]) == 9 and not splits["validation"] and not splits["test"]
    assert all(u.sample_rate == 16_000 and 0 < u.duration <= 1.0 for u in splits["train"])
    assert not any("_silence_" in u.audio_path for u in splits["train"])


def test_real_sample_commands12() -> None:
    reader = SpeechCommandsReader(
        shared_sample(), unknown_percentage=None, silence_percentage=100.0
    )
    splits, report = scan_all(reader)
    assert not report.skipped
    train = Counter(u.label for u in splits["train"])
    assert train == {"down": 2, UNKNOWN_LABEL: 7, SILENCE_LABEL: 2}
    assert not splits["validation"] and not splits["test"]
    silence = [u for u in splits["train"] if u.label == SILENCE_LABEL]
    assert {Path(u.audio_path).name for u in silence} == {"dude_miaowing.wav", "running_tap.wav"}
    for u in silence:
        info = probe(u.audio_path)
        start, end = noise_region("train", info.frames)
        assert start / info.sample_rate <= u.offset
        assert u.offset + u.duration <= end / info.sample_rate + 1e-9
    default = scan_all(SpeechCommandsReader(shared_sample()))[0]["train"]
    assert Counter(u.label for u in default) == {"down": 2, UNKNOWN_LABEL: 1, SILENCE_LABEL: 1}


def test_list_entries_in_other_spellings_name_the_same_clip(
    corpus: tuple[Path, dict[str, str]],
) -> None:
    """Prefixed, ./, absolute, Windows and BOM-led entries once leaked test clips into train."""
    root, expected = corpus
    spellings = [
        lambda c: f"speech_commands_v0.02/{c}",
        lambda c: f"./{c}",
        lambda c: str(root.resolve() / c),
        lambda c: c.replace("/", "\\") + "  ",
    ]
    for name, split in (("validation_list.txt", "validation"), ("testing_list.txt", "test")):
        entries = sorted(c for c, s in expected.items() if s == split)
        lines = [spellings[i % len(spellings)](c) for i, c in enumerate(entries)]
        (root / name).write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    splits, report = scan_all(SpeechCommandsReader(root, label_set="all"))
    got = {
        str(Path(u.audio_path).relative_to(root.resolve())): split
        for split, utterances in splits.items()
        for u in utterances
    }
    assert got == expected
    assert not report.skipped
