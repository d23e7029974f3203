"""CommonVoiceReader on real Common Voice 6.1 tsv rows (../shared) with generated MP3 clips."""

from __future__ import annotations

import csv
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import speechlab.corpora.common_voice as common_voice
from speechlab.audio.io import read_audio
from speechlab.corpora.common_voice import OFFICIAL_COLUMNS, CommonVoiceReader
from speechlab.data.dataset import SkippedExample, SpeechDataset
from speechlab.data.manifest import load_or_build_manifest
from speechlab.data.reader import SPLITS, CorpusLayoutError, ScanReport
from speechlab.text.normalize import TextNormalizer
from tests.conftest import shared_data

RATE = 48000
TONE_HZ = 440.0
TSVS = ("train.tsv", "dev.tsv", "test.tsv", "validated.tsv", "invalidated.tsv", "other.tsv")
SPLIT_TSV = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def make_locale(locale: str, root: Path) -> dict[str, float]:
    """Copy the real tsvs of ``locale`` to ``root`` and write a 440 Hz MP3 for every split row.

    Returns ``clip -> seconds`` (0.4 s, 0.5 s, ...).
    """
    source = shared_data("layouts", "common_voice_6.1_tsv", locale)
    (root / "clips").mkdir(parents=True)
    for name in TSVS:
        shutil.copy(source / name, root / name)
    names = sorted({r["path"] for tsv in SPLIT_TSV.values() for r in read_rows(root / tsv)})
    seconds = {}
    for i, name in enumerate(names):
        frames = RATE * (4 + i) // 10
        tone = 0.3 * np.sin(2 * np.pi * TONE_HZ * np.arange(frames) / RATE)
        sf.write(root / "clips" / name, tone.astype(np.float32), RATE, format="MP3")
        seconds[name] = frames / RATE
    return seconds


def scan_all(reader: CommonVoiceReader) -> tuple[dict[str, list], ScanReport]:
    reader.check_layout()
    report = ScanReport()
    return {split: list(reader.scan(split, report)) for split in SPLITS}, report


def write_durations(root: Path, seconds: dict[str, float]) -> None:
    lines = "".join(f"{name}\t{round(1000 * s)}\n" for name, s in seconds.items())
    (root / "clip_durations.tsv").write_text("clip\tduration[ms]\n" + lines, encoding="utf-8")


EXPECTED_TEXT = {
    "en": {
        "train": [
            "hannu wrote of his expedition in stone",
            "little india differs from many other neighbourhoods in singapore in many ways",
        ],
        "validation": [
            "takuma sato's disappointing afternoon ended with the honda engine exploding",
            "tony roma's menu has further expanded to include seafood pasta chicken and sandwiches",
        ],
        "test": ["she'll be all right", "six"],
    },
    "fr": {"test": ["ce dernier a évolué tout au long de l'histoire romaine"]},
    "pl": {"train": ["chyba będziemy łowić żaby"]},
    "zh-CN": {"train": ["阿什伯顿是位于英国英格兰西南部德文郡的一座小镇"]},
    "ar": {"test": ["ألديك قلم"]},
    "hi": {"train": ["तुम्हारे पास तीन महीने बचे हैं"]},
}


@pytest.mark.parametrize("locale", ["en", "fr", "de", "pl", "zh-CN", "ar", "hi", "uk"])
def test_real_rows_of_several_locales(locale: str, tmp_path: Path):
    seconds = make_locale(locale, tmp_path / locale)
    reader = CommonVoiceReader(tmp_path / locale)
    splits, report = scan_all(reader)
    assert report.skipped == {}
    normalizer = TextNormalizer()
    for split, tsv in SPLIT_TSV.items():
        rows = read_rows(tmp_path / locale / tsv)
        utterances = splits[split]
        assert [u.id for u in utterances] == [Path(r["path"]).stem for r in rows]
        for u, row in zip(utterances, rows, strict=True):
            assert u.text and u.text == normalizer(row["sentence"])
            punctuation = [c for c in u.text if unicodedata.category(c)[0] == "P" and c != "'"]
            assert punctuation == [], u.text
            assert u.text == u.text.lower() and "  " not in u.text
            assert (u.speaker, u.language) == (row["client_id"], locale)
            assert u.audio_path == str(tmp_path / locale / "clips" / row["path"])
            assert u.sample_rate == RATE
            assert u.duration == pytest.approx(seconds[row["path"]], abs=1e-9)
    for split, texts in EXPECTED_TEXT.get(locale, {}).items():
        assert [u.text for u in splits[split]][: len(texts)] == texts


def test_clip_durations_tsv_is_used_without_opening_the_clips(tmp_path: Path, monkeypatch):
    seconds = make_locale("en", tmp_path)
    listed = dict(sorted(seconds.items())[1:])
    unlisted = sorted(seconds)[0]
    write_durations(tmp_path, {name: s + 0.25 for name, s in listed.items()})  # visibly off
    probed: list[str] = []
    real_probe = common_voice.probe
    monkeypatch.setattr(
        common_voice, "probe", lambda path: probed.append(Path(path).name) or real_probe(path)
    )

    splits, report = scan_all(CommonVoiceReader(tmp_path, clip_sample_rate=44100))
    assert report.skipped == {} and probed == [unlisted]
    for u in (u for utterances in splits.values() for u in utterances):
        name = Path(u.audio_path).name
        if name == unlisted:
            assert (u.duration, u.sample_rate) == (pytest.approx(seconds[name]), RATE)
        else:
            assert u.duration == pytest.approx(round(1000 * seconds[name] + 250) / 1000)
            assert u.sample_rate == 44100  # declared, not measured

    probed.clear()
    splits, _ = scan_all(CommonVoiceReader(tmp_path, probe=True))
    assert sorted(probed) == sorted(seconds)
    assert all(u.sample_rate == RATE for utterances in splits.values() for u in utterances)


def test_mp3_clips_decode_through_read_audio(tmp_path: Path):
    seconds = make_locale("en", tmp_path)
    write_durations(tmp_path, seconds)
    splits, _ = scan_all(CommonVoiceReader(tmp_path))
    for u in splits["train"] + splits["test"]:
        native = read_audio(u.audio_path, RATE)
        assert native.shape == (round(seconds[Path(u.audio_path).name] * RATE),)
        audio = read_audio(u.audio_path, 16000, offset=u.offset, duration=u.duration)
        assert abs(len(audio) - round(u.duration * 16000)) <= 1
        spectrum = np.abs(np.fft.rfft(audio.numpy()))
        assert np.argmax(spectrum) * 16000 / len(audio) == pytest.approx(TONE_HZ, abs=5)


def test_missing_and_corrupt_clips_are_skipped_and_counted(tmp_path: Path):
    make_locale("en", tmp_path)
    train, dev = read_rows(tmp_path / "train.tsv"), read_rows(tmp_path / "dev.tsv")
    missing = tmp_path / "clips" / train[0]["path"]
    corrupt = tmp_path / "clips" / dev[1]["path"]
    missing.unlink()
    corrupt.write_bytes(b"this is not an mp3 file\n" * 20)

    splits, report = scan_all(CommonVoiceReader(tmp_path))
    assert set(report.skipped) == {str(missing), str(corrupt)}
    assert report.skipped[str(missing)] == "listed in train.tsv line 2 but the file does not exist"
    assert report.skipped[str(corrupt)].startswith("cannot read audio header")
    assert [u.id for u in splits["train"]] == [Path(train[1]["path"]).stem]
    assert [u.id for u in splits["validation"]] == [Path(dev[0]["path"]).stem]
    assert len(splits["test"]) == 2

    # Timed by clip_durations.tsv the corrupt clip is not opened while scanning: the dataset
    # skips it when it fails to decode, still without ending the epoch.
    write_durations(tmp_path, {p.name: 1.0 for p in (tmp_path / "clips").iterdir()})
    splits, report = scan_all(CommonVoiceReader(tmp_path))
    assert set(report.skipped) == {str(missing)}
    dataset = SpeechDataset(splits["validation"], 16000, lambda u: np.zeros(1))
    examples = [dataset[i] for i in range(len(dataset))]
    assert [type(e) is SkippedExample for e in examples] == [False, True]
    assert examples[1].reason.startswith("cannot decode audio")


def test_bad_rows_are_skipped_and_counted(tmp_path: Path):
    make_locale("en", tmp_path)
    client = "f" * 128
    sf.write(tmp_path / "clips" / "dots.mp3", np.zeros(4800, np.float32), RATE, format="MP3")
    sf.write(tmp_path / "clips" / "common_voice_en_7.mp3", np.zeros(4800), RATE, format="MP3")
    extra = [
        f"{client}\tshort.mp3\ttoo few fields",
        f"{client}\t\tNo path here.\t2\t0\t\t\t\ten\t",
        f'{client}\tdots.mp3\t"..."\t2\t0\t\t\t\ten\t',
        f"{client}\tcommon_voice_en_7\tAn early release without a suffix.\t2\t0\t\t\t\ten\t",
        f"{client}\tcommon_voice_en_7\tThe same clip again.\t2\t0\t\t\t\ten\t",
        "",
    ]
    with (tmp_path / "train.tsv").open("a", encoding="utf-8") as f:
        f.write("\n".join(extra) + "\n")
    with (tmp_path / "train.tsv").open("ab") as f:
        f.write(client.encode() + b"\tcommon_voice_en_7.mp3\tLatin-1 caf\xe9.\t2\t0\t\t\t\ten\t\n")

    splits, report = scan_all(CommonVoiceReader(tmp_path))
    tsv = tmp_path / "train.tsv"
    assert report.skipped == {
        f"{tsv}:4": "has 3 tab-separated fields, expected 10 "
        f"({' '.join(OFFICIAL_COLUMNS)}); fix or delete the row",
        f"{tsv}:5": "has an empty path field; fix or delete the row",
        f"{tsv}:10": "is not valid UTF-8 text; fix or delete the row",
        str(tmp_path / "clips" / "dots.mp3"): "sentence '\"...\"' (train.tsv line 6) "
        "normalises to nothing",
    }
    assert [u.text for u in splits["train"]][2:] == ["an early release without a suffix"]
    assert splits["train"][2].audio_path.endswith("clips/common_voice_en_7.mp3")


def test_alphabet_drops_or_cleans_rows(tmp_path: Path):
    make_locale("en", tmp_path)
    letters = "abcdefghijklmnopqrstuvwxyz"  # no apostrophe
    splits, report = scan_all(CommonVoiceReader(tmp_path, normalizer={"alphabet": letters}))
    assert [u.text for u in splits["test"]] == ["six"]
    assert splits["validation"] == []
    assert len(report.skipped) == 3
    assert all("outside the normalizer's alphabet (\"'\")" in r for r in report.skipped.values())

    normalizer = {"alphabet": letters, "out_of_alphabet": "remove"}
    splits, report = scan_all(CommonVoiceReader(tmp_path, normalizer=normalizer))
    assert report.skipped == {}
    assert [u.text for u in splits["test"]] == ["shell be all right", "six"]


def test_validated_as_train_leaves_out_dev_and_test_clips(tmp_path: Path):
    make_locale("en", tmp_path)
    # The two real validated.tsv rows of en are its two test.tsv rows.
    splits, _ = scan_all(CommonVoiceReader(tmp_path, train_tsv="validated.tsv"))
    assert splits["train"] == [] and len(splits["test"]) == 2
    row = read_rows(tmp_path / "train.tsv")[0]
    with (tmp_path / "validated.tsv").open("a", encoding="utf-8") as f:
        f.write("\t".join(row[c] for c in OFFICIAL_COLUMNS) + "\n")
    splits, _ = scan_all(CommonVoiceReader(tmp_path, train_tsv="validated.tsv"))
    assert [u.id for u in splits["train"]] == [Path(row["path"]).stem]
    with pytest.raises(ValueError, match="held-out split"):
        CommonVoiceReader(tmp_path, train_tsv="dev.tsv")


def test_layout_errors_say_what_was_expected(tmp_path: Path):
    root = tmp_path / "en"
    with pytest.raises(CorpusLayoutError, match="does not exist.*clips/<clip>.mp3"):
        CommonVoiceReader(root).check_layout()
    make_locale("en", root)
    with pytest.raises(CorpusLayoutError, match="no clips/ folder .*locale folders: en"):
        CommonVoiceReader(tmp_path).check_layout()

    (root / "dev.tsv").rename(root / "dev.tsv.bak")
    with pytest.raises(CorpusLayoutError, match="lacks dev.tsv"):
        CommonVoiceReader(root).check_layout()
    (root / "dev.tsv.bak").rename(root / "dev.tsv")

    lines = (root / "train.tsv").read_text(encoding="utf-8").splitlines()
    (root / "train.tsv").write_text(
        "\n".join([lines[0].replace("\t", ","), *lines[1:]]) + "\n", encoding="utf-8"
    )
    with pytest.raises(CorpusLayoutError, match=r"train.tsv has the header .*'client_id'") as error:
        CommonVoiceReader(root).check_layout()
    assert "tabs, not commas" in str(error.value)
    shutil.copy(shared_data("layouts", "common_voice_6.1_tsv", "en", "train.tsv"), root)

    (root / "clip_durations.tsv").write_text("clip\tduration\n", encoding="utf-8")
    with pytest.raises(CorpusLayoutError, match=r"clip_durations.tsv .*'duration\[ms\]'"):
        CommonVoiceReader(root).check_layout()


def test_manifest_cache_probes_once_and_fingerprints_only_the_tsvs(tmp_path: Path, monkeypatch):
    root = tmp_path / "en"
    make_locale("en", root)
    calls: list[Path] = []
    real_probe = common_voice.probe
    monkeypatch.setattr(common_voice, "probe", lambda path: calls.append(path) or real_probe(path))
    reader = CommonVoiceReader(root)
    assert list(reader.fingerprint_paths()) == sorted(root / n for n in SPLIT_TSV.values())

    first = load_or_build_manifest(reader, tmp_path / "cache")
    assert len(calls) == 6 and sum(map(len, first.splits.values())) == 6
    again = load_or_build_manifest(CommonVoiceReader(root), tmp_path / "cache")
    assert len(calls) == 6 and again.splits == first.splits and again.directory == first.directory

    cased = CommonVoiceReader(root, normalizer={"lowercase": False})
    assert cased.options()["normalizer"]["lowercase"] is False
    other = load_or_build_manifest(cased, tmp_path / "cache")
    assert other.directory != first.directory
    assert other.splits["test"][1].text == "six" and other.splits["test"][0].text[0] == "S"

    write_durations(root, {p.name: 1.0 for p in (root / "clips").iterdir()})
    assert root / "clip_durations.tsv" in list(reader.fingerprint_paths())
    rebuilt = load_or_build_manifest(CommonVoiceReader(root), tmp_path / "cache")
    assert rebuilt.directory != first.directory and len(calls) == 12
    assert {u.duration for u in rebuilt.splits["train"]} == {1.0}


def test_speaker_filter_keeps_one_voice_and_resplits_its_clips(tmp_path: Path):
    root = tmp_path / "en"
    make_locale("en", root)
    rows = [r for tsv in SPLIT_TSV.values() for r in read_rows(root / tsv)]
    speaker = rows[0]["client_id"]
    own = {r["path"] for r in rows if r["client_id"] == speaker}
    reader = CommonVoiceReader(root, speaker=speaker, speaker_holdout=0.3)
    splits, _ = scan_all(reader)
    found = [Path(u.audio_path).name for split in SPLITS for u in splits[split]]
    assert sorted(found) == sorted(own)  # every clip of the voice once, no other voice
    assert all(u.speaker == speaker for split in SPLITS for u in splits[split])
    assert reader.options()["speaker"] == speaker
    with pytest.raises(CorpusLayoutError, match="no clip of speaker"):
        list(CommonVoiceReader(root, speaker="nobody").scan("train", ScanReport()))
