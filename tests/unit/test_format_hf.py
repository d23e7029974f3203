"""data=hf: Hugging Face datasets (save_to_disk folders, Parquet, the Hub); round trip and bad rows."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import datasets
import hydra
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from datasets import Audio, ClassLabel, Dataset, DatasetDict, Features, Value
from hydra.errors import InstantiationException

from speechlab.audio.io import read_audio
from speechlab.corpora.convert import writer
from speechlab.corpora.formats.hf import HFReader
from speechlab.data.manifest import build_manifest, load_or_build_manifest
from speechlab.data.reader import CorpusLayoutError
from speechlab.data.utterance import Utterance
from speechlab.data.utterance_table import UtteranceTable
from tests.conftest import assert_same_corpus, composed

RATE = 16000
NO_TEXT = {"audio": "audio", "text": None}
AS_WRITTEN = {"lowercase": False, "punctuation": "keep"}


def samples(seconds: float) -> np.ndarray:
    """Samples that count up (exact in 16 bits), so a segment read back can be checked."""
    return ((np.arange(int(seconds * RATE)) % 1000 - 500) / 2**15).astype(np.float32)


def wav_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples(seconds), RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def dataset(columns: dict[str, list], label_names: list[str] | None = None) -> Dataset:
    """A Dataset as the Hub stores one: an Audio column of {bytes, path} (cast, not encoded:
    encoding would need torchcodec), and a ClassLabel label when ``label_names`` is given."""
    data = Dataset.from_dict(columns).cast_column("audio", Audio())
    return data.cast_column("label", ClassLabel(names=label_names)) if label_names else data


def audio(seconds: float, path: str | None = None) -> dict:
    return {"bytes": wav_bytes(seconds), "path": path}


def reader_from_config(tmp_path: Path, *overrides: str) -> HFReader:
    """The reader as `python train.py data=hf <overrides>` builds it."""
    with composed("train", ["data=hf", *overrides], tmp_path / "run") as cfg:
        reader = hydra.utils.instantiate(cfg.data.reader)
    assert isinstance(reader, HFReader)
    return reader


def test_mini_voice_round_trips_through_save_to_disk(tiny_voice, tmp_path):
    out = tmp_path / "out"
    writer("hf")(tiny_voice.splits, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "dataset_dict.json",
        "test",
        "train",
        "validation",
    ]
    stored = datasets.load_from_disk(str(out))["train"].with_format("arrow")[:1]["audio"]
    assert stored[0]["bytes"].as_py() and stored[0]["path"].as_py().endswith(".mp3")  # embedded

    reader = reader_from_config(tmp_path, f"data.reader.root={out}")
    manifest = build_manifest(reader)
    assert manifest.skipped == {}
    assert_same_corpus(tiny_voice, manifest)
    original = {u.id: u for u in tiny_voice.splits["train"]}
    first = manifest.splits["train"][0]
    extracted = Path(first.audio_path)
    assert extracted.is_relative_to(reader.extract_dir) and extracted.suffix == ".mp3"
    assert extracted.read_bytes() == Path(original[first.id].audio_path).read_bytes()
    written = extracted.stat().st_mtime_ns
    build_manifest(reader)  # a second scan keeps the files already extracted
    assert extracted.stat().st_mtime_ns == written

    cached = load_or_build_manifest(reader, tmp_path / "cache")
    assert load_or_build_manifest(reader, tmp_path / "cache").directory == cached.directory
    shutil.rmtree(reader.extract_dir)  # the extracted audio deleted: rebuilt and extracted again
    rebuilt = load_or_build_manifest(reader, tmp_path / "cache")
    assert rebuilt.directory != cached.directory and extracted.is_file()


def test_segments_labels_and_translations_survive_the_round_trip(tmp_path):
    long = tmp_path / "long.wav"
    sf.write(long, samples(3.0), RATE, subtype="PCM_16")
    path = str(long)
    whole = Utterance("w", path, 3.0, RATE, label="yes", translation="Hallo.", language="de")
    part = Utterance("p", path, 0.5, RATE, offset=1.25, label="no", speaker="s1", text="Part")
    splits = {
        "train": UtteranceTable.from_utterances([whole, part]),
        "validation": UtteranceTable.from_utterances([Utterance("v", path, 1.0, RATE, 0.5)]),
        "test": UtteranceTable.from_utterances([]),
    }
    writer("hf")(splits, tmp_path / "out")
    manifest = build_manifest(reader_from_config(tmp_path, f"data.reader.root={tmp_path / 'out'}"))
    assert manifest.skipped == {}
    got = {u.id: u for table in manifest.splits.values() for u in table}
    assert sorted(got) == ["p", "v", "w"] and len(manifest.splits["test"]) == 0
    w, p = got["w"], got["p"]
    assert (w.label, w.translation, w.language, w.text) == ("yes", "Hallo.", "de", None)
    assert (p.label, p.speaker, p.text, p.translation) == ("no", "s1", "Part", None)
    assert (p.offset, p.duration, Path(p.audio_path).suffix) == (0.0, 0.5, ".flac")
    np.testing.assert_array_equal(read_audio(p.audio_path, RATE).numpy(), samples(3.0)[20000:28000])
    assert Path(w.audio_path).read_bytes() == long.read_bytes()  # a whole file as it was
    assert got["v"].duration == 1.0 and Path(got["v"].audio_path).suffix == ".flac"


def common_voice_like(rows: int, speakers: str = "abcdefghij") -> Dataset:
    return dataset(
        {
            "client_id": [speakers[i % len(speakers)] for i in range(rows)],
            "path": [f"common_voice_cy_{i}.mp3" for i in range(rows)],
            "audio": [audio(0.25, f"common_voice_cy_{i}.wav") for i in range(rows)],
            "sentence": [f"Brawddeg {i}." for i in range(rows)],
            "locale": ["cy"] * rows,
        }
    )


def test_parquet_in_the_hubs_layout_with_common_voice_columns_holds_out_validation(tmp_path):
    root = tmp_path / "cv"
    (root / "data").mkdir(parents=True)
    common_voice_like(40).to_parquet(root / "data" / "train-00000-of-00001.parquet")
    common_voice_like(3, "xy").to_parquet(root / "data" / "test-00000-of-00001.parquet")
    reader = reader_from_config(
        tmp_path,
        f"data.reader.root={root}",
        "data.reader.columns.text=sentence",
        "data.reader.columns.speaker=client_id",
        "data.reader.columns.language=locale",
        "data.reader.holdout=0.2",
    )
    manifest = build_manifest(reader)
    assert manifest.skipped == {}
    counts = {split: len(table) for split, table in manifest.splits.items()}
    assert counts["test"] == 3 and counts["train"] + counts["validation"] == 40
    speakers = {split: {u.speaker for u in table} for split, table in manifest.splits.items()}
    assert speakers["validation"] and not speakers["validation"] & speakers["train"]
    first = {u.id: u for table in manifest.splits.values() for u in table}["train-0"]
    assert (first.text, first.language) == ("Brawddeg 0.", "cy")
    assert first.duration == 0.25 and first.sample_rate == RATE
    assert Path(first.audio_path).name == "train-0.wav"  # the stored path's extension
    assert all(p in set(reader.fingerprint_paths()) for p in (root / "data").iterdir())


def test_a_class_label_column_reads_as_its_names(tmp_path):
    names = ["yes", "no", "up"]
    for split, labels in (("train", [0, 2, -1]), ("held", [1]), ("test", [2])):
        columns = {"audio": [audio(0.5) for _ in labels], "label": labels}
        dataset(columns, names).to_parquet(tmp_path / f"{split}.parquet")
    reader = HFReader(NO_TEXT, tmp_path / "x", root=tmp_path, validation="held.parquet")
    manifest = build_manifest(reader)
    assert [u.label for u in manifest.splits["train"]] == ["yes", "up", None]
    assert [(u.id, u.label) for u in manifest.splits["validation"]] == [("held-0", "no")]
    assert Path(manifest.splits["test"][0].audio_path).suffix == ".wav"  # sniffed: no path
    with pytest.raises(CorpusLayoutError, match="'label' holds ClassLabel.*expected an Audio"):
        HFReader({"audio": "label"}, tmp_path / "x", root=tmp_path).check_layout()


def test_a_column_the_dataset_lacks_is_named_with_the_columns_it_has(tmp_path):
    root = tmp_path / "cv"
    common_voice_like(4).save_to_disk(root)  # one Dataset: the train split
    with pytest.raises(CorpusLayoutError) as error:
        reader_from_config(tmp_path, f"data.reader.root={root}").check_layout()
    message = str(error.value)
    assert f"{root} split train has no column 'text' for the text" in message
    assert "['client_id', 'path', 'audio', 'sentence', 'locale']" in message
    assert "Write data.reader.columns.text=sentence" in message
    with pytest.raises(CorpusLayoutError, match="Write data.reader.columns.speaker=client_id"):
        HFReader({"audio": "audio", "speaker": "spk"}, tmp_path / "x", root=root).check_layout()


def parquet(path: Path, rows: list[dict]) -> None:
    """Rows as written, audio paths not embedded (as datasets' own writers would)."""
    features = Features(
        {"id": Value("string"), "audio": Audio(), "duration": Value("float64")}
        | {"translation": Value("string")}
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=features.arrow_schema), path)


def test_bad_rows_are_skipped_and_counted_by_split_and_row(tmp_path):
    root = tmp_path / "corpus"
    (root / "clips").mkdir(parents=True)
    sf.write(root / "clips" / "a.wav", samples(0.75), RATE)
    parquet(
        root / "train.parquet",
        [
            {"id": "u0", "audio": audio(0.5, "u0.wav"), "translation": "Bonjour."},
            {"id": "u1", "audio": {"bytes": b"not audio at all", "path": "u1.wav"}},
            {"id": "u2", "audio": {"bytes": None, "path": None}},
            {"id": "u3", "audio": {"bytes": None, "path": "gone.wav"}},
            {"id": "u4", "audio": {"bytes": None, "path": "clips/a.wav"}},
            {"id": "u0", "audio": audio(0.5, "again.wav")},
            {"id": "u6", "audio": audio(0.5), "duration": -1.0},
            {"id": "u7", "audio": {"bytes": b"", "path": None}},
            {"id": "u8", "audio": None},
        ],
    )
    parquet(root / "dev.parquet", [{"id": "v", "audio": audio(0.5)}])
    parquet(root / "test.parquet", [{"id": "t", "audio": audio(0.5)}])
    reader = HFReader(NO_TEXT, tmp_path / "x", root=root, normalizer=AS_WRITTEN)
    manifest = build_manifest(reader)
    kept = {u.id: u for u in manifest.splits["train"]}
    assert sorted(kept) == ["u0", "u4"] and kept["u0"].translation == "Bonjour."
    assert kept["u4"].audio_path == str(root / "clips" / "a.wav")  # a file: used, not copied
    assert kept["u4"].duration == 0.75 and len(manifest.splits["validation"]) == 1
    reasons = {int(where.rsplit(" ", 1)[1]): why for where, why in manifest.skipped.items()}
    assert all(where.startswith(f"{root}/train.parquet row ") for where in manifest.skipped)
    assert "audio bytes do not decode" in reasons[1]
    assert "has no audio bytes and no path" in reasons[2]
    assert f"its path '{root / 'gone.wav'}' is no file" in reasons[3]
    assert "repeats utterance id 'u0' (column 'id')" in reasons[5]
    assert "data.reader.columns.id=false" in reasons[5]
    assert "duration -1.0 s is not positive" in reasons[6]
    assert "has no audio bytes and no path" in reasons[7] and "no path" in reasons[8]
    assert len(reasons) == 7
    assert not list((tmp_path / "x").rglob("u1.wav"))  # undecodable bytes are not left behind


def test_layout_errors_say_what_to_pass(tmp_path):
    with pytest.raises(CorpusLayoutError, match="no dataset given .*data.reader.root=.*name="):
        reader_from_config(tmp_path).check_layout()
    with pytest.raises(InstantiationException, match="data.reader.name='a/b': give"):
        reader_from_config(tmp_path, f"data.reader.root={tmp_path}", "data.reader.name=a/b")
    with pytest.raises(ValueError, match="columns has \\['wave'\\]"):
        HFReader({"audio": "audio", "wave": "w"}, tmp_path, root=tmp_path)
    with pytest.raises(CorpusLayoutError, match="does not exist.*speechlab convert"):
        HFReader(NO_TEXT, tmp_path, root=tmp_path / "nowhere").check_layout()
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(CorpusLayoutError, match="holds notes.txt: expected a folder written by"):
        HFReader(NO_TEXT, tmp_path / "x", root=tmp_path).check_layout()
    root = tmp_path / "other"
    DatasetDict(other=dataset({"audio": [audio(0.1)]})).save_to_disk(root)
    with pytest.raises(CorpusLayoutError, match=r"no train split in .*\(splits: other\)"):
        HFReader(NO_TEXT, tmp_path / "x", root=root).check_layout()
    with pytest.raises(CorpusLayoutError, match="data.reader.test='held': no such"):
        HFReader(NO_TEXT, tmp_path / "x", root=root, train="other", test="held").check_layout()


def test_a_hub_name_without_network_says_to_save_it_and_pass_root(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    reader = reader_from_config(
        tmp_path, "data.reader.name=mozilla-foundation/common_voice_17_0", "data.reader.config=cy"
    )
    with pytest.raises(CorpusLayoutError) as error:
        reader.check_layout()
    message = str(error.value)
    assert "cannot load the Hugging Face dataset mozilla-foundation/common_voice_17_0" in message
    assert "(config cy)" in message and "pass data.reader.root=<that folder>" in message
