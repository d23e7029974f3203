"""Dashboards as users look at them: TensorBoard and the MLflow UI served on 127.0.0.1, checked
through their HTTP APIs and in a real browser (headless Chromium).

Trains one short run of each task (kws, ctc, las, tts, st) with ``logger=many`` through
``train.py``, as a user types it plus small limits, and a two-job sweep of the keyword
spotter's learning rate. Then:

- TensorBoard over the logs: its API lists a run per task and every tab (scalars, images, audio,
  text, HParams) has data; a screenshot of each tab.
- TensorBoard over the sweep: the HParams table leads with the overrides, then the settings runs
  are compared by (``speechlab.run.dashboards.COMPARED_COLUMNS``), and each trial is named by its
  run name (API, and ``hparams_sweep.png``).
- The MLflow UI (``mlflow ui``, installed by ``make dashboards``) over ``<logs>/mlflow.db``: its
  REST API lists each task's experiment holding every run under its name, finished, with the
  val/ and test/ metrics of the run's ``metrics.json`` (same values); Chromium's rendering of the
  experiments page, each experiment's runs and each run's page shows those names and metrics,
  and is screenshotted.

Exits 1 with one line per problem when something is missing, 2 when Chromium or the MLflow UI
is not installed (``apt-get install chromium``; ``make dashboards``).

    .venv/bin/python benchmarks/dashboards.py [--out DIR] [--data-dir data] [--chromium PATH]
                                              [--logs LOGS]  # reuse the logs of an earlier run
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHORT = [
    "logger=many",
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "callbacks.progress_bar=null",
]
TASKS = {
    "kws": ["model=kws_cnn", "data=mini_commands"],
    "ctc": ["model=ctc_lstm", "data=mini_voice"],
    "las": ["model=las", "data=mini_voice"],
    "tts": ["model=tacotron2", "data=mini_speaker", "model.num_logged_samples=1"],
    "st": ["model=st_las", "data=mini_covost"],
}
SWEEP = [*TASKS["kws"], "model.optimizer.lr=0.002,0.01"]  # two trials for the HParams table
SWEEP_DIR = "train/multiruns/lr_sweep"  # under the logs
TABS = ("scalars", "images", "audio", "text", "hparams")
# Chromium on a machine without a network: no background connections, no sandbox as root.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--run-all-compositor-stages-before-draw",
    "--virtual-time-budget=60000",  # MLflow's charts fetch their curves one by one
]
WINDOW = "1600,1100"
TALL_WINDOW = "1600,2200"  # a run page down to its metrics, a chart view down to val/ and test/
MLFLOW_API = "/ajax-api/2.0/mlflow"  # what the UI's own pages call
MLFLOW_VIEW = "workflowType=machine_learning"  # the UI's "Model training" view (not GenAI's)


@dataclass(frozen=True)
class LoggedRun:
    """A run in the logs as the dashboards should show it."""

    run_dir: Path
    name: str  # the run name: TensorBoard's run folder, MLflow's and wandb's run name (cut)
    trial: str  # the run name never cut: TensorBoard's HParams trial id
    experiment: str  # MLflow's experiment: <task_name>/<namespace>
    namespace: str  # the task's metric namespace: asr, kws, tts, st
    metrics: dict[str, float]  # metrics.json's val/ and test/ values, plain names


def logged_runs(logs: Path) -> list[LoggedRun]:
    """Every run under ``logs`` that logged to TensorBoard and MLflow (``logger=many``), from
    what Hydra wrote in its dir (``.hydra/``) and the run's ``metrics.json``."""
    import hydra
    from omegaconf import OmegaConf

    from speechlab.run.dashboards import run_name

    runs = []
    for config_path in sorted(logs.rglob(".hydra/config.yaml")):
        run_dir = config_path.parent.parent.resolve()
        config = OmegaConf.load(config_path)
        if "mlflow" not in config.get("logger", {}) or not (run_dir / "metrics.json").is_file():
            continue
        (folder,) = (run_dir / "tensorboard").iterdir()
        hydra_cfg = OmegaConf.load(config_path.with_name("hydra.yaml")).hydra
        choices = OmegaConf.to_container(hydra_cfg.runtime.choices)
        overrides = list(OmegaConf.load(config_path.with_name("overrides.yaml")))
        namespace = hydra.utils.get_class(config.model._target_).metric_namespace
        metrics = json.loads((run_dir / "metrics.json").read_text())
        runs.append(
            LoggedRun(
                run_dir=run_dir,
                name=folder.name,
                trial=run_name(choices, overrides, limit=None),
                experiment=f"{config.task_name}/{namespace}",
                namespace=namespace,
                metrics={k: v for k, v in metrics.items() if k.startswith(("val/", "test/"))},
            )
        )
    return runs


def train(overrides: Sequence[str], logs: Path, data_dir: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            *overrides,
            *SHORT,
            f"paths.data_dir={data_dir}",
            f"paths.log_dir={logs}",
        ],
        check=True,
    )


def local_server(*command: str) -> tuple[str, list[str]]:
    """A server's base URL on 127.0.0.1 at a free port, and ``command`` told to serve there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}", [*command, "--host", "127.0.0.1", "--port", str(port)]


@contextmanager
def served(command: list[str], ready_url: str, log: Path, timeout: float = 300.0) -> Iterator[None]:
    """Run a server (its own process group) until the block ends; wait until ``ready_url``
    answers. Raises RuntimeError, with its log's last lines, if it dies or does not answer."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner
    with log.open("w") as output:
        server = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=10):
                    break
            except OSError as error:
                if server.poll() is not None or time.monotonic() > deadline:
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                    raise RuntimeError(
                        f"{command[0]} did not answer {ready_url}:\n{tail}"
                    ) from error
                time.sleep(1)
        yield
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def screenshot(chromium: str, url: str, path: Path, window: str = WINDOW) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--window-size={window}", f"--user-data-dir={profile}"]
            + [f"--screenshot={path}", url],
            check=True,
            capture_output=True,
            timeout=120,
        )


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def rendered_text(chromium: str, url: str, window: str = WINDOW) -> str:
    """The text of the page as Chromium renders it, scripts run (its DOM, tags stripped)."""
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--window-size={window}", f"--user-data-dir={profile}"]
            + ["--dump-dom", url],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    parser = _Text()
    parser.feed(dom)
    return "\n".join(parser.parts)


def tensorboard_problems(base: str, chromium: str, out: Path) -> list[str]:
    """Every task has a run in TensorBoard's list and every tab has data; a screenshot of each."""
    problems = []
    plugins = get_json(f"{base}/data/plugins_listing")
    runs = get_json(f"{base}/data/runs")
    print(f"TensorBoard lists {len(runs)} runs:", *runs, sep="\n  ")
    for words in TASKS.values():
        model = words[0].split("=")[1]
        if not any(f"/{model}-" in run for run in runs):
            problems.append(f"no TensorBoard run named after {model}")
    for tab in TABS:
        enabled = plugins.get(tab, {}).get("enabled", False)
        print(f"{tab:8s} {'has data' if enabled else 'EMPTY'}")
        if not enabled:
            problems.append(f"TensorBoard's {tab} tab is empty")
        screenshot(chromium, f"{base}/?darkMode=false#{tab}", out / f"{tab}.png")
    return problems


def hparams_problems(base: str, runs: Sequence[LoggedRun], chromium: str, out: Path) -> list[str]:
    """TensorBoard's HParams table over ``runs`` (one sweep): the overridden columns first, then
    the compared ones in their order; one trial per run, named by its run name."""
    from speechlab.run.dashboards import COMPARED_COLUMNS

    problems = []
    api = f"{base}/data/plugin/hparams"
    experiment = post_json(f"{api}/experiment", {"experimentName": "", "includeMetrics": True})
    infos = experiment.get("hparamInfos", [])
    labels = [info.get("displayName") or info["name"] for info in infos]
    overridden = [info.get("displayName") for info in infos if info.get("differs")]
    print("HParams columns:", ", ".join(labels))
    print("HParams metrics:", ", ".join(m["name"]["tag"] for m in experiment["metricInfos"]))
    compared = [label for label, _ in COMPARED_COLUMNS if label not in overridden]
    if labels[: len(overridden)] != overridden or "model.optimizer.lr" not in overridden:
        problems.append(f"the HParams table does not lead with the overrides: {labels}")
    if labels[len(overridden) :] != compared:  # the keyword spotter's config has them all
        problems.append(f"after the overrides, the HParams table should show {compared}: {labels}")
    statuses = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
    request = {"experimentName": "", "allowedStatuses": statuses, "colParams": []}
    request.update(startIndex=0, sliceSize=100)
    groups = post_json(f"{api}/session_groups", request)["sessionGroups"]
    trials = sorted(group["name"] for group in groups)
    print("HParams trials:", *trials, sep="\n  ")
    if trials != sorted(run.trial for run in runs):
        problems.append(f"HParams trials {trials} are not the runs {[r.trial for r in runs]}")
    screenshot(chromium, f"{base}/?darkMode=false#hparams", out / "hparams_sweep.png")
    return problems


Post = Callable[[str, dict], dict]  # (path under /ajax-api/2.0/mlflow, JSON body) -> JSON


def mlflow_rest_problems(post: Post, runs: Sequence[LoggedRun]) -> tuple[list[str], dict]:
    """What MLflow's REST API (the UI's) lists for ``runs``: each run found in its task's
    experiment by the run dir it logged (param ``paths/output_dir``), under its name, finished,
    with every val/ and test/ value of its ``metrics.json`` as ``<namespace>/<name>``.

    Returns the problems and ``{run_dir: (experiment id, run id)}`` of the runs found.
    """
    problems, found = [], {}
    listed = post("/experiments/search", {"max_results": 1000})["experiments"]
    experiments = {e["name"]: e["experiment_id"] for e in listed}
    print("MLflow experiments:", ", ".join(sorted(experiments)))
    for name in sorted({run.experiment for run in runs}):
        if name not in experiments:
            problems.append(f"MLflow lists no experiment {name!r} (it lists {sorted(experiments)})")
            continue
        by_dir = {}
        for mlflow_run in search_runs(post, experiments[name]):
            params = {p["key"]: p["value"] for p in mlflow_run["data"].get("params", [])}
            by_dir[Path(params.get("paths/output_dir", "?")).resolve()] = mlflow_run
        expected = [run for run in runs if run.experiment == name]
        for run in expected:
            mlflow_run = by_dir.get(run.run_dir)
            if mlflow_run is None:
                problems.append(f"MLflow's {name} lists no run logged from {run.run_dir}")
                continue
            info = mlflow_run["info"]
            found[run.run_dir] = (experiments[name], info["run_id"])
            if info.get("run_name") != run.name:
                problems.append(f"MLflow names the run of {run.run_dir} {info.get('run_name')!r}")
            if info.get("status") != "FINISHED":
                problems.append(f"MLflow's run {run.name} is {info.get('status')}, not FINISHED")
            metrics = {m["key"]: m["value"] for m in mlflow_run["data"].get("metrics", [])}
            for key, value in run.metrics.items():
                shown = metrics.get(f"{run.namespace}/{key}")
                if shown is None:
                    problems.append(f"MLflow's run {run.name} lacks {run.namespace}/{key}")
                elif not math.isclose(shown, value, rel_tol=1e-6, abs_tol=1e-9):
                    problems.append(
                        f"MLflow's run {run.name} shows {run.namespace}/{key} = {shown}, "
                        f"its metrics.json {value}"
                    )
        print(
            f"  {name}: {len(by_dir)} runs listed, {len(expected)} expected; metrics checked:",
            ", ".join(sorted({k for run in expected for k in run.metrics})),
        )
    return problems, found


def search_runs(post: Post, experiment_id: str) -> list[dict]:
    runs, token = [], None
    while True:
        body = {"experiment_ids": [experiment_id], "max_results": 1000}
        if token:
            body["page_token"] = token
        page = post("/runs/search", body)
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            return runs


def mlflow_browser_problems(
    base: str, runs: Sequence[LoggedRun], found: dict, chromium: str, out: Path
) -> list[str]:
    """What Chromium renders of the MLflow UI: the experiments page names each experiment, each
    experiment's runs table names its runs, each run's page its name and metrics. Screenshots of
    each page and of each experiment's charts."""
    problems = []
    page = f"{base}/#/experiments?{MLFLOW_VIEW}"
    shown = rendered_text(chromium, page).splitlines()
    for name in sorted({run.experiment for run in runs} - set(shown)):
        problems.append(f"the MLflow UI's experiments page does not show {name!r}")
    screenshot(chromium, page, out / "mlflow_experiments.png")
    for experiment_id in sorted({ids[0] for ids in found.values()}):
        expected = [run for run in runs if found.get(run.run_dir, ("",))[0] == experiment_id]
        stem = f"mlflow_{expected[0].experiment.replace('/', '_')}"
        page = f"{base}/#/experiments/{experiment_id}/runs?{MLFLOW_VIEW}"
        shown = rendered_text(chromium, page).splitlines()
        for run in expected:
            if run.name not in shown:
                problems.append(f"the MLflow UI's runs of {run.experiment} do not show {run.name}")
        screenshot(chromium, page, out / f"{stem}_runs.png")
        screenshot(
            chromium, f"{page}&compareRunsMode=CHART", out / f"{stem}_charts.png", TALL_WINDOW
        )
        for number, run in enumerate(expected):
            run_id = found[run.run_dir][1]
            page = f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{MLFLOW_VIEW}"
            shown = rendered_text(chromium, page, TALL_WINDOW).splitlines()
            wanted = [run.name, *(f"{run.namespace}/{key}" for key in run.metrics)]
            unseen = [text for text in wanted if text not in shown]
            if unseen:
                problems.append(f"the MLflow UI's page of run {run_id} does not show {unseen}")
            screenshot(chromium, page, out / f"{stem}_run{number}.png", TALL_WINDOW)
    return problems


def mlflow_ui_installed() -> bool:
    """Whether the full ``mlflow`` package (the UI's server and pages) is here, as
    ``make dashboards`` installs it; ``mlflow-skinny`` alone has neither."""
    try:
        importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        return False
    return (BIN / "mlflow").exists()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "dashboards")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--logs", type=Path, help="reuse these logs instead of training")
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        print(f"no Chromium at {args.chromium}: apt-get install chromium", file=sys.stderr)
        return 2
    if not mlflow_ui_installed():
        print(
            "the MLflow UI is not installed (mlflow-skinny only): make dashboards", file=sys.stderr
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    logs = (args.logs or Path(tempfile.mkdtemp(prefix="dashboards-")) / "logs").resolve()
    if args.logs is None:
        for overrides in TASKS.values():
            train(overrides, logs, args.data_dir.resolve())
        train(["-m", *SWEEP, f"hydra.sweep.dir={logs / SWEEP_DIR}"], logs, args.data_dir.resolve())
    runs = logged_runs(logs)
    sweep = [run for run in runs if run.run_dir.is_relative_to(logs / SWEEP_DIR)]
    print(f"{len(runs)} runs in {logs} ({len(sweep)} in the sweep)")

    problems = []
    base, tensorboard = local_server(str(BIN / "tensorboard"))
    with served(
        [*tensorboard, "--logdir", str(logs)], f"{base}/data/runs", logs / "tensorboard.log"
    ):
        problems += tensorboard_problems(base, args.chromium, args.out)
    if len(sweep) == 2:
        base, tensorboard = local_server(str(BIN / "tensorboard"))
        command = [*tensorboard, "--logdir", str(logs / SWEEP_DIR)]
        with served(command, f"{base}/data/runs", logs / "tensorboard_sweep.log"):
            problems += hparams_problems(base, sweep, args.chromium, args.out)
    else:
        problems.append(f"expected 2 runs of the sweep in {logs / SWEEP_DIR}, found {len(sweep)}")

    base, mlflow = local_server(str(BIN / "mlflow"), "ui", "--workers", "1")
    mlflow += ["--backend-store-uri", f"sqlite:///{logs}/mlflow.db"]
    mlflow += ["--default-artifact-root", str(logs / "mlflow-artifacts")]  # as our logger's

    def post(path: str, body: dict) -> dict:
        return post_json(f"{base}{MLFLOW_API}{path}", body)

    with served(mlflow, f"{base}/health", logs / "mlflow_ui.log"):
        rest_problems, found = mlflow_rest_problems(post, runs)
        problems += rest_problems
        problems += mlflow_browser_problems(base, runs, found, args.chromium, args.out)

    print(f"screenshots in {args.out}")
    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
