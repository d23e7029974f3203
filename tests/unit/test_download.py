"""download() and extract_tar() against a local HTTP server with Range support."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlab.corpora.download import (
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    download,
    extract_tar,
    part_path,
)
from speechlab.corpora.speech_commands import SILENCE_LABEL, SpeechCommandsReader
from speechlab.data.reader import SPLITS, ScanReport

RATE = 16_000


def write_wav(path: Path, seconds: float, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.random.default_rng(seed).normal(0, 0.1, int(seconds * RATE)).astype(np.float32)
    sf.write(path, samples, RATE, subtype="PCM_16")


def make_tree(root: Path) -> None:
    """A tiny Speech Commands v0.02 tree: two words, list files, one noise file."""
    for w, word in enumerate(("yes", "cat")):
        for i in range(5):
            write_wav(root / word / f"{i:08x}_nohash_0.wav", 0.1, seed=10 * w + i)
    (root / "validation_list.txt").write_text("yes/00000003_nohash_0.wav\n")
    (root / "testing_list.txt").write_text("yes/00000004_nohash_0.wav\ncat/00000004_nohash_0.wav\n")
    write_wav(root / "_background_noise_" / "white.wav", 3.0, seed=99)


def tar_gz(members: dict[str, bytes] | Path) -> bytes:
    """A tar.gz of a folder (members named ``./...`` like the real archive) or of raw entries."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        if isinstance(members, Path):
            tar.add(members, arcname=".")
        else:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Handler(BaseHTTPRequestHandler):
    server: Server

    def do_GET(self) -> None:
        self.server.requests.append({"path": self.path, "range": self.headers.get("Range")})
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        requested = self.headers.get("Range")
        if requested and not self.server.ignore_range:
            start = int(requested.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[dict] = []
        self.ignore_range = False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server()
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def archive(tmp_path: Path, server: Server) -> tuple[str, bytes, str]:
    """Serve a tar.gz of a fixture tree; return (url, bytes, sha256)."""
    make_tree(tmp_path / "source")
    data = tar_gz(tmp_path / "source")
    server.files["/speech_commands_v0.02.tar.gz"] = data
    return server.url("/speech_commands_v0.02.tar.gz"), data, hashlib.sha256(data).hexdigest()


def test_download_verify_extract(tmp_path: Path, archive: tuple[str, bytes, str]) -> None:
    url, data, digest = archive
    target = download(url, tmp_path / "dl" / "sc.tar.gz", digest, progress=False)
    assert target.read_bytes() == data
    assert not part_path(target).exists()
    root = extract_tar(target, tmp_path / "extracted")
    assert (root / "yes" / "00000000_nohash_0.wav").is_file()
    assert (root / "testing_list.txt").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_resume_sends_range_and_appends(
    tmp_path: Path, archive: tuple[str, bytes, str], server: Server
) -> None:
    url, data, digest = archive
    destination = tmp_path / "sc.tar.gz"
    part_path(destination).write_bytes(data[:1000])
    download(url, destination, digest, progress=False)
    assert server.requests[-1]["range"] == "bytes=1000-"
    assert destination.read_bytes() == data


def test_server_ignoring_range_restarts_cleanly(
    tmp_path: Path, archive: tuple[str, bytes, str], server: Server
) -> None:
    url, data, digest = archive
    server.ignore_range = True
    destination = tmp_path / "sc.tar.gz"
    part_path(destination).write_bytes(b"stale bytes from another file")
    download(url, destination, digest, progress=False)
    assert server.requests[-1]["range"] is not None
    assert destination.read_bytes() == data


def test_complete_part_is_finished_without_refetch(
    tmp_path: Path, archive: tuple[str, bytes, str]
) -> None:
    url, data, digest = archive
    destination = tmp_path / "sc.tar.gz"
    part_path(destination).write_bytes(data)  # server answers 416 to bytes=<len>-
    assert download(url, destination, digest, progress=False).read_bytes() == data


def test_existing_destination_is_reused(
    tmp_path: Path, archive: tuple[str, bytes, str], server: Server
) -> None:
    url, data, digest = archive
    destination = tmp_path / "sc.tar.gz"
    destination.write_bytes(data)
    download(url, destination, digest, progress=False)
    assert server.requests == []


def test_checksum_mismatch_raises_and_deletes(
    tmp_path: Path, archive: tuple[str, bytes, str]
) -> None:
    url, _, digest = archive
    destination = tmp_path / "sc.tar.gz"
    with pytest.raises(ChecksumError) as error:
        download(url, destination, "0" * 64, progress=False)
    assert "0" * 64 in str(error.value) and digest in str(error.value)
    assert not destination.exists() and not part_path(destination).exists()


def test_network_errors_name_url_and_manual_path(tmp_path: Path, server: Server) -> None:
    destination = tmp_path / "sc.tar.gz"
    with pytest.raises(DownloadError, match="404") as not_found:
        download(server.url("/missing.tar.gz"), destination, None, progress=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    refused_url = f"http://127.0.0.1:{closed_port}/x.tar.gz"
    with pytest.raises(DownloadError) as refused:
        download(refused_url, destination, None, progress=False, timeout=5)
    assert refused_url in str(refused.value)
    for error in (not_found, refused):
        assert str(destination) in str(error.value) and "yourself" in str(error.value)


def test_plain_progress_when_not_a_tty(
    tmp_path: Path, archive: tuple[str, bytes, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, _, digest = archive
    download(url, tmp_path / "sc.tar.gz", digest, progress=True)
    err = capsys.readouterr().err
    assert "downloading" in err and "done" in err


@pytest.mark.parametrize(
    "member",
    ["../evil.txt", "/tmp/speechlab-evil.txt", "ok/../../evil.txt", "symlink", "hardlink"],
)
def test_path_traversal_is_refused(tmp_path: Path, member: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        good = tarfile.TarInfo("yes/a.txt")
        good.size = 2
        tar.addfile(good, io.BytesIO(b"ok"))
        if member in ("symlink", "hardlink"):
            info = tarfile.TarInfo("yes/link")
            info.type = tarfile.SYMTYPE if member == "symlink" else tarfile.LNKTYPE
            info.linkname = "../../evil.txt" if member == "symlink" else "../evil.txt"
            tar.addfile(info)
        else:
            info = tarfile.TarInfo(member)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(buffer.getvalue())
    root = tmp_path / "out" / "root"
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        extract_tar(archive, root)
    assert not root.exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out" / "evil.txt").exists()
    assert not Path("/tmp/speechlab-evil.txt").exists()


def test_interrupted_extraction_leaves_nothing(tmp_path: Path) -> None:
    data = tar_gz({f"yes/{i}.txt": bytes(1000) * (i + 1) for i in range(20)})
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DownloadError, match="corrupt"):
        extract_tar(archive, tmp_path / "root")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tar.gz"]


def test_extraction_interrupted_midway_never_looks_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_gz({"yes/a.txt": b"a", "yes/b.txt": b"b"}))

    def interrupted(self: tarfile.TarFile, path: str | Path, **kwargs: object) -> None:
        (Path(path) / "yes").mkdir()
        (Path(path) / "yes" / "a.txt").write_bytes(b"a")
        raise KeyboardInterrupt

    monkeypatch.setattr(tarfile.TarFile, "extractall", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_tar(archive, tmp_path / "root")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]


def test_extract_refuses_non_empty_root(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(tar_gz({"yes/a.txt": b"a"}))
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="empty"):
        extract_tar(archive, tmp_path / "root")
    assert (tmp_path / "root" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("root_exists", [False, True])
def test_reader_downloads_extracts_and_reads(
    tmp_path: Path, archive: tuple[str, bytes, str], root_exists: bool
) -> None:
    url, _, digest = archive
    root = tmp_path / "data" / "speech_commands"
    if root_exists:
        root.mkdir(parents=True)
    reader = SpeechCommandsReader(root, download=True, url=url, sha256=digest, silence_seconds=0.2)
    reader.check_layout()
    assert (tmp_path / "data" / "speech_commands_v0.02.tar.gz").is_file()
    report = ScanReport()
    splits = {split: list(reader.scan(split, report)) for split in SPLITS}
    assert not report.skipped
    assert [u.label for u in splits["validation"] if u.label != SILENCE_LABEL] == ["yes"]
    assert sum(u.label == "yes" for u in splits["train"]) == 3
    assert all(any(u.label == SILENCE_LABEL for u in utts) for utts in splits.values())
