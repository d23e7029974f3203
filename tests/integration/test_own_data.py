"""A user's own corpus trains every task: an embedded corpus written by `speechlab convert` in
one of the field's formats, then `python train.py model=<task's model> data=<format>
data.reader.root=<that folder> debug=fast_dev_run`, as typed. Keyword spotting learns the
manifest's labels (segments of background noise included), speech translation the Lhotse
cuts' translations with their transcripts, synthesis the Hugging Face dataset's texts; the
README test runs the recognizer on each format (tests/integration/test_readme_commands.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlab.cli import main as speechlab
from speechlab.run.train import run as train
from tests.conftest import SMALL_CORPORA, composed

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = [  # (model, embedded corpus, format, the metric its test reports)
    ("kws_cnn", "mini_commands", "manifest", "test/acc"),
    ("st_las", "mini_covost", "lhotse", "test/bleu"),
    ("tacotron2", "mini_speaker", "hf", "test/mel_loss"),
]


@pytest.mark.parametrize(("model", "corpus", "format", "metric"), CASES, ids=[c[2] for c in CASES])
def test_a_converted_corpus_trains_the_task_as_typed(
    model: str, corpus: str, format: str, metric: str, data_dir: Path, tmp_path: Path, capsys
):
    out = tmp_path / format
    convert = [f"data={corpus}", *SMALL_CORPORA.get(corpus, []), f"paths.data_dir={data_dir}"]
    assert speechlab(["convert", *convert, "--to", format, "-o", str(out)]) == 0
    written = capsys.readouterr().out
    assert written.count(" utterances, ") == 3, written

    overrides = [
        f"model={model}",
        f"data={format}",
        f"data.reader.root={out}",
        f"paths.data_dir={data_dir}",
        "debug=fast_dev_run",
    ]
    with composed("train", overrides, tmp_path / "run") as cfg:
        metrics = train(cfg)
    assert metric in metrics, sorted(metrics)
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith("test/")), metrics


def test_convert_says_what_is_wrong_without_a_traceback(tmp_path: Path):
    afile = tmp_path / "taken"
    afile.write_text("")
    with pytest.raises(SystemExit, match="-o .*taken is a file; the kaldi files go into a folder"):
        speechlab(["convert", "data=mini_voice", "--to", "kaldi", "-o", str(afile)])
    nowhere = tmp_path / "nowhere"
    with pytest.raises(SystemExit, match=f"speechlab convert: the manifest folder {nowhere} does"):
        speechlab(
            ["convert", "data=manifest", f"data.reader.root={nowhere}", "--to", "hf", "-o", "x"]
        )
    with pytest.raises(SystemExit, match="speechlab convert: .*data.reader.root"):
        speechlab(["convert", "data=manifest", "--to", "hf", "-o", str(tmp_path / "x")])


def _own_corpus(root: Path, audio: Path) -> list[str]:
    """A manifest corpus of one half-second utterance per split, its audio in ``audio``; the
    `speechlab convert` arguments that read it."""
    audio.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        sf.write(audio / f"{split}.wav", np.zeros(8000, dtype=np.float32), 16000)
        entry = {"audio_filepath": str(audio / f"{split}.wav"), "duration": 0.5, "text": "hi"}
        (root / f"{split}.jsonl").write_text(json.dumps(entry) + "\n")
    return ["convert", "data=manifest", f"data.reader.root={root}"]


def test_convert_writes_only_into_a_new_or_emptied_folder_outside_the_corpus(tmp_path: Path):
    corpus = tmp_path / "corpus"
    args = [*_own_corpus(corpus, tmp_path / "audio"), f"paths.data_dir={tmp_path / 'data'}"]
    out = tmp_path / "out"
    assert speechlab([*args, "--to", "kaldi", "-o", str(out)]) == 0
    with pytest.raises(SystemExit, match=r"out is not empty \(holds test, train, validation\): "):
        speechlab([*args, "--to", "manifest", "-o", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["test", "train", "validation"]  # untouched

    assert speechlab([*args, "--to", "manifest", "-o", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "test.jsonl",
        "train.jsonl",
        "validation.jsonl",
    ]

    # The corpus being read, a folder inside it or one holding it: refused, --overwrite or not.
    before = {p.name: p.read_bytes() for p in corpus.iterdir()}
    for target, how in ((corpus, "is the folder of"), (corpus / "x", "lies inside")):
        for extra in ([], ["--overwrite"]):
            with pytest.raises(SystemExit, match=f"{how} the corpus being read .*outside it"):
                speechlab([*args, "--to", "manifest", "-o", str(target), *extra])
    with pytest.raises(SystemExit, match="holds the corpus being read"):
        speechlab([*args, "--to", "kaldi", "-o", str(tmp_path), "--overwrite"])
    assert {p.name: p.read_bytes() for p in corpus.iterdir()} == before
    assert not (corpus / "x").exists()
    # A folder holding the corpus's audio is never emptied.
    with pytest.raises(SystemExit, match=r"audio holds audio of the corpus being read \(.*train"):
        speechlab([*args, "--to", "manifest", "-o", str(tmp_path / "audio"), "--overwrite"])
    assert sorted(p.name for p in (tmp_path / "audio").iterdir()) == [
        "dev.wav",
        "test.wav",
        "train.wav",
    ]


def test_convert_needs_the_corpus_named(tmp_path: Path):
    out = tmp_path / "out"
    with pytest.raises(
        SystemExit, match=r"data=<corpus>, one of .*manifest, .*mini_voice"
    ) as error:
        speechlab(["convert", "--to", "manifest", "-o", str(out)])
    assert "common_voice" in str(error.value) and not out.exists()
