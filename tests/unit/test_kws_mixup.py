"""Mixup in keyword spotting: training batches mixed, targets' losses mixed, evaluation untouched."""

from __future__ import annotations

import hydra
import pytest
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException

from speechlab.data.collate import Batch
from tests.conftest import composed

LABELS = ["yes", "no", "up", "down"]


def task_with(tmp_path, alpha: float):
    overrides = ["model=kws_cnn", f"model.mixup_alpha={alpha}", "model.label_smoothing=0"]
    with composed("train", overrides, tmp_path) as cfg:
        return hydra.utils.instantiate(cfg.model, labels=LABELS)


def batch_of(size: int = 6) -> Batch:
    generator = torch.Generator().manual_seed(0)
    batch = Batch(
        ids=[f"u{i}" for i in range(size)],
        audio=torch.zeros(size, 16000),
        audio_lengths=torch.full((size,), 16000),
        targets=torch.arange(size) % len(LABELS),
    )
    batch.features = torch.randn(size, 40, 101, generator=generator)
    batch.feature_lengths = torch.tensor([101, 90, 80, 101, 70, 60][:size])
    return batch


def test_mixup_trains_on_mixed_features_and_mixes_the_two_targets_losses(tmp_path):
    torch.manual_seed(0)
    task = task_with(tmp_path, alpha=0.4).train()
    task.encoder.dropout.p = 0.0
    with torch.no_grad():  # confident logits: the two targets' cross-entropies far apart
        task.head.weight.mul_(100.0)
    batch = batch_of()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    task.encoder.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs))
    torch.manual_seed(3)
    loss = task.training_step(batch, 0)
    features, lengths = seen[0]
    # What the step drew, drawn again from the same seed.
    torch.manual_seed(3)
    lam = float(torch.distributions.Beta(0.4, 0.4).sample())
    lam = max(lam, 1 - lam)
    order = torch.randperm(len(batch))
    assert 0.5 <= lam < 1.0 and not torch.equal(order, torch.arange(len(batch)))
    expected = lam * batch.features + (1 - lam) * batch.features[order]
    assert torch.allclose(features, expected)
    assert (
        lengths.tolist()
        == torch.maximum(batch.feature_lengths, batch.feature_lengths[order]).tolist()
    )
    with torch.no_grad():  # training mode, no dropout: BatchNorm's batch statistics, same logits
        logits = task(features, lengths)
    mixed = lam * F.cross_entropy(logits, batch.targets)
    mixed = mixed + (1 - lam) * F.cross_entropy(logits, batch.targets[order])
    loss = loss.detach()
    assert float(loss) == pytest.approx(float(mixed), rel=1e-5)


def test_mixup_leaves_validation_alone(tmp_path):
    task = task_with(tmp_path, alpha=0.4).eval()
    batch = batch_of()
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    task.encoder.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs))
    with torch.no_grad():
        task.validation_step(batch, 0)
    assert torch.equal(seen[0][0], batch.features)


def test_a_negative_mixup_alpha_is_refused_with_what_to_set(tmp_path):
    with pytest.raises(
        InstantiationException, match=r"mixup_alpha=-1.0: expected 0 .*model.mixup_alpha=0"
    ):
        task_with(tmp_path, alpha=-1.0)
