"""Shared test fixtures: paths, the shared real-data folder, a tiny embedded corpus, configs."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import speechlab.run.resolvers  # noqa: F401  (config resolvers)
from speechlab.run.threads import usable_cores

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_DATA = REPO.parent / "shared" / "data"

# Keep the suite inside its cores without oversubscription: `make test` runs it in
# pytest-xdist workers (one per core), so each worker's torch and the runs it starts share
# the cores with the other workers.
if "OMP_NUM_THREADS" not in os.environ:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["OMP_NUM_THREADS"] = str(max(1, usable_cores() // workers))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# The embedded corpora at the sizes the tests use (a few seconds to generate), by data config:
# every test that runs one of them small passes the same overrides, so it is generated once.
SMALL_CORPORA = {
    "mini_speaker": ["data.prepare.num_sentences=40"],
    "mini_covost": [
        "data.prepare.train_sentences=16",
        "data.prepare.dev_sentences=4",
        "data.prepare.test_sentences=4",
        "data.prepare.train_speakers=2",
        "data.prepare.dev_speakers=1",
        "data.prepare.test_speakers=1",
        "data.prepare.train_readings=1",
        "data.prepare.eval_readings=1",
    ],
}


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the real-audio fixtures live in ../shared beside the clone")
    return path


@contextmanager
def composed(config_name: str, overrides: list[str], output_dir: Path) -> Iterator[DictConfig]:
    """Compose ``conf/<config_name>.yaml`` as Hydra would for a run writing to ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.root_dir = str(output_dir)
            cfg.paths.output_dir = str(output_dir)
        yield cfg
    GlobalHydra.instance().clear()


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread inside: tiny tensors gain nothing from more on a busy 2-core machine."""
    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # what a run's threads=auto then keeps
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if omp is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp


@pytest.fixture
def one_thread() -> Iterator[None]:
    """:func:`one_torch_thread` around a test (``pytestmark = usefixtures("one_thread")``)."""
    with one_torch_thread():
        yield


def write_tsv(path: Path, rows: Sequence[dict[str, str]], header: Sequence[str]) -> None:
    """Write ``rows`` under ``header`` as a Common Voice style tsv (tabs, no quoting)."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(
            f, list(header), delimiter="\t", quoting=csv.QUOTE_NONE, lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir shared by the whole session, so the embedded corpus is generated once."""
    return tmp_path_factory.mktemp("data")


# A few seconds of the embedded mini Common Voice: the corpus the format round trips export.
TINY_VOICE = {
    "num_sentences": 14,
    "dev_sentences": 3,
    "test_sentences": 3,
    "train_speakers": 3,
    "dev_speakers": 2,
    "test_speakers": 2,
    "speakers_per_sentence": 2,
}  # 16 + 6 + 6 = 28 clips


@pytest.fixture(scope="session")
def tiny_voice(data_dir: Path):
    """The manifest of a tiny mini_voice as the Common Voice reader reads it (every split)."""
    from speechlab.corpora.common_voice import CommonVoiceReader
    from speechlab.corpora.embedded.mini_voice import ensure_mini_voice
    from speechlab.data.manifest import build_manifest

    root = ensure_mini_voice(data_dir / "tiny_voice", **TINY_VOICE)
    return build_manifest(CommonVoiceReader(root, clip_sample_rate=22050))


def assert_same_corpus(expected, actual) -> None:
    """Two manifests hold the same utterances in every split: ids, durations (to the
    millisecond), offsets, texts, translations, labels and speakers (order aside)."""
    from speechlab.data.reader import SPLITS

    for split in SPLITS:
        want = {u.id: u for u in expected.splits[split]}
        got = {u.id: u for u in actual.splits[split]}
        assert sorted(got) == sorted(want), split
        for uid, utterance in want.items():
            other = got[uid]
            assert round(other.duration, 3) == round(utterance.duration, 3), (split, uid)
            assert round(other.offset, 3) == round(utterance.offset, 3), (split, uid)
            for name in ("text", "translation", "label", "speaker"):
                assert getattr(other, name) == getattr(utterance, name), (split, uid, name)
