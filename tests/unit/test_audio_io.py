"""Audio I/O: probe and read WAV/FLAC/MP3, resample, clear errors for unreadable files."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlab.audio.io import AudioError, probe, read_audio, read_audio_bytes


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def test_probe_and_read_resample_and_mix_down(tmp_path: Path):
    path = tmp_path / "stereo.flac"
    sf.write(path, tone(1.0, 44100, channels=2), 44100)
    info = probe(path)
    assert (info.sample_rate, info.channels) == (44100, 2)
    assert info.duration == pytest.approx(1.0)
    audio = read_audio(path, sample_rate=16000)
    assert audio.dim() == 1 and audio.numel() == 16000


def test_read_segment(tmp_path: Path):
    path = tmp_path / "long.wav"
    sf.write(path, tone(3.0, 8000), 8000)
    segment = read_audio(path, sample_rate=16000, offset=1.0, duration=0.5)
    assert segment.numel() == 8000


def test_read_audio_bytes_decodes_as_read_audio_does(tmp_path: Path):
    path = tmp_path / "long.wav"
    sf.write(path, tone(3.0, 8000, channels=2), 8000)
    data = path.read_bytes()
    from_bytes = read_audio_bytes(data, 16000, offset=1.0, duration=0.5)
    assert np.array_equal(from_bytes.numpy(), read_audio(path, 16000, 1.0, 0.5).numpy())
    for damaged, reason in (
        (data[: len(data) // 2], "truncated"),
        (b"", "empty"),
        (b"xyz", "decode"),
    ):
        with pytest.raises(AudioError, match=reason):
            read_audio_bytes(damaged, 16000)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b"", "empty: the file is 0 bytes"),
        (lambda b: b[:30], "cannot read audio header"),
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:44] + bytes(0), "cannot read audio header|empty|truncated"),
    ],
)
def test_probe_rejects_empty_corrupt_and_truncated_files(tmp_path: Path, damage, reason):
    good = tmp_path / "good.wav"
    sf.write(good, tone(1.0, 16000), 16000, subtype="PCM_16")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(AudioError, match=reason):
        probe(bad)


def test_read_audio_raises_audio_error_on_garbage(tmp_path: Path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    with pytest.raises(AudioError):
        read_audio(path, 16000)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_samples_that_are_not_finite_are_an_audio_error(tmp_path: Path, bad):
    samples = np.zeros(1600, np.float32)
    samples[100:103] = bad
    path = tmp_path / "float.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="3 of 1600 samples are not finite"):
        read_audio(path, 16000)


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".flac"])
def test_a_zero_byte_file_is_called_empty_not_missing(tmp_path: Path, suffix):
    path = tmp_path / f"clip{suffix}"
    path.write_bytes(b"")
    for read in (probe, lambda p: read_audio(p, 16000)):
        with pytest.raises(AudioError, match="^empty: the file is 0 bytes$"):
            read(path)
    with pytest.raises(AudioError, match="^missing: no such file$"):
        probe(tmp_path / f"absent{suffix}")
