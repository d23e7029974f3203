"""The "mini Common Voice" corpus: offline read-sentence speech spoken by libespeak-ng.

Short English sentences (3-6 words) from a small grammar of about 80 words ("The red cat sees
two dogs."), written in the real Common Voice layout, so :class:`CommonVoiceReader` reads it as
is:

    <root>/clips/common_voice_en_<n>.mp3     22050 Hz mono MP3, about 1-3 s
    <root>/train.tsv, dev.tsv, test.tsv      the official columns, one row per clip
    <root>/validated.tsv                     the rows of all three
    <root>/invalidated.tsv, other.tsv        header only
    <root>/clip_durations.tsv                clip, duration[ms]
    <root>/README.md

As in Common Voice, the three splits share no sentence and no speaker; every word of a dev or
test sentence also occurs in train. A speaker is an espeak-ng language voice plus a variant of the
human-sounding lists of :mod:`speechlab.corpora.embedded.mini_commands`, with its own rate (normal speaking rates) and
pitch; every clip jitters those, adds 0.15-0.45 s of lead-in and tail, and mixes in generated
noise at a random SNR. Byte-identical for a seed (on one machine and library build).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from speechlab.corpora.embedded.mini_commands import (
    FEMALE_VARIANTS,
    LANGUAGES,
    MALE_VARIANTS,
    NOISES,
    Speaker,
    _stable_id,
    _trim,
    check_params,
    ensure_generated,
    write_marker,
)
from speechlab.text.espeak import Espeak, Voice

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
MARKER_NAME = ".speechlab_mini_voice.json"
SAMPLE_RATE = 22050  # espeak-ng's own rate: no resampling
LOCALE = "en"
COLUMNS = (
    "client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent",
    "locale", "segment",
)  # fmt: skip
SPLIT_FILES = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}

# The grammar: every noun takes a plural in -s and every verb a third person in -s.
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
AGES = ("teens", "twenties", "thirties", "fourties", "fifties", "sixties")  # Common Voice's values
ACCENTS = {"en-us": "us", "en-us-nyc": "us", "en-gb-scotland": "scotland", "en-029": ""}


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


def _sentence(rng: np.random.Generator) -> list[str]:
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


@dataclass(frozen=True)
class MiniVoiceParams:
    """Everything that decides the generated bytes."""

    seed: int = 0
    num_sentences: int = 400
    dev_sentences: int = 40
    test_sentences: int = 40
    train_speakers: int = 16
    dev_speakers: int = 4
    test_speakers: int = 4
    speakers_per_sentence: int = 4
    snr_db: tuple[float, float] = (15.0, 40.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "snr_db", tuple(float(x) for x in self.snr_db))
        problems = []
        train_sentences = self.num_sentences - self.dev_sentences - self.test_sentences
        if min(self.dev_sentences, self.test_sentences, train_sentences) < 1:
            problems.append(
                f"num_sentences={self.num_sentences}, dev_sentences={self.dev_sentences}, "
                f"test_sentences={self.test_sentences}: expected >= 1 sentence in every split"
            )
        if self.num_sentences > 5000:
            problems.append(f"num_sentences={self.num_sentences}: expected at most 5000")
        speakers = (self.train_speakers, self.dev_speakers, self.test_speakers)
        most = len(FEMALE_VARIANTS) + len(MALE_VARIANTS)
        if min(speakers) < 1 or sum(speakers) > most:
            problems.append(
                f"train/dev/test_speakers={speakers}: expected >= 1 each and {most} in all at most"
            )
        if not 1 <= self.speakers_per_sentence <= min(speakers):
            problems.append(
                f"speakers_per_sentence={self.speakers_per_sentence}: expected 1..{min(speakers)} "
                "(the smallest split's speakers)"
            )
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            problems.append(f"snr_db={self.snr_db}: expected (low, high) in dB")
        if problems:
            raise ValueError("mini Common Voice: " + "; ".join(problems))

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "snr_db": list(self.snr_db)}


@dataclass(frozen=True)
class Clip:
    """One planned recording: ``common_voice_en_<number>.mp3`` of ``text`` by ``speaker``."""

    number: int
    text: str
    speaker: Speaker

    @property
    def name(self) -> str:
        return f"common_voice_{LOCALE}_{self.number}.mp3"


def plan_sentences(params: MiniVoiceParams) -> dict[str, list[str]]:
    """Distinct sentences per split (``train``, ``validation``, ``test``), as written in the tsv.

    Train is drawn first; dev and test only use words that train uses.
    """
    rng = np.random.default_rng([params.seed, 0x5E7])
    train_count = params.num_sentences - params.dev_sentences - params.test_sentences
    wanted = {
        "train": train_count,
        "validation": params.dev_sentences,
        "test": params.test_sentences,
    }
    taken: set[str] = set()
    known: set[str] = set()
    sentences: dict[str, list[str]] = {}
    for split, count in wanted.items():
        chosen: list[str] = []
        for _ in range(200 * count + 10_000):
            if len(chosen) == count:
                break
            words = _sentence(rng)
            text = " ".join(words)
            if not 3 <= len(words) <= 6 or text in taken:
                continue
            if split != "train" and not known.issuperset(words):
                continue
            taken.add(text)
            chosen.append(written(words))
            if split == "train":
                known.update(words)
        if len(chosen) < count:
            raise ValueError(
                f"mini Common Voice: could not draw {count} distinct {split} sentences whose words "
                f"all occur in the {train_count} train sentences; use more train sentences"
            )
        sentences[split] = chosen
    return sentences


def plan_speakers(params: MiniVoiceParams) -> list[Speaker]:
    """Speakers of every split: distinct variants; dev/test languages also occur in train."""
    rng = np.random.default_rng([params.seed, 0x5BEA])
    females = [str(v) for v in rng.permutation(FEMALE_VARIANTS)]
    males = [str(v) for v in rng.permutation(MALE_VARIANTS)]
    languages = [str(v) for v in rng.permutation(LANGUAGES)]
    counts = {
        "train": params.train_speakers,
        "validation": params.dev_speakers,
        "test": params.test_speakers,
    }
    pairs = min(len(females), len(males))
    variants = (
        [v for pair in zip(females, males, strict=False) for v in pair]
        + females[pairs:]
        + males[pairs:]
    )
    train_languages = languages[: min(len(languages), params.train_speakers)]
    speakers = []
    index = 0
    for split, count in counts.items():
        for k in range(count):
            variant = variants[index]
            if split == "train":
                language = languages[k % len(languages)]
            else:
                language = train_languages[int(rng.integers(len(train_languages)))]
            digest = hashlib.sha512(f"speechlab-mini-voice:{params.seed}:{index}".encode())
            speakers.append(
                Speaker(
                    id=digest.hexdigest(),
                    split=split,
                    voice=Voice(language, variant),
                    rate=int(rng.integers(135, 181)),
                    pitch=int(rng.integers(30, 71)),
                    pitch_range=int(rng.integers(30, 81)),
                )
            )
            index += 1
    return speakers


def plan_clips(params: MiniVoiceParams, speakers: list[Speaker]) -> list[Clip]:
    """Each sentence read by ``speakers_per_sentence`` speakers of its split, balancing load.

    Numbered from 1 in split order (train, validation, test), then speaker, then sentence.
    """
    rng = np.random.default_rng([params.seed, 0xC11])
    readings: list[tuple[Speaker, str]] = []
    for split, sentences in plan_sentences(params).items():
        pool = [s for s in speakers if s.split == split]
        load = np.zeros(len(pool))
        chosen: dict[str, list[str]] = {s.id: [] for s in pool}
        for text in sentences:
            picks = np.argsort(load + rng.random(len(pool)) * 0.5, kind="stable")
            for i in picks[: params.speakers_per_sentence]:
                load[i] += 1
                chosen[pool[i].id].append(text)
        readings += [(s, text) for s in pool for text in chosen[s.id]]
    return [Clip(number, text, s) for number, (s, text) in enumerate(readings, start=1)]


# -- audio -------------------------------------------------------------------------------------

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
    audio = _trim(audio).astype(np.float64)
    fade = np.minimum(1.0, np.arange(len(audio)) / 64.0)
    return audio * fade * fade[::-1]


def render_clip(engine: Espeak, clip: Clip, seed: int, snr_db: tuple[float, float]) -> np.ndarray:
    """Lead-in, the sentence at a random level, tail, and noise at a random SNR: ``(T,)``."""
    rng = np.random.default_rng([seed, _stable_id(clip.speaker.id), clip.number])
    speech = _speak(engine, clip.speaker, clip.text, rng)
    speech *= 10 ** (rng.uniform(-12.0, -3.0) / 20) / np.abs(speech).max()
    lead, tail = (int(rng.uniform(0.15, 0.45) * SAMPLE_RATE) for _ in range(2))
    audio = np.zeros(lead + len(speech) + tail)
    audio[lead : lead + len(speech)] = speech
    speech_rms = np.sqrt(np.mean(speech**2))
    # Drawn at a power-of-two length (fast FFTs), then cut to the clip.
    fast = 1 << (len(audio) - 1).bit_length()
    noise = NOISES[str(rng.choice(list(NOISES)))](rng, fast, SAMPLE_RATE)[: len(audio)]
    audio += noise * speech_rms / 10 ** (rng.uniform(*snr_db) / 20)
    peak = np.abs(audio).max()
    return audio * (0.95 / peak) if peak > 0.95 else audio


def _mp3_bytes(samples: np.ndarray) -> bytes:
    # In memory: soundfile's close() fsyncs a real file, which costs dearly on some disks.
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), SAMPLE_RATE, format="MP3")
    return buffer.getvalue()


def _render_speaker(
    clips_dir: Path, clips: list[Clip], params: MiniVoiceParams
) -> tuple[str, dict[str, int]]:
    """Write one speaker's clips in order with a fresh engine; return (espeak version, frames)."""
    frames = {}
    # A fresh library copy per speaker: espeak's state carries over between calls.
    with Espeak(isolated=True) as engine:
        if engine.sample_rate != SAMPLE_RATE:
            raise RuntimeError(
                f"libespeak-ng speaks at {engine.sample_rate} Hz; mini Common Voice expects "
                f"{SAMPLE_RATE} Hz (the rate of every espeak-ng build to date)"
            )
        for clip in clips:
            audio = render_clip(engine, clip, params.seed, params.snr_db)
            (clips_dir / clip.name).write_bytes(_mp3_bytes(audio))
            frames[clip.name] = len(audio)
        return engine.version, frames


# -- files -------------------------------------------------------------------------------------


def _row(clip: Clip) -> str:
    speaker = clip.speaker
    gender = "female" if speaker.voice.variant in FEMALE_VARIANTS else "male"
    age = AGES[_stable_id(speaker.id) % len(AGES)]
    accent = ACCENTS.get(speaker.voice.language, "england")
    fields = (speaker.id, clip.name, clip.text, "2", "0", age, gender, accent, LOCALE, "")
    return "\t".join(fields) + "\n"


def _write_tsv(path: Path, clips: list[Clip]) -> None:
    header = "\t".join(COLUMNS) + "\n"
    path.write_text(header + "".join(_row(clip) for clip in clips), encoding="utf-8")


def write_clip_durations(path: Path, clips: list[Clip], seconds: dict[str, float]) -> None:
    """Common Voice's ``clip_durations.tsv``: each clip's duration in milliseconds."""
    durations = "".join(f"{c.name}\t{round(1000 * seconds[c.name])}\n" for c in clips)
    path.write_text("clip\tduration[ms]\n" + durations, encoding="utf-8")


def _marker_record(params: MiniVoiceParams, espeak_version: str) -> dict:
    return {
        "generator": "speechlab.corpora.embedded.mini_voice",
        "generator_version": GENERATOR_VERSION,
        "espeak_ng_version": espeak_version,
        "libsndfile_version": sf.__libsndfile_version__,
        "params": params.as_dict(),
    }


def _readme(
    params: MiniVoiceParams, clips: list[Clip], seconds: dict[str, float], espeak_version: str
) -> str:
    speakers = list(dict.fromkeys(clip.speaker for clip in clips))
    stats = []
    for split, file_name in SPLIT_FILES.items():
        durations = [seconds[c.name] for c in clips if c.speaker.split == split]
        stats.append(
            f"| {file_name} | {sum(s.split == split for s in speakers)} | "
            f"{len({c.text for c in clips if c.speaker.split == split})} | {len(durations)} | "
            f"{sum(durations) / 3600:.3f} | {np.mean(durations):.2f} |"
        )
    lines = [
        "# mini Common Voice (synthetic)",
        "",
        f"Generated by `speechlab.corpora.embedded.mini_voice` (generator version {GENERATOR_VERSION}) with "
        f"libespeak-ng {espeak_version} and libsndfile {sf.__libsndfile_version__}; not recorded "
        "speech. Do not edit: `ensure_mini_voice` regenerates the directory when its parameters "
        "change.",
        "",
        "Layout of one Common Voice locale: `clips/common_voice_en_<n>.mp3` (22050 Hz mono), "
        "`train.tsv`, `dev.tsv`, `test.tsv`, `validated.tsv` (all three), empty "
        "`invalidated.tsv` and `other.tsv`, `clip_durations.tsv`. The splits share no sentence "
        f"and no speaker. Vocabulary: {len(vocabulary())} words.",
        "",
        "| file | speakers | sentences | clips | hours | mean duration (s) |",
        "|---|---|---|---|---|---|",
        *stats,
        "",
        "Parameters:",
        "",
        *(f"- {key}: {value}" for key, value in params.as_dict().items()),
        "",
        "| client_id | split | espeak voice | rate (wpm) | pitch | pitch range |",
        "|---|---|---|---|---|---|",
        *(
            f"| {s.id[:16]}... | {s.split} | {s.voice.name} | {s.rate} | {s.pitch} | "
            f"{s.pitch_range} |"
            for s in speakers
        ),
        "",
    ]
    return "\n".join(lines)


def generate_mini_voice(
    root: str | Path,
    seed: int = 0,
    *,
    num_sentences: int = 400,
    dev_sentences: int = 40,
    test_sentences: int = 40,
    train_speakers: int = 16,
    dev_speakers: int = 4,
    test_speakers: int = 4,
    speakers_per_sentence: int = 4,
    snr_db: tuple[float, float] = (15.0, 40.0),
    workers: int | None = None,
) -> Path:
    """Write the corpus into ``root`` (absent or empty); the marker file is written last.

    ``workers`` threads render speakers in parallel (default: the CPU count, at most 4); the
    bytes do not depend on it. Prefer :func:`ensure_mini_voice`, which reuses a finished corpus
    and never leaves a partial one at ``root``.
    """
    params = MiniVoiceParams(
        seed,
        num_sentences,
        dev_sentences,
        test_sentences,
        train_speakers,
        dev_speakers,
        test_speakers,
        speakers_per_sentence,
        tuple(snr_db),
    )
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"mini Common Voice: {root} is not empty; expected a new or empty directory"
        )
    started = time.perf_counter()
    speakers = plan_speakers(params)
    clips = plan_clips(params, speakers)
    log.info("generating mini Common Voice (%d clips) into %s", len(clips), root)
    (root / "clips").mkdir(parents=True)
    workers = workers or min(4, os.cpu_count() or 1)
    jobs = [[c for c in clips if c.speaker == s] for s in speakers]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(pool.map(lambda job: _render_speaker(root / "clips", job, params), jobs))
    version = results[0][0]
    frames = {name: n for _, per_speaker in results for name, n in per_speaker.items()}
    seconds = {name: n / SAMPLE_RATE for name, n in frames.items()}

    for split, file_name in SPLIT_FILES.items():
        _write_tsv(root / file_name, [c for c in clips if c.speaker.split == split])
    _write_tsv(root / "validated.tsv", clips)
    _write_tsv(root / "invalidated.tsv", [])
    _write_tsv(root / "other.tsv", [])
    write_clip_durations(root / "clip_durations.tsv", clips, seconds)
    (root / "README.md").write_text(_readme(params, clips, seconds, version), encoding="utf-8")
    write_marker(root, _marker_record(params, version), MARKER_NAME)
    log.info(
        "mini Common Voice: %d clips (%.2f h) in %.1f s",
        len(clips),
        sum(seconds.values()) / 3600,
        time.perf_counter() - started,
    )
    return root


def ensure_mini_voice(
    root: str | Path, seed: int = 0, workers: int | None = None, **params: object
) -> Path:
    """Return ``root`` holding the corpus for these parameters, generating it only if needed.

    Reuses ``root`` when its marker records the same parameters, generator, espeak-ng and
    libsndfile versions; otherwise generates into a temporary sibling and swaps it in by
    renaming (see :func:`speechlab.corpora.embedded.mini_commands.ensure_generated`). ``params`` are the keyword
    arguments of :func:`generate_mini_voice`.
    """
    fields = {f.name for f in dataclasses.fields(MiniVoiceParams)} - {"seed"}
    check_params("ensure_mini_voice", params, fields)
    wanted = MiniVoiceParams(seed=seed, **params)  # type: ignore[arg-type]
    with Espeak(isolated=True) as engine:  # leaves the process-wide engine untouched
        record = _marker_record(wanted, engine.version)
    return ensure_generated(
        root,
        record,
        lambda directory: generate_mini_voice(directory, workers=workers, **wanted.as_dict()),
        MARKER_NAME,
        "mini Common Voice",
    )
