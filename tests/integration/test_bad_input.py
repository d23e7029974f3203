"""Bad input, many kinds at once: a Common Voice corpus of real embedded clips salted with broken
files, odd formats and odd metadata rows trains to the end; each bad entry is skipped and
counted with a reason that names what is wrong, each odd-but-valid one is used, and bad config
values are clear errors before any training."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hydra.errors import InstantiationException

from speechlab.audio.io import read_audio
from speechlab.run.train import run as train
from tests.conftest import composed
from tests.integration.test_ctc import mini_voice  # noqa: F401  (session fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

RATE = 16000
HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent"]
TINY_CTC = [
    "model=ctc_lstm",
    "data=common_voice",
    "data.num_workers=0",
    "data.batch_seconds=60",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "callbacks.progress_bar=null",
    "model.encoder.hidden_size=16",
    "model.encoder.num_layers=1",
    "model.encoder.projection_dim=16",
]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def id3_tagged(mp3: Path, out: Path) -> Path:
    """``mp3`` behind a 200 KB ID3v2 tag (cover art bloats real files like this)."""
    size = 200_000
    synchsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    out.write_bytes(b"ID3\x03\x00\x00" + synchsafe + bytes(size) + mp3.read_bytes())
    return out


@pytest.fixture(scope="module")
def salted(mini_voice: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """The corpus root, and ``{clip name: the reason its skip must give}`` / the usable odd clips."""
    root = tmp_path_factory.mktemp("salted")
    clips = root / "clips"
    clips.mkdir()
    source = {name: read_rows(mini_voice / f"{name}.tsv") for name in ("train", "dev", "test")}
    keep = {"train": source["train"][:14], "dev": source["dev"][:3], "test": source["test"][:3]}
    durations = {r["clip"]: r["duration[ms]"] for r in read_rows(mini_voice / "clip_durations.tsv")}
    rows = {split: [] for split in keep}
    listed: list[tuple[str, str]] = []
    for split, picked in keep.items():
        for row in picked:
            shutil.copy(mini_voice / "clips" / row["path"], clips / row["path"])
            rows[split].append({k: row[k] for k in HEADER})
            listed.append((row["path"], durations[row["path"]]))

    good = [r for r in rows["train"][:8]]
    speech = {r["path"]: read_audio(clips / r["path"], RATE).numpy() for r in good}
    texts = {r["path"]: r["sentence"] for r in good}
    sample = list(speech.values())

    def add(name: str, sentence: str, ms: int = 1500) -> None:
        rows["train"].append({**good[0], "path": name, "sentence": sentence})
        listed.append((name, str(ms)))

    # Files that must be skipped at decode, each with its reason.
    must_skip = {
        "corrupt.mp3": "cannot decode",
        "empty.wav": "empty: the file is 0 bytes",
        "truncated.wav": "truncated",
        "nan.wav": "not finite",
        "missing.mp3": "does not exist",
    }
    (clips / "corrupt.mp3").write_bytes(b"ID3 this is not an mp3 at all" * 40)
    (clips / "empty.wav").write_bytes(b"")
    sf.write(clips / "truncated.wav", sample[0], RATE, subtype="PCM_16")
    (clips / "truncated.wav").write_bytes((clips / "truncated.wav").read_bytes()[:3000])
    nan = sample[1].astype(np.float32).copy()
    nan[500:510] = np.nan
    sf.write(clips / "nan.wav", nan, RATE, subtype="FLOAT")
    for name in must_skip:
        add(name, texts[good[2]["path"]])

    # Odd but valid: read and trained on.
    odd = {
        "rate44k.wav": lambda p, a: sf.write(p, read_44k(a), 44100, subtype="PCM_16"),
        "stereo.flac": lambda p, a: sf.write(p, np.stack([a, a], axis=1), RATE),
        "pcm_u8.wav": lambda p, a: sf.write(p, a, RATE, subtype="PCM_U8"),
        "pcm24.wav": lambda p, a: sf.write(p, a, RATE, subtype="PCM_24"),
        "float.wav": lambda p, a: sf.write(p, a, RATE, subtype="FLOAT"),
    }
    for (name, write), row in zip(odd.items(), good[3:], strict=False):
        write(clips / name, speech[row["path"]])
        add(name, row["sentence"])
    id3_tagged(clips / good[0]["path"], clips / "id3.mp3")
    add("id3.mp3", good[0]["sentence"])
    odd_names = [*odd, "id3.mp3"]

    # Shorter than one STFT window, and longer than data.max_duration: dropped and counted.
    sf.write(clips / "short.wav", sample[2][:100], RATE)
    add("short.wav", texts[good[2]["path"]], ms=6)
    sf.write(clips / "overlong.wav", np.tile(sample[2], 12)[: 11 * RATE], RATE)
    add("overlong.wav", texts[good[2]["path"]], ms=11_000)

    # Odd text: quotes are text, an empty sentence and a row with a missing field are skipped.
    shutil.copy(clips / good[4]["path"], clips / "quoted.mp3")
    add("quoted.mp3", f'"{good[4]["sentence"]}"')  # quotes are punctuation: removed
    shutil.copy(clips / good[5]["path"], clips / "blank.mp3")
    add("blank.mp3", "   ")
    must_skip["blank.mp3"] = "normalises to nothing"

    for split, table in rows.items():  # as Common Voice writes them: tabs, quotes unescaped
        lines = ["\t".join(HEADER), *("\t".join(row[k] for k in HEADER) for row in table)]
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # A byte-order mark before the header (spreadsheet exports) and a row with a missing field.
    train_tsv = root / "train.tsv"
    text = train_tsv.read_text(encoding="utf-8")
    train_tsv.write_text("\ufeff" + text + "x\tonly_two_fields\n", encoding="utf-8")
    (root / "clip_durations.tsv").write_text(
        "clip\tduration[ms]\n" + "".join(f"{n}\t{ms}\n" for n, ms in listed), encoding="utf-8"
    )
    return root, must_skip, odd_names


def read_44k(audio: np.ndarray) -> np.ndarray:
    import torch
    import torchaudio.functional as AF

    return AF.resample(torch.from_numpy(audio), RATE, 44100).numpy()


def test_a_salted_corpus_trains_to_the_end_and_says_what_was_wrong_with_each_entry(
    salted, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    root, must_skip, odd = salted
    overrides = [*TINY_CTC, f"data.reader.root={root}", f"paths.data_dir={tmp_path / 'data'}"]
    with composed("train", overrides, tmp_path) as cfg, caplog.at_level("INFO"):
        metrics = train(cfg)
    # The over-long clip and the 6 ms one (too short for its transcript) are counted, not read.
    assert "1 longer than max_duration=10.0s" in caplog.text
    assert "train: dropped 1 utterance(s) before training: 1 subsampled length" in caplog.text
    assert "test/cer" in metrics  # nothing stopped the run
    skipped = dict(
        line.split("\t", 1) for line in (tmp_path / "skipped_audio.tsv").read_text().splitlines()
    )
    scan = dict(
        line.split("\t", 1)
        for line in (tmp_path / "data" / "manifests")
        .rglob("skipped.tsv")
        .__next__()
        .read_text()
        .splitlines()
    )
    reasons = {Path(path).name: reason for path, reason in {**scan, **skipped}.items()}
    for name, reason in must_skip.items():
        assert name in reasons, f"{name} was not reported"
        assert reason in reasons[name], f"{name}: {reasons[name]!r} should say {reason!r}"
    for name in [*odd, "quoted.mp3"]:
        assert name not in reasons, f"{name} is valid audio, yet skipped: {reasons.get(name)}"
    assert any("expected 8" in r and "fields" in r for r in reasons.values())  # the short row
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "finished"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "data.batch_seconds=-1",
            "data.batch_seconds must be positive seconds of audio, or auto, got -1",
        ),
        ("model.monitor_mode=up", "must be 'min' or 'max', got 'up'"),
        ("data.tokenizer.kind=letters", "data.tokenizer.kind must be one of"),
        ("data.reader.normalizer.out_of_alphabet=ignore", "out_of_alphabet"),
        ("model.step_guard.max_consecutive=0", "max_consecutive must be >= 1"),
        ("model/waveform_augment=speed", None),  # valid: composes and builds
    ],
)
def test_bad_config_values_are_clear_errors_before_training(
    salted, override: str, message: str | None, tmp_path: Path
):
    root, _, _ = salted
    overrides = [
        *TINY_CTC,
        f"data.reader.root={root}",
        f"paths.data_dir={tmp_path / 'data'}",
        "train=false",
        "test=false",
        override,
    ]
    with composed("train", overrides, tmp_path) as cfg:
        if message is None:
            train(cfg)
            return
        with pytest.raises((ValueError, TypeError, InstantiationException)) as error:
            train(cfg)
    assert message in str(error.value)  # Hydra's wrapper keeps the message and names the key
