"""What the embedded corpus generators share: voices, noise, the English grammar, clips of
sentences, and the marker that says a generated corpus is complete.

- Voices: :data:`LANGUAGES` (English espeak-ng voices of the wheel) and the human-sounding
  variants :data:`FEMALE_VARIANTS` / :data:`MALE_VARIANTS`; a :class:`Speaker` is a voice with
  its own rate and pitch.
- Noise: :data:`NOISES`, generators of unit-RMS background noise.
- Grammar: :func:`sentence` draws an English sentence of about 80 words (:func:`vocabulary`),
  :func:`written` spells it as a corpus writes it.
- Clips of sentences: a :class:`Clip` is one planned reading; :func:`render_speaker` writes one
  speaker's clips as MP3 at :data:`ESPEAK_RATE`, each with lead-in, tail and noise
  (:func:`render_clip`); :func:`write_clip_durations` writes Common Voice's
  ``clip_durations.tsv``.
- Markers: a generator writes :func:`write_marker` last; :func:`ensure_generated` reuses a
  corpus whose marker matches, and otherwise generates into a temporary sibling swapped in by
  renaming, under a lock.

Every draw comes from a seeded ``numpy`` generator, so a corpus is byte-identical for a seed
(on one machine and library build).
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import soundfile as sf

from speechlab.text.espeak import Espeak, Voice

ESPEAK_RATE = 22050  # espeak-ng's own sample rate: sentence clips are written at it

# -- voices ------------------------------------------------------------------------------------

# English language voices of the wheel and human-sounding variants (robotic, whispered and
# libc-rand-driven ones are left out).
LANGUAGES = (
    "en-us", "en-us-nyc", "en", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
    "en-gb-x-gbcwmd", "en-029",
)  # fmt: skip
FEMALE_VARIANTS = (
    "f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "aunty", "belinda",
    "grandma", "linda", "shelby", "steph", "zac",
)  # fmt: skip
MALE_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Andy", "Lee", "Denis", "Diogo", "Hugo",
    "Mario", "Michael", "Mike", "antonio", "gustave", "grandpa", "ian", "john", "marcelo",
    "michel", "norbert", "paul", "quincy", "rob", "robert", "sandro", "travis", "victor",
    "klatt", "klatt2", "klatt3",
)  # fmt: skip


@dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: an id, its split, a voice and base prosody (espeak units)."""

    id: str
    split: str
    voice: Voice
    rate: int  # words per minute
    pitch: int  # 0-100
    pitch_range: int  # 0-100


# -- noise -------------------------------------------------------------------------------------

# Each generator takes (rng, n, sample_rate) and returns a (n,) float64 signal with unit RMS.


NoiseGenerator = Callable[..., np.ndarray]


def _shaped_noise(
    rng: np.random.Generator,
    n: int,
    gain: Callable[[np.ndarray], np.ndarray],
    sample_rate: int,
) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    frequencies = np.fft.rfftfreq(n, d=1.0 / sample_rate)
    signal = np.fft.irfft(spectrum * gain(np.maximum(frequencies, 1.0)), n)
    return signal / (np.sqrt(np.mean(signal**2)) + 1e-12)


def _colored(exponent: float) -> NoiseGenerator:
    """Power ~ 1/f**exponent above 20 Hz: 0 white, 1 pink, 2 brown."""

    def noise(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
        return _shaped_noise(rng, n, lambda f: (f >= 20.0) * f ** (-exponent / 2), sample_rate)

    return noise


def _mains_hum(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    t = np.arange(n) / sample_rate
    f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.995, 1.005)
    hum = sum(
        np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k**1.2 for k in range(1, 9)
    )
    hum = hum / np.sqrt(np.mean(hum**2)) + 0.1 * _colored(1.0)(rng, n, sample_rate)
    return hum / np.sqrt(np.mean(hum**2))


def _running_tap(rng: np.random.Generator, n: int, sample_rate: int) -> np.ndarray:
    """Band-passed hiss (about 0.5-6 kHz) with a fast random amplitude flutter."""
    hiss = _shaped_noise(
        rng, n, lambda f: np.exp(-0.5 * (np.log(f / 1800.0) / 0.9) ** 2), sample_rate
    )
    flutter = _shaped_noise(rng, n, lambda f: (f < 12.0).astype(float), sample_rate)
    tap = hiss * np.clip(1.0 + 0.35 * flutter, 0.2, None)
    return tap / np.sqrt(np.mean(tap**2))


#: ``kind -> generator(rng, n, sample_rate)``.
NOISES: dict[str, NoiseGenerator] = {
    "white_noise": _colored(0.0),
    "pink_noise": _colored(1.0),
    "brown_noise": _colored(2.0),
    "mains_hum": _mains_hum,
    "running_tap": _running_tap,
}


# -- grammar -----------------------------------------------------------------------------------

DETERMINERS = ("the", "a", "my", "our", "this", "that")
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
ADJECTIVES = (
    "red", "blue", "green", "brown", "white", "black", "big", "small", "old", "young", "happy",
    "quiet", "tall", "little",
)  # fmt: skip
NOUNS = (
    "cat", "dog", "bird", "horse", "girl", "boy", "friend", "farmer", "teacher", "doctor", "car",
    "tree", "house", "book", "ball", "boat", "apple", "chair", "lamp", "cup",
)  # fmt: skip
TRANSITIVE_VERBS = (
    "see", "like", "find", "want", "take", "follow", "help", "paint", "hold", "need", "visit",
    "draw",
)  # fmt: skip
INTRANSITIVE_VERBS = ("sleep", "run", "sing", "jump", "wait", "smile", "fall", "swim")
ADVERBS = ("today", "now", "again", "here", "there")


def vocabulary() -> list[str]:
    """Every word the grammar can produce, sorted."""
    words = {*DETERMINERS, "an", "is", "are", *NUMBERS, *ADJECTIVES, *ADVERBS}
    words |= {n + s for n in NOUNS for s in ("", "s")}
    words |= {v + s for v in TRANSITIVE_VERBS + INTRANSITIVE_VERBS for s in ("", "s")}
    return sorted(words)


def _noun_phrase(rng: np.random.Generator) -> tuple[list[str], bool]:
    """``(words, plural)``: ``the (red) cat`` or ``two (red) cats``."""
    adjective = [str(rng.choice(ADJECTIVES))] if rng.random() < 0.5 else []
    noun = str(rng.choice(NOUNS))
    if rng.random() < 0.3:
        return [str(rng.choice(NUMBERS)), *adjective, noun + "s"], True
    determiner = str(rng.choice(DETERMINERS))
    following = (adjective or [noun])[0]
    if determiner == "a" and following[0] in "aeiou":
        determiner = "an"
    return [determiner, *adjective, noun], False


def sentence(rng: np.random.Generator) -> list[str]:
    """One sentence of the grammar (any length; the caller keeps 3-6 words)."""
    subject, plural = _noun_phrase(rng)
    kind = rng.choice(["transitive", "intransitive", "copula"], p=[0.55, 0.3, 0.15])
    if kind == "transitive":
        verb = str(rng.choice(TRANSITIVE_VERBS))
        return [*subject, verb if plural else verb + "s", *_noun_phrase(rng)[0]]
    if kind == "intransitive":
        verb = str(rng.choice(INTRANSITIVE_VERBS))
        adverb = [str(rng.choice(ADVERBS))] if rng.random() < 0.5 else []
        return [*subject, verb if plural else verb + "s", *adverb]
    return [*subject, "are" if plural else "is", str(rng.choice(ADJECTIVES))]


def written(words: list[str]) -> str:
    """``["the", "red", "cat"]`` -> ``"The red cat."`` (the tsv's natural casing)."""
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


# -- clips of sentences ------------------------------------------------------------------------


def trim(samples: np.ndarray, floor_db: float = -45.0, margin: int = 110) -> np.ndarray:
    """Cut leading and trailing silence below ``floor_db`` re the peak, keeping ``margin``
    samples."""
    loud = np.flatnonzero(np.abs(samples) > np.abs(samples).max() * 10 ** (floor_db / 20))
    if loud.size == 0:
        raise RuntimeError("espeak-ng returned silence")
    return samples[max(0, loud[0] - margin) : loud[-1] + 1 + margin]


def stable_id(text: str) -> int:
    """A stable 32-bit number for ``text`` (CRC-32), to seed per-speaker and per-word draws."""
    return zlib.crc32(text.encode("utf-8"))


@dataclass(frozen=True)
class Clip:
    """One planned recording: ``common_voice_en_<number>.mp3`` of ``text`` by ``speaker``."""

    locale: ClassVar[str] = "en"  # of the file name
    number: int
    text: str
    speaker: Speaker

    @property
    def name(self) -> str:
        return f"common_voice_{self.locale}_{self.number}.mp3"


_SYNTH_LOCK = threading.Lock()  # espeak seeds libc's rand(), which every engine shares


def _speak(engine: Espeak, speaker: Speaker, text: str, rng: np.random.Generator) -> np.ndarray:
    """The jittered, trimmed, faded sentence at 22050 Hz: ``(T,)`` float64."""
    rate = int(np.clip(round(speaker.rate * rng.uniform(0.93, 1.07)), 80, 450))
    pitch = int(np.clip(speaker.pitch + rng.integers(-6, 7), 0, 100))
    pitch_range = int(np.clip(speaker.pitch_range + rng.integers(-8, 9), 0, 100))
    seed = int(rng.integers(0, 2**31))
    with _SYNTH_LOCK:
        # volume 60 keeps espeak's own overflow AGC (whose state would carry over) out of play.
        audio = engine.synthesize(text, speaker.voice, rate, pitch, pitch_range, 60, seed)
    audio = trim(audio).astype(np.float64)
    fade = np.minimum(1.0, np.arange(len(audio)) / 64.0)
    return audio * fade * fade[::-1]


def render_clip(engine: Espeak, clip: Clip, seed: int, snr_db: tuple[float, float]) -> np.ndarray:
    """Lead-in, the sentence at a random level, tail, and noise at a random SNR: ``(T,)``."""
    rng = np.random.default_rng([seed, stable_id(clip.speaker.id), clip.number])
    speech = _speak(engine, clip.speaker, clip.text, rng)
    speech *= 10 ** (rng.uniform(-12.0, -3.0) / 20) / np.abs(speech).max()
    lead, tail = (int(rng.uniform(0.15, 0.45) * ESPEAK_RATE) for _ in range(2))
    audio = np.zeros(lead + len(speech) + tail)
    audio[lead : lead + len(speech)] = speech
    speech_rms = np.sqrt(np.mean(speech**2))
    # Drawn at a power-of-two length (fast FFTs), then cut to the clip.
    fast = 1 << (len(audio) - 1).bit_length()
    noise = NOISES[str(rng.choice(list(NOISES)))](rng, fast, ESPEAK_RATE)[: len(audio)]
    audio += noise * speech_rms / 10 ** (rng.uniform(*snr_db) / 20)
    peak = np.abs(audio).max()
    return audio * (0.95 / peak) if peak > 0.95 else audio


def _mp3_bytes(samples: np.ndarray) -> bytes:
    # In memory: soundfile's close() fsyncs a real file, which costs dearly on some disks.
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), ESPEAK_RATE, format="MP3")
    return buffer.getvalue()


def render_speaker(
    clips_dir: Path, clips: list[Clip], seed: int, snr_db: tuple[float, float]
) -> tuple[str, dict[str, int]]:
    """Write one speaker's clips in order with a fresh engine; return (espeak version, frames)."""
    frames = {}
    # A fresh library copy per speaker: espeak's state carries over between calls.
    with Espeak(isolated=True) as engine:
        if engine.sample_rate != ESPEAK_RATE:
            raise RuntimeError(
                f"libespeak-ng speaks at {engine.sample_rate} Hz; the embedded corpora expect "
                f"{ESPEAK_RATE} Hz (the rate of every espeak-ng build to date)"
            )
        for clip in clips:
            audio = render_clip(engine, clip, seed, snr_db)
            (clips_dir / clip.name).write_bytes(_mp3_bytes(audio))
            frames[clip.name] = len(audio)
        return engine.version, frames


def write_clip_durations(path: Path, clips: list[Clip], seconds: dict[str, float]) -> None:
    """Common Voice's ``clip_durations.tsv``: each clip's duration in milliseconds."""
    durations = "".join(f"{c.name}\t{round(1000 * seconds[c.name])}\n" for c in clips)
    path.write_text("clip\tduration[ms]\n" + durations, encoding="utf-8")


# -- markers -----------------------------------------------------------------------------------


def write_marker(root: Path, record: dict, marker_name: str) -> None:
    """Record what generated ``root`` (read back by :func:`ensure_generated`)."""
    (root / marker_name).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def read_marker(root: Path, marker_name: str) -> dict | None:
    """The record in ``root/<marker_name>``, or None (absent or unreadable)."""
    try:
        return json.loads((root / marker_name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _directory_lock(root: Path) -> Iterator[None]:
    """Serialise generators of one ``root`` across processes (no-op where flock is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with (root.parent / f".{root.name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_generated(
    root: str | Path,
    record: dict,
    generate: Callable[[Path], object],
    marker_name: str,
    corpus: str,
) -> Path:
    """Return ``root`` holding a generated corpus whose marker file equals ``record``.

    Under a lock beside ``root``: reuse ``root`` when ``root/<marker_name>`` holds ``record``;
    otherwise call ``generate(directory)`` on a temporary sibling (it must write the marker
    last) and swap it in by renaming, so an interrupted run never leaves a corpus that looks
    complete. A non-empty ``root`` without the marker is refused. ``corpus`` names the corpus in
    messages.
    """
    root = Path(root).absolute()
    root.parent.mkdir(parents=True, exist_ok=True)
    with _directory_lock(root):
        existing = read_marker(root, marker_name)
        if existing == record:
            return root
        if existing is None and root.exists() and any(root.iterdir()):
            raise FileExistsError(
                f"{corpus}: {root} exists but has no {marker_name}, so it was not generated "
                "here (or a direct generate run was cut off); point root at another directory "
                "or delete this one"
            )
        for pattern in (f".{root.name}.partial-*", f".{root.name}.stale-*"):
            for leftover in root.parent.glob(pattern):  # from runs that were killed
                shutil.rmtree(leftover, ignore_errors=True)
        partial = root.parent / f".{root.name}.partial-{uuid.uuid4().hex[:8]}"
        stale = root.parent / f".{root.name}.stale-{uuid.uuid4().hex[:8]}"
        try:
            generate(partial)
            if read_marker(partial, marker_name) != record:
                raise RuntimeError(
                    f"{corpus}: the generator did not write the expected {marker_name} into "
                    f"{partial}; this is a bug in the generator"
                )
            if root.exists():
                root.rename(stale)
            partial.rename(root)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
            shutil.rmtree(stale, ignore_errors=True)
    return root


def check_params(function: str, params: dict, known: Iterable[str]) -> None:
    """Raise :class:`TypeError` naming the keys of ``params`` outside ``known``."""
    known = set(known)
    unknown = sorted(set(params) - known)
    if unknown:
        raise TypeError(
            f"{function}: unknown parameters {unknown}; expected some of {sorted(known)}"
        )
