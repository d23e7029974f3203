"""The mini_covost plan: deterministic, disjoint splits, translations that follow the grammar."""

from __future__ import annotations

import pytest

from speechlab.corpora.embedded.mini_covost import (
    ENDINGS,
    OBJECTS,
    SUBJECTS,
    MiniCovostParams,
    plan_clips,
    plan_pairs,
    plan_speakers,
)


def test_mini_covost_plan_is_deterministic_with_disjoint_splits():
    params = MiniCovostParams()
    pairs = plan_pairs(params)
    assert pairs == plan_pairs(MiniCovostParams())
    assert pairs != plan_pairs(MiniCovostParams(seed=1))
    french = {split: {fr for fr, _ in rows} for split, rows in pairs.items()}
    assert not french["train"] & french["validation"] and not french["train"] & french["test"]
    train_words = {word for _, en in pairs["train"] for word in en.lower().strip(".").split()}
    for _, english in pairs["test"]:  # new combinations of phrases train has seen
        assert set(english.lower().strip(".").split()) <= train_words
    speakers = plan_speakers(params)
    by_split = {s: {sp.id for sp in speakers if sp.split == s} for s in french}
    assert (
        not by_split["train"] & by_split["test"] and not by_split["validation"] & by_split["test"]
    )
    clips = plan_clips(params, speakers)
    assert len(clips) == 450 * 3 + 50 * 2 + 80 * 2
    assert all(clip.name.startswith("common_voice_fr_") for clip in clips)


def test_mini_covost_translations_follow_the_grammar():
    for french, english in plan_pairs(MiniCovostParams(train_sentences=60))["train"]:
        assert french[0].isupper() and french.endswith(".") and english.endswith(".")
        assert any(french.lower().startswith(fr) for fr, _ in SUBJECTS)
        assert any(english.lower().startswith(en) for _, en in SUBJECTS)
        assert any(f" {noun}" in english for *_, noun in OBJECTS)
        ending = [en for fr, en in ENDINGS if french.endswith(f" {fr}.")]
        assert not ending or english.endswith(f" {ending[0]}.")
    with pytest.raises(ValueError, match="eval_readings"):
        MiniCovostParams(dev_speakers=1, eval_readings=2)
