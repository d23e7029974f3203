"""Utterances CTC cannot emit (too few encoder frames for their label) are dropped and counted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from speechlab.audio.features import LogMelFrontend
from speechlab.data.datamodule import SpeechDataModule
from speechlab.data.reader import ScanReport
from speechlab.data.utterance import Utterance
from speechlab.nn.encoders import LSTMEncoder
from speechlab.tasks.ctc import CTCTask
from speechlab.text.tokenizers import CharTokenizer


class InMemoryReader:
    """A reader over fixed utterances (their audio is never read in this test)."""

    name = "in_memory"

    def __init__(self, root: Path, utterances: dict[str, list[Utterance]]) -> None:
        self.root = root
        self.utterances = utterances

    def check_layout(self) -> None:
        pass

    def options(self) -> dict:
        return {"ids": [u.id for split in self.utterances.values() for u in split]}

    def fingerprint_paths(self) -> Iterator[Path]:
        return iter(())

    def scan(self, split: str, report: ScanReport) -> Iterator[Utterance]:
        return iter(self.utterances.get(split, []))


def utterance(uid: str, seconds: float, text: str) -> Utterance:
    return Utterance(uid, f"{uid}.wav", seconds, 16000, text=text)


def test_too_short_for_the_label_is_dropped_and_counted(tmp_path: Path) -> None:
    long_text = "the quick brown fox jumps over the lazy dog"  # 43 symbols
    train = [
        utterance("fits", 3.0, long_text),  # 301 frames -> 76 after 4x subsampling
        utterance("too_short", 0.5, long_text),  # 51 frames -> 13 < 43
        utterance("repeats", 0.11, "aaaa"),  # 12 frames -> 3 < 7 (blanks between repeats)
        utterance("short_ok", 0.5, "fox"),
    ]
    reader = InMemoryReader(tmp_path, {"train": train, "validation": train, "test": train})
    datamodule = SpeechDataModule(reader, cache_dir=tmp_path / "cache", target_field="text")
    datamodule.setup()
    inputs = datamodule.task_inputs()
    task = CTCTask(
        frontend=LogMelFrontend(n_mels=40),
        encoder=LSTMEncoder(40, hidden_size=16, num_layers=1),
        tokenizer=inputs["tokenizer"],
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
        decoding={"kind": "greedy"},
    )
    assert task.output_frames(8000) == 13

    dropped = datamodule.drop_inadmissible(task.check_example)

    assert dropped == 2
    assert [u.id for u in datamodule.datasets["train"].utterances] == ["fits", "short_ok"]
    reason = "subsampled length shorter than the label (CTC cannot emit it)"
    assert datamodule.dropped["train"][reason] == 2
    assert len(datamodule.datasets["test"]) == 4, "evaluation splits keep every utterance"


def test_tokenizer_comes_from_the_train_split_and_is_kept_when_restored(tmp_path: Path) -> None:
    splits = {
        "train": [utterance("a", 1.0, "abc ab")],
        "validation": [utterance("b", 1.0, "abz")],  # z is unseen in train
        "test": [utterance("c", 1.0, "cab")],
    }
    reader = InMemoryReader(tmp_path, splits)
    datamodule = SpeechDataModule(reader, cache_dir=tmp_path / "cache", target_field="text")
    datamodule.setup()
    state = datamodule.task_inputs()["tokenizer"]
    assert state == CharTokenizer(["a", "b", "c"]).state()
    assert len(datamodule.datasets["validation"]) == 0
    assert sum(datamodule.dropped["validation"].values()) == 1

    restored = SpeechDataModule(
        reader, cache_dir=tmp_path / "cache", target_field="text", tokenizer=state
    )
    restored.setup()
    assert restored.task_inputs()["tokenizer"] == state
