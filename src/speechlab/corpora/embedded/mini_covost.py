"""The "mini CoVoST" corpus: offline French speech with English translations, by libespeak-ng.

French sentences from a small bilingual phrase grammar ("Le garçon achète une pomme rouge ce
matin." / "The boy buys a red apple this morning."), spoken by French espeak-ng voices and
written in the real CoVoST 2 layout, so :class:`~speechlab.corpora.covost2.CoVoST2Reader`
reads it as is:

    <root>/covost_v2.fr_en.tsv             path, translation, split (train | dev | test)
    <root>/fr/clips/common_voice_fr_<n>.mp3 22050 Hz mono MP3, about 2-3 s
    <root>/fr/validated.tsv                the Common Voice columns, one row per clip
    <root>/fr/clip_durations.tsv           clip, duration[ms]
    <root>/README.md

The grammar is compositional: subject, verb, object (a noun with an optional colour, which
French puts after the noun and English before it), and an optional time or place. Test and dev
sentences are new combinations of phrases that all occur in train; the splits share no sentence
and no speaker. Speakers and audio are made as for mini_voice, by
:mod:`speechlab.corpora.embedded.common` (voice variant, rate, pitch, lead-in, tail, noise).
Byte-identical for a seed (on one machine and library build).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import soundfile as sf

from speechlab.corpora.embedded.common import (
    ESPEAK_RATE,
    FEMALE_VARIANTS,
    MALE_VARIANTS,
    Clip,
    Speaker,
    check_params,
    ensure_generated,
    render_speaker,
    write_clip_durations,
    write_marker,
)
from speechlab.text.espeak import Espeak, Voice

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
MARKER_NAME = ".speechlab_mini_covost.json"
SOURCE_LANG = "fr"
TARGET_LANG = "en"
LANGUAGES = ("fr", "fr-be", "fr-ch")  # espeak-ng's French voices
CV_COLUMNS = (
    "client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent",
    "locale", "segment",
)  # fmt: skip
SPLIT_VALUES = {"train": "train", "validation": "dev", "test": "test"}

# (French, English) phrase pairs. Nouns carry their gender for the colour's agreement.
SUBJECTS = (
    ("le chat", "the cat"), ("le chien", "the dog"), ("la fille", "the girl"),
    ("le garçon", "the boy"), ("mon frère", "my brother"), ("ma sœur", "my sister"),
    ("le professeur", "the teacher"), ("notre voisin", "our neighbour"),
    ("la femme", "the woman"), ("mon père", "my father"),
)  # fmt: skip
VERBS = (
    ("mange", "eats"), ("voit", "sees"), ("achète", "buys"), ("aime", "likes"),
    ("prend", "takes"), ("cherche", "is looking for"), ("porte", "carries"), ("lave", "washes"),
)  # fmt: skip
# (French article, French noun, feminine, English article, English noun)
OBJECTS = (
    ("une", "pomme", True, "an", "apple"), ("le", "pain", False, "the", "bread"),
    ("un", "livre", False, "a", "book"), ("la", "voiture", True, "the", "car"),
    ("un", "gâteau", False, "a", "cake"), ("le", "journal", False, "the", "newspaper"),
    ("une", "chaise", True, "a", "chair"), ("le", "vélo", False, "the", "bike"),
    ("une", "tasse", True, "a", "cup"), ("la", "clé", True, "the", "key"),
)  # fmt: skip
# (masculine, feminine, English); every English colour starts with a consonant ("a red apple").
COLOURS = (
    ("rouge", "rouge", "red"), ("noir", "noire", "black"), ("vert", "verte", "green"),
    ("blanc", "blanche", "white"), ("bleu", "bleue", "blue"),
)  # fmt: skip
ENDINGS = (
    ("ce matin", "this morning"), ("dans le jardin", "in the garden"),
    ("à la maison", "at home"), ("le soir", "in the evening"), ("aujourd'hui", "today"),
    ("dans la cuisine", "in the kitchen"),
)  # fmt: skip


def _capitalised(words: str) -> str:
    return words[0].upper() + words[1:] + "."


def _pair(rng: np.random.Generator) -> tuple[str, str]:
    """One random (French, English) sentence pair, as written in the tsvs."""
    subject_fr, subject_en = SUBJECTS[int(rng.integers(len(SUBJECTS)))]
    verb_fr, verb_en = VERBS[int(rng.integers(len(VERBS)))]
    article_fr, noun_fr, feminine, article_en, noun_en = OBJECTS[int(rng.integers(len(OBJECTS)))]
    object_fr, object_en = f"{article_fr} {noun_fr}", f"{article_en} {noun_en}"
    if rng.random() < 0.5:
        masculine, feminine_form, colour_en = COLOURS[int(rng.integers(len(COLOURS)))]
        object_fr += " " + (feminine_form if feminine else masculine)
        object_en = f"{'a' if article_en == 'an' else article_en} {colour_en} {noun_en}"
    french = [subject_fr, verb_fr, object_fr]
    english = [subject_en, verb_en, object_en]
    if rng.random() < 0.5:
        ending_fr, ending_en = ENDINGS[int(rng.integers(len(ENDINGS)))]
        french.append(ending_fr)
        english.append(ending_en)
    return _capitalised(" ".join(french)), _capitalised(" ".join(english))


@dataclass(frozen=True)
class MiniCovostParams:
    """Everything that decides the generated bytes."""

    seed: int = 0
    train_sentences: int = 450
    dev_sentences: int = 50
    test_sentences: int = 80
    train_speakers: int = 12
    dev_speakers: int = 3
    test_speakers: int = 3
    train_readings: int = 3  # speakers per train sentence
    eval_readings: int = 2  # speakers per dev/test sentence
    snr_db: tuple[float, float] = (20.0, 40.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "snr_db", tuple(float(x) for x in self.snr_db))
        problems = []
        sentences = (self.train_sentences, self.dev_sentences, self.test_sentences)
        if min(sentences) < 1 or sum(sentences) > 3000:
            problems.append(f"train/dev/test_sentences={sentences}: expected >= 1 each, 3000 all")
        speakers = (self.train_speakers, self.dev_speakers, self.test_speakers)
        most = len(FEMALE_VARIANTS) + len(MALE_VARIANTS)
        if min(speakers) < 1 or sum(speakers) > most:
            problems.append(
                f"train/dev/test_speakers={speakers}: expected >= 1 each and {most} in all at most"
            )
        if not 1 <= self.train_readings <= self.train_speakers:
            problems.append(f"train_readings={self.train_readings}: expected 1..train_speakers")
        if not 1 <= self.eval_readings <= min(self.dev_speakers, self.test_speakers):
            problems.append(f"eval_readings={self.eval_readings}: expected 1..dev/test speakers")
        if len(self.snr_db) != 2 or self.snr_db[0] > self.snr_db[1]:
            problems.append(f"snr_db={self.snr_db}: expected (low, high) in dB")
        if problems:
            raise ValueError("mini CoVoST: " + "; ".join(problems))

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "snr_db": list(self.snr_db)}


@dataclass(frozen=True)
class PairClip(Clip):
    """One planned recording of a French sentence, with its English translation."""

    translation: str = ""

    locale: ClassVar[str] = SOURCE_LANG


def plan_pairs(params: MiniCovostParams) -> dict[str, list[tuple[str, str]]]:
    """Distinct (French, English) pairs per split; dev and test reuse no train sentence."""
    rng = np.random.default_rng([params.seed, 0xC0F])
    wanted = {
        "train": params.train_sentences,
        "validation": params.dev_sentences,
        "test": params.test_sentences,
    }
    taken: set[str] = set()
    pairs: dict[str, list[tuple[str, str]]] = {}
    for split, count in wanted.items():
        chosen = []
        for _ in range(100 * count + 1000):
            if len(chosen) == count:
                break
            french, english = _pair(rng)
            if french not in taken:
                taken.add(french)
                chosen.append((french, english))
        if len(chosen) < count:
            raise ValueError(f"mini CoVoST: could not draw {count} distinct {split} sentences")
        pairs[split] = chosen
    return pairs


def plan_speakers(params: MiniCovostParams) -> list[Speaker]:
    """Speakers of every split: distinct voice variants over the French voices."""
    rng = np.random.default_rng([params.seed, 0x5BEB])
    females = [str(v) for v in rng.permutation(FEMALE_VARIANTS)]
    males = [str(v) for v in rng.permutation(MALE_VARIANTS)]
    pairs = min(len(females), len(males))
    variants = (
        [v for pair in zip(females, males, strict=False) for v in pair]
        + females[pairs:]
        + males[pairs:]
    )
    counts = {
        "train": params.train_speakers,
        "validation": params.dev_speakers,
        "test": params.test_speakers,
    }
    speakers = []
    index = 0
    for split, count in counts.items():
        for _ in range(count):
            digest = hashlib.sha512(f"speechlab-mini-covost:{params.seed}:{index}".encode())
            speakers.append(
                Speaker(
                    id=digest.hexdigest(),
                    split=split,
                    voice=Voice(LANGUAGES[index % len(LANGUAGES)], variants[index]),
                    rate=int(rng.integers(150, 191)),
                    pitch=int(rng.integers(30, 71)),
                    pitch_range=int(rng.integers(30, 81)),
                )
            )
            index += 1
    return speakers


def plan_clips(params: MiniCovostParams, speakers: list[Speaker]) -> list[PairClip]:
    """Each sentence read by ``train_readings`` (or ``eval_readings``) speakers of its split."""
    rng = np.random.default_rng([params.seed, 0xC12])
    readings: list[tuple[Speaker, str, str]] = []
    for split, pairs in plan_pairs(params).items():
        pool = [s for s in speakers if s.split == split]
        per_sentence = params.train_readings if split == "train" else params.eval_readings
        load = np.zeros(len(pool))
        chosen: dict[str, list[tuple[str, str]]] = {s.id: [] for s in pool}
        for pair in pairs:
            picks = np.argsort(load + rng.random(len(pool)) * 0.5, kind="stable")
            for i in picks[:per_sentence]:
                load[i] += 1
                chosen[pool[i].id].append(pair)
        readings += [(s, fr, en) for s in pool for fr, en in chosen[s.id]]
    return [
        PairClip(number, french, speaker, english)
        for number, (speaker, french, english) in enumerate(readings, start=1)
    ]


def _cv_row(clip: PairClip) -> str:
    gender = "female" if clip.speaker.voice.variant in FEMALE_VARIANTS else "male"
    fields = (clip.speaker.id, clip.name, clip.text, "2", "0", "", gender, "", SOURCE_LANG, "")
    return "\t".join(fields) + "\n"


def _marker_record(params: MiniCovostParams, espeak_version: str) -> dict:
    return {
        "generator": "speechlab.corpora.embedded.mini_covost",
        "generator_version": GENERATOR_VERSION,
        "espeak_ng_version": espeak_version,
        "libsndfile_version": sf.__libsndfile_version__,
        "params": params.as_dict(),
    }


def _readme(params: MiniCovostParams, clips: list[PairClip], seconds: dict[str, float]) -> str:
    rows = []
    for split, value in SPLIT_VALUES.items():
        chosen = [c for c in clips if c.speaker.split == split]
        rows.append(
            f"| {value} | {len({c.speaker.id for c in chosen})} | {len({c.text for c in chosen})} "
            f"| {len(chosen)} | {sum(seconds[c.name] for c in chosen) / 3600:.3f} |"
        )
    return "\n".join(
        [
            "# mini CoVoST (synthetic, fr -> en)",
            "",
            "Generated by `speechlab.corpora.embedded.mini_covost` "
            f"(generator version {GENERATOR_VERSION}); "
            "not recorded speech. Do not edit: `ensure_mini_covost` regenerates the directory "
            "when its parameters change.",
            "",
            "Layout of CoVoST 2 over one Common Voice locale: `covost_v2.fr_en.tsv` (path, "
            "translation, split) and `fr/` (`clips/`, `validated.tsv`, `clip_durations.tsv`).",
            "",
            "| split | speakers | sentences | clips | hours |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Parameters:",
            "",
            *(f"- {key}: {value}" for key, value in params.as_dict().items()),
            "",
        ]
    )


def generate_mini_covost(
    root: str | Path, seed: int = 0, workers: int | None = None, **options: object
) -> Path:
    """Write the corpus into ``root`` (absent or empty); the marker file is written last.

    ``options`` are the fields of :class:`MiniCovostParams`. Prefer :func:`ensure_mini_covost`.
    """
    params = MiniCovostParams(seed=seed, **options)  # type: ignore[arg-type]
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"mini CoVoST: {root} is not empty; expected a new or empty directory"
        )
    started = time.perf_counter()
    speakers = plan_speakers(params)
    clips = plan_clips(params, speakers)
    log.info("generating mini CoVoST (%d clips) into %s", len(clips), root)
    locale = root / SOURCE_LANG
    (locale / "clips").mkdir(parents=True)
    jobs = [[c for c in clips if c.speaker == s] for s in speakers]
    with ThreadPoolExecutor(max_workers=max(1, workers or min(4, os.cpu_count() or 1))) as pool:
        results = list(
            pool.map(
                lambda job: render_speaker(locale / "clips", job, params.seed, params.snr_db), jobs
            )
        )
    version = results[0][0]
    seconds = {name: n / ESPEAK_RATE for _, frames in results for name, n in frames.items()}

    header = "\t".join(CV_COLUMNS) + "\n"
    (locale / "validated.tsv").write_text(header + "".join(map(_cv_row, clips)), encoding="utf-8")
    write_clip_durations(locale / "clip_durations.tsv", clips, seconds)
    covost = "".join(f"{c.name}\t{c.translation}\t{SPLIT_VALUES[c.speaker.split]}\n" for c in clips)
    (root / f"covost_v2.{SOURCE_LANG}_{TARGET_LANG}.tsv").write_text(
        "path\ttranslation\tsplit\n" + covost, encoding="utf-8"
    )
    (root / "README.md").write_text(_readme(params, clips, seconds), encoding="utf-8")
    write_marker(root, _marker_record(params, version), MARKER_NAME)
    log.info(
        "mini CoVoST: %d clips (%.2f h) in %.1f s",
        len(clips),
        sum(seconds.values()) / 3600,
        time.perf_counter() - started,
    )
    return root


def ensure_mini_covost(
    root: str | Path, seed: int = 0, workers: int | None = None, **params: object
) -> Path:
    """Return ``root`` holding the corpus for these parameters, generating it only if needed
    (under a lock, into a temporary sibling swapped in by renaming: see
    :func:`speechlab.corpora.embedded.common.ensure_generated`)."""
    fields = {f.name for f in dataclasses.fields(MiniCovostParams)} - {"seed"}
    check_params("ensure_mini_covost", params, fields)
    wanted = MiniCovostParams(seed=seed, **params)  # type: ignore[arg-type]
    with Espeak(isolated=True) as engine:
        record = _marker_record(wanted, engine.version)
    options = {k: v for k, v in wanted.as_dict().items() if k != "seed"}
    return ensure_generated(
        root,
        record,
        lambda directory: generate_mini_covost(directory, seed, workers, **options),
        MARKER_NAME,
        "mini CoVoST",
    )
