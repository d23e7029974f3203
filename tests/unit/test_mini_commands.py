"""The generated "mini Speech Commands" corpus: plan, layout, split rule, determinism, reuse."""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlab.corpora.embedded.common import FEMALE_VARIANTS, LANGUAGES, MALE_VARIANTS
from speechlab.corpora.embedded.mini_commands import (
    BACKGROUND_DIR,
    COMMAND_WORDS,
    DEFAULT_WORDS,
    MiniCommandsParams,
    ensure_mini_commands,
    generate_mini_commands,
    plan_speakers,
    speech_commands_split,
)
from speechlab.text.espeak import Espeak

TINY = {"num_speakers": 8, "repetitions": 1, "noise_seconds": 2.0}


def test_split_rule_matches_the_real_lists():
    # First lines of the real v0.02 validation_list.txt and testing_list.txt.
    assert speech_commands_split("right/a69b9b3e_nohash_0.wav") == "validation"
    assert speech_commands_split("right/bb05582b_nohash_3.wav") == "test"
    # The hash covers the name up to _nohash_ only: one speaker, one split.
    splits = {
        speech_commands_split(f"{w}/bb05582b_nohash_{n}.wav")
        for w in COMMAND_WORDS
        for n in range(3)
    }
    assert splits == {"test"}


def test_params_are_checked():
    with pytest.raises(ValueError, match="v0.02 vocabulary"):
        MiniCommandsParams(words=("yes", "hello"))
    with pytest.raises(ValueError, match="num_speakers=2"):
        MiniCommandsParams(num_speakers=2)


def test_corpus_voices_exist_in_the_wheel():
    engine = Espeak.shared()
    assert set(LANGUAGES) <= set(engine.languages())
    assert set(FEMALE_VARIANTS + MALE_VARIANTS) <= set(engine.variants())


def test_default_speakers_are_varied_and_split_about_ten_percent():
    speakers = plan_speakers(MiniCommandsParams())
    assert len(DEFAULT_WORDS) >= 25 and len(speakers) == 40
    assert len({s.voice for s in speakers}) == 40
    assert len({s.voice.variant for s in speakers}) >= 30
    assert len({s.voice.language for s in speakers}) >= 6
    assert [sum(s.split == x for s in speakers) for x in ("train", "validation", "test")] == [
        32,
        4,
        4,
    ]
    assert all(speech_commands_split(f"yes/{s.id}_nohash_0.wav") == s.split for s in speakers)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_mini_commands(tmp_path_factory.mktemp("tiny") / "mc", seed=0, **TINY)


def test_tiny_corpus_has_the_v002_layout(tiny: Path):
    words = sorted(p.name for p in tiny.iterdir() if p.is_dir() and p.name != BACKGROUND_DIR)
    assert words == sorted(DEFAULT_WORDS)
    clips = sorted(tiny.glob("*/*_nohash_*.wav"))
    assert len(clips) == 8 * len(DEFAULT_WORDS)
    assert all(re.fullmatch(r"[0-9a-f]{8}_nohash_0\.wav", p.name) for p in clips)
    for path in clips[::7]:
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (
            16000,
            1,
            16000,
            "PCM_16",
        )
        audio, _ = sf.read(str(path), dtype="float32")
        assert 0.05 < np.abs(audio).max() < 1.0
    noises = sorted(p.name for p in (tiny / BACKGROUND_DIR).glob("*.wav"))
    assert len(noises) >= 5
    for name in noises:
        info = sf.info(str(tiny / BACKGROUND_DIR / name))
        assert (info.samplerate, info.subtype, info.frames) == (16000, "PCM_16", 32000)
    readme = (tiny / "README.md").read_text()
    assert "generated" in readme.lower() and "num_speakers: 8" in readme


def test_tiny_corpus_lists_follow_the_hash_rule(tiny: Path):
    listed = {
        split: (tiny / name).read_text().split()
        for split, name in (("validation", "validation_list.txt"), ("test", "testing_list.txt"))
    }
    clips = {f"{p.parent.name}/{p.name}" for p in tiny.glob("*/*_nohash_*.wav")}
    for split, lines in listed.items():
        assert lines and lines == sorted(lines)
        assert set(lines) <= clips
        assert {speech_commands_split(line) for line in lines} == {split}
    train = clips - set(listed["validation"]) - set(listed["test"])
    assert train and {speech_commands_split(p) for p in train} == {"train"}


def test_tiny_corpus_uses_eight_distinct_voices(tiny: Path):
    voices = re.findall(r"\| [0-9a-f]{8} \| \w+ \| (\S+) \|", (tiny / "README.md").read_text())
    assert len(set(voices)) == 8
    yes = [sf.read(str(p))[0] for p in sorted((tiny / "yes").glob("*.wav"))]
    assert len({a.tobytes() for a in yes}) == 8


def test_same_seed_same_bytes_other_seed_differs(tiny: Path, tmp_path: Path):
    again = generate_mini_commands(tmp_path / "again", seed=0, **TINY)
    names = sorted(str(p.relative_to(tiny)) for p in tiny.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(again)) for p in again.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(tiny, again, names, shallow=False)
    assert mismatch == [] and errors == []

    other = generate_mini_commands(tmp_path / "other", seed=1, **TINY)
    assert sorted(p.name for p in (other / "yes").iterdir()) != sorted(
        p.name for p in (tiny / "yes").iterdir()
    )
    noise = Path(BACKGROUND_DIR) / "white_noise.wav"
    assert not filecmp.cmp(other / noise, tiny / noise, shallow=False)


def test_ensure_reuses_then_regenerates_on_new_params(tmp_path: Path):
    small = {"num_speakers": 3, "repetitions": 1, "words": ("yes", "no"), "noise_seconds": 1.0}
    root = ensure_mini_commands(tmp_path / "mc", seed=0, **small)
    clip = sorted(root.glob("yes/*.wav"))[0]
    before = clip.stat().st_mtime_ns
    assert ensure_mini_commands(tmp_path / "mc", seed=0, **small) == root
    assert clip.stat().st_mtime_ns == before

    ensure_mini_commands(tmp_path / "mc", seed=0, **{**small, "words": ("yes", "no", "up")})
    assert (root / "up").is_dir() and len(list(root.glob("*/*_nohash_*.wav"))) == 9
    assert [
        p.name for p in tmp_path.iterdir() if ".partial-" in p.name or ".stale-" in p.name
    ] == []


def test_ensure_refuses_a_foreign_directory_and_unknown_params(tmp_path: Path):
    foreign = tmp_path / "speech_commands"
    (foreign / "yes").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="no .speechlab_mini_commands.json"):
        ensure_mini_commands(foreign, num_speakers=3, words=("yes",))
    with pytest.raises(TypeError, match="unknown parameters \\['speakers'\\]"):
        ensure_mini_commands(tmp_path / "mc", speakers=3)
