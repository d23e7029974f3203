"""A small word n-gram LM estimator writing ARPA files, and a wav2letter lexicon writer.

KenLM's ``lmplz`` is not pip-installable, so :func:`build_arpa` estimates the model itself:
**interpolated Kneser-Ney** (one absolute discount ``D`` per order, no "modified" three-discount
variant) or, with ``kneser_ney=False``, plain **interpolated absolute discounting**. The lowest
order is interpolated with the uniform distribution over the vocabulary, so ``<unk>`` gets mass.

For a history ``h`` (its suffix ``h'``) and the counts ``c`` used at that order::

    p(w | h) = max(c(h w) - D, 0) / c(h) + gamma(h) * p(w | h')
    gamma(h) = D * N1+(h .) / c(h),      c(h) = sum_w c(h w)

Counts are raw at the highest order; with Kneser-Ney, lower orders use continuation counts
``N1+(. g)`` (raw counts for n-grams starting with ``<s>``, which have no left context).
Interpolation maps exactly onto ARPA back-off: seen n-grams store the interpolated
``log10 p(w | h)``, and ``gamma(h)`` is the back-off weight of ``h``, so every conditional
distribution sums to one over the vocabulary (all words, ``</s>`` and ``<unk>``; not ``<s>``).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
_NEVER = -99.0  # log10 probability ARPA files give <s>, which is never predicted


def words_of(sentences: Iterable[str]) -> list[str]:
    """The sorted distinct whitespace-separated words of ``sentences``."""
    return sorted({w for s in sentences for w in s.split()})


def spell_sentences(
    sentences: Iterable[str], spell: Callable[[str], list[str]], word_delimiter: str | None = "|"
) -> list[str]:
    """Sentences re-written as space-separated tokens, e.g. ``"cat sat"`` -> ``"c a t | s a t"``.

    This is the training text of a *token-level* LM, the kind a lexicon-free beam search uses:
    there the LM scores output tokens, not words. ``word_delimiter=None`` (sub-word pieces that
    carry their own word boundary, like SentencePiece's ``▁``) joins the spellings directly.
    """
    out = []
    for sentence in sentences:
        spelt: list[str] = []
        for i, word in enumerate(sentence.split()):
            if i and word_delimiter is not None:
                spelt.append(word_delimiter)
            spelt.extend(spell(word))
        out.append(" ".join(spelt))
    return out


def _ngram_counts(sentences: Iterable[str], order: int) -> list[Counter[tuple[str, ...]]]:
    """Raw counts of every n-gram (n = 1..order) of ``<s> w1 .. wk </s>``, indexed by n - 1."""
    counts: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order)]
    for sentence in sentences:
        words = sentence.split()
        if not words:
            continue
        for w in words:
            if w in (BOS, EOS):
                raise ValueError(f"build_arpa: sentence {sentence!r} contains the reserved {w!r}")
        seq = (BOS, *words, EOS)
        for n in range(1, order + 1):
            for i in range(len(seq) - n + 1):
                counts[n - 1][seq[i : i + n]] += 1
    return counts


def _continuation(counts: Counter[tuple[str, ...]], higher: Counter[tuple[str, ...]]) -> Counter:
    """Kneser-Ney counts: distinct left extensions, raw counts for ``<s>``-initial n-grams."""
    left: Counter[tuple[str, ...]] = Counter(g[1:] for g in higher)
    return Counter({g: (c if g[0] == BOS else left[g]) for g, c in counts.items()})


def build_arpa(
    sentences: Iterable[str],
    path: str | Path,
    order: int = 3,
    discount: float = 0.5,
    kneser_ney: bool = True,
) -> Path:
    """Estimate a word n-gram LM from whitespace-tokenised ``sentences``; write ARPA to ``path``.

    See the module docstring for the estimator. ``discount`` is the absolute discount ``D`` in
    (0, 1], the same for every order. Returns ``path``. The file loads in KenLM (and so in
    flashlight's decoder); build a token-level LM by feeding :func:`spell_sentences` output.
    """
    if order < 1:
        raise ValueError(f"build_arpa: order must be >= 1, got {order}")
    if not 0.0 < discount <= 1.0:
        raise ValueError(f"build_arpa: discount must be in (0, 1], got {discount}")
    raw = _ngram_counts(sentences, order)
    if not raw[0]:
        raise ValueError("build_arpa: no words in the sentences; cannot estimate an LM")

    used = list(raw)  # the counts each order is estimated from
    if kneser_ney:
        for n in range(order - 1):
            used[n] = _continuation(raw[n], raw[n + 1])
    used[0].pop((BOS,), None)  # <s> is never predicted

    vocab = sorted(({g[0] for g in raw[0]} | {UNK, EOS}) - {BOS})
    probs: list[dict[tuple[str, ...], float]] = []
    backoffs: list[dict[tuple[str, ...], float]] = []
    for n in range(order):
        totals: dict[tuple[str, ...], float] = defaultdict(float)
        types: Counter[tuple[str, ...]] = Counter()
        for g, c in used[n].items():
            totals[g[:-1]] += c
            types[g[:-1]] += 1
        gammas = {h: discount * types[h] / totals[h] for h in totals}
        backoffs.append(gammas)
        p: dict[tuple[str, ...], float] = {}
        grams = [(w,) for w in vocab] if n == 0 else list(used[n])
        for g in grams:
            h = g[:-1]
            lower = 1.0 / len(vocab) if n == 0 else probs[n - 1][g[1:]]
            p[g] = max(used[n].get(g, 0) - discount, 0.0) / totals[h] + gammas[h] * lower
        probs.append(p)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        sizes = [len(probs[0]) + 1] + [len(p) for p in probs[1:]]  # + 1: <s>
        f.write("\\data\\\n")
        f.writelines(f"ngram {n + 1}={size}\n" for n, size in enumerate(sizes))
        for n in range(order):
            f.write(f"\n\\{n + 1}-grams:\n")
            entries = sorted(probs[n].items())
            if n == 0:
                entries = [((BOS,), None), *entries]
            for g, prob in entries:
                logp = _NEVER if prob is None else math.log10(prob)
                line = f"{logp:.7f}\t{' '.join(g)}"
                if n + 1 < order and g in backoffs[n + 1]:
                    line += f"\t{math.log10(backoffs[n + 1][g]):.7f}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")
    return path


def write_lexicon(
    words: Iterable[str],
    spell: Callable[[str], list[str]],
    path: str | Path,
    word_delimiter: str | None = "|",
) -> Path:
    """Write a wav2letter/flashlight lexicon: one ``word<TAB>t o k e n s |`` line per word.

    ``spell(word)`` gives the word's output tokens (characters, or sub-word pieces). The
    ``word_delimiter`` token is appended to every spelling; pass ``None`` to leave it out (sub-word
    pieces; or character lexicons whose decoder treats the delimiter as silence between words).
    Duplicate words and words that spell to nothing are skipped. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    with path.open("w", encoding="utf-8") as f:
        for word in words:
            if word in seen:
                continue
            if not word or any(ch.isspace() for ch in word):
                raise ValueError(f"write_lexicon: word {word!r} is empty or contains whitespace")
            seen.add(word)
            tokens = list(spell(word))
            if not tokens:
                continue
            if word_delimiter is not None:
                tokens.append(word_delimiter)
            f.write(f"{word}\t{' '.join(tokens)}\n")
    return path
