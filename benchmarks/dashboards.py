"""Dashboards as users look at them: TensorBoard served on 127.0.0.1, a screenshot of each tab.

Trains one short run of each task (kws, ctc, las, tts, st) with ``logger=many`` through
``train.py``, as a user types it plus small limits; serves TensorBoard over the logs dir; asks
its HTTP API which runs it lists and which plugins have data (scalars, images, audio, text,
HParams); takes a headless-Chromium screenshot of each tab; and checks that MLflow holds one
experiment per task. Exits 1 when a tab that should show something shows nothing, or a run is
missing. Chromium: Debian's ``chromium`` package (``apt-get install chromium``).

    .venv/bin/python benchmarks/dashboards.py [--out DIR] [--data-dir data] [--chromium PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
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
    "--window-size=1600,1100",
    "--virtual-time-budget=20000",
]


def train(task: str, logs: Path, data_dir: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            str(REPO / "train.py"),
            *TASKS[task],
            *SHORT,
            f"paths.data_dir={data_dir}",
            f"paths.log_dir={logs}",
        ],
        check=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 60.0) -> object:
    """GET ``url`` as JSON, retrying while the server starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def screenshot(chromium: str, url: str, path: Path) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={path}", url],
            check=True,
            capture_output=True,
            timeout=120,
        )


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
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="dashboards-")) / "logs"
    if args.logs is None:
        for task in TASKS:
            train(task, logs, args.data_dir.resolve())

    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("tensorboard")), "--logdir", str(logs)]
        + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    problems = []
    try:
        base = f"http://127.0.0.1:{port}"
        plugins = get_json(f"{base}/data/plugins_listing")
        runs = get_json(f"{base}/data/runs")
        print(f"TensorBoard lists {len(runs)} runs:", *runs, sep="\n  ")
        models = [words[0].split("=")[1] for words in TASKS.values()]
        for model in models:
            if not any(f"/{model}-" in run for run in runs):
                problems.append(f"no TensorBoard run named after {model}")
        for tab in TABS:
            enabled = plugins.get(tab, {}).get("enabled", False)
            print(f"{tab:8s} {'has data' if enabled else 'EMPTY'}")
            if not enabled:
                problems.append(f"TensorBoard's {tab} tab is empty")
            screenshot(args.chromium, f"{base}/?darkMode=false#{tab}", args.out / f"{tab}.png")
    finally:
        server.terminate()
        server.wait()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{logs}/mlflow.db")
    experiments = sorted(e.name for e in client.search_experiments())
    print("MLflow experiments:", ", ".join(experiments))
    for namespace in ("asr", "kws", "tts", "st"):
        if f"train/{namespace}" not in experiments:
            problems.append(f"no MLflow experiment train/{namespace}")
    print(f"screenshots in {args.out}")
    for problem in problems:
        print("PROBLEM:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
