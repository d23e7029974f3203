"""CoVoST2Reader on the real CoVoST 2 rows (../shared) with generated clips; the join's counts."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlab.corpora.covost2 import CoVoST2Reader
from speechlab.data.manifest import load_or_build_manifest
from speechlab.data.reader import CorpusLayoutError, ScanReport
from tests.conftest import shared_data

RATE = 48000
SPLIT_OF = {"train": "train", "dev": "validation", "test": "test"}


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def make_pair(pair: str, root: Path) -> list[dict[str, str]]:
    """Copy the real rows of ``pair`` (e.g. ``fr_en``) to ``root`` in the release layout and
    write a short tone MP3 for every clip they name. Returns the CoVoST rows."""
    source = shared_data("layouts", "covost2_tsv", pair)
    src = pair.split("_")[0]
    locale = root / src
    (locale / "clips").mkdir(parents=True)
    shutil.copy(source / f"covost_v2.{pair}.tsv", root / f"covost_v2.{pair}.tsv")
    shutil.copy(source / src / "validated.tsv", locale / "validated.tsv")
    rows = read_rows(root / f"covost_v2.{pair}.tsv")
    for i, row in enumerate(rows):
        frames = RATE * (5 + i) // 10
        tone = 0.3 * np.sin(2 * np.pi * 440.0 * np.arange(frames) / RATE)
        sf.write(locale / "clips" / row["path"], tone.astype(np.float32), RATE, format="MP3")
    return rows


def scan_all(reader: CoVoST2Reader) -> tuple[dict[str, list], ScanReport]:
    reader.check_layout()
    report = ScanReport()
    return {split: list(reader.scan(split, report)) for split in SPLIT_OF.values()}, report


@pytest.mark.parametrize("pair", ["fr_en", "en_ja", "zh-CN_en"])
def test_reader_joins_the_real_rows_with_validated_tsv(pair: str, tmp_path: Path):
    rows = make_pair(pair, tmp_path)
    src, tgt = pair.split("_")
    validated = {r["path"]: r for r in read_rows(tmp_path / src / "validated.tsv")}
    splits, report = scan_all(CoVoST2Reader(tmp_path, src, tgt))
    assert report.skipped == {}
    for row in rows:
        (utterance,) = [u for u in splits[SPLIT_OF[row["split"]]] if u.id == Path(row["path"]).stem]
        assert utterance.translation == row["translation"]
        assert utterance.language == src
        assert utterance.speaker == validated[row["path"]]["client_id"]
        assert utterance.text  # the normalised source sentence
        assert Path(utterance.audio_path).is_file() and utterance.duration > 0.4
    assert sum(map(len, splits.values())) == len(rows)


def test_reader_counts_rows_without_audio_or_translation(tmp_path: Path):
    rows = make_pair("fr_en", tmp_path)
    clips = tmp_path / "fr" / "clips"
    (clips / rows[0]["path"]).unlink()  # a train row without audio
    tsv = tmp_path / "covost_v2.fr_en.tsv"
    extra = [
        f"{rows[2]['path'].replace('.mp3', '_x.mp3')}\tNo source sentence for this one.\tdev",
        f"{rows[3]['path']}_empty\t \ttest",  # a row with an empty translation
    ]
    shutil.copy(clips / rows[3]["path"], clips / f"{rows[3]['path']}_empty")
    with (tmp_path / "fr" / "validated.tsv").open("a", encoding="utf-8") as f:
        f.write(f"{rows[3]['path']}_empty\tUne phrase.\tsomeone\n")
    tsv.write_text(tsv.read_text(encoding="utf-8") + "\n".join(extra) + "\n", encoding="utf-8")

    reader = CoVoST2Reader(tmp_path, "fr", "en")
    manifest = load_or_build_manifest(reader, tmp_path / "manifests")
    kept = {u.id for split in manifest.splits.values() for u in split}
    assert kept == {Path(r["path"]).stem for r in rows[1:]}
    reasons = sorted(manifest.skipped.values())
    assert len(reasons) == 3
    assert any("does not exist" in reason for reason in reasons)
    assert any("empty translation" in reason for reason in reasons)
    assert any("not in" in reason and "validated.tsv" in reason for reason in reasons)


def test_reader_takes_sentence_and_speaker_from_a_five_column_tsv(tmp_path: Path):
    rows = make_pair("fr_en", tmp_path)
    (tmp_path / "fr" / "validated.tsv").unlink()  # not needed: the tsv carries the join
    lines = ["path\tsentence\ttranslation\tclient_id\tsplit"]
    lines += [
        f"{r['path']}\tBonjour {i}.\t{r['translation']}\tspk{i}\t{r['split']}"
        for i, r in enumerate(rows)
    ]
    (tmp_path / "covost_v2.fr_en.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    splits, report = scan_all(CoVoST2Reader(tmp_path, "fr", "en"))
    assert report.skipped == {}
    first = next(u for u in splits["train"] if u.id == Path(rows[0]["path"]).stem)
    assert (first.text, first.speaker) == ("bonjour 0", "spk0")


def test_missing_pair_or_locale_is_a_layout_error(tmp_path: Path):
    make_pair("fr_en", tmp_path)
    with pytest.raises(CorpusLayoutError, match="covost_v2.fr_de.tsv"):
        CoVoST2Reader(tmp_path, "fr", "de").check_layout()
    with pytest.raises(CorpusLayoutError, match="clips/"):
        CoVoST2Reader(tmp_path, "fr", "en", cv_root=tmp_path / "elsewhere").check_layout()
