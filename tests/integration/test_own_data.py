"""A user's own corpus trains every task: an embedded corpus written by `speechlab convert` in
one of the field's formats, then `python train.py model=<task's model> data=<format>
data.reader.root=<that folder> debug=fast_dev_run`, as typed. Keyword spotting learns the
manifest's labels (segments of background noise included), speech translation the Lhotse
cuts' translations with their transcripts, synthesis the Hugging Face dataset's texts; the
README test runs the recognizer on each format (tests/integration/test_readme_commands.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

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
