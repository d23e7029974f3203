"""Pad a list of examples into a batch, keeping the true lengths."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch.nn.utils.rnn import pad_sequence

from speechlab.data.dataset import Example, SkippedExample


@dataclass
class Batch:
    """A padded batch.

    ``audio``: ``(B, T)`` float32, zero padded; ``audio_lengths``: ``(B,)`` samples;
    ``targets``: ``(B,)`` class indices, or ``(B, L)`` padded token ids with ``target_lengths``;
    ``sources``/``source_lengths``: ``(B, S)`` padded source-text token ids and ``(B,)`` lengths
    when the examples carry a source (speech translation), else ``None``;
    ``skipped``: ``(audio_path, reason)`` for every example of this batch that failed to decode.
    ``features``/``feature_lengths`` are filled on the device by the task's frontend.
    """

    ids: list[str]
    audio: torch.Tensor
    audio_lengths: torch.Tensor
    targets: torch.Tensor
    target_lengths: torch.Tensor | None = None
    sources: torch.Tensor | None = None
    source_lengths: torch.Tensor | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    features: torch.Tensor | None = None
    feature_lengths: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def pin_memory(self) -> Batch:
        """This batch with every tensor in page-locked host memory, so that its copy to a GPU
        (``non_blocking``) overlaps the step. ``DataLoader(pin_memory=True)`` calls this in its
        pinning thread: without it a dataclass batch would pass through unpinned.

        Raises:
            RuntimeError: no accelerator to pin memory for (torch's error).
        """
        pinned = {
            f.name: value.pin_memory()
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **pinned)


def collate_examples(items: list[Example | SkippedExample], pad_id: int = 0) -> Batch:
    """Pad ``items`` (skipped ones dropped and listed in ``Batch.skipped``) into a :class:`Batch`."""
    examples = [item for item in items if isinstance(item, Example)]
    skipped = [(item.audio_path, item.reason) for item in items if isinstance(item, SkippedExample)]
    if not examples:
        return Batch(
            ids=[],
            audio=torch.zeros(0, 0),
            audio_lengths=torch.zeros(0, dtype=torch.long),
            targets=torch.zeros(0, dtype=torch.long),
            skipped=skipped,
        )
    audio = pad_sequence([example.audio for example in examples], batch_first=True)
    audio_lengths = torch.tensor([example.audio.numel() for example in examples])
    targets = [example.target for example in examples]
    if targets[0].dim() == 0:
        return Batch(
            ids=[example.id for example in examples],
            audio=audio,
            audio_lengths=audio_lengths,
            targets=torch.stack(targets),
            skipped=skipped,
        )
    sources = [example.source for example in examples]
    has_sources = all(source is not None for source in sources)
    return Batch(
        ids=[example.id for example in examples],
        audio=audio,
        audio_lengths=audio_lengths,
        targets=pad_sequence(targets, batch_first=True, padding_value=pad_id),
        target_lengths=torch.tensor([target.numel() for target in targets]),
        sources=pad_sequence(sources, batch_first=True, padding_value=pad_id)
        if has_sources
        else None,
        source_lengths=torch.tensor([s.numel() for s in sources]) if has_sources else None,
        skipped=skipped,
    )
