"""The LibriSpeech reader on real LibriSpeech files (../shared) and on broken fixtures."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from speechlab.audio import io as audio_io
from speechlab.corpora.librispeech import LibriSpeechReader
from speechlab.data.datamodule import build_datamodule
from speechlab.data.dataset import Example
from speechlab.data.manifest import load_or_build_manifest
from speechlab.data.reader import SPLITS, CorpusLayoutError, ScanReport
from speechlab.data.utterance import Utterance
from tests.conftest import composed, one_torch_thread, shared_data

SUBSET = "dev-clean-2"
# utterances per speaker in ../shared/data/librispeech_subset/LibriSpeech/dev-clean-2
SPEAKERS = {"1272": 58, "1462": 66, "174": 23, "1988": 59, "1993": 11, "2035": 77}
RATE = 16_000


def subset_reader(root: Path, **options) -> LibriSpeechReader:
    """dev-clean-2 as every split."""
    return LibriSpeechReader(root, [SUBSET], [SUBSET], [SUBSET], **options)


def scan(reader: LibriSpeechReader, split: str = "train") -> tuple[list[Utterance], ScanReport]:
    reader.check_layout()
    report = ScanReport()
    return list(reader.scan(split, report)), report


@pytest.fixture(scope="module")
def real_subset() -> tuple[Path, list[Utterance], ScanReport]:
    """The shared dev-clean-2 copy read once, through the folder above LibriSpeech/."""
    root = shared_data("librispeech_subset")
    return (root, *scan(subset_reader(root)))


@pytest.fixture
def speaker_subsets(tmp_path: Path) -> Path:
    """The real speakers split across four subset folders (symlinks): 3 / 1 / 2 speakers."""
    source = shared_data("librispeech_subset", "LibriSpeech", SUBSET)
    corpus = tmp_path / "LibriSpeech"
    for subset, speakers in {
        "train-a": ["1272", "1462"],
        "train-b": ["174"],
        "dev": ["1988"],
        "test": ["1993", "2035"],
    }.items():
        (corpus / subset).mkdir(parents=True)
        for speaker in speakers:
            (corpus / subset / speaker).symlink_to(source / speaker, target_is_directory=True)
    return corpus


def test_reads_the_real_subset(real_subset):
    root, utterances, report = real_subset
    assert not report.skipped
    assert len(utterances) == len({u.id for u in utterances}) == sum(SPEAKERS.values()) == 294
    assert Counter(u.speaker for u in utterances) == SPEAKERS
    for u in utterances:
        speaker, chapter, _ = u.id.split("-")
        assert u.speaker == speaker and Path(u.audio_path).parent.name == chapter
        assert Path(u.audio_path).name == f"{u.id}.flac" and Path(u.audio_path).is_file()
        assert u.sample_rate == RATE and 0.5 < u.duration < 40.0
        assert u.language == "en" and u.offset == 0.0
        assert u.text and u.text == u.text.lower() and u.text.strip() == u.text
    by_id = {u.id: u for u in utterances}
    assert (
        by_id["2035-147960-0001"].text == "this change came about from an adventure we had together"
    )
    assert "russian peter's house" in by_id["2035-147960-0002"].text  # apostrophe kept
    clip = by_id["1993-147964-0000"]
    assert clip.duration == pytest.approx(sf.info(clip.audio_path).frames / RATE)


def test_root_may_be_the_librispeech_folder_or_the_one_above(real_subset):
    root, utterances, _ = real_subset
    inner = subset_reader(root / "LibriSpeech")
    # Readers resolve their root (as every reader does), so ../shared may be a symlink.
    assert inner.corpus_dir == subset_reader(root).corpus_dir == (root / "LibriSpeech").resolve()
    assert [u.id for u in scan(inner, "test")[0]] == [u.id for u in utterances]


def test_the_one_dev_clean_utterance_of_the_layouts_fixture():
    root = shared_data("layouts", "librispeech")
    reader = LibriSpeechReader(root, ["dev-clean"], ["dev-clean"], ["dev-clean"])
    (utterance,), report = scan(reader, "validation")
    assert not report.skipped
    assert utterance.id == "1272-128104-0000" and utterance.speaker == "1272"
    assert utterance.text == (
        "mister quilter is the apostle of the middle classes and we are glad to welcome his gospel"
    )
    assert utterance.sample_rate == RATE and utterance.duration > 1.0


def test_each_split_reads_its_own_subsets(speaker_subsets: Path, caplog):
    reader = LibriSpeechReader(speaker_subsets.parent, ["train-a", "train-b"], "dev", ["test"])
    reader.check_layout()
    report = ScanReport()
    splits = {split: list(reader.scan(split, report)) for split in SPLITS}
    assert not report.skipped and "same utterances" not in caplog.text
    assert {s: Counter(u.speaker for u in us) for s, us in splits.items()} == {
        "train": {"1272": 58, "1462": 66, "174": 23},
        "validation": {"1988": 59},
        "test": {"1993": 11, "2035": 77},
    }
    assert [u.speaker for u in splits["train"][:1] + splits["train"][-1:]] == ["1272", "174"]
    assert reader.options()["subsets"]["train"] == ["train-a", "train-b"]
    paths = list(reader.fingerprint_paths())
    assert sum(p.name.endswith(".flac") for p in paths) == 294
    assert sum(p.name.endswith(".trans.txt") for p in paths) == 11  # one per chapter


def test_durations_are_probed_once_and_cached(tmp_path: Path, monkeypatch):
    source = shared_data("layouts", "librispeech", "LibriSpeech", "dev-clean", "1272", "128104")
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "1272" / "128104"
    chapter.mkdir(parents=True)
    for path in source.iterdir():  # copied without the read-only mode of ../shared
        shutil.copyfile(path, chapter / path.name)
    calls: list[Path] = []

    def counting_probe(path: Path) -> audio_io.AudioInfo:
        calls.append(path)
        return audio_io.probe(path)

    def manifest():
        reader = LibriSpeechReader(
            tmp_path, "dev-clean", "dev-clean", "dev-clean", probe=counting_probe
        )
        return load_or_build_manifest(reader, tmp_path / "cache")

    first = manifest()
    assert len(calls) == 3  # the one file, once per split that lists it
    again = manifest()
    assert len(calls) == 3 and again.directory == first.directory
    assert again.splits["test"][0].duration == first.splits["test"][0].duration > 0
    # a new flac changes the fingerprint: the manifest is rebuilt and reports it
    sf.write(chapter / "1272-128104-0001.flac", np.zeros(160, np.float32), RATE)
    rebuilt = manifest()
    assert rebuilt.directory != first.directory and len(calls) == 6
    assert "no transcript" in rebuilt.skipped[str(chapter / "1272-128104-0001.flac")]


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A dev-clean with one good utterance and one of each kind of bad input."""
    chapter = tmp_path / "LibriSpeech" / "dev-clean" / "100" / "200"
    chapter.mkdir(parents=True)
    tone = (0.1 * np.sin(np.linspace(0, 200 * np.pi, 8000))).astype(np.float32)
    for utt in ("0000", "0002", "0005", "0007"):
        sf.write(chapter / f"100-200-{utt}.flac", tone, RATE)
    (chapter / "100-200-0003.flac").write_bytes(b"these bytes are not a flac file")
    (chapter / "100-200-0004.flac").write_bytes(b"")
    lines = [
        "100-200-0000 HELLO WORLD",
        "100-200-0001 LISTED BUT MISSING",  # no flac
        "100-200-0003 CORRUPT AUDIO",
        "100-200-0004 EMPTY AUDIO",
        "100-200-0005",  # an id without a transcript
        "HELLO THERE",  # no id
        "100-999-0006 ANOTHER CHAPTER",  # the id of another chapter
        "100-200-0007 ...",  # normalises to nothing
        "100-200-0000 HELLO AGAIN",  # a repeated id
    ]  # 100-200-0002.flac has no line
    (chapter / "100-200.trans.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    untranscribed = tmp_path / "LibriSpeech" / "dev-clean" / "100" / "201"
    untranscribed.mkdir()
    sf.write(untranscribed / "100-201-0000.flac", tone, RATE)  # no trans.txt at all
    return tmp_path


def test_bad_input_is_skipped_with_a_reason(broken: Path):
    reader = LibriSpeechReader(broken, "dev-clean", "dev-clean", "dev-clean")
    (good,), report = scan(reader, "validation")
    assert good.id == "100-200-0000" and good.text == "hello world" and good.speaker == "100"
    assert good.duration == pytest.approx(0.5)
    chapter = broken / "LibriSpeech" / "dev-clean" / "100" / "200"
    trans = chapter / "100-200.trans.txt"
    # flacs by name, transcript lines as ":<line>"
    reasons = {Path(p).name.replace(trans.name, ""): r for p, r in report.skipped.items()}
    assert len(report.skipped) == 10
    assert reasons["100-200-0001.flac"] == (
        "missing: listed in 100-200.trans.txt line 2 but there is no such file"
    )
    assert reasons["100-200-0002.flac"] == (
        "no transcript: 100-200.trans.txt has no well-formed line for 100-200-0002"
    )
    # the rest is libsndfile's wording ("Format not recognised")
    assert reasons["100-200-0003.flac"].startswith("unreadable FLAC: cannot read audio header: ")
    assert reasons["100-200-0004.flac"] == "unreadable FLAC: empty: the file is 0 bytes"
    assert reasons[":5"] == "malformed transcript line: id 100-200-0005 has no transcript"
    assert "100-200-0005.flac" not in reasons  # counted once, at its line
    assert reasons[":6"].startswith("malformed transcript line 'HELLO THERE': expected")
    assert "'100-200-<utt> TRANSCRIPT'" in reasons[":7"] and "ANOTHER CHAPTER" in reasons[":7"]
    assert reasons["100-200-0007.flac"] == (
        "transcript '...' (100-200.trans.txt line 8) normalises to nothing"
    )
    assert reasons[":9"] == "repeats the id 100-200-0000 of line 1; the first is read"
    assert f"{trans}:9" in report.skipped
    missing_trans = chapter.parent / "201" / "100-201.trans.txt"
    assert reasons["100-201-0000.flac"] == f"no transcript: {missing_trans} does not exist"


def test_layout_errors_say_what_was_expected_where(tmp_path: Path):
    with pytest.raises(CorpusLayoutError, match="does not exist") as missing_root:
        LibriSpeechReader(tmp_path / "nowhere").check_layout()
    assert "<speaker>-<chapter>.trans.txt" in str(missing_root.value)
    corpus = tmp_path / "LibriSpeech"
    for subset in ("dev-clean", "test-clean"):
        (corpus / subset / "1" / "2").mkdir(parents=True)
        (corpus / subset / "1" / "2" / "1-2.trans.txt").write_text("1-2-0000 HI\n")
    for root in (tmp_path, corpus):  # either root: the subsets are looked for in LibriSpeech/
        with pytest.raises(CorpusLayoutError) as error:
            LibriSpeechReader(root, ["train-clean-100", "train-clean-360"]).check_layout()
        message = str(error.value)
        assert f"subset 'train-clean-100' (train split) is not in {corpus};" in message
        assert "the subsets found there: dev-clean, test-clean." in message
        assert "data.reader.root=" in message
    (corpus / "empty").mkdir()
    with pytest.raises(CorpusLayoutError, match=r"empty \(validation split\) holds no"):
        LibriSpeechReader(corpus, "dev-clean", "empty").check_layout()
    with pytest.raises(CorpusLayoutError, match="the subsets found there: none"):
        LibriSpeechReader(corpus / "empty").check_layout()
    with pytest.raises(
        CorpusLayoutError, match=f"a subset folder itself: set data.reader.root={corpus}"
    ):
        LibriSpeechReader(corpus / "dev-clean").check_layout()
    with pytest.raises(ValueError, match="test_subsets is empty"):
        LibriSpeechReader(corpus, test_subsets=[])
    with pytest.raises(ValueError, match="not a path"):
        LibriSpeechReader(corpus, train_subsets=["LibriSpeech/train-clean-100"])
    with pytest.raises(ValueError, match="split must be one of"):
        list(LibriSpeechReader(corpus, "dev-clean").scan("dev", ScanReport()))


def test_datamodule_on_the_real_subset(speaker_subsets: Path, tmp_path: Path):
    overrides = [
        "data=librispeech",
        f"paths.data_dir={tmp_path / 'data'}",
        f"data.reader.root={speaker_subsets.parent}",
        "data.reader.train_subsets=[train-a,train-b]",
        "data.reader.validation_subsets=[dev]",
        "data.reader.test_subsets=[test]",
        "data.num_workers=0",
        "data.batch_seconds=40",
    ]
    with composed("train", overrides, tmp_path / "run") as cfg, one_torch_thread():
        datamodule = build_datamodule(cfg.data, target_field="text")
        manifest = datamodule.manifest.splits
        assert {s: len(us) for s, us in manifest.items()} == {
            "train": 147,
            "validation": 59,
            "test": 88,
        }
        for split, dataset in datamodule.datasets.items():  # data.max_duration drops a few
            assert len(dataset) == sum(u.duration <= 20.0 for u in manifest[split]) > 0
        dataset = datamodule.datasets["validation"]
        example = dataset[0]
        utterance = dataset.utterances[0]
        batch = next(iter(datamodule.val_dataloader()))
    assert isinstance(example, Example) and example.id == utterance.id
    assert example.audio.dtype == torch.float32 and example.audio.dim() == 1
    assert example.audio.numel() == round(utterance.duration * RATE)  # 16 kHz, not resampled
    assert 0 < example.audio.abs().max() <= 1.0
    assert datamodule.target.tokenizer.decode(example.target.tolist()) == utterance.text
    assert batch.audio.dtype == torch.float32 and len(batch) > 1 and not batch.skipped
