"""The libespeak-ng binding: it speaks, voices differ, isolated engines repeat, bad input is
refused."""

from __future__ import annotations

import numpy as np
import pytest

from speechlab.text.espeak import Espeak, EspeakError, synthesize


def test_espeak_speaks_and_longer_text_gives_longer_audio():
    short, rate = synthesize("yes", "en-us", rate=175)
    long, _ = synthesize("yes no up down left right", "en-us", rate=175)
    assert rate == 22050
    assert short.dtype == np.float32 and short.ndim == 1
    assert np.sqrt(np.mean(short**2)) > 0.01 and np.abs(short).max() <= 1.0
    assert len(long) > 2.5 * len(short)


def test_espeak_voices_differ_and_isolated_engines_repeat_exactly():
    male, female = speak_fresh("ah", "en-us+m3"), speak_fresh("ah", "en-us+f3")
    assert np.array_equal(male, speak_fresh("ah", "en-us+m3"))
    assert not np.array_equal(male, female)
    assert fundamental_hz(female, 22050) > 1.3 * fundamental_hz(male, 22050)


def test_espeak_rate_and_pitch_parameters_act():
    slow = speak_fresh("forward", "en-us", rate=100)
    fast = speak_fresh("forward", "en-us", rate=300)
    low, high = speak_fresh("ah", "en-us+m3", pitch=10), speak_fresh("ah", "en-us+m3", pitch=90)
    assert len(slow) > 1.5 * len(fast)
    assert fundamental_hz(high, 22050) > 1.5 * fundamental_hz(low, 22050)


@pytest.mark.parametrize(
    ("voice", "message"), [("en-us+nope", "variant 'nope'"), ("xx-zz", "language 'xx-zz'")]
)
def test_espeak_unknown_voice_is_a_clear_error(voice: str, message: str):
    with pytest.raises(EspeakError, match=message):
        synthesize("yes", voice)


def test_espeak_rejects_out_of_range_parameters():
    with pytest.raises(ValueError, match="rate=20 is outside 80..450"):
        synthesize("yes", rate=20)


def fundamental_hz(samples: np.ndarray, rate: int) -> float:
    """The cepstral pitch (60-400 Hz) of the loudest 100 ms."""
    hop = rate // 10
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop).astype(np.float64)
    frame = frames[np.argmax((frames**2).sum(axis=1))] * np.hanning(hop)
    cepstrum = np.fft.irfft(np.log(np.abs(np.fft.rfft(frame)) + 1e-9))
    low, high = rate // 400, rate // 60
    return rate / (low + int(np.argmax(cepstrum[low:high])))


def speak_fresh(text: str, voice: str, **prosody: int) -> np.ndarray:
    """Synthesise with a private engine: reproducible, unlike the shared one."""
    with Espeak(isolated=True) as engine:
        return engine.synthesize(text, voice, seed=1, **prosody)
