"""On a GPU the loaders keep up by default: worker processes that persist across epochs, pinned
batches copied without blocking, and the fused AdamW; on CPU the loading stays in process."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from torch.overrides import TorchFunctionMode

from speechlab.checkpoint.recipe import build_task
from speechlab.data.collate import Batch
from speechlab.data.dataset import SpeechDataset
from speechlab.data.targets import ClassLabels
from speechlab.data.utterance import Utterance
from speechlab.run.resolvers import on_cuda
from speechlab.text.tokenizers import CharTokenizer
from tests.conftest import composed


def a_batch() -> Batch:
    return Batch(
        ids=["a", "b"],
        audio=torch.zeros(2, 160),
        audio_lengths=torch.tensor([160, 80]),
        targets=torch.tensor([[1, 2], [3, 0]]),
        target_lengths=torch.tensor([2, 1]),
    )


@pytest.mark.parametrize(("trainer", "on_gpu"), [("gpu", True), ("cpu", False)], ids=["gpu", "cpu"])
def test_trainer_accelerator_sets_the_loader_and_optimizer_defaults(
    trainer: str, on_gpu: bool, tmp_path: Path
):
    with composed("train", [f"trainer={trainer}"], tmp_path) as cfg:
        data = OmegaConf.to_container(cfg.data, resolve=True)
        assert data["pin_memory"] is on_gpu
        assert data["num_workers"] == (4 if on_gpu else 0)  # the embedded corpus (mini_voice)
        assert cfg.model.optimizer.fused is on_gpu
        datamodule = hydra.utils.instantiate(cfg.data, target_field="label")
    utterance = Utterance(id="u", audio_path="u.wav", duration=1.0, sample_rate=16000, label="a")
    datamodule.datasets = {"validation": SpeechDataset([utterance], 16000, ClassLabels(["a"]))}
    loader = datamodule.val_dataloader()
    assert (loader.pin_memory, loader.num_workers > 0, loader.persistent_workers) == (on_gpu,) * 3


def test_on_cuda_reads_the_accelerator():
    assert on_cuda("gpu") is True and on_cuda("cuda", 4, 0) == 4 and on_cuda("cpu", 4, 0) == 0
    assert on_cuda("auto") is torch.cuda.is_available()


def test_a_pinned_batch_pins_every_tensor(monkeypatch: pytest.MonkeyPatch):
    # No accelerator here to pin for: mark what would be pinned instead.
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda tensor: tensor + 1000)
    batch = a_batch()
    pinned = batch.pin_memory()
    assert isinstance(pinned, Batch) and pinned.ids == batch.ids
    assert pinned.audio_lengths.tolist() == [1160, 1080]
    assert pinned.targets.tolist() == [[1001, 1002], [1003, 1000]]
    assert pinned.target_lengths.tolist() == [1002, 1001] and pinned.sources is None


class RecordCopies(TorchFunctionMode):
    """Records the keyword arguments of every ``Tensor.to`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: list[dict] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if func is torch.Tensor.to:
            self.copies.append(dict(kwargs or {}))
        return func(*args, **(kwargs or {}))


def test_batches_move_to_an_accelerator_without_blocking(tmp_path: Path):
    with composed("train", ["trainer=cpu"], tmp_path) as cfg:
        task = build_task(cfg.model, {"tokenizer": CharTokenizer.train(["ab"]).state()})
    device = torch.device("meta")  # stands in for a GPU: any device but the CPU
    with RecordCopies() as recorder:
        moved = task.transfer_batch_to_device(a_batch(), device, 0)
    tensors = [moved.audio, moved.audio_lengths, moved.targets, moved.target_lengths]
    assert all(tensor.device == device for tensor in tensors) and moved.ids == ["a", "b"]
    assert len(recorder.copies) == 4 and all(c.get("non_blocking") for c in recorder.copies)
