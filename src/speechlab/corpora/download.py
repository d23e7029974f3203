"""Fetch and unpack public corpus archives: resumable, checksummed, atomic.

``download`` streams to ``<destination>.part`` and renames it only once it is whole and its
checksum matches; ``extract_tar`` unpacks into a sibling temporary folder and moves it into place,
so neither an interrupted download nor an interrupted extraction ever looks complete.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import posixpath
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
USER_AGENT = "speechlab-downloader"


class DownloadError(RuntimeError):
    """A download failed (network, HTTP status, short read); the message says how to recover."""


class ChecksumError(DownloadError):
    """A downloaded file's SHA-256 differs from the expected one."""


class UnsafeArchiveError(ValueError):
    """An archive member would land outside the extraction root, or is not a plain file/folder/link."""


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def part_path(destination: Path) -> Path:
    """Where :func:`download` keeps the incomplete file: ``<destination>.part``."""
    return destination.with_name(destination.name + ".part")


def download(
    url: str,
    destination: Path,
    sha256: str | None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``destination`` and return it.

    Resumes an existing ``<destination>.part`` with an HTTP ``Range`` request (restarting cleanly
    when the server answers 200 instead of 206). With ``sha256`` the finished file is verified; on
    mismatch it is deleted and :class:`ChecksumError` is raised. An existing ``destination`` whose
    checksum matches (or any existing one when ``sha256`` is ``None``) is returned as is.
    """
    destination = Path(destination)
    expected = sha256.strip().lower() if sha256 else None
    if destination.exists():
        if expected is None or file_sha256(destination) == expected:
            return destination
        log.warning("%s does not match the expected checksum; downloading it again", destination)
        destination.unlink()
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(destination)
    try:
        _fetch(url, part, expected, progress, timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise DownloadError(
            f"could not download {url}: {error}. Check the network and run again (the partial "
            f"file {part} is kept and resumed), or download the file yourself and place it at "
            f"{destination}."
        ) from error
    if expected is not None:
        got = file_sha256(part)
        if got != expected:
            part.unlink()
            raise ChecksumError(
                f"checksum mismatch for {url}: expected sha256 {expected}, got {got}. The "
                f"download was deleted; run again to retry. If the file changed upstream on "
                f"purpose, pass its new sha256 (or None to skip the check)."
            )
    os.replace(part, destination)
    return destination


def _request(url: str, start: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _fetch(url: str, part: Path, expected: str | None, progress: bool, timeout: float) -> None:
    """Stream ``url`` into ``part``, appending when the server honours a resume request."""
    start = part.stat().st_size if part.exists() else 0
    try:
        response = _request(url, start, timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not start:
            raise
        # Range not satisfiable: the .part already holds the whole file (or is stale).
        if expected is not None and file_sha256(part) == expected:
            return
        part.unlink()
        start = 0
        response = _request(url, 0, timeout)
    with response:
        if start and not _resumes_at(response, start):
            log.info("the server ignored the resume request for %s; starting over", url)
            start = 0
        total = _total_size(response, start)
        with (
            part.open("ab" if start else "wb") as f,
            _progress(url, total, start, progress) as advance,
        ):
            while chunk := response.read(CHUNK_SIZE):
                f.write(chunk)
                advance(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"the download of {url} ended early ({size} of {total} bytes); run again to resume "
            f"from {part}"
        )


def _resumes_at(response, start: int) -> bool:
    """True when ``response`` is a 206 whose Content-Range begins at ``start``."""
    if response.status != 206:
        return False
    content_range = response.headers.get("Content-Range", "")
    try:
        first = int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    return first == start


def _total_size(response, start: int) -> int | None:
    """Full file size from Content-Range (206) or Content-Length (200), if the server says."""
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range:
        total = content_range.rsplit("/", 1)[1]
        if total.isdigit():
            return int(total)
    length = response.headers.get("Content-Length")
    if length and length.isdigit():
        return int(length) + start
    return None


@contextmanager
def _progress(
    label: str, total: int | None, done: int, enabled: bool
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n_bytes)``: a rich bar on a terminal, a few plain lines otherwise."""
    if not enabled:
        yield lambda n: None
        return
    console = Console(stderr=True)
    if console.is_terminal:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as bar:
            task = bar.add_task(label.rsplit("/", 1)[-1], total=total, completed=done)
            yield lambda n: bar.advance(task, n)
        return
    plain = _PlainProgress(label, total, done)
    yield plain.advance
    plain.finish()


class _PlainProgress:
    """One line per tenth of the file (or per 100 MB when the size is unknown), for logs."""

    def __init__(self, label: str, total: int | None, done: int) -> None:
        self.label, self.total, self.done = label, total, done
        self.step = total // 10 if total else 100 << 20
        self.next_report = done + max(self.step, 1)
        size = f"{total / 1e6:.1f} MB" if total else "unknown size"
        resumed = f", resuming at {done / 1e6:.1f} MB" if done else ""
        print(f"downloading {label} ({size}{resumed})", file=sys.stderr, flush=True)

    def advance(self, n: int) -> None:
        self.done += n
        if self.done >= self.next_report:
            self.next_report = self.done + max(self.step, 1)
            print(f"  {self._status()}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        print(f"  done: {self._status()}", file=sys.stderr, flush=True)

    def _status(self) -> str:
        if self.total:
            return f"{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB ({100 * self.done // self.total}%)"
        return f"{self.done / 1e6:.1f} MB"


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Raise :class:`UnsafeArchiveError` unless ``member`` stays inside the extraction root."""

    def refuse(why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(
            f"refusing to extract {archive}: member {member.name!r} {why}. The archive is "
            f"corrupt or malicious; delete it and download it again from a trusted source."
        )

    def escapes(path: str) -> bool:
        normal = posixpath.normpath(path)
        return PurePosixPath(path).is_absolute() or normal == ".." or normal.startswith("../")

    if escapes(member.name):
        raise refuse("would be written outside the extraction root")
    if member.issym():
        target = posixpath.join(posixpath.dirname(member.name), member.linkname)
        if PurePosixPath(member.linkname).is_absolute() or escapes(target):
            raise refuse(f"is a symlink pointing outside the extraction root ({member.linkname})")
    elif member.islnk():
        if escapes(member.linkname):
            raise refuse(f"is a hard link to outside the extraction root ({member.linkname})")
    elif not (member.isfile() or member.isdir()):
        raise refuse("is a device, FIFO or other special file")


def extract_tar(archive: Path, root: Path) -> Path:
    """Extract ``archive`` (any tar compression) so its members land under ``root``; return it.

    Every member is checked first (no absolute paths, ``..`` or links out of ``root``). Members
    go to ``<root.parent>/.<root.name>.extracting`` which is renamed to ``root`` at the end, so an
    interrupted extraction never looks complete. ``root`` must be missing or empty.
    """
    archive, root = Path(archive), Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(
            f"cannot extract {archive} into {root}: it already exists and is not an empty "
            f"folder. Move it away or point the extraction at an empty or missing folder."
        )
    staging = root.parent / f".{root.name}.extracting"
    if staging.exists():
        shutil.rmtree(staging)  # left over from an interrupted extraction
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, archive)
            staging.mkdir()
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, members=members, filter="data")
            else:  # Python without extraction filters: the checks above are the guard
                tar.extractall(staging, members=members)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(
            f"cannot extract {archive}: {error}. The archive is incomplete or corrupt; delete "
            f"it and download it again."
        ) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if root.exists():
        root.rmdir()
    os.replace(staging, root)
    return root
