"""The generated "mini Common Voice" corpus: plan, layout, determinism, reading it back."""

from __future__ import annotations

import filecmp
import re
from collections import Counter
from pathlib import Path

import hydra
import numpy as np
import pytest
import soundfile as sf

from speechlab.audio.io import read_audio
from speechlab.corpora.common_voice import OFFICIAL_COLUMNS, CommonVoiceReader
from speechlab.corpora.embedded.common import (
    FEMALE_VARIANTS,
    LANGUAGES,
    MALE_VARIANTS,
    vocabulary,
)
from speechlab.corpora.embedded.mini_voice import (
    MARKER_NAME,
    SAMPLE_RATE,
    MiniVoiceParams,
    ensure_mini_voice,
    generate_mini_voice,
    plan_clips,
    plan_sentences,
    plan_speakers,
)
from speechlab.data.reader import SPLITS, ScanReport
from tests.conftest import TINY_VOICE, composed
from tests.integration.test_configs import job_config

TINY = TINY_VOICE  # 16 + 6 + 6 = 28 clips
TSV_SPLITS = {"train.tsv": "train", "dev.tsv": "validation", "test.tsv": "test"}


def rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def words(sentence: str) -> list[str]:
    return sentence.lower().rstrip(".").split()


def test_default_plan_has_the_advertised_shape():
    params = MiniVoiceParams()
    sentences = plan_sentences(params)
    assert {s: len(v) for s, v in sentences.items()} == {"train": 320, "validation": 40, "test": 40}
    every = [s for v in sentences.values() for s in v]
    assert len(set(every)) == 400
    assert all(re.fullmatch(r"[A-Z][a-z]*( [a-z]+){2,5}\.", s) for s in every)
    train_words = {w for s in sentences["train"] for w in words(s)}
    assert {w for s in sentences["test"] + sentences["validation"] for w in words(s)} <= train_words
    assert set(train_words) <= set(vocabulary()) and 60 <= len(train_words) <= 120

    speakers = plan_speakers(params)
    by_split = Counter(s.split for s in speakers)
    assert by_split == {"train": 16, "validation": 4, "test": 4}
    assert len({s.voice.variant for s in speakers}) == 24  # every speaker its own timbre
    assert {s.voice.variant for s in speakers} <= set(FEMALE_VARIANTS + MALE_VARIANTS)
    train_languages = {s.voice.language for s in speakers if s.split == "train"}
    assert train_languages == set(LANGUAGES)
    assert {s.voice.language for s in speakers} == train_languages
    assert all(135 <= s.rate <= 180 and len(s.id) == 128 for s in speakers)

    clips = plan_clips(params, speakers)
    counts = Counter(c.speaker.split for c in clips)
    assert counts == {"train": 1280, "validation": 160, "test": 160}
    assert [c.number for c in clips] == list(range(1, 1601))
    per_sentence = Counter((c.speaker.split, c.text) for c in clips)
    assert set(per_sentence.values()) == {4}
    assert all(len({c.speaker for c in clips if c.text == t}) == 4 for t in sentences["test"])
    load = Counter(c.speaker.id for c in clips if c.speaker.split == "train")
    assert set(load.values()) == {80}


def test_params_are_checked():
    with pytest.raises(ValueError, match=r"expected >= 1 sentence in every split"):
        MiniVoiceParams(num_sentences=10, dev_sentences=5, test_sentences=5)
    with pytest.raises(ValueError, match=r"speakers_per_sentence=5: expected 1..4"):
        MiniVoiceParams(speakers_per_sentence=5)
    with pytest.raises(ValueError, match=r"snr_db=\(40.0, 15.0\)"):
        MiniVoiceParams(snr_db=(40, 15))
    with pytest.raises(ValueError, match=r"in all at most"):
        MiniVoiceParams(train_speakers=60)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_mini_voice(tmp_path_factory.mktemp("tiny") / "mv", seed=0, **TINY)


def test_tiny_corpus_has_the_common_voice_layout(tiny: Path):
    files = sorted(p.name for p in tiny.iterdir())
    assert files == sorted(
        [MARKER_NAME, "README.md", "clip_durations.tsv", "clips", *TSV_SPLITS]
        + ["validated.tsv", "invalidated.tsv", "other.tsv"]
    )
    tables = {name: rows(tiny / name) for name in [*TSV_SPLITS, "validated.tsv"]}
    for name, table in tables.items():
        assert tuple(table[0]) == OFFICIAL_COLUMNS, name
    for name in ("invalidated.tsv", "other.tsv"):
        assert rows(tiny / name) == [list(OFFICIAL_COLUMNS)]
    split_rows = [r for name in TSV_SPLITS for r in tables[name][1:]]
    assert sorted(tables["validated.tsv"][1:]) == sorted(split_rows)
    assert [len(tables[name]) - 1 for name in TSV_SPLITS] == [16, 6, 6]

    clips = sorted(p.name for p in (tiny / "clips").iterdir())
    assert clips == sorted(r[1] for r in split_rows)
    assert all(re.fullmatch(r"common_voice_en_\d+\.mp3", name) for name in clips)
    for row in split_rows:
        assert row[3:5] == ["2", "0"] and row[8:] == ["en", ""]
        assert row[6] in ("female", "male") and re.fullmatch(r"[0-9a-f]{128}", row[0])

    durations = {r[0]: int(r[1]) for r in rows(tiny / "clip_durations.tsv")[1:]}
    assert rows(tiny / "clip_durations.tsv")[0] == ["clip", "duration[ms]"]
    assert sorted(durations) == clips
    for name in clips:
        info = sf.info(str(tiny / "clips" / name))
        assert (info.samplerate, info.channels, info.format) == (SAMPLE_RATE, 1, "MP3")
        assert abs(1000 * info.frames / SAMPLE_RATE - durations[name]) <= 0.5
        assert 900 <= durations[name] <= 4000
    audio = read_audio(tiny / "clips" / clips[0], SAMPLE_RATE).numpy()
    assert 0.05 < np.abs(audio).max() <= 1.0
    readme = (tiny / "README.md").read_text()
    assert "generated" in readme.lower() and "| train.tsv | 3 | 8 | 16 |" in readme


def test_tiny_corpus_splits_share_no_sentence_and_no_speaker(tiny: Path):
    sentences, speakers = {}, {}
    for name in TSV_SPLITS:
        table = rows(tiny / name)[1:]
        sentences[name] = {r[2] for r in table}
        speakers[name] = {r[0] for r in table}
    assert [len(speakers[name]) for name in TSV_SPLITS] == [3, 2, 2]
    assert [len(sentences[name]) for name in TSV_SPLITS] == [8, 3, 3]
    names = list(TSV_SPLITS)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not sentences[a] & sentences[b] and not speakers[a] & speakers[b]
    train_words = {w for s in sentences["train.tsv"] for w in words(s)}
    held_out = sentences["dev.tsv"] | sentences["test.tsv"]
    assert {w for s in held_out for w in words(s)} <= train_words


def test_tiny_corpus_reads_back_through_common_voice_reader(tiny: Path):
    reader = CommonVoiceReader(tiny, clip_sample_rate=SAMPLE_RATE)
    reader.check_layout()
    report = ScanReport()
    splits = {split: list(reader.scan(split, report)) for split in SPLITS}
    assert report.skipped == {}
    for name, split in TSV_SPLITS.items():
        table = rows(tiny / name)[1:]
        assert [u.id for u in splits[split]] == [r[1].removesuffix(".mp3") for r in table]
        assert [u.text for u in splits[split]] == [" ".join(words(r[2])) for r in table]
        assert [u.speaker for u in splits[split]] == [r[0] for r in table]
    utterances = [u for us in splits.values() for u in us]
    assert {u.language for u in utterances} == {"en"}
    assert {u.sample_rate for u in utterances} == {SAMPLE_RATE}
    assert all(re.fullmatch(r"[a-z]+( [a-z]+){2,5}", u.text) for u in utterances)
    probed = CommonVoiceReader(tiny, probe=True)
    for u, v in zip(utterances, (u for s in SPLITS for u in probed.scan(s, report)), strict=True):
        assert u.duration == pytest.approx(v.duration, abs=5e-4)


def test_same_seed_same_bytes_other_seed_differs(tiny: Path, tmp_path: Path):
    again = generate_mini_voice(tmp_path / "again", seed=0, workers=1, **TINY)
    names = sorted(str(p.relative_to(tiny)) for p in tiny.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(again)) for p in again.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(tiny, again, names, shallow=False)
    assert mismatch == [] and errors == []

    other = generate_mini_voice(tmp_path / "other", seed=1, **TINY)
    assert (other / "train.tsv").read_text() != (tiny / "train.tsv").read_text()
    first = "clips/common_voice_en_1.mp3"
    assert not filecmp.cmp(other / first, tiny / first, shallow=False)


def test_ensure_reuses_then_regenerates_on_new_params(tmp_path: Path):
    small = {**TINY, "num_sentences": 8, "dev_sentences": 1, "test_sentences": 1}
    small |= {"train_speakers": 1, "dev_speakers": 1, "test_speakers": 1}
    small |= {"speakers_per_sentence": 1}
    root = ensure_mini_voice(tmp_path / "mv", seed=0, **small)
    clip = root / "clips" / "common_voice_en_1.mp3"
    before = clip.stat().st_mtime_ns
    assert ensure_mini_voice(tmp_path / "mv", seed=0, workers=1, **small) == root
    assert clip.stat().st_mtime_ns == before

    ensure_mini_voice(tmp_path / "mv", seed=0, **{**small, "num_sentences": 9})
    assert len(list((root / "clips").iterdir())) == 9
    leftovers = [p.name for p in tmp_path.iterdir() if ".partial-" in p.name or ".stale-" in p.name]
    assert leftovers == []

    foreign = tmp_path / "common_voice"
    (foreign / "clips").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="no .speechlab_mini_voice.json"):
        ensure_mini_voice(foreign, **small)
    with pytest.raises(TypeError, match=r"unknown parameters \['speakers'\]"):
        ensure_mini_voice(tmp_path / "mv", speakers=3)


def test_config_builds_the_reader_and_the_generator(tmp_path: Path):
    with composed("train", ["data=mini_voice"], tmp_path) as cfg:
        data = job_config(cfg).data
    reader = hydra.utils.instantiate(data.reader)
    assert isinstance(reader, CommonVoiceReader)
    assert reader.root == (tmp_path / "data" / "mini_voice").resolve()
    assert reader.options()["normalizer"]["punctuation"] == "remove"
    assert data.tokenizer.kind == "char"
    prepare = hydra.utils.instantiate(data.prepare)
    assert prepare.func is ensure_mini_voice
    assert prepare.keywords["num_sentences"] == 400
