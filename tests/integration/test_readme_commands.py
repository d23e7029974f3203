"""The README as executable documentation: every command line of its ```bash blocks runs as typed.

Each ``python train.py``, ``python evaluate.py``, ``python -m ...`` and ``speechlab`` line is run
in a fresh working directory (``train.py``, ``evaluate.py`` and ``conf/`` of this checkout, a
``data/`` shared by the whole suite so the embedded corpora are generated once), with no
``hydra.*`` override the README does not show. The test only

- fills placeholders (``<run>``, ``<best>.ckpt``, ``<client_id>``, ``/data/...`` roots, ``a.wav``)
  from runs of other README lines or from ``../shared``,
- appends the smallest limits: one epoch of one batch per split, a small embedded corpus where the
  line would otherwise generate a large one, one Optuna trial.

A line the test cannot run here (a GPU, a SLURM cluster, the suite itself) is a skipped case that
names its reason; a line it does not know how to fill fails, so the README cannot gain a command
that nobody ran. Commands run two at a time (2 CPU cores), producers first.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import hydra
import pytest
import soundfile as sf
import torch
import yaml

from tests.conftest import REPO, SHARED_DATA, SMALL_CORPORA
from tests.integration.test_st import tiny_covost  # noqa: F401  (fixture: a CoVoST 2 root)

README = REPO / "README.md"
ENTRY_POINTS = ("train.py", "evaluate.py", "conf")

# One epoch of one batch per split: every stage of the recipe runs and writes its files.
TRAIN_LIMITS = [
    "trainer.max_epochs=1",
    "++trainer.limit_train_batches=1",
    "++trainer.limit_val_batches=1",
    "++trainer.limit_test_batches=1",
]
EVALUATE_LIMITS = ["++trainer.limit_test_batches=1"]
OPTUNA_TRIALS = "hydra.sweeper.n_trials=1"
# Embedded corpora that a full-size line would generate for minutes; the same sizes as the
# other tests use, so each is generated once per session.
CORPUS_LIMITS = {
    "speechlab.corpora.embedded.mini_speaker.ensure_mini_speaker": SMALL_CORPORA["mini_speaker"],
    "speechlab.corpora.embedded.mini_covost.ensure_mini_covost": SMALL_CORPORA["mini_covost"],
}


def readme_commands(text: str) -> list[str]:
    """Every command line of the ```bash blocks of ``text``, continuations joined, in order."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = shlex.join(shlex.split(line, comments=True))
            if line:
                commands.append(line)
    return commands


# --- what cannot run here, with the reason --------------------------------------------------


def skip_reason(command: str) -> str | None:
    """Why ``command`` cannot run on this machine, or None."""
    if command == "make test":
        return "`make test` is this suite itself"
    if command == "make train":
        return (
            "the full default job (7 epochs, about 5 minutes): the same config runs below as "
            "`python train.py`, and its wall time is a benchmark, not a test"
        )
    if "submitit_slurm" in command and shutil.which("sbatch") is None:
        return "needs a SLURM cluster (no sbatch on this machine)"
    words = command.split()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if "trainer=gpu" in words and gpus < 1:
        return "needs a CUDA GPU"
    if "trainer=ddp" in words:
        devices = next((int(w.split("=")[1]) for w in words if w.startswith("trainer.devices=")), 1)
        if gpus < devices:
            return f"needs {devices} CUDA GPUs"
    return None


# --- what each line needs and what it makes -------------------------------------------------

# Runs that other lines name by a placeholder, and the README line that makes each.
PRODUCERS = {
    "python train.py": "ctc",
    "python train.py model=tacotron2 data=mini_speaker": "tts",
    "python train.py model=ctc_lstm data=mini_covost": "asr",
    "python train.py model=st_las data=mini_covost": "st",
    "python train.py -m model.optimizer.lr=1e-3,3e-3": "sweep",
    "python train.py callbacks.model_checkpoint.save_top_k=5": "top_k",
    "speechlab shard data=mini_voice -o shards/mini_voice --shard-seconds 600": "shards",
    **{
        f"speechlab convert data=mini_voice --to {format} -o exp/{format}": f"{format}_files"
        for format in ("manifest", "kaldi", "lhotse", "hf")
    },
}
# Producers that need more than one epoch to make what their users read.
PRODUCER_EPOCHS = {"top_k": 2}
RUN_PLACEHOLDERS = {"<ctc_run>": "ctc", "<asr_run>": "asr", "<st_run>": "st"}


def run_producer(tool: str) -> str:
    """Which run a bare ``<run>`` names for ``tool``."""
    return {"speechlab synthesize": "tts", "speechlab average": "top_k"}.get(tool, "ctc")


@dataclass
class Plan:
    """How one README line runs: its words, what it waits for, what it makes."""

    command: str
    needs: set[str] = field(default_factory=set)
    provides: str | None = None

    @property
    def words(self) -> list[str]:
        return shlex.split(self.command)

    @property
    def tool(self) -> str:
        words = self.words
        if words[0] == "speechlab":
            return f"speechlab {words[1]}"
        if words[:2] == ["python", "-m"]:
            return f"python -m {words[2]}"
        return " ".join(words[:2])


def plan(command: str) -> Plan:
    """The plan of a runnable line; fails for a placeholder or root the test cannot fill."""
    p = Plan(command, provides=PRODUCERS.get(command))
    tool = p.tool
    for placeholder, producer in RUN_PLACEHOLDERS.items():
        if placeholder in command:
            p.needs.add(producer)
    if "<run>" in command:
        p.needs.add(run_producer(tool))
    if "<best>.ckpt" in command and not p.needs:
        p.needs.add("ctc")
    if "<timestamp>" in command:
        p.needs.add("sweep")
    if re.search(r"\s[a-z]+\.(wav|mp3|flac)\b", command):
        p.needs.add("ctc")  # example audio comes from the embedded corpus that run generates
    if tool != "speechlab build-lm" and "lm.arpa" in command:
        p.needs.add("lm")
    if tool == "speechlab build-lm":
        p.provides = "lm"
    if tool in ("speechlab shard", "speechlab convert"):
        p.needs.add("ctc")  # shards or converts the embedded corpus that run generates
    converted = re.search(r"data\.reader\.root=exp/(\w+)", command)
    if converted:
        p.needs.add(f"{converted.group(1)}_files")  # the files `speechlab convert` wrote
    if "data.shards=shards/" in command:
        p.needs.add("shards")
    if "/data/LJSpeech-1.1" in command:
        p.needs.add("tts")  # read from the embedded mini_speaker, which is in the LJ Speech layout
    unknown = set(re.findall(r"<[^<>]+>", command)) - {
        "<run>",
        "<best>",
        "<timestamp>",
        "<client_id>",
        *RUN_PLACEHOLDERS,
    }
    assert not unknown, f"README line {command!r}: teach this test to fill {sorted(unknown)}"
    assert tool in TOOLS, f"README line {command!r}: teach this test what {tool!r} must produce"
    return p


# --- running --------------------------------------------------------------------------------


@dataclass
class Result:
    cwd: Path
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    before: set[Path]
    seconds: float

    def new(self, pattern: str) -> list[Path]:
        """Paths matching ``pattern`` under the working directory that the command made."""
        return sorted(p for p in self.cwd.glob(pattern) if p not in self.before)

    def describe(self) -> str:
        return (
            f"{shlex.join(self.argv)} (in {self.cwd}) exited {self.returncode}\n"
            f"--- stdout ---\n{self.stdout[-3000:]}\n--- stderr ---\n{self.stderr[-6000:]}"
        )


class Workspace:
    """Fresh working directories, the fixtures that fill placeholders, and the runs made."""

    def __init__(self, root: Path, data_dir: Path, covost: Path | None) -> None:
        self.root = root
        self.data_dir = data_dir
        self.covost = covost
        self.results: dict[str, Result] = {}
        self.produced: dict[str, Result] = {}
        self._count = 0
        self._lock = threading.Lock()
        self.cv_en = self.cv_speaker = None
        if (SHARED_DATA / "common_voice_clips").is_dir():
            self.cv_en = self._common_voice_root("cv-corpus")
            self.cv_speaker = self._common_voice_root("cv-speaker", self.most_frequent_speaker())
        self.speech_commands = self._speech_commands_root()

    # fixtures ----------------------------------------------------------------------------

    def _common_voice_root(self, name: str, speaker: str | None = None) -> Path:
        """The 100 real Common Voice en clips with train/dev/test tsvs split from validated.tsv;
        with ``speaker``, every clip is that client's (the real ones have 5 clips at most, too
        few for a held-out split of ``data.speaker``'s 5 %)."""
        source = SHARED_DATA / "common_voice_clips" / "en"
        root = self.root / "fixtures" / name / "en"
        root.mkdir(parents=True)
        (root / "clips").symlink_to(source / "clips")
        header, *rows = (source / "validated.tsv").read_text(encoding="utf-8").splitlines()
        if speaker:
            rows = ["\t".join([speaker, *row.split("\t")[1:]]) for row in rows]
        (root / "validated.tsv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        for name, part in (("train", rows[:80]), ("dev", rows[80:90]), ("test", rows[90:])):
            (root / f"{name}.tsv").write_text("\n".join([header, *part]) + "\n", encoding="utf-8")
        return root

    def _speech_commands_root(self) -> Path | None:
        """``data/speech_commands_v0.02`` as the README's line expects it after a download: the
        real 8-word subset and the real background noise of ``../shared``."""
        subset = SHARED_DATA / "speech_commands_subset"
        noise = SHARED_DATA / "layouts" / "speech_commands_v0.02" / "_background_noise_"
        if not (subset.is_dir() and noise.is_dir()):
            return None
        root = self.data_dir / "speech_commands_v0.02"
        if not root.exists():
            root.mkdir()
            for entry in subset.iterdir():
                (root / entry.name).symlink_to(entry)
            (root / "_background_noise_").symlink_to(noise)
        return root

    def most_frequent_speaker(self) -> str:
        assert self.cv_en is not None
        with (self.cv_en / "validated.tsv").open(encoding="utf-8", newline="") as f:
            speakers = [r["client_id"] for r in csv.DictReader(f, delimiter="\t")]
        return max(set(speakers), key=speakers.count)

    def roots(self) -> dict[str, Path | None]:
        """The README's example corpus roots, and what stands in for each here."""
        fsdd = SHARED_DATA / "fsdd"
        speechocean = SHARED_DATA / "speechocean762"
        return {
            "/data/cv-corpus-6.1/en": self.cv_en,
            "/data/cv/en": self.cv_speaker,
            "/data/free-spoken-digit-dataset": fsdd if fsdd.is_dir() else None,
            "/data/covost2": self.covost,
            "/data/cv-corpus-4/fr": self.covost / "fr" if self.covost else None,
            "/data/LJSpeech-1.1": self.data_dir / "mini_speaker",
            "/data/speechocean762": speechocean if speechocean.is_dir() else None,
        }

    # one command -------------------------------------------------------------------------

    def fresh_dir(self) -> Path:
        with self._lock:
            self._count += 1
            cwd = self.root / f"cmd{self._count:02d}"
        cwd.mkdir()
        for name in ENTRY_POINTS:
            (cwd / name).symlink_to(REPO / name)
        (cwd / "data").symlink_to(self.data_dir)
        return cwd

    def bring_run(self, producer: str, cwd: Path) -> Path:
        """A copy of the run dir that ``producer`` made, at the same relative path in ``cwd``."""
        made = self.produced[producer]
        runs = made.new("logs/*/runs/*") or made.new("logs/*/multiruns/*")
        assert len(runs) == 1, f"{producer!r} run: expected one run dir, got {runs}"
        relative = runs[0].relative_to(made.cwd)
        shutil.copytree(runs[0], cwd / relative, symlinks=True)
        return relative

    def fill(self, p: Plan, cwd: Path) -> list[str]:
        """The line's words with placeholders, roots and input files filled in ``cwd``."""
        words = p.words

        def replace(old: str, new: str) -> None:
            words[:] = [w.replace(old, new) for w in words]

        runs = {**RUN_PLACEHOLDERS, "<run>": run_producer(p.tool)}
        for placeholder, producer in runs.items():
            if placeholder in p.command:
                run = str(self.bring_run(producer, cwd))
                if f"logs/train/runs/{placeholder}" in p.command:
                    assert run.startswith("logs/train/runs/"), f"{producer} ran elsewhere: {run}"
                replace(f"logs/train/runs/{placeholder}", run)
                replace(placeholder, run)
        if "<timestamp>" in p.command:
            replace("logs/train/multiruns/<timestamp>", str(self.bring_run("sweep", cwd)))
        if "<best>" in p.command:
            if "/<best>.ckpt" not in p.command:  # a bare <best>.ckpt: the recognizer's best
                replace("<best>.ckpt", f"{self.bring_run('ctc', cwd)}/checkpoints/<best>.ckpt")
            for match in {m for w in words for m in re.findall(r"([^=]+)/<best>\.ckpt", w)}:
                best = sorted((cwd / match).glob("epoch_*.ckpt"))
                assert best, f"no best checkpoint in {cwd / match}"
                replace(f"{match}/<best>.ckpt", f"{match}/{best[0].name}")
        if "<client_id>" in p.command:
            replace("<client_id>", self.most_frequent_speaker())
        for example, stand_in in self.roots().items():
            if example in p.command:
                if stand_in is None:
                    pytest.skip(f"{example} stands for real data that ../shared lacks here")
                replace(example, str(stand_in))
        unfilled = [w for w in words if "=/data/" in w]
        assert not unfilled, f"README line {p.command!r}: teach this test a root for {unfilled}"
        converted = re.search(r"data\.reader\.root=(exp/(\w+))", p.command)
        if converted:
            made = self.produced[f"{converted.group(2)}_files"].cwd / converted.group(1)
            shutil.copytree(made, cwd / converted.group(1), symlinks=True)
        if "data.shards=shards/" in p.command:
            shutil.copytree(self.produced["shards"].cwd / "shards", cwd / "shards")
        if "lm.arpa" in p.command and p.tool != "speechlab build-lm":
            for name in ("lm.arpa", "lexicon.txt"):
                shutil.copy(self.produced["lm"].cwd / name, cwd / name)
        words = [w.strip("[]") for w in words]  # [--option value]: shown as optional
        return [expanded for w in words for expanded in self.expand(w, cwd)]

    def expand(self, word: str, cwd: Path) -> list[str]:
        """A shell glob as the shell would expand it; an example audio file made in ``cwd``."""
        if "*" in word:
            matches = sorted(str(p.relative_to(cwd)) for p in cwd.glob(word))
            assert matches, f"{word} matches nothing in {cwd}"
            return matches
        if re.fullmatch(r"[a-z]+\.(wav|mp3|flac)", word):
            self.example_audio(cwd / word)
        return [word]

    def example_audio(self, path: Path) -> None:
        """A short real utterance from the embedded corpora, in the format its suffix names."""
        clips = sorted((self.data_dir / "mini_voice" / "clips").glob("*.mp3"))
        assert clips, "the embedded mini_voice corpus must exist (made by `python train.py`)"
        if path.suffix == ".mp3":
            shutil.copy(clips[0], path)
            return
        audio, rate = sf.read(clips[1], dtype="float32")
        sf.write(path, audio, rate)

    def limits(self, p: Plan, words: list[str]) -> list[str]:
        """The smallest limits for a line (see the module docstring)."""
        if p.tool == "python evaluate.py":
            return EVALUATE_LIMITS
        if p.tool != "python train.py" or {"--help", "--cfg"} & set(words):
            return []
        extra = list(TRAIN_LIMITS)
        if p.provides in PRODUCER_EPOCHS:
            extra[0] = f"trainer.max_epochs={PRODUCER_EPOCHS[p.provides]}"
        if "ckpt_path=last" in words:
            # the run it resumes finished its one epoch: one more is left to train, as a killed
            # run has (with the same limits the resume says there is nothing left to train)
            extra[0] = "trainer.max_epochs=2"
        overrides = [w for w in words[2:] if w != "-m"]
        target = composed_prepare(overrides)
        extra += [
            o
            for o in CORPUS_LIMITS.get(target, [])
            if o.split("=")[0] + "=" not in " ".join(overrides)
        ]
        if "_optuna" in " ".join(overrides):
            extra = [w for w in extra if not w.startswith("hydra.sweeper.n_trials")]
            words[:] = [w for w in words if not w.startswith("hydra.sweeper.n_trials=")]
            extra.append(OPTUNA_TRIALS)
        return extra

    def prepare(self, p: Plan) -> tuple[Path, list[str]]:
        """A fresh working directory and the argv to run there (in the main thread: filling
        composes configs, and Hydra's global state is not for threads)."""
        cwd = self.fresh_dir()
        words = self.fill(p, cwd)
        return cwd, [*words, *self.limits(p, words)]

    @staticmethod
    def run(cwd: Path, argv: list[str]) -> Result:
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "OMP_NUM_THREADS": "1",  # two commands share the 2 cores
            "MPLBACKEND": "Agg",
        }
        before = set(cwd.rglob("*"))
        start = time.perf_counter()
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
        seconds = time.perf_counter() - start
        return Result(cwd, argv, done.returncode, done.stdout, done.stderr, before, seconds)


def composed_prepare(overrides: list[str]) -> str:
    """The ``data.prepare`` target the overrides compose to ("" for a corpus on disk)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    sweeps = [o for o in overrides if "," in o and not o.startswith(("hydra.", "+"))]
    fixed = [o for o in overrides if o not in sweeps and not o.startswith("hydra.")]
    fixed += [o.split(",")[0] for o in sweeps]  # the first value of a grid composes the same corpus
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=fixed)
    GlobalHydra.instance().clear()
    prepare = cfg.data.get("prepare")
    return str(prepare["_target_"]) if prepare else ""


# --- what each tool must leave behind -------------------------------------------------------


def expect_train(result: Result, p: Plan) -> None:
    words = set(result.argv)
    if "--help" in words:  # every group, with its options
        for group in ("data:", "model:", "trainer:", "logger:", "experiment:", "debug:"):
            assert group in result.stdout, result.stdout
        assert all(o in result.stdout for o in ("mini_voice", "ctc_lstm", "kws_cnn"))
        return
    if "--cfg" in words:  # the default recipe, composed
        composed = yaml.safe_load(result.stdout)
        assert composed["model"]["_target_"] == "speechlab.tasks.ctc.CTCTask", composed["model"]
        assert composed["model"]["encoder"]["_target_"] == "speechlab.nn.encoders.LSTMEncoder"
        return
    if "-m" in words:  # one dir per job, each trained and tested, and the sweep's summary
        (sweep,) = result.new("logs/*/multiruns/*")
        rows = list(csv.DictReader((sweep / "summary.csv").open(encoding="utf-8")))
        assert rows and all(r["status"] == "finished" for r in rows), rows
        grids = [w.split("=", 1)[1].split(",") for w in p.words if "," in w and "=" in w]
        if grids and "hparams_search" not in p.command:
            assert len(rows) == len(list(product(*grids))), (len(rows), grids)
        for row in rows:
            job = sweep / row["job"]
            assert any(
                k.startswith("test/") for k in yaml.safe_load((job / "metrics.json").read_text())
            )
            assert (job / "checkpoints" / "last.ckpt").is_file(), job
        return
    if "ckpt_path=last" in words or any(w.startswith("ckpt_path=last") for w in words):
        metrics = [m for m in result.cwd.glob("logs/*/runs/*/metrics.json")]
        assert metrics and "resuming from" in result.stdout + result.stderr
        return
    runs = result.new("logs/*/runs/*")
    assert len(runs) == 1, f"one run dir expected under {result.cwd / 'logs'}, got {runs}"
    metrics = yaml.safe_load((runs[0] / "metrics.json").read_text())
    assert any(k.startswith("test/") for k in metrics), metrics
    if "debug=fast_dev_run" not in words:  # one batch through everything, no checkpoint
        assert list((runs[0] / "checkpoints").glob("*.ckpt")), "no checkpoint written"


def expect_evaluate(result: Result, p: Plan) -> None:
    (run,) = result.new("logs/evaluate/runs/*")
    metrics = yaml.safe_load((run / "metrics.json").read_text())
    assert any(k.startswith("test/") for k in metrics), metrics
    assert (run / "predictions.tsv").read_text().count("\n") >= 2


def expect_lines_per_file(result: Result, p: Plan) -> None:
    audio = [w for w in result.argv if re.search(r"\.(wav|mp3|flac)$", w)]
    lines = [line for line in result.stdout.splitlines() if "\t" in line]
    assert [line.split("\t")[0] for line in lines] == audio, result.stdout


def expect_lm(result: Result, p: Plan) -> None:
    assert (result.cwd / "lm.arpa").read_text().startswith("\\data\\")
    assert (result.cwd / "lexicon.txt").read_text().strip()


def expect_wav(result: Result, p: Plan) -> None:
    out = result.argv[result.argv.index("-o") + 1]
    info = sf.info(str(result.cwd / out))
    assert info.frames > 0.2 * info.samplerate, info


def expect_average(result: Result, p: Plan) -> None:
    out = result.argv[result.argv.index("-o") + 1]
    checkpoint = torch.load(result.cwd / out, map_location="cpu", weights_only=True)
    assert checkpoint["state_dict"], "the averaged checkpoint holds no weights"


def expect_shards(result: Result, p: Plan) -> None:
    out = result.cwd / result.argv[result.argv.index("-o") + 1]
    for split in ("train", "validation", "test"):
        index = json.loads((out / split / "index.json").read_text())
        assert index["shards"], index
        assert sorted(out.glob(f"{split}/shard-*.tar")), f"no shards in {out / split}"


def expect_converted(result: Result, p: Plan) -> None:
    """Each split written, with utterances, in files of the format asked for."""
    out = result.cwd / result.argv[result.argv.index("-o") + 1]
    counts = dict(re.findall(r"\t(\w+): (\d+) utterances", result.stdout))
    assert sorted(counts) == ["test", "train", "validation"], result.stdout
    assert all(int(n) > 0 for n in counts.values()), counts
    format = result.argv[result.argv.index("--to") + 1]
    expected = {
        "manifest": ["train.jsonl"],
        "kaldi": ["train/wav.scp", "train/text", "train/utt2spk"],
        "lhotse": ["cuts_train.jsonl.gz"],
        "hf": ["dataset_dict.json"],
    }[format]
    assert all((out / name).is_file() for name in expected), sorted(out.rglob("*"))


def expect_summary(result: Result, p: Plan) -> None:
    sweep = result.cwd / result.argv[-1]
    assert (sweep / "summary.md").read_text().startswith("# Sweep")
    assert "finished" in result.stdout


TOOLS = {
    "python train.py": expect_train,
    "python evaluate.py": expect_evaluate,
    "speechlab transcribe": expect_lines_per_file,
    "speechlab translate": expect_lines_per_file,
    "speechlab build-lm": expect_lm,
    "speechlab synthesize": expect_wav,
    "speechlab average": expect_average,
    "speechlab shard": expect_shards,
    "speechlab convert": expect_converted,
    "python -m speechlab.run.sweep_summary": expect_summary,
}


# --- the cases ------------------------------------------------------------------------------

COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def case(command: str):
    reason = skip_reason(command)
    marks = [pytest.mark.skip(reason=reason)] if reason else []
    return pytest.param(command, marks=marks, id=command[:90])


def test_the_readme_shows_commands_and_every_one_is_a_case():
    assert len(COMMANDS) >= 30, COMMANDS
    for target in CORPUS_LIMITS:  # a moved generator must not silently lose its limits
        assert callable(hydra.utils.get_method(target)), target
    for command in COMMANDS:
        if skip_reason(command) is None:
            plan(command)  # fails for a line the test cannot fill or check


@pytest.fixture(scope="module")
def workspace(data_dir: Path, tmp_path_factory: pytest.TempPathFactory, request) -> Workspace:
    """Runs every runnable README line once, two at a time, producers before their users."""
    covost = request.getfixturevalue("tiny_covost") if SHARED_DATA.is_dir() else None
    space = Workspace(tmp_path_factory.mktemp("readme"), data_dir, covost)
    plans = {c: plan(c) for c in dict.fromkeys(COMMANDS) if skip_reason(c) is None}
    selected = {  # with -k: the chosen lines and the runs they need, not the whole README
        item.callspec.params["command"]
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_readme_command_runs_as_written"
    }
    makers = {p.provides: c for c, p in plans.items() if p.provides}
    while True:
        needed = {makers[n] for c in selected if c in plans for n in plans[c].needs if n in makers}
        if needed <= selected:
            break
        selected |= needed
    plans = {c: p for c, p in plans.items() if c in selected}
    pending = dict(plans)
    running: dict[Future, str] = {}
    failed: set[str] = set()
    with ThreadPoolExecutor(max_workers=2) as pool:
        while pending or running:
            available = set(space.produced)
            for command, p in list(pending.items()):
                if p.needs & failed:
                    space.results[command] = None  # type: ignore[assignment]
                    del pending[command]
                elif p.needs <= available and len(running) < 2:
                    del pending[command]
                    try:
                        cwd, argv = space.prepare(p)
                    except (AssertionError, pytest.skip.Exception) as error:
                        space.results[command] = error  # type: ignore[assignment]
                        if p.provides:
                            failed.add(p.provides)
                        continue
                    running[pool.submit(space.run, cwd, argv)] = command
            if not running:
                if not pending:
                    break
                missing = {c: sorted(p.needs - available) for c, p in pending.items()}
                raise AssertionError(f"README lines wait for runs no line makes: {missing}")
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                command = running.pop(future)
                p = plans[command]
                result = future.result()
                space.results[command] = result
                if p.provides:
                    if result.returncode == 0:
                        space.produced[p.provides] = result
                    else:
                        failed.add(p.provides)
    times = sorted((r.seconds, c) for c, r in space.results.items() if isinstance(r, Result))
    (space.root / "times.txt").write_text("".join(f"{t:7.1f} s  {c}\n" for t, c in times[::-1]))
    return space


@pytest.mark.parametrize("command", [case(c) for c in dict.fromkeys(COMMANDS)])
def test_readme_command_runs_as_written(command: str, workspace: Workspace):
    result = workspace.results[command]
    if result is None:
        pytest.fail(f"{command!r} waits for a run that failed: see that line's case")
    if isinstance(result, BaseException):
        raise result
    assert result.returncode == 0, result.describe()
    p = plan(command)
    TOOLS[p.tool](result, p)
