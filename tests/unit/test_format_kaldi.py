"""data=kaldi: Kaldi/ESPnet data dirs read and written; round trip, the real speechocean762,
commands and extended filenames, and bad input."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import hydra
import numpy as np
import pytest
import soundfile as sf
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from speechlab.corpora.convert import writer
from speechlab.corpora.formats.kaldi import KaldiReader
from speechlab.data.manifest import build_manifest, load_or_build_manifest
from speechlab.data.reader import CorpusLayoutError
from speechlab.data.utterance import Utterance
from speechlab.data.utterance_table import UtteranceTable
from tests.conftest import assert_same_corpus, composed, shared_data

RATE = 16000


def wav(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = (np.arange(int(seconds * RATE)) % 100 / 100 * 0.1).astype(np.float32)
    sf.write(path, samples, RATE, subtype="PCM_16")
    return path


def data_dir(directory: Path, **files: str) -> Path:
    """A data dir holding ``files`` (``wav_scp`` is ``wav.scp``), each a block of lines."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        lines = [line.strip() for line in text.strip().splitlines()]
        (directory / name.replace("_scp", ".scp")).write_text("".join(f"{x}\n" for x in lines))
    return directory


@pytest.fixture(scope="module")
def reader_config(tmp_path_factory) -> DictConfig:
    """``data.reader`` as `python train.py data=kaldi data.reader.root=...` composes it."""
    out = tmp_path_factory.mktemp("run")
    with composed("train", ["data=kaldi", "data.reader.root=unset"], out) as cfg:
        return cfg.data.reader


@pytest.fixture
def reader(reader_config, tmp_path):
    """``reader(root, **options)``: the configured reader, options as typed after ``data.reader``."""

    def make(root: Path, **options) -> KaldiReader:
        options.setdefault("commands_dir", str(tmp_path / "commands"))
        return hydra.utils.instantiate(reader_config, root=str(root), **options)

    return make


def by_id(manifest, split: str) -> dict[str, Utterance]:
    return {u.id: u for u in manifest.splits[split]}


def test_the_config_composes_and_builds_the_reader(tmp_path):
    overrides = [
        "data=kaldi",
        f"data.reader.root={tmp_path}",
        "data.reader.train=data/train_clean",
        "data.reader.files.translation=text.tc.en",
        "data/reader/normalizer=lowercase",
    ]
    with composed("train", overrides, tmp_path / "run") as cfg:
        built = hydra.utils.instantiate(cfg.data.reader)
        cache_dir = Path(cfg.data.cache_dir)
    assert isinstance(built, KaldiReader)
    assert built.given["train"] == "data/train_clean"
    assert built.files["translation"] == "text.tc.en" and built.files["text"] == "text"
    assert built.commands_dir == (cache_dir / "kaldi_commands").resolve()
    assert not built.allow_commands and built.audio_root is None
    assert built.normalizer.lowercase


def test_mini_voice_round_trips_through_kaldi_data_dirs(tiny_voice, reader, tmp_path):
    out = tmp_path / "out"
    writer("kaldi")(tiny_voice.splits, out)
    assert sorted(p.name for p in out.iterdir()) == ["test", "train", "validation"]
    train = out / "train"
    assert sorted(p.name for p in train.iterdir()) == [
        "spk2utt",
        "text",
        "utt2dur",
        "utt2lang",
        "utt2spk",
        "wav.scp",
    ]  # fmt: skip  (whole files: no segments; no translation or label)
    ids = [line.split()[0] for line in (train / "wav.scp").read_text().splitlines()]
    assert ids == sorted(ids, key=lambda s: s.encode()) and len(ids) == len(
        tiny_voice.splits["train"]
    )
    assert all(Path(line.split(" ", 1)[1]).is_absolute() for line in (train / "wav.scp").open())
    spk2utt = [line.split() for line in (train / "spk2utt").read_text().splitlines()]
    assert [row[0] for row in spk2utt] == sorted(row[0] for row in spk2utt)
    assert all(row[1:] == sorted(row[1:]) for row in spk2utt)

    manifest = build_manifest(reader(out))
    assert manifest.skipped == {}
    assert_same_corpus(tiny_voice, manifest)


def test_segments_labels_translations_round_trip_and_stale_files_go(reader, tmp_path):
    long = wav(tmp_path / "audio" / "long recording.wav", 3.0)
    short = wav(tmp_path / "audio" / "short.wav", 1.0)
    utterances = [
        Utterance("a-1", str(long), 1.0, RATE, offset=0.0, text="Guten Tag", translation="Hi"),
        Utterance("a-2", str(long), 1.25, RATE, offset=1.5, text="Danke", label="yes"),
        Utterance("b-1", str(short), 1.0, RATE, text="Ja", speaker="spk b", language="de"),
    ]
    with pytest.raises(ValueError, match="'spk b' cannot be a Kaldi id"):
        writer("kaldi")({"train": UtteranceTable.from_utterances(utterances)}, tmp_path / "bad")

    utterances[2] = Utterance("b-1", str(short), 1.0, RATE, text="Ja", speaker="b", language="de")
    out = tmp_path / "out"
    (out / "validation").mkdir(parents=True)
    (out / "validation" / "segments").write_text("old 1 0 1\n")  # an earlier conversion's
    splits = {
        "train": UtteranceTable.from_utterances(utterances),
        "validation": UtteranceTable.from_utterances(utterances[2:]),
        "test": UtteranceTable.from_utterances([]),
    }
    writer("kaldi")(splits, out)
    train = out / "train"
    assert (train / "segments").read_text().splitlines() == [
        "a-1 long_recording 0 1",
        "a-2 long_recording 1.5 2.75",
        "b-1 short 0 1",
    ]
    assert (train / "wav.scp").read_text().splitlines() == [
        f"long_recording {long}",
        f"short {short}",
    ]
    assert (train / "translation").read_text() == "a-1 Hi\n"
    assert (train / "utt2label").read_text() == "a-2 yes\n"
    assert (train / "utt2spk").read_text() == "a-1 a-1\na-2 a-2\nb-1 b\n"  # Kaldi: own speaker
    assert not (out / "validation" / "segments").exists()  # whole file there: no segments

    manifest = build_manifest(reader(out))
    assert manifest.skipped == {}
    got = {uid: replace(u, sample_rate=RATE) for uid, u in by_id(manifest, "train").items()}
    assert got == {u.id: u for u in utterances}  # speakers a-1, a-2 read back as unknown
    assert list(by_id(manifest, "validation")) == ["b-1"] and len(manifest.splits["test"]) == 0


def test_speechocean762_as_released(reader):
    root = shared_data("speechocean762")
    start = time.perf_counter()
    manifest = build_manifest(reader(root))
    seconds = time.perf_counter() - start
    assert manifest.skipped == {}
    train, validation, test = (manifest.splits[s] for s in ("train", "validation", "test"))
    assert len(test) == 2500
    assert len(train) + len(validation) == 2500 and 0 < len(validation) < 500
    speakers = {split: {u.speaker for u in manifest.splits[split]} for split in manifest.splits}
    assert not speakers["train"] & speakers["validation"]
    assert not speakers["test"] & (speakers["train"] | speakers["validation"])
    first = next(iter(train))
    assert first.audio_path.endswith("WAVE/SPEAKER0001/000010011.mp3")
    assert first.text == "WE CALL IT BEAR" and first.speaker == "0001"
    for table in (train, validation, test):
        assert float(table.durations.min()) > 0.5
        assert set(table.column("sample_rate").tolist()) == {16000}  # probed (held out: once)
        texts = [u.text for u in table]
        assert all(t and t == t.upper() for t in texts)
    assert 5 * 3600 < sum(float(t.durations.sum()) for t in (train, validation, test)) < 7 * 3600
    print(f"speechocean762: 5,000 utterances read and probed in {seconds:.2f} s")


def test_relative_paths_resolve_under_root_then_its_parent(reader, tmp_path):
    recipe = tmp_path / "recipe"
    wav(recipe / "wavs" / "a.wav", 0.5)
    wav(recipe / "data" / "audio" / "b.wav", 0.5)
    data_dir(
        recipe / "data" / "train",
        wav_scp="a wavs/a.wav\nb audio/b.wav\nc wavs/c.wav",
        text="a one\nb two\nc three",
    )
    manifest = build_manifest(
        reader(recipe / "data", holdout=0.0, validation="train", test="train")
    )
    got = by_id(manifest, "train")
    assert got["a"].audio_path == str(recipe / "wavs" / "a.wav")  # the recipe's folder
    assert got["b"].audio_path == str(recipe / "data" / "audio" / "b.wav")  # root's own
    reason = manifest.skipped[f"{recipe}/data/train/wav.scp:3"]
    assert f"not a file under {recipe / 'data' / 'wavs'} nor under {recipe / 'wavs'}" in reason
    assert "data.reader.audio_root=" in reason

    manifest = build_manifest(
        reader(
            recipe / "data",
            audio_root=str(recipe / "data"),
            holdout=0.0,
            validation="train",
            test="train",
        )
    )
    assert sorted(by_id(manifest, "train")) == ["b"]
    assert (
        "taken under data.reader.audio_root" in manifest.skipped[f"{recipe}/data/train/wav.scp:1"]
    )


def test_commands_are_refused_unless_allowed_then_run_once(reader, tmp_path):
    clip = wav(tmp_path / "clip.wav", 0.75)
    runs = tmp_path / "runs.log"
    root = tmp_path / "data"
    data_dir(
        root / "train",
        wav_scp=f"""
        a echo run >> {runs}; cat {clip} |
        b {clip}
        c false |
        """,
        text="a one\nb two\nc three",
    )
    options = {"holdout": 0.0, "validation": "train", "test": "train"}
    with pytest.raises(CorpusLayoutError) as refused:
        build_manifest(reader(root, **options))
    message = str(refused.value)
    assert f"{root}/train/wav.scp:1" in message and "is a shell command" in message
    assert "data.reader.allow_commands=true" in message
    assert not runs.exists()

    allowed = reader(root, allow_commands=True, **options)
    for _ in range(2):  # a second scan reuses the kept output
        manifest = load_or_build_manifest(allowed, tmp_path / f"cache{_}")
        got = by_id(manifest, "train")
        assert sorted(got) == ["a", "b"]
        assert got["a"].duration == pytest.approx(0.75)
        assert Path(got["a"].audio_path).parent == tmp_path / "commands"
        assert "failed: exit status 1" in manifest.skipped[f"{root}/train/wav.scp:3"]
    assert runs.read_text() == "run\n"


@pytest.mark.parametrize(
    "value, words",
    [
        ("ark:/data/raw.ark:1234", "table specifier"),
        ("-", "standard input"),
        ("/data/raw_wav.1.ark:20471", "offset into a Kaldi archive"),
    ],
)
def test_extended_filenames_are_refused(reader, tmp_path, value, words):
    data_dir(tmp_path / "train", wav_scp=f"x {value}", text="x hello")
    with pytest.raises(CorpusLayoutError, match=words) as refused:
        build_manifest(reader(tmp_path, holdout=0.0, validation="train", test="train"))
    assert f"{tmp_path}/train/wav.scp:1" in str(refused.value)


def test_bad_lines_are_skipped_and_counted_by_file_and_line(reader, tmp_path, caplog):
    for name, seconds in (("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 1.0), ("e", 1.0)):
        wav(tmp_path / "audio" / f"{name}.wav", seconds)
    train = data_dir(
        tmp_path / "train",
        wav_scp="""
        a audio/a.wav
        b audio/b.wav
        a audio/c.wav
        lonely
        c audio/c.wav
        d audio/missing.wav
        e audio/e.wav
        f audio/a.wav
        """,
        text="""
        a Hello there
        b   Spaced   out
        c
        d Gone
        e Hello
        e Again
        ghost Nobody's audio
        """,
        utt2spk="a s1\nb s1\nc\nd s2\ne e",
        utt2dur="a 1.0\nb -1\nc abc\nghost 2",
        spk2gender="s1 m\ns2 f",
    )
    (train / "utt2lang").write_bytes(b"a en\nb \xff\xfe\n")
    with caplog.at_level("INFO"):
        manifest = build_manifest(reader(tmp_path, holdout=0.0, validation="train", test="train"))
    got = by_id(manifest, "train")
    assert sorted(got) == ["a", "b", "c", "e"]
    assert got["b"].text == "Spaced out" and got["c"].text is None  # empty transcript
    assert got["b"].duration == pytest.approx(1.0)  # bad utt2dur: probed
    assert got["e"].speaker is None  # its own id: Kaldi's "unknown"
    assert got["c"].speaker is None and got["a"].language == "en"
    wav_scp, text = f"{train}/wav.scp", f"{train}/text"
    expected = {
        f"{wav_scp}:3": "repeats utterance id 'a' of line 1",
        f"{wav_scp}:4": "has the id 'lonely' alone",
        f"{wav_scp}:6": "missing.wav' is not a file under",
        f"{wav_scp}:8": "utterance 'f' has no line in",
        f"{text}:6": "repeats utterance id 'e' of line 5",
        f"{text}:7": f"utterance 'ghost' is not in {wav_scp}",
        f"{train}/utt2spk:3": "has the id 'c' alone",
        f"{train}/utt2dur:2": "duration '-1' of 'b' is not a positive number",
        f"{train}/utt2dur:3": "duration 'abc' of 'c' is not a positive number",
        f"{train}/utt2dur:4": "utterance 'ghost' is not in",
        f"{train}/utt2lang:2": "is not UTF-8 text",
    }
    assert sorted(manifest.skipped) == sorted(expected)
    for where, words in expected.items():
        assert words in manifest.skipped[where], where
    assert "add its transcript or delete the entry" in manifest.skipped[f"{wav_scp}:8"]
    assert "no line for 2 utterances" in caplog.text  # utt2lang lacks c and e


def test_segments_are_checked_against_their_recordings(reader, tmp_path):
    wav(tmp_path / "audio" / "r1.wav", 2.0)
    train = data_dir(
        tmp_path / "train",
        wav_scp="r1 audio/r1.wav\nr2 audio/gone.wav\nr3 audio/r1.wav\nr1 audio/other.wav",
        segments="""
        u1 r1 0.0 0.5
        u2 r1 0.5 -1
        u3 r1 1.5 1.0
        u4 r1 2.5 3.0
        u5 r9 0 1
        u6 r2 0 1
        u7 r1 1.0 2.8
        u8 r1 x 1
        u9 r1 1
        """,
        text="\n".join(f"u{i} word" for i in range(1, 10)),
        utt2dur="u1 9.0",  # a segment's length comes from segments
    )
    manifest = build_manifest(reader(tmp_path, holdout=0.0, validation="train", test="train"))
    got = by_id(manifest, "train")
    assert sorted(got) == ["u1", "u2"]
    assert got["u1"].duration == pytest.approx(0.5) and got["u2"].offset == 0.5
    assert got["u2"].duration == pytest.approx(1.5)  # -1: to the recording's end
    where = f"{train}/segments"
    expected = {
        f"{train}/wav.scp:4": "repeats recording id 'r1' of line 1",
        f"{where}:3": "at or before its start",
        f"{where}:4": "offset 2.5 s is at or beyond the end",
        f"{where}:5": "recording 'r9' is not in",
        f"{where}:6": f"recording 'r2' ({train}/wav.scp:2): audio 'audio/gone.wav' is not a file",
        f"{where}:7": "ends past the end of",
        f"{where}:8": "is not a number of seconds",
        f"{where}:9": "has 3 fields; expected `<utterance-id> <recording-id> <start> <end>`",
    }
    assert sorted(manifest.skipped) == sorted(expected)
    for key, words in expected.items():
        assert words in manifest.skipped[key], key


def test_keyword_labels_without_text_and_espnet_file_names(reader, tmp_path):
    for name in ("a", "b", "c"):
        wav(tmp_path / "audio" / f"{name}.wav", 0.5)
    data_dir(
        tmp_path / "train",
        wav_scp="a audio/a.wav\nb audio/b.wav\nc audio/c.wav",
        utt2label="a yes\nb no\nc yes",
    )
    data_dir(
        tmp_path / "dev",
        wav_scp="a audio/a.wav",
        text="a hallo",
        **{"text.tc.en": "a hello"},
    )
    data_dir(tmp_path / "test", wav_scp="", text="")
    manifest = build_manifest(reader(tmp_path, files={"translation": "text.tc.en"}))
    assert {u.id: u.label for u in manifest.splits["train"]} == {"a": "yes", "b": "no", "c": "yes"}
    (dev,) = manifest.splits["validation"]
    assert (dev.text, dev.translation) == ("hallo", "hello")
    assert len(manifest.splits["test"]) == 0 and manifest.skipped == {}


def test_missing_splits_are_held_out_of_train_by_speaker(reader, tmp_path):
    wav(tmp_path / "audio" / "x.wav", 0.3)
    lines = [(f"s{s:02d}_{u}", f"s{s:02d}") for s in range(40) for u in range(3)]
    data_dir(
        tmp_path / "data" / "train_clean",  # a name SplitSources does not look for
        wav_scp="\n".join(f"{uid} audio/x.wav" for uid, _ in lines),
        text="\n".join(f"{uid} hi" for uid, _ in lines),
        utt2spk="\n".join(f"{uid} {spk}" for uid, spk in lines),
        utt2dur="\n".join(f"{uid} 0.3" for uid, _ in lines),
    )
    manifest = build_manifest(reader(tmp_path, train="data/train_clean", holdout=0.2))
    speakers = {s: {u.speaker for u in manifest.splits[s]} for s in manifest.splits}
    assert all(speakers.values())
    assert sum(len(t) for t in manifest.splits.values()) == len(lines)
    assert not speakers["train"] & speakers["validation"]
    assert not speakers["train"] & speakers["test"]


def test_layout_errors_say_what_was_found_and_what_to_pass(reader, tmp_path):
    with pytest.raises(CorpusLayoutError, match="does not exist.*data.reader.root="):
        build_manifest(reader(tmp_path / "nowhere"))
    (tmp_path / "exp").mkdir()
    data_dir(tmp_path / "train_clean", wav_scp="a x.wav", text="a hi")
    with pytest.raises(CorpusLayoutError) as no_train:
        build_manifest(reader(tmp_path))
    assert "exp/ (no wav.scp), train_clean/" in str(no_train.value)
    assert "data.reader.train=" in str(no_train.value)
    with pytest.raises(CorpusLayoutError, match="data.reader.train='train_other': no such"):
        build_manifest(reader(tmp_path, train="train_other"))
    data_dir(tmp_path / "train_clean", wav_scp="a x.wav", utt2spk="a s")
    (tmp_path / "train_clean" / "text").unlink()
    with pytest.raises(CorpusLayoutError) as no_text:
        build_manifest(reader(tmp_path, train="train_clean"))
    assert "looked for text (text), translation (translation), utt2label (label)" in str(
        no_text.value
    )
    assert "found utt2spk, wav.scp" in str(no_text.value)
    with pytest.raises(InstantiationException, match="data.reader.files has \\['transcript'\\]"):
        reader(tmp_path, files={"transcript": "text"})
