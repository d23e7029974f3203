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
            {"audio_filepath": "long.wav", "offset": 0, "duration": 1.0, "text": "first"},
            {"audio_filepath": "long.wav", "offset": 1.25, "duration": 1.0, "text": "longer"},
        ],
    )
    reader = ManifestReader(tmp_path, holdout=0.4, columns={"audio": "audio_filepath", **_F})
    manifest = build_manifest(reader)
    assert manifest.skipped == {}
    every = {u.text: u for split in manifest.splits.values() for u in split}
    assert every["whole"].duration == pytest.approx(3.0) and every["whole"].sample_rate == RATE
    assert every["rest"].duration == pytest.approx(1.0)
    # A segment is named by its start and end (ms): one at 0 s is not its whole file, two of
    # one start are two utterances; a segment without a duration has its start alone.
    ids = {text: u.id for text, u in every.items()}
    assert ids == {
        "whole": "long",
        "part": "long-00001250-00001750",
        "rest": "long-00002000",
        "first": "long-00000000-00001000",
        "longer": "long-00001250-00002250",
    }
    part = every["part"]
    assert (part.offset, part.duration) == (1.25, 0.5)
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


def _skips(manifest) -> dict[str, str]:
    """``<file name>:<line or index> -> reason`` of the skipped entries."""
    return {Path(where).name: why for where, why in manifest.skipped.items()}


def _one_split(tmp_path: Path, name: str, **columns) -> ManifestReader:
    """A reader of ``name`` as every split (no hold-out), NeMo keys unless mapped."""
    nemo = {"audio": "audio_filepath", "text": "text", "speaker": "speaker", "id": "id"}
    nemo |= {"label": "label", "duration": "duration"}
    return ManifestReader(
        tmp_path, nemo | columns, train=name, validation=name, test=name, normalizer=AS_WRITTEN
    )


def test_bytes_that_are_not_utf8_skip_their_entry_and_a_header_of_them_is_a_layout_error(
    tmp_path,
):
    wav(tmp_path / "a.wav", 1.0)
    (tmp_path / "rows.csv").write_bytes(
        b"audio_filepath,text,id\na.wav,caf\xe9,u1\na.wav,fine,u2\n"  # one Latin-1 byte
    )
    fine = json.dumps({"audio_filepath": "a.wav", "id": "u3"}).encode()
    latin = b'{"audio_filepath": "a.wav", "text": "caf\xe9", "id": "u4"}'
    (tmp_path / "lines.jsonl").write_bytes(latin + b"\n\x00\xff\xfe\x81binary\n" + fine + b"\n")
    array = [{"audio_filepath": "a.wav", "id": "u5"}, {"audio_filepath": "a.wav", "id": "u6"}]
    text = json.dumps(array, indent=1).encode().replace(b'"u6"', b'"u\xe96"')
    (tmp_path / "array.json").write_bytes(text)
    read = {name: build_manifest(_one_split(tmp_path, name)) for name in ("rows.csv",)}
    read |= {name: build_manifest(_one_split(tmp_path, name)) for name in ("lines.jsonl",)}
    read |= {"array.json": build_manifest(_one_split(tmp_path, "array.json"))}
    ids = {name: [u.id for u in m.splits["train"]] for name, m in read.items()}
    assert ids == {"rows.csv": ["u2"], "lines.jsonl": ["u3"], "array.json": ["u5"]}
    not_utf8 = "is not UTF-8 text; re-save the file as UTF-8"
    assert _skips(read["rows.csv"]) == {"rows.csv:2": not_utf8}
    assert _skips(read["lines.jsonl"]) == {"lines.jsonl:1": not_utf8, "lines.jsonl:2": not_utf8}
    assert _skips(read["array.json"]) == {"array.json:1": not_utf8}

    (tmp_path / "head.tsv").write_bytes(b"audio_filepath\tt\xe9xt\na.wav\thi\n")
    with pytest.raises(CorpusLayoutError, match=r"head.tsv: the header row is not UTF-8 text"):
        _one_split(tmp_path, "head.tsv").check_layout()


def test_a_json_array_is_read_whole_and_a_file_of_no_json_layout_is_one_layout_error(tmp_path):
    wav(tmp_path / "a.wav", 1.0)
    records = [
        {"audio_filepath": "a.wav", "duration": 1.0, "text": "one", "id": "u1"},
        {"audio_filepath": "a.wav", "duration": -1.0, "id": "u2"},
        [1, 2],
        {"audio_filepath": "a.wav", "duration": 1.0, "text": "four", "id": "u4"},
    ]
    for indent in (1, None):  # json.dump(records, f, indent=1) and on one line
        (tmp_path / "train.json").write_text(json.dumps(records, indent=indent))
        manifest = build_manifest(_one_split(tmp_path, "train.json"))
        assert [u.text for u in manifest.splits["train"]] == ["one", "four"]
        reasons = _skips(manifest)
        assert sorted(reasons) == ["train.json:1", "train.json:2"]  # the array's indices
        assert "is not an object of utterance fields" in reasons["train.json:2"]

    one = json.dumps(records[0])
    wrong = {
        "csv.jsonl": ("audio_filepath,duration\na.wav,1.0\n" * 50, r"csv.jsonl:1 is not a JSON"),
        "jq.jsonl": (
            f"{json.dumps(records[0], indent=2)}\n" * 2,
            r"jq.jsonl:7: not valid JSON \(Extr",
        ),
        "lists.json": (json.dumps([[1, 2]] * 50, indent=1), "holds a JSON list of lists"),
        "wrapped.json": (json.dumps({"data": records}, indent=1), "JSON object of lists"),
        "comma.json": ("[\n" + ",\n".join([one] * 50) + ",\n]", r"comma.json:52: not valid"),
        "binary.jsonl": (
            b"\xff\xfe\x00" + bytes(range(1, 256)) * 40,
            r"binary.jsonl:1 is not a JSON object \(nor",
        ),
    }
    for name, (content, message) in wrong.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(CorpusLayoutError, match=message) as error:
            build_manifest(_one_split(tmp_path, name))
        assert "Expected JSON lines" in str(error.value) or "expected JSON lines" in str(
            error.value
        )
    # A JSON-lines file whose first line alone is broken is still JSON lines: that line skips.
    (tmp_path / "first.jsonl").write_text('{"audio_filepath": "a.wav", \n' + one + "\n")
    manifest = build_manifest(_one_split(tmp_path, "first.jsonl"))
    assert [u.id for u in manifest.splits["train"]] == ["u1"]
    assert "is not valid JSON" in _skips(manifest)["first.jsonl:1"]


def test_fields_of_the_wrong_json_type_are_skipped_and_numbers_read_as_text(tmp_path):
    wav(tmp_path / "a.wav", 1.0)
    a = {"audio_filepath": "a.wav", "duration": 1.0}
    jsonl(
        tmp_path / "train.jsonl",
        [
            a | {"id": 1, "text": 3, "speaker": 7.5, "label": 0},
            a | {"id": "u2", "text": ["three", "x"]},
            a | {"id": "u3", "speaker": {"name": "x"}},
            a | {"id": "u4", "label": True},
            a | {"id": ["u5"]},
            {"audio_filepath": 123, "id": "u6"},
            {"audio_filepath": ["a.wav"], "id": "u7"},
            {"audio_filepath": False, "id": "u8"},
        ],
    )
    manifest = build_manifest(_one_split(tmp_path, "train.jsonl"))
    (kept,) = manifest.splits["train"]
    assert (kept.id, kept.text, kept.speaker, kept.label) == ("1", "3", "7.5", "0")
    reasons = {int(where.rsplit(":", 1)[1]): why for where, why in manifest.skipped.items()}
    assert "text is a JSON list; expected a string" in reasons[2]
    assert "speaker is a JSON object; expected a string" in reasons[3]
    assert "label is a JSON boolean; expected a string" in reasons[4]
    assert "id is a JSON list; expected a string" in reasons[5]
    assert "audio_filepath is 123 (a number); expected a path string" in reasons[6]
    assert 'audio_filepath is ["a.wav"] (a JSON list); expected a path string' in reasons[7]
    assert "audio_filepath is false (a JSON boolean); expected a path string" in reasons[8]
    assert len(reasons) == 7


def test_csv_rows_with_fewer_fields_than_the_header_are_skipped(tmp_path):
    wav(tmp_path / "a.wav", 1.0)
    (tmp_path / "train.tsv").write_text(
        "ID\tduration\twav\tspk_id\twrd\n"
        "u1\t1.0\ta.wav\ts1\tfirst\n"
        "u2\n"  # one field
        "u3\t1.0\ta.wav\n"  # three
        "\t\t\t\t\n"  # blank: passed over
        "u4\t1.0\ta.wav\ts1\t\n"  # an empty text is a field
    )
    columns = {"audio": "wav", "duration": "duration", "text": "wrd", "id": "ID"}
    manifest = build_manifest(_one_split(tmp_path, "train.tsv", **columns))
    assert [u.id for u in manifest.splits["train"]] == ["u1", "u4"]
    assert _skips(manifest) == {
        "train.tsv:3": "has 1 field, the header 5; fix or delete the row",
        "train.tsv:4": "has 3 fields, the header 5; fix or delete the row",
    }


def test_split_files_of_one_name_and_several_suffixes_warn_which_is_read(tmp_path, caplog):
    wav(tmp_path / "a.wav", 1.0)
    jsonl(tmp_path / "train.jsonl", [{"audio_filepath": "a.wav", "duration": 1.0, "id": "j"}])
    (tmp_path / "train.tsv").write_text("audio_filepath\tduration\tid\na.wav\t1.0\tt\n")
    jsonl(tmp_path / "dev.json", [{"audio_filepath": "a.wav", "duration": 1.0, "id": "d"}])
    (tmp_path / "dev.csv").write_text("audio_filepath,duration,id\na.wav,1.0,c\n")
    jsonl(tmp_path / "test.jsonl", [{"audio_filepath": "a.wav", "duration": 1.0, "id": "t"}])
    with caplog.at_level("WARNING", logger="speechlab.corpora.formats.manifest"):
        manifest = build_manifest(ManifestReader(tmp_path, {"audio": "audio_filepath", **_F}))
    assert [u.id for u in manifest.splits["train"]] == ["j"]
    assert [u.id for u in manifest.splits["validation"]] == ["d"]
    warnings = [r.getMessage() for r in caplog.records if r.name.endswith("manifest")]
    assert len(warnings) == 2, warnings  # once per name, however often the layout is checked
    train, dev = sorted(warnings, key=lambda w: "dev" in w)
    assert "reading train.jsonl, ignoring train.tsv" in train and "data.reader.train=" in train
    assert "reading dev.json, ignoring dev.csv" in dev and "data.reader.validation=" in dev


def test_layout_messages_name_the_manifest_files_expected(tmp_path):
    with pytest.raises(CorpusLayoutError) as error:
        ManifestReader(tmp_path / "nowhere", NEMO).check_layout()
    assert "Expected a folder of manifest files (.jsonl, .json, .csv or .tsv), one per" in str(
        error.value
    )
    jsonl(tmp_path / "train.jsonl", [])
    with pytest.raises(CorpusLayoutError) as error:
        ManifestReader(tmp_path, NEMO, test="held.jsonl").check_layout()
    assert "no such manifest file (.jsonl, .json, .csv or .tsv) in " in str(error.value)
    with pytest.raises(CorpusLayoutError) as error:
        ManifestReader(tmp_path, NEMO, holdout=0).check_layout()
    assert "data.reader.validation=<its manifest file (.jsonl, .json" in str(error.value)
