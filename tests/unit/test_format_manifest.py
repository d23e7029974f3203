"""data=manifest: JSON lines (NeMo), JSON (SpeechBrain), CSV/TSV; round trip and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import hydra
import numpy as np
import pytest
import soundfile as sf

from speechlab.audio.io import read_audio
from speechlab.corpora.convert import writer
from speechlab.corpora.formats.manifest import ManifestReader
from speechlab.data.manifest import build_manifest
from speechlab.data.reader import CorpusLayoutError
from tests.conftest import assert_same_corpus, composed

RATE = 16000
NEMO = {"audio": "audio_filepath"}
AS_WRITTEN = {"lowercase": False, "punctuation": "keep"}


def wav(path: Path, seconds: float, value: float = 0.1) -> Path:
    """A WAV of ``seconds`` whose samples count up, so a segment read can be checked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = (np.arange(int(seconds * RATE)) % 1000 / 1000 * value).astype(np.float32)
    sf.write(path, samples, RATE, subtype="FLOAT")
    return path


def jsonl(path: Path, records: list[object]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def reader_from_config(root: Path, tmp_path: Path, *overrides: str) -> ManifestReader:
    """The reader as `python train.py data=manifest data.reader.root=<root> ...` builds it."""
    with composed(
        "train", ["data=manifest", f"data.reader.root={root}", *overrides], tmp_path / "run"
    ) as cfg:
        return hydra.utils.instantiate(cfg.data.reader)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Three splits of whole files, relative paths, NeMo keys."""
    root = tmp_path / "corpus"
    for split, speakers in (("train", "abcdefgh"), ("dev", "i"), ("test", "j")):
        records = []
        for speaker in speakers:
            for take in range(2):
                name = f"audio/{speaker}{take}.wav"
                wav(root / name, 0.5 + 0.1 * take)
                records.append(
                    {"audio_filepath": name, "duration": 0.5 + 0.1 * take, "text": "Hi there."}
                    | {"speaker": speaker}
                )
        jsonl(root / f"{split}.jsonl", records)
    return root


def test_mini_voice_round_trips_through_json_lines(tiny_voice, tmp_path):
    writer("manifest")(tiny_voice.splits, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "test.jsonl",
        "train.jsonl",
        "validation.jsonl",
    ]
    manifest = build_manifest(reader_from_config(tmp_path / "out", tmp_path))
    assert manifest.skipped == {}
    assert_same_corpus(tiny_voice, manifest)


def test_nemo_manifest_reads_relative_paths_dev_split_and_texts_as_written(corpus, tmp_path):
    manifest = build_manifest(reader_from_config(corpus, tmp_path))
    counts = {split: len(table) for split, table in manifest.splits.items()}
    assert counts == {"train": 16, "validation": 2, "test": 2}
    first = manifest.splits["train"][0]
    assert first.audio_path == str(corpus / "audio/a0.wav")
    assert first.id == "audio/a0" and first.text == "Hi there." and first.speaker == "a"
    assert first.sample_rate == 0  # not opened: a duration was given


def test_missing_duration_is_probed_and_a_segment_is_read_by_seeking(tmp_path):
    long = wav(tmp_path / "long.wav", 3.0)
    jsonl(
        tmp_path / "train.jsonl",
        [
            {"audio_filepath": "long.wav", "text": "whole"},
            {"audio_filepath": "long.wav", "offset": 1.25, "duration": 0.5, "text": "part"},
            {"audio_filepath": "long.wav", "offset": 2.0, "text": "rest"},
        ],
    )
    reader = ManifestReader(tmp_path, holdout=0.4, columns={"audio": "audio_filepath", **_F})
    table = build_manifest(reader).splits
    every = {u.text: u for split in table.values() for u in split}
    assert every["whole"].duration == pytest.approx(3.0) and every["whole"].sample_rate == RATE
    assert every["rest"].duration == pytest.approx(1.0)
    part = every["part"]
    assert part.id == "long-00001250" and (part.offset, part.duration) == (1.25, 0.5)
    samples = read_audio(part.audio_path, RATE, part.offset, part.duration).numpy()
    expected = sf.read(long, dtype="float32")[0][20000:28000]
    np.testing.assert_array_equal(samples, expected)


_F = {"duration": "duration", "offset": "offset", "text": "text", "id": "id"}


def test_bad_entries_are_skipped_and_counted_by_file_and_line(tmp_path):
    wav(tmp_path / "a.wav", 1.0)
    path = jsonl(
        tmp_path / "train.jsonl",
        [
            {"audio_filepath": "a.wav", "duration": 1.0, "id": "u1", "text": "fine"},
            {"audio_filepath": "gone.wav", "duration": 1.0, "id": "u2"},
            {"audio_filepath": "a.wav", "offset": 4.0, "duration": 1.0, "id": "u3"},
            {"audio_filepath": "a.wav", "duration": -2, "id": "u4"},
            {"audio_filepath": "a.wav", "duration": 0, "id": "u5"},
            '{"audio_filepath": "a.wav", "duration": ',
            "[1, 2]",
            {"audio_filepath": "a.wav", "duration": 1.0, "id": "u1"},
            {"duration": 1.0, "id": "u8"},
            {"audio_filepath": "a.wav", "duration": "long", "id": "u9"},
            {"audio_filepath": "a.wav", "offset": 0.5, "duration": 0.9, "id": "u10"},
        ],
    )
    reader = ManifestReader(
        tmp_path,
        validation="train.jsonl",
        test="train.jsonl",
        columns={"audio": "audio_filepath", **_F},
    )
    manifest = build_manifest(reader)
    assert [u.id for u in manifest.splits["train"]] == ["u1"]
    reasons = {int(where.rsplit(":", 1)[1]): why for where, why in manifest.skipped.items()}
    assert all(where.startswith(f"{path}:") for where in manifest.skipped)
    assert "gone.wav does not exist" in reasons[2]
    assert "offset 4.0 s is at or beyond the end" in reasons[3]
    assert "duration -2.0 s is not positive" in reasons[4]
    assert "duration 0.0 s is not positive" in reasons[5]
    assert "is not valid JSON" in reasons[6]
    assert "is not a JSON object" in reasons[7]
    assert "repeats utterance id 'u1'" in reasons[8]
    assert "has no 'audio_filepath'" in reasons[9]
    assert "'long' is not a number of seconds" in reasons[10]
    assert "ends past the end" in reasons[11]
    assert len(reasons) == 10


def test_csv_without_the_audio_column_lists_the_columns_it_has(tmp_path):
    (tmp_path / "train.csv").write_text("ID,duration,wav,wrd\nu1,1.0,a.wav,hello\n")
    reader = ManifestReader(tmp_path, columns={"audio": "audio_filepath"})
    with pytest.raises(CorpusLayoutError) as error:
        reader.check_layout()
    message = str(error.value)
    assert "train.csv has no 'audio_filepath' column" in message
    assert "['ID', 'duration', 'wav', 'wrd']" in message
    assert "data.reader.columns.audio=<name>" in message


def test_speechbrain_csv_and_json_read_with_a_column_map(tmp_path):
    wav(tmp_path / "w" / "a.wav", 1.0)
    wav(tmp_path / "w" / "b.wav", 1.0)
    with (tmp_path / "train.csv").open("w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(["ID", "duration", "wav", "spk_id", "wrd"])
        rows.writerow(["u1", "1.0", "w/a.wav", "s1", 'say "hi", then go'])
        rows.writerow(["u2", "1.0", "w/b.wav", "s2", "second", "extra"])
    (tmp_path / "test.json").write_text(
        json.dumps(
            {"u3": {"wav": "{data_root}/w/b.wav", "length": 1.0, "words": "third", "spk_id": 7}},
            indent=2,
        )
    )
    columns = {"audio": "wav", "duration": "duration", "text": "wrd", "speaker": "spk_id"}
    columns |= {"id": "ID"}
    manifest = build_manifest(
        ManifestReader(tmp_path, columns, validation="train.csv", normalizer=AS_WRITTEN)
    )
    (u1,) = manifest.splits["train"]
    assert (u1.id, u1.text, u1.speaker) == ("u1", 'say "hi", then go', "s1")
    (where,) = [w for w in manifest.skipped if w.endswith("train.csv:3")]
    assert "has 6 fields, the header 5" in manifest.skipped[where]
    sb = {"audio": "wav", "duration": "length", "text": "words", "speaker": "spk_id", "id": "id"}
    (u3,) = build_manifest(ManifestReader(tmp_path, validation="test.json", columns=sb)).splits[
        "test"
    ]
    assert (u3.id, u3.text, u3.speaker, u3.audio_path) == (
        "u3",
        "third",
        "7",
        str(tmp_path / "w/b.wav"),
    )


def test_labels_and_translations_are_read_for_keyword_spotting_and_translation(tmp_path):
    wav(tmp_path / "a.wav", 1.0)
    jsonl(
        tmp_path / "train.jsonl",
        [{"audio_filepath": "a.wav", "duration": 1.0, "label": 3, "translation": "hallo"}],
    )
    reader = ManifestReader(
        tmp_path,
        validation="train.jsonl",
        test="train.jsonl",
        columns={"audio": "audio_filepath", "label": "label", "translation": "translation"},
    )
    (utterance,) = build_manifest(reader).splits["train"]
    assert (utterance.label, utterance.translation, utterance.text) == ("3", "hallo", None)


def test_missing_splits_are_held_out_of_train_by_speaker(corpus, tmp_path):
    (corpus / "dev.jsonl").unlink()
    (corpus / "test.jsonl").unlink()
    manifest = build_manifest(reader_from_config(corpus, tmp_path, "data.reader.holdout=0.3"))
    speakers = {s: {u.speaker for u in t} for s, t in manifest.splits.items()}
    assert all(speakers.values())
    assert not speakers["train"] & (speakers["validation"] | speakers["test"])
    assert sum(len(t) for t in manifest.splits.values()) == 16


def test_layout_errors_say_what_to_pass(tmp_path):
    with pytest.raises(CorpusLayoutError, match="does not exist.*speechlab convert"):
        ManifestReader(tmp_path / "nowhere", NEMO).check_layout()
    with pytest.raises(CorpusLayoutError, match="no train split in .*data.reader.train="):
        ManifestReader(tmp_path, NEMO).check_layout()
    jsonl(tmp_path / "train.jsonl", [])
    with pytest.raises(CorpusLayoutError, match=r"data.reader.test='held.jsonl': no such"):
        ManifestReader(tmp_path, NEMO, test="held.jsonl").check_layout()
    with pytest.raises(CorpusLayoutError, match="holdout=0: give data.reader.validation"):
        ManifestReader(tmp_path, NEMO, holdout=0).check_layout()
    with pytest.raises(ValueError, match="columns has \\['wave'\\]"):
        ManifestReader(tmp_path, columns={"audio": "a", "wave": "b"})


def test_the_manifest_is_cached_until_a_split_file_changes(corpus, tmp_path):
    from speechlab.data.manifest import load_or_build_manifest

    reader = reader_from_config(corpus, tmp_path)
    first = load_or_build_manifest(reader, tmp_path / "cache")
    again = load_or_build_manifest(reader_from_config(corpus, tmp_path), tmp_path / "cache")
    assert again.directory == first.directory
    with (corpus / "test.jsonl").open("a") as f:
        f.write(json.dumps({"audio_filepath": "audio/a0.wav", "duration": 0.5, "id": "new"}) + "\n")
    changed = load_or_build_manifest(reader_from_config(corpus, tmp_path), tmp_path / "cache")
    assert changed.directory != first.directory
    assert "new" in {u.id for u in changed.splits["test"]}
