"""What the datamodule says about a user's corpus before any model is built: the entries it
skipped (in file order, the first 20 then a count), why a split is empty, what the held-out
metrics leave out; and a manifest rebuilt when audio it missed appears."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlab.corpora.formats.manifest import ManifestReader
from speechlab.data.datamodule import SpeechDataModule
from speechlab.data.manifest import load_or_build_manifest

NEMO = {
    "audio": "audio_filepath",
    "duration": "duration",
    "text": "text",
    "label": "label",
    "speaker": "speaker",
}


def wav(path: Path) -> str:
    sf.write(path, np.zeros(8000, np.float32), 16000)
    return path.name


def write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def setup(root: Path, tmp_path: Path, target: str = "text", **reader) -> SpeechDataModule:
    module = SpeechDataModule(
        ManifestReader(root, NEMO, **reader), tmp_path / "cache", target_field=target
    )
    module.prepare_data()
    module.setup()
    module.check_not_empty("train", "validation", "test")  # as a run does before its model
    return module


def clips(root: Path, n: int, **fields) -> list[dict]:
    return [
        {"audio_filepath": wav(root / f"c{i}.wav"), "speaker": f"s{i}", **fields} for i in range(n)
    ]


def test_audio_copied_in_after_a_build_rebuilds_the_manifest(tmp_path):
    records = clips(tmp_path, 3, text="a b")
    write(tmp_path / "train.jsonl", [*records, {"audio_filepath": "later.wav", "text": "x"}])
    reader = ManifestReader(tmp_path, NEMO, validation="train.jsonl", test="train.jsonl")
    first = load_or_build_manifest(reader, tmp_path / "cache")
    assert len(first.splits["train"]) == 3 and len(first.skipped) == 1
    assert (
        load_or_build_manifest(reader, tmp_path / "cache").splits["train"] == first.splits["train"]
    )
    wav(tmp_path / "later.wav")
    again = load_or_build_manifest(reader, tmp_path / "cache")
    assert len(again.splits["train"]) == 4 and not again.skipped


def test_a_train_split_whose_entries_were_all_skipped_says_so_before_any_model(tmp_path, caplog):
    write(tmp_path / "train.jsonl", [{"audio_filepath": f"gone{i}.wav"} for i in range(25)])
    with caplog.at_level(logging.WARNING), pytest.raises(ValueError) as error:
        setup(tmp_path, tmp_path)
    assert "has no text to train a tokenizer on (0 utterances read; 25 corpus entries skipped" in (
        str(error.value)
    )
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped ")]
    assert len(lines) == 20 and lines[1].startswith(f"skipped {tmp_path / 'train.jsonl'}:2:")
    assert "... and 5 more skipped entries, all listed in" in caplog.text


def test_keyword_spotting_on_a_corpus_without_labels_says_it_needs_labels(tmp_path):
    write(tmp_path / "train.jsonl", clips(tmp_path, 6, text="hello"))
    with pytest.raises(ValueError, match="has no labels \\(4 utterances read\\); this task learns"):
        setup(tmp_path, tmp_path, target="label", holdout=0.2)


def test_an_empty_held_out_split_fails_at_setup_naming_the_holdout(tmp_path):
    write(tmp_path / "train.jsonl", clips(tmp_path, 4, text="a b"))
    write(tmp_path / "test.jsonl", [{"audio_filepath": "c0.wav", "text": "zz"}])
    with pytest.raises(ValueError) as error:
        setup(tmp_path, tmp_path, holdout=0.2)
    message = str(error.value)
    assert "the test split of manifest" in message and "1 read, all dropped" in message
    (validation_only := tmp_path / "v").mkdir()
    write(
        validation_only / "train.jsonl",
        [{"audio_filepath": wav(validation_only / "a.wav"), "text": "a"}],
    )
    with pytest.raises(ValueError, match="held out of train \\(data.reader.holdout=0.2\\)"):
        setup(validation_only, tmp_path, holdout=0.2)


def test_held_out_utterances_the_task_cannot_score_are_a_warning(tmp_path, caplog):
    write(tmp_path / "train.jsonl", clips(tmp_path, 4, text="ab"))
    write(tmp_path / "dev.jsonl", clips(tmp_path, 2, text="ab"))
    write(
        tmp_path / "test.jsonl",
        [*clips(tmp_path, 2, text="ab"), {"audio_filepath": "c3.wav", "text": "xyz"}],
    )
    with caplog.at_level(logging.WARNING):
        module = setup(tmp_path, tmp_path)
    assert len(module.datasets["test"]) == 2
    assert "test: 1 of 3 utterances dropped" in caplog.text
    assert "its metrics cover the other 2" in caplog.text


def test_a_small_validation_split_and_clips_past_max_duration_are_warnings(tmp_path, caplog):
    write(tmp_path / "train.jsonl", clips(tmp_path, 4, text="ab"))
    write(tmp_path / "dev.jsonl", clips(tmp_path, 2, text="ab"))
    write(tmp_path / "test.jsonl", [r | {"duration": 9.0} for r in clips(tmp_path, 3, text="ab")])
    module = SpeechDataModule(
        ManifestReader(tmp_path, NEMO), tmp_path / "cache", target_field="text", max_duration=5.0
    )
    with caplog.at_level(logging.WARNING):
        module.setup()
    assert "validation: only 2 utterances: checkpoint selection" in caplog.text
    assert "test: 3 of its 3 utterances are longer than data.max_duration=5.0 s" in caplog.text


def test_the_training_plan_is_said_and_a_handful_of_updates_is_a_warning(caplog):
    from types import SimpleNamespace

    from speechlab.run.callbacks import TrainingPlanLog

    def trainer(batches: int, limit: float | int = 1.0) -> SimpleNamespace:
        return SimpleNamespace(
            datamodule=SimpleNamespace(batch_seconds_used=320.0),
            is_global_zero=True,
            num_training_batches=batches,
            estimated_stepping_batches=batches * 30,
            limit_train_batches=limit,
        )

    with caplog.at_level(logging.INFO):
        TrainingPlanLog().on_train_start(trainer(120), None)
    assert (
        "training: 120 batches of 320 s of audio per epoch, 3600 optimizer updates" in caplog.text
    )
    assert "WARNING" not in [r.levelname for r in caplog.records]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        TrainingPlanLog().on_train_start(trainer(9), None)
        TrainingPlanLog().on_train_start(trainer(1, limit=1), None)  # asked for: no warning
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "only 9 training batches per epoch" in warnings[0]
    assert "lower data.batch_seconds" in warnings[0]


def test_auto_batch_seconds_give_a_small_corpus_its_updates_and_a_large_one_the_cap(tmp_path):
    records = [r | {"duration": 0.5} for r in clips(tmp_path, 40, text="ab")]
    write(tmp_path / "train.jsonl", records)
    write(tmp_path / "test.jsonl", records[:2])

    def seconds(updates: int, cap: float, world: int = 1) -> float:
        module = SpeechDataModule(
            ManifestReader(tmp_path, NEMO, validation="test.jsonl"),
            tmp_path / "cache",
            target_field="text",
            batch_seconds="auto",
            max_batch_seconds=cap,
            updates_per_epoch=updates,
        )
        return module.batch_seconds_for(world)

    assert seconds(updates=10, cap=320) == pytest.approx(2.0)  # 20 s of audio / 10 updates
    assert seconds(updates=10, cap=320, world=2) == pytest.approx(1.0)  # per process
    assert seconds(updates=10, cap=1.5) == pytest.approx(1.5)  # at most the cap
    assert seconds(updates=1000, cap=320) == pytest.approx(0.5)  # at least the longest utterance
    with pytest.raises(ValueError, match="data.max_batch_seconds must be positive seconds"):
        SpeechDataModule(ManifestReader(tmp_path, NEMO), tmp_path, batch_seconds="auto")
    with pytest.raises(
        ValueError, match="data.batch_seconds must be positive seconds of audio, or auto"
    ):
        SpeechDataModule(ManifestReader(tmp_path, NEMO), tmp_path, batch_seconds="big")
