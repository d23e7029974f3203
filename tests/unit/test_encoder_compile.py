"""model.compile: batches padded to a few frame counts, the encoder compiled once per count, and
the same losses, outputs and gradients as the eager task."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch

from speechlab.audio.features import LogMelFrontend
from speechlab.data.collate import Batch
from speechlab.nn.encoders import ConformerEncoder, LSTMEncoder
from speechlab.tasks.ctc import CTCTask
from speechlab.tasks.encoder_compile import EncoderCompiler, pad_frames, padded_frames
from speechlab.text.tokenizers import CharTokenizer
from tests.conftest import one_torch_thread

N_MELS = 16
SIZES = [32, 48, 64]  # feature frames (10 ms): clips of 0.2-0.6 s


def tiny_encoder(kind: str) -> torch.nn.Module:
    if kind == "lstm":
        return LSTMEncoder(
            N_MELS, hidden_size=8, num_layers=1, dropout=0.0, subsampling_channels=[4, 4]
        )
    return ConformerEncoder(
        N_MELS,
        d_model=16,
        num_heads=2,
        ffn_dim=32,
        num_layers=1,
        depthwise_conv_kernel_size=3,
        dropout=0.0,
        subsampling_channels=[4, 4],
    )


def ctc_task(kind: str, compile_backend: str | Callable | None) -> CTCTask:
    compile_options = {
        "enabled": compile_backend is not None,
        "backend": compile_backend or "inductor",
        "mode": None,
        "frames": SIZES,
    }
    return CTCTask(
        frontend=LogMelFrontend(n_mels=N_MELS),
        encoder=tiny_encoder(kind),
        tokenizer=CharTokenizer("ab").state(),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
        decoding={"kind": "greedy"},
        compile=compile_options,
    )


def speech_batch(frames: list[int], seed: int) -> Batch:
    """Noise clips of ``frames`` feature frames each, with 1-3 token targets."""
    generator = torch.Generator().manual_seed(seed)
    samples = [(count - 1) * 160 for count in frames]
    audio = torch.zeros(len(frames), max(samples))
    for row, count in enumerate(samples):
        audio[row, :count] = torch.randn(count, generator=generator)
    target_lengths = torch.randint(1, 4, (len(frames),), generator=generator)
    targets = torch.randint(2, 5, (len(frames), 3), generator=generator)
    return Batch(
        ids=[f"u{i}" for i in range(len(frames))],
        audio=audio,
        audio_lengths=torch.tensor(samples),
        targets=targets,
        target_lengths=target_lengths,
    )


def test_batches_pad_to_the_smallest_size_that_holds_them() -> None:
    assert [padded_frames(n, SIZES) for n in (1, 32, 33, 48, 64)] == [32, 32, 48, 48, 64]
    assert padded_frames(65, SIZES) == 128, "beyond the largest: its next multiple"
    assert padded_frames(130, SIZES) == 192


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"frames": []}, "strictly ascending"),
        ({"frames": [64, 32]}, "strictly ascending"),
        ({"frames": [0, 32]}, "positive"),
        ({"backend": "no_such_backend"}, "not a torch.compile backend"),
        ({"mode": "fastest"}, "mode must be one of"),
        ({"dynamic": False}, "unknown \\['dynamic'\\]"),
    ],
)
def test_invalid_options_are_refused_with_the_expected_form(options: dict, message: str) -> None:
    config = {"enabled": True, "backend": "inductor", "mode": None, "frames": SIZES, **options}
    with pytest.raises(ValueError, match=message):
        EncoderCompiler.from_config(config)


def test_batches_are_padded_only_for_a_compiled_encoder() -> None:
    assert EncoderCompiler.from_config(None) is None
    options = {"enabled": False, "backend": "inductor", "mode": None, "frames": SIZES}
    assert EncoderCompiler.from_config(options) is None
    task = ctc_task("lstm", "eager")
    batch = task.on_after_batch_transfer(speech_batch([30, 21], seed=0), 0)
    assert batch.features.shape[-1] == 30, "not compiled yet (evaluate.py): no padding"
    task.configure_model()
    batch = task.on_after_batch_transfer(speech_batch([30, 21], seed=0), 0)
    assert batch.features.shape[-1] == 32
    assert batch.feature_lengths.tolist() == [30, 21]


@pytest.mark.parametrize("kind", ["lstm", "conformer"])
def test_padding_to_a_size_leaves_outputs_and_ctc_loss_unchanged(kind: str) -> None:
    torch.manual_seed(0)
    task = ctc_task(kind, None).eval()
    plain = task.on_after_batch_transfer(speech_batch([40, 25, 33], seed=1), 0)
    size = padded_frames(plain.features.shape[-1], SIZES)
    assert size == 48
    padded = dataclasses.replace(plain, features=pad_frames(plain.features, size))
    with torch.no_grad():
        log_probs, lengths = task(plain.features, plain.feature_lengths)
        padded_log_probs, padded_lengths = task(padded.features, padded.feature_lengths)
        loss = task.training_step(plain, 0)
        padded_loss = task.training_step(padded, 0)
    assert torch.equal(lengths, padded_lengths)
    for row, length in enumerate(lengths.tolist()):
        torch.testing.assert_close(padded_log_probs[row, :length], log_probs[row, :length])
    torch.testing.assert_close(padded_loss, loss)


@pytest.mark.parametrize("kind", ["lstm", "conformer"])
def test_compiled_encoder_matches_eager_and_compiles_once_per_size(kind: str) -> None:
    """Training steps (forward and backward) of the compiled and the eager task, counting the
    graphs dynamo captures. The backend runs them as captured (``eager``): code generation is
    torch's to test, and inductor's C++ build alone takes minutes on 2 CPU cores; the GPU run of
    benchmarks/gpu_throughput.py compiles with inductor."""
    graphs: list[torch.fx.GraphModule] = []

    def counting_backend(graph: torch.fx.GraphModule, inputs: list) -> Callable:
        graphs.append(graph)
        return graph.forward

    torch._dynamo.reset()
    torch.manual_seed(0)
    compiled = ctc_task(kind, counting_backend)
    eager = ctc_task(kind, None)
    eager.load_state_dict(compiled.state_dict())
    compiled.configure_model()  # what the trainer calls before fitting
    assert compiled.state_dict().keys() == eager.state_dict().keys(), "checkpoints would differ"
    rounds = [
        [[30, 21], [32, 12, 25], [40, 47], [33, 35, 41]],  # sizes 32 and 48, two batches each
        [[31, 30, 29, 22], [48, 40, 39, 34]],  # new batch sizes and lengths
    ]
    counts = []
    with one_torch_thread():
        for batches in rounds:
            for index, frames in enumerate(batches):
                losses, size = [], None
                for task in (compiled, eager):
                    task.zero_grad()
                    batch = task.on_after_batch_transfer(speech_batch(frames, seed=index), 0)
                    if size is None:  # the compiled task's padding, for the eager one too
                        size = batch.features.shape[-1]
                    batch.features = pad_frames(batch.features, size)
                    loss = task.training_step(batch, index)
                    loss.backward()
                    task.on_train_batch_end(loss, batch, index)  # closes a new size's clock
                    losses.append(loss)
                torch.testing.assert_close(losses[0], losses[1])
                for (name, a), b in zip(
                    compiled.named_parameters(), eager.parameters(), strict=True
                ):
                    torch.testing.assert_close(a.grad, b.grad, msg=name)
            counts.append(len(graphs))
    assert counts[0] > 0, "the encoder was not compiled"
    assert counts[1] == counts[0], "new batch sizes and lengths within the sizes recompiled"
    if kind == "conformer":  # no graph break: exactly one graph per size, whatever the batch size
        assert counts[0] == 2
    first_steps = compiled.encoder_compiler.seconds
    assert list(first_steps) == ["train/32", "train/48"]
    assert all(seconds > 0 for seconds in first_steps.values())
