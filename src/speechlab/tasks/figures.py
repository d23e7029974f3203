"""Figures the tasks log: attention of a speller, predicted and target mels, alignments.

Each function returns a matplotlib figure (Agg backend) for
:func:`speechlab.tasks.artifacts.log_figure`.
"""

from __future__ import annotations

import torch


def attention_figure(weights: torch.Tensor, output_tokens: list[str], title: str):
    """A matplotlib figure of attention ``weights`` ``(L + 1, T)`` (one row per output token)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    steps, frames = weights.shape
    figure, axis = plt.subplots(figsize=(min(16.0, 2.0 + 0.12 * frames), 1.5 + 0.18 * steps))
    image = axis.imshow(
        weights.float().numpy(), aspect="auto", origin="lower", interpolation="nearest"
    )
    axis.set_xlabel("encoder frame")
    axis.set_ylabel("output token")
    if steps <= 80:
        axis.set_yticks(range(steps))
        axis.set_yticklabels(output_tokens, fontsize=7)
    axis.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.03, pad=0.02)
    return figure


def mel_figure(predicted: torch.Tensor, target: torch.Tensor | None, title: str):
    """Predicted (and target) log-mels ``(n_mels, T)`` one above the other."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = [("predicted", predicted)] + ([("target", target)] if target is not None else [])
    frames = max(m.shape[-1] for _, m in panels)
    figure, _ = plt.subplots(
        len(panels), 1, figsize=(min(16.0, 3.0 + frames / 30), 2.2 * len(panels)), squeeze=False
    )
    axes = list(figure.axes)
    for axis, (name, mel) in zip(axes, panels, strict=True):
        axis.imshow(mel.float().cpu().numpy(), aspect="auto", origin="lower", interpolation="none")
        axis.set_ylabel(f"{name}\nmel band")
    axes[0].set_title(title, fontsize=9)
    axes[-1].set_xlabel("frame")
    return figure


def alignment_figure(alignment: torch.Tensor, title: str):
    """Attention ``(S, L)``: decoder step against input symbol."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    steps, symbols = alignment.shape
    figure, axis = plt.subplots(
        figsize=(min(12.0, 2.5 + symbols / 12), min(10.0, 2.0 + steps / 25))
    )
    image = axis.imshow(
        alignment.float().cpu().numpy(), aspect="auto", origin="lower", interpolation="none"
    )
    axis.set_xlabel("input symbol")
    axis.set_ylabel("decoder step")
    axis.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axis, fraction=0.03, pad=0.02)
    return figure
