"""CTC prefix scores: with <eos> the CTC likelihood, otherwise the prefix probability."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from speechlab.decoding.ctc_prefix import CTCPrefixScorer
from speechlab.nn.speller import EOS

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("row", "tokens"), [(0, [1, 2, 2, 3]), (0, [4]), (1, [4, 4, 1]), (2, [2, 1]), (2, [])]
)
def test_ctc_prefix_score_with_eos_is_the_ctc_log_likelihood(row: int, tokens: list[int]) -> None:
    log_probs, lengths = ctc_inputs()
    scorer = CTCPrefixScorer(log_probs, lengths)
    loss = F.ctc_loss(
        log_probs[row : row + 1].transpose(0, 1),
        torch.tensor([tokens or [0]])[:, : len(tokens)],
        lengths[row : row + 1],
        torch.tensor([len(tokens)]),
        reduction="sum",
    )
    assert scorer.score(row, tokens) == pytest.approx(-float(loss), abs=1e-4)


def test_ctc_prefix_scores_are_prefix_probabilities() -> None:
    """Vectorised scores of every candidate = brute-force sums over all alignments."""
    log_probs, lengths = ctc_inputs(seed=1)
    log_probs, lengths = log_probs[:, :5, :3].log_softmax(-1), lengths.clamp(max=5)  # 5, 5, 4
    scorer = CTCPrefixScorer(log_probs, lengths)

    def brute_force(row: int, target: list[int], complete: bool) -> float:
        frames = int(lengths[row])
        values = []
        for path in itertools.product(range(3), repeat=frames):
            collapsed = [k for k, _ in itertools.groupby(path) if k != 0]
            if (collapsed == target) if complete else (collapsed[: len(target)] == target):
                values.append(log_probs[row, torch.arange(frames), torch.tensor(path)].sum())
        return float(torch.stack(values).logsumexp(0)) if values else -math.inf

    for size in range(3):
        pairs = [(row, list(p)) for row in range(3) for p in itertools.product((1, 2), repeat=size)]
        state = scorer.initial_state(torch.tensor([row for row, _ in pairs]))
        first = torch.zeros(len(pairs), dtype=torch.long)
        for step in range(size):
            grown = scorer.extend(state, torch.tensor([[p[step]] for _, p in pairs]))
            state = scorer.advance(grown, torch.arange(len(pairs)), first)
        scores = scorer.extend(state, torch.arange(3).expand(len(pairs), 3)).scores
        for n, (row, prefix) in enumerate(pairs):
            assert float(state.score[n]) == pytest.approx(brute_force(row, prefix, False), abs=1e-4)
            assert float(scores[n, EOS]) == pytest.approx(brute_force(row, prefix, True), abs=1e-4)
            for token in (1, 2):
                expected = brute_force(row, [*prefix, token], False)
                assert float(scores[n, token]) == pytest.approx(expected, abs=1e-4)


def ctc_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    log_probs = (2.0 * torch.randn(3, 10, 5, generator=generator)).log_softmax(-1)
    return log_probs, torch.tensor([10, 7, 4])
