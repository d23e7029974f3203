"""Gradient clipping with the fused AdamW under mixed precision (which Lightning alone refuses):
a few steps of a tiny conformer recognizer under ``bf16-mixed`` and ``16-mixed`` on the CPU
(``16-mixed`` through torch's CPU gradient scaler, as in ``test_step_guard.py``)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision
from torch.utils.data import DataLoader

from speechlab.checkpoint.recipe import build_task
from speechlab.data.collate import Batch
from speechlab.text.tokenizers import CharTokenizer
from tests.conftest import composed

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_CONFORMER = [
    "model=ctc_conformer",
    "model.frontend.n_mels=16",
    "model.encoder.subsampling_channels=[4,4]",
    "model.encoder.d_model=16",
    "model.encoder.num_heads=2",
    "model.encoder.ffn_dim=32",
    "model.encoder.num_layers=1",
    "model.encoder.depthwise_conv_kernel_size=3",
    "model.optimizer.fused=true",  # what a GPU run gets (on_cuda); fused AdamW runs on CPU too
    "trainer.accelerator=cpu",
]
CLIP = 1e-3  # far below the raw gradient norm: every step is clipped


def random_batches(count: int) -> list[Batch]:
    generator = torch.Generator().manual_seed(0)
    return [
        Batch(
            ids=["a", "b"],
            audio=0.1 * torch.randn(2, 8000, generator=generator),
            audio_lengths=torch.tensor([8000, 6000]),
            targets=torch.randint(1, 4, (2, 3), generator=generator),
            target_lengths=torch.tensor([3, 2]),
        )
        for _ in range(count)
    ]


class StepRecorder(L.Callback):
    """Records, as each optimizer step ends, the norm of the gradients it applied and the scale
    it divided them by (``grad_scale``, set by the gradient scaler for a fused step)."""

    def __init__(self) -> None:
        self.norms: list[float] = []
        self.grad_scales: list[object] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.optimizers[0].register_step_post_hook(self._record)

    def _record(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"]]
        self.norms.append(float(torch.stack([g.norm() for g in grads if g is not None]).norm()))
        self.grad_scales.append(getattr(optimizer, "grad_scale", "unset"))


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_fused_adamw_clips_gradients_under_mixed_precision(precision: str, tmp_path: Path):
    with composed("train", TINY_CONFORMER, tmp_path) as cfg:
        task = build_task(cfg.model, {"tokenizer": CharTokenizer.train(["ab ba", "c"]).state()})
    before = [p.detach().clone() for p in task.parameters()]
    if precision == "16-mixed":  # Lightning takes 16-mixed on CUDA only: the plugin, on CPU
        scaler = torch.amp.GradScaler("cpu", init_scale=16.0)  # no overflow: no skipped step
        precision_options = {"plugins": [MixedPrecision("16-mixed", "cpu", scaler)]}
    else:
        precision_options = {"precision": precision}
    recorder = StepRecorder()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=3,
        gradient_clip_val=CLIP,
        callbacks=[recorder],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=tmp_path,
        **precision_options,
    )
    trainer.fit(task, train_dataloaders=DataLoader(random_batches(3), batch_size=None))

    optimizer = trainer.optimizers[0]
    assert optimizer.defaults["fused"] is True
    assert len(recorder.norms) == 3  # every step was taken, none refused or skipped
    assert recorder.norms == pytest.approx([CLIP] * 3, rel=1e-2)  # clipped, and unscaled first
    if precision == "16-mixed":  # the fused step divides by no scale a second time
        assert recorder.grad_scales == [None] * 3
    after = list(task.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
