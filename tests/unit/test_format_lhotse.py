"""data=lhotse: Lhotse manifests read with the lhotse library, and `--to lhotse` written with it."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import hydra
import numpy as np
import pytest
import soundfile as sf
from lhotse import AudioSource, CutSet, MonoCut, Recording, SupervisionSegment
from omegaconf import OmegaConf

from speechlab.corpora.convert import writer
from speechlab.corpora.formats.lhotse import LhotseReader
from speechlab.data.manifest import build_manifest
from speechlab.data.reader import SPLITS, CorpusLayoutError
from speechlab.data.utterance import Utterance
from speechlab.data.utterance_table import UtteranceTable
from tests.conftest import assert_same_corpus, composed, shared_data

RATE = 16000


@pytest.fixture(scope="module")
def options(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The reader's options as conf/data/reader/lhotse.yaml gives them (the one source)."""
    out = tmp_path_factory.mktemp("compose")
    with composed("train", ["data=lhotse", f"data.reader.root={out}"], out) as cfg:
        reader = hydra.utils.instantiate(cfg.data.reader)
        values = OmegaConf.to_container(cfg.data.reader, resolve=True)
    assert isinstance(reader, LhotseReader) and reader.root == out.resolve()
    assert isinstance(values, dict)
    return {k: v for k, v in values.items() if k not in ("_target_", "root")}


def test_data_lhotse_composes_into_the_reader(tmp_path: Path):
    overrides = [
        "data=lhotse",
        f"data.reader.root={tmp_path}",
        "data.reader.validation=dev-clean",
        "data.reader.several_supervisions=first",
        "data.reader.custom.label=word",
        "data/reader/normalizer=lowercase",
    ]
    with composed("train", overrides, tmp_path) as cfg:
        built = hydra.utils.instantiate(cfg.data.reader)
    assert isinstance(built, LhotseReader) and built.name == "lhotse"
    assert built.options() == {
        "train": None,
        "validation": "dev-clean",
        "test": None,
        "holdout": 0.05,
        "probe": False,
        "several_supervisions": "first",
        "custom": {"label": "word", "translation": "translation"},
        "normalizer": built.normalizer.options(),
    }
    assert built.normalizer("Hello, World") == "hello world"


def reader(options: dict, root: Path, **overrides) -> LhotseReader:
    return LhotseReader(root, **{**options, **overrides})


def tone(path: Path, seconds: float, channels: int = 1, rate: int = RATE) -> Path:
    frames = int(round(seconds * rate))
    wave = 0.1 * np.sin(2 * np.pi * 440 * np.arange(frames) / rate)
    sf.write(path, np.tile(wave[:, None], (1, channels)).astype(np.float32), rate)
    return path


def recording(path: Path, rid: str | None = None, source: str | None = None) -> Recording:
    """The Recording of a real file (its rate and length), its source written as ``source``."""
    found = Recording.from_file(path, recording_id=rid)
    if source is None:
        return found
    sources = [AudioSource(type="file", channels=found.sources[0].channels, source=source)]
    return Recording(
        id=found.id,
        sources=sources,
        sampling_rate=found.sampling_rate,
        num_samples=found.num_samples,
        duration=found.duration,
    )


def sup(sid: str, rec: Recording, start: float, duration: float, **fields) -> SupervisionSegment:
    return SupervisionSegment(sid, rec.id, start, duration, **fields)


def cut(cid: str, rec: Recording, start: float, duration: float, *sups, **fields) -> dict:
    """One cut manifest line (a dict as lhotse writes it)."""
    made = MonoCut(cid, start, duration, 0, recording=rec, supervisions=list(sups), **fields)
    return made.to_dict()


def write_lines(path: Path, lines: list) -> Path:
    """A JSON-lines manifest: dicts as JSON, strings as they are (bad lines)."""
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(text)
    return path


def scan(options: dict, root: Path, **overrides):
    manifest = build_manifest(reader(options, root, **overrides))
    return {split: {u.id: u for u in manifest.splits[split]} for split in SPLITS}, manifest.skipped


def skip_reason(skipped: dict[str, str], where: str) -> str:
    found = [reason for key, reason in skipped.items() if key.endswith(where)]
    assert found, f"nothing skipped at {where}: {skipped}"
    return found[0]


# -- round trip and recipes' manifests -----------------------------------------------------------


def test_mini_voice_round_trips_through_lhotse_cuts(tiny_voice, options: dict, tmp_path: Path):
    writer("lhotse")(tiny_voice.splits, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"cuts_{split}.jsonl.gz" for split in ("test", "train", "validation")
    ]
    # lhotse reads what we wrote: one file recording per clip, with its real rate and length
    cuts = list(CutSet.from_jsonl_lazy(tmp_path / "cuts_train.jsonl.gz"))
    assert len(cuts) == len(tiny_voice.splits["train"])
    first = tiny_voice.splits["train"][0]
    written = next(c for c in cuts if c.id == first.id)
    assert written.recording.sources[0].type == "file"
    assert written.recording.sources[0].source == str(Path(first.audio_path).resolve())
    info = sf.info(first.audio_path)
    assert (written.recording.sampling_rate, written.recording.num_samples) == (
        info.samplerate,
        info.frames,
    )
    assert written.supervisions[0].text == first.text
    assert written.supervisions[0].speaker == first.speaker

    manifest = build_manifest(reader(options, tmp_path))
    assert manifest.skipped == {}
    assert_same_corpus(tiny_voice, manifest)


def test_the_writer_names_recordings_once_and_leaves_out_unreadable_audio(
    options: dict, tmp_path: Path, caplog
):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, other = tone(tmp_path / "a" / "x.wav", 1.0), tone(tmp_path / "b" / "x.wav", 1.0, 2)

    def utterance(uid, path, offset=0.0, seconds=0.5):
        return Utterance(uid, str(path), seconds, RATE, offset=offset, text=uid)

    train = [utterance("1", one), utterance("2", one, 0.5), utterance("3", other)]
    splits = {
        "train": UtteranceTable.from_utterances(train),
        "validation": UtteranceTable.from_utterances([utterance("4", tmp_path / "gone.wav")]),
        "test": UtteranceTable.from_utterances([]),
    }
    with caplog.at_level(logging.WARNING):
        writer("lhotse")(splits, tmp_path / "out")
    assert "left out 1 utterances of 1 audio files that cannot be read" in caplog.text
    assert "gone.wav" in caplog.text
    cuts = {c.id: c for c in CutSet.from_jsonl_lazy(tmp_path / "out" / "cuts_train.jsonl.gz")}
    assert cuts["1"].recording.id == cuts["2"].recording.id == "x"  # one recording per file
    assert cuts["3"].recording.id.startswith("x-")  # another file of the same name
    assert cuts["3"].channel == [0, 1] and cuts["2"].start == 0.5
    assert list(CutSet.from_jsonl_lazy(tmp_path / "out" / "cuts_validation.jsonl.gz")) == []
    back, skipped = scan(options, tmp_path / "out", validation="cuts_train.jsonl.gz")
    assert skipped == {} and sorted(back["train"]) == ["1", "2", "3"]
    assert back["train"]["2"].offset == 0.5 and back["test"] == {}


def test_a_recipes_recordings_and_supervisions_read_as_the_librispeech_reader_does(
    options: dict, tmp_path: Path
):
    from lhotse.recipes import prepare_librispeech

    from speechlab.corpora.librispeech import LibriSpeechReader

    corpus = shared_data("librispeech_subset")
    prepare_librispeech(
        corpus / "LibriSpeech", dataset_parts=["dev-clean-2"], output_dir=tmp_path, num_jobs=1
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "librispeech_recordings_dev-clean-2.jsonl.gz",
        "librispeech_supervisions_dev-clean-2.jsonl.gz",
    ]
    lower = {"lowercase": True, "punctuation": "remove"}  # as the LibriSpeech reader reads
    # a split name, a recordings file (its supervisions found by name), a supervisions file
    ours = build_manifest(
        reader(
            options,
            tmp_path,
            train="dev-clean-2",
            validation="librispeech_recordings_dev-clean-2.jsonl.gz",
            test="librispeech_supervisions_dev-clean-2.jsonl.gz",
            normalizer=lower,
        )
    )
    theirs = build_manifest(LibriSpeechReader(corpus, *[["dev-clean-2"]] * 3))
    assert len(ours.splits["train"]) == 294 and ours.skipped == {}
    assert_same_corpus(theirs, ours)


def test_pair_segments_and_unmatched_entries(options: dict, tmp_path: Path):
    long = recording(tone(tmp_path / "long.wav", 3.0), "long")
    alone = recording(tone(tmp_path / "alone.wav", 1.0), "alone")
    write_lines(tmp_path / "corpus_recordings_train.jsonl.gz", [long.to_dict(), alone.to_dict()])
    write_lines(
        tmp_path / "corpus_supervisions_train.jsonl.gz",
        [
            sup("a", long, 0.0, 1.0, text="one", speaker="s1").to_dict(),
            sup("b", long, 1.5, 1.0, text="two", speaker="s2").to_dict(),
            sup("c", long, 2.5, 1.0, text="past the end", speaker="s1").to_dict(),
            sup("d", alone, 0.0, 1.0, text="x").to_dict() | {"recording_id": "nowhere"},
        ],
    )
    splits, skipped = scan(options, tmp_path, holdout=0.3)
    every = {uid: u for split in splits.values() for uid, u in split.items()}
    assert sorted(every) == ["a", "b"]
    assert (every["b"].offset, every["b"].duration, every["b"].text) == (1.5, 1.0, "two")
    assert every["b"].audio_path == str(tmp_path / "long.wav")
    assert every["b"].sample_rate == RATE
    assert "ends past the end of" in skip_reason(skipped, "supervisions_train.jsonl.gz:3")
    reason = skip_reason(skipped, "supervisions_train.jsonl.gz:4")
    assert "refers to recording 'nowhere'" in reason and "corpus_recordings_train" in reason
    reason = skip_reason(skipped, "recordings_train.jsonl.gz:2")
    assert "recording 'alone' has no supervision in corpus_supervisions_train.jsonl.gz" in reason


# -- fields for every task; splits ----------------------------------------------------------------


def test_fields_of_every_task_and_custom_keys(options: dict, tmp_path: Path):
    rec = recording(tone(tmp_path / "a.wav", 1.0), "a")
    fields = {"speaker": "s1", "language": "fr"}
    lines = [
        cut("kws", rec, 0, 1, sup("k", rec, 0, 1, custom={"label": "yes"}, **fields)),
        cut("st", rec, 0, 1, sup("t", rec, 0, 1, text="Bonjour.", custom={"translation": "Hi."})),
        cut("num", rec, 0, 1, sup("n", rec, 0, 1, custom={"label": 3, "word": "go"})),
        cut("bad", rec, 0, 1, sup("b", rec, 0, 1, custom={"label": ["not", "text"]})),
    ]
    write_lines(tmp_path / "cuts_train.jsonl.gz", lines)
    write_lines(tmp_path / "cuts_dev.jsonl.gz", [])
    write_lines(tmp_path / "cuts_test.jsonl.gz", [])
    splits, skipped = scan(options, tmp_path)
    train = splits["train"]
    assert (train["kws"].label, train["kws"].speaker, train["kws"].language) == ("yes", "s1", "fr")
    assert (train["st"].text, train["st"].translation) == ("Bonjour.", "Hi.")  # as written
    assert train["num"].label == "3"
    assert "custom label ['not', 'text'] is a list, expected text" in skip_reason(
        skipped, "cuts_train.jsonl.gz:4"
    )
    # the label under another key; translation not read
    splits, _ = scan(options, tmp_path, custom={"label": "word", "translation": None})
    assert splits["train"]["num"].label == "go"
    assert splits["train"]["st"].translation is None

    # label and translation survive the writer and the reader
    out = tmp_path / "out"
    writer("lhotse")(build_manifest(reader(options, tmp_path)).splits, out)
    again, _ = scan(options, out)
    assert again["train"]["kws"].label == "yes" and again["train"]["st"].translation == "Hi."


def test_split_names_and_held_out_validation(options: dict, tmp_path: Path):
    recs = [recording(tone(tmp_path / f"{i}.wav", 0.2), str(i)) for i in range(40)]
    lines = [
        cut(f"u{i}", r, 0, 0.2, sup(f"u{i}", r, 0, 0.2, text="hi", speaker=f"spk{i % 20}"))
        for i, r in enumerate(recs)
    ]
    write_lines(tmp_path / "corpus_cuts_train.jsonl.gz", lines[:30])
    write_lines(tmp_path / "corpus_cuts_dev-clean.jsonl.gz", lines[30:])
    # no validation|dev|valid|val: held out of train by speaker; no test either
    splits, _ = scan(options, tmp_path, holdout=0.2)
    speakers = {split: {u.speaker for u in splits[split].values()} for split in SPLITS}
    assert splits["validation"] and splits["test"]
    assert sum(map(len, splits.values())) == 30
    assert not speakers["train"] & (speakers["validation"] | speakers["test"])
    # named by the recipe's split name, or by file
    for name in ("dev-clean", "corpus_cuts_dev-clean.jsonl.gz"):
        splits, _ = scan(options, tmp_path, validation=name, test=name)
        assert sorted(splits["validation"]) == [f"u{i}" for i in range(30, 40)]
        assert len(splits["train"]) == 30


# -- several supervisions -------------------------------------------------------------------------


def test_several_supervisions_join_first_or_skip(options: dict, tmp_path: Path, caplog):
    rec = recording(tone(tmp_path / "a.wav", 4.0), "a")

    def s(sid, start, text, speaker="A", **more):
        return sup(sid, rec, start, 0.5, text=text, speaker=speaker, **more)

    lines = [
        cut("join", rec, 0, 3, s("2", 1.0, "world"), s("1", 0.0, "hello")),
        cut("overlap", rec, 0, 3, s("1", 0.0, "a"), s("2", 0.3, "b")),
        cut("speakers", rec, 0, 3, s("1", 0.0, "a"), s("2", 1.0, "b", speaker="B")),
        cut("crossing", rec, 1, 1, s("1", 0.8, "a")),
        cut("outside", rec, 0, 1, s("1", 2.0, "elsewhere"), s("2", 0.1, "inside")),
        cut("none", rec, 0, 1),
    ]
    write_lines(tmp_path / "cuts_train.jsonl.gz", lines)
    with caplog.at_level(logging.INFO, logger="speechlab.corpora.formats.lhotse"):
        splits, skipped = scan(
            options, tmp_path, validation="cuts_train.jsonl.gz", test="cuts_train.jsonl.gz"
        )
    train = splits["train"]
    assert train["join"].text == "hello world" and train["join"].speaker == "A"
    assert train["outside"].text == "inside"  # a supervision wholly outside the cut is ignored
    assert train["none"].text is None  # kept; a task needing text drops it, counted
    assert "'1' and '2' overlap" in skip_reason(skipped, ":2")
    assert "differ in speaker: 'A', 'B'" in skip_reason(skipped, ":3")
    assert "several_supervisions=first or skip" in skip_reason(skipped, ":3")
    assert "crosses the cut's edge" in skip_reason(skipped, ":4")
    assert "1 cuts' several supervisions joined in time order" in caplog.text

    splits, skipped = scan(
        options,
        tmp_path,
        several_supervisions="first",
        validation="cuts_train.jsonl.gz",
        test="cuts_train.jsonl.gz",
    )
    assert splits["train"]["join"].text == "hello"
    assert splits["train"]["overlap"].text == "a"
    splits, skipped = scan(
        options,
        tmp_path,
        several_supervisions="skip",
        validation="cuts_train.jsonl.gz",
        test="cuts_train.jsonl.gz",
    )
    assert "join" not in splits["train"]
    assert "has 2 supervisions and data.reader.several_supervisions=skip" in skip_reason(
        skipped, ":1"
    )
    with pytest.raises(ValueError, match="several_supervisions='all': expected one of join"):
        reader(options, tmp_path, several_supervisions="all")


# -- sources: only plain files --------------------------------------------------------------------


def test_sources_that_are_not_plain_files_are_refused(options: dict, tmp_path: Path):
    wav = tone(tmp_path / "a.wav", 1.0)
    stereo = tone(tmp_path / "stereo.wav", 1.0, channels=2)
    marker = tmp_path / "ran"
    file = recording(wav, "a")

    def with_source(rid, kind, source, channels=(0,)):
        return Recording(rid, [AudioSource(kind, list(channels), source)], RATE, RATE, 1.0)

    per_channel = Recording(
        "pc",
        [
            AudioSource("file", [0], str(wav)),
            AudioSource("file", [1], str(tone(tmp_path / "b.wav", 1.0))),
        ],
        RATE,
        RATE,
        1.0,
    )
    speed = Recording.from_file(wav, recording_id="fast").perturb_speed(1.1)
    resampled = Recording.from_file(wav, recording_id="rs").resample(8000)
    lines = [
        cut("cmd", with_source("c", "command", f"touch {marker}; cat {wav}"), 0, 1),
        cut("url", with_source("u", "url", "https://example.com/a.wav"), 0, 1),
        cut("mem", with_source("m", "memory", "UklGRg=="), 0, 1),
        cut("shar", with_source("s", "shar", ""), 0, 1),
        cut("both", per_channel, 0, 1) | {"channel": [0, 1]},
        cut("second", per_channel, 0, 1) | {"channel": 1},
        cut("fast", speed, 0, 0.9),
        cut("rs", resampled, 0, 1),
        cut("stereo", recording(stereo, "st"), 0, 1),
        cut("ok", file, 0, 1),
    ]
    write_lines(tmp_path / "cuts_train.jsonl.gz", lines)
    splits, skipped = scan(
        options, tmp_path, validation="cuts_train.jsonl.gz", test="cuts_train.jsonl.gz"
    )
    assert not marker.exists()  # the command was never run
    assert sorted(splits["train"]) == ["ok", "rs", "second", "stereo"]
    assert splits["train"]["second"].audio_path == str(tmp_path / "b.wav")
    assert splits["train"]["stereo"].audio_path == str(stereo)  # mixed down when read
    reason = skip_reason(skipped, ":1")
    assert "comes from a shell command" in reason and "never runs" in reason
    assert "is a URL ('https://example.com/a.wav')" in skip_reason(skipped, ":2")
    assert "'memory' source" in skip_reason(skipped, ":3")
    assert "Lhotse Shar placeholder" in skip_reason(skipped, ":4")
    for line in (":1", ":2", ":3", ":4"):
        assert "save the audio to files" in skip_reason(skipped, line)
    assert "held in 2 sources (one file per channel)" in skip_reason(skipped, ":5")
    assert "applies the Lhotse transform(s) Speed" in skip_reason(skipped, ":7")


# -- bad input ------------------------------------------------------------------------------------


def test_bad_lines_are_skipped_and_counted(options: dict, tmp_path: Path, monkeypatch):
    audio = tmp_path / "audio"
    audio.mkdir()
    rec = recording(tone(audio / "a.wav", 1.0), "a", source="audio/a.wav")  # beside the manifest
    here = tmp_path / "elsewhere"
    here.mkdir()
    tone(here / "b.wav", 1.0)
    from_cwd = recording(here / "b.wav", "b", source="b.wav")  # relative to the current folder
    gone = recording(tone(tmp_path / "gone.wav", 1.0), "gone", source="nowhere/gone.wav")
    mixed = MonoCut("m", 0, 1, 0, recording=rec).mix(MonoCut("n", 0, 1, 0, recording=rec))
    lines = [
        cut("ok", rec, 0, 1, sup("s", rec, 0, 1, text="fine")),
        '{"id": "broken", "start": 0',
        "[1, 2]",
        {"id": "no-duration", "start": 0, "channel": 0, "type": "MonoCut"},
        rec.to_dict(),
        mixed.to_dict(),
        {"id": "features", "start": 0, "duration": 1, "channel": 0, "type": "MonoCut"},
        cut("ok", rec, 0, 0.5),
        cut("late", rec, 1.5, 0.5),
        cut("zero", rec, 0, 0),
        cut("cwd", from_cwd, 0, 1),
        cut("gone", gone, 0, 1),
        "",
        cut("after", rec, 0.5, 0.5),
    ]
    path = write_lines(tmp_path / "cuts_train.jsonl.gz", lines)
    monkeypatch.chdir(here)
    splits, skipped = scan(options, tmp_path, validation=path.name, test=path.name)
    train = splits["train"]
    assert sorted(train) == ["after", "cwd", "ok"]
    assert train["ok"].audio_path == str(audio / "a.wav")
    assert train["cwd"].audio_path == str(here / "b.wav")
    assert train["after"].offset == 0.5
    assert f"{path}:2" in skipped  # every reason is keyed by the manifest and line
    assert "is not a line of JSON" in skip_reason(skipped, ":2")
    assert "is JSON list, not an object" in skip_reason(skipped, ":3")
    assert "is not a Lhotse cut (TypeError" in skip_reason(skipped, ":4")
    assert "is a Lhotse recording, not a cut" in skip_reason(skipped, ":5")
    assert "is a MixedCut (several tracks" in skip_reason(skipped, ":6")
    assert "has no recording (features only)" in skip_reason(skipped, ":7")
    assert "repeats utterance id 'ok'" in skip_reason(skipped, ":8")
    assert "offset 1.5 s is at or beyond the end" in skip_reason(skipped, ":9")
    assert "duration 0.0 s is not positive" in skip_reason(skipped, ":10")
    reason = skip_reason(skipped, ":12")
    assert "'nowhere/gone.wav'" in reason and str(tmp_path) in reason and str(here) in reason
    assert len([k for k in skipped if k.startswith(str(path))]) == 10


def test_unreadable_manifests_and_wrong_layouts_stop_with_what_was_found(
    options: dict, tmp_path: Path
):
    with pytest.raises(CorpusLayoutError, match="manifest folder .*nowhere does not exist"):
        reader(options, tmp_path / "nowhere").check_layout()
    with pytest.raises(CorpusLayoutError, match=r"holds no Lhotse manifest \*.jsonl"):
        reader(options, tmp_path).check_layout()

    rec = recording(tone(tmp_path / "a.wav", 1.0), "a")
    line = json.dumps(cut("a", rec, 0, 1)) + "\n"
    write_lines(tmp_path / "ls_cuts_dev-clean.jsonl.gz", [json.loads(line)])
    write_lines(tmp_path / "ls_recordings_test-clean.jsonl.gz", [rec.to_dict()])
    # no train: the message lists the manifests and their split names
    with pytest.raises(CorpusLayoutError) as error:
        reader(options, tmp_path).check_layout()
    message = str(error.value)
    assert "no train split" in message and "ls_cuts_dev-clean.jsonl.gz" in message
    assert "the split names dev-clean, test-clean" in message
    assert "data.reader.train=<its name>" in message
    with pytest.raises(CorpusLayoutError, match="data.reader.train='train-clean-100': no such"):
        reader(options, tmp_path, train="train-clean-100").check_layout()
    with pytest.raises(CorpusLayoutError, match="has no ls_supervisions_test-clean.jsonl.gz"):
        reader(options, tmp_path, train="test-clean").check_layout()
    (tmp_path / "cuts.json").write_text("[]")
    with pytest.raises(CorpusLayoutError, match="lhotse copy cuts.json cuts.jsonl.gz"):
        reader(options, tmp_path, train="cuts.json").check_layout()
    write_lines(tmp_path / "mine.jsonl.gz", [rec.to_dict()])
    with pytest.raises(CorpusLayoutError, match="mine.jsonl.gz holds Lhotse recordings, not cuts"):
        reader(options, tmp_path, train="mine.jsonl.gz").check_layout()
    write_lines(tmp_path / "other_cuts_dev-clean.jsonl.gz", [json.loads(line)])
    with pytest.raises(CorpusLayoutError, match="several cut manifests for the split 'dev-clean'"):
        reader(options, tmp_path, train="dev-clean").check_layout()

    # not gzip at all, and a gzip stream cut short: named with the file and the line
    (tmp_path / "plain.jsonl.gz").write_text(line)
    with pytest.raises(
        CorpusLayoutError, match=r"plain.jsonl.gz: cannot read line 1 .*truncated or corrupt"
    ):
        reader(options, tmp_path, train="plain.jsonl.gz").check_layout()
    lines = "".join(line.replace('"id": "a"', f'"id": "u{i}"') for i in range(200)).encode()
    whole = gzip.compress(lines)
    (tmp_path / "short.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(
        CorpusLayoutError, match=r"short.jsonl.gz: cannot read line \d+ .*re-create it"
    ):
        build_manifest(reader(options, tmp_path, train="short.jsonl.gz", holdout=0.1))
    (tmp_path / "binary.jsonl").write_bytes(b"\x00\x01\x02\n" * 3)
    with pytest.raises(
        CorpusLayoutError, match="none of the first 3 lines read .* is a JSON object"
    ):
        reader(options, tmp_path, train="binary.jsonl").check_layout()
