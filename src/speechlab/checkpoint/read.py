"""Read a checkpoint file as plain data, or say clearly why it cannot be one.

Every checkpoint speechlab reads goes through :func:`read_checkpoint`: ``torch.load`` with
``weights_only=True`` (no code runs while loading). A file that is not a checkpoint (text, an
empty or truncated file, a pickle of Python objects, a zip of something else) makes torch raise
whatever its parser hits first (``KeyError: 105``, ``EOFError``, an ``UnpicklingError`` whose
advice is to load with ``weights_only=False``, which would run the file's code); here each
becomes one ``ValueError`` that names the option the path came from, what was expected and what
to do, and never suggests turning the safe loading off.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

MISSING = "???"  # OmegaConf's mark of a value the config requires and leaves to the user

WHERE = "train.py writes them under logs/train/runs/<run>/checkpoints/"
SPEECHLAB = "a checkpoint written by speechlab's train.py"


def named(key: str | None, path: str | Path) -> str:
    """How the messages call the file at ``path`` that option ``key`` gave."""
    return f"{key}={path}" if key else str(path)


def what_to_pass(key: str | None, expected: str = "") -> str:
    """The end of every message: 'pass <key>=<file>: <what it takes> (<where runs write them>)'."""
    option = f"{key}=<file>" if key else "the path of one"
    return f"pass {option}: {expected or SPEECHLAB} ({WHERE})"


def checkpoint_file(path: str | Path | None, key: str | None = None, expected: str = "") -> Path:
    """``path`` as an existing file.

    Args:
        path: the path given (``???``: the config requires one and none was given).
        key: the option it came from (``ckpt_path``, ``model.judge_ckpt``, ...), named in the
            messages; None names none.
        expected: what kind of checkpoint the option takes, e.g. ``"a checkpoint of a
            model=hifigan run"``; a speechlab checkpoint when empty.

    Raises:
        ValueError: ``path`` is ``???`` or empty (a required value not given).
        FileNotFoundError: no file at ``path``.
    """
    expected = expected or SPEECHLAB
    if path is None or str(path) in ("", MISSING):
        what = f"{key} is required" if key else "a checkpoint is required"
        raise ValueError(f"{what} and was not given; {what_to_pass(key, expected)}")
    file = Path(path).expanduser()
    if not file.is_file():
        reason = "is a directory, not a file" if file.is_dir() else "no such file"
        where = f"{key}={path}: {reason}" if key else f"no checkpoint at {path} ({reason})"
        raise FileNotFoundError(f"{where}; {what_to_pass(key, expected)}")
    return file


def read_checkpoint(
    path: str | Path | None, key: str | None = None, expected: str = "", mmap: bool = False
) -> Any:
    """What ``torch.load(path, weights_only=True)`` reads, on the CPU.

    Args:
        path, key, expected: as :func:`checkpoint_file`.
        mmap: map the tensors' storage instead of reading it (a zip checkpoint, the format
            every Lightning checkpoint has): reading the recipe and the tensors' names and shapes
            then costs next to nothing, whatever the file's size.

    Raises:
        ValueError: a required value not given, or a file that is no checkpoint torch reads as
            plain data.
        FileNotFoundError: no file at ``path``.
    """
    file = checkpoint_file(path, key, expected)
    is_zip = zipfile.is_zipfile(file)
    with file.open("rb") as f:
        zip_start = f.read(4) == b"PK\x03\x04"  # a zip's first bytes, even cut short
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(file, map_location="cpu", weights_only=True, mmap=mmap and is_zip)
    except Exception as error:  # a parser meeting bytes it cannot read raises anything
        if isinstance(error, pickle.UnpicklingError) and "Weights only" in str(error):
            why = (
                "it holds Python objects other than tensors and plain data, which speechlab "
                "does not unpickle (unpickling them can run any code); speechlab's checkpoints "
                "hold plain data only"
            )
        elif zip_start and not is_zip:
            why = (
                "a zip archive cut short (an interrupted copy or write, or a full disk?) that "
                "torch cannot read"
            )
        elif is_zip:
            why = "a zip archive that is not a PyTorch checkpoint"
        else:
            size = file.stat().st_size
            why = f"not a PyTorch checkpoint ({size} bytes that torch cannot read as one)"
        raise ValueError(
            f"{named(key, path)}: {why} [{type(error).__name__}]; {what_to_pass(key, expected)}"
        ) from None


def checkpoint_options(config: Any, prefix: str) -> dict[str, Any]:
    """The options of ``config`` (plain nested dicts and lists) that name a checkpoint file, by
    their dotted key from ``prefix`` (``model.judge_ckpt``, ``model.vocoder.ckpt``): the keys
    ``ckpt`` and ``*_ckpt``."""
    found: dict[str, Any] = {}
    if isinstance(config, dict):
        for key, value in config.items():
            dotted = f"{prefix}.{key}"
            if isinstance(value, dict | list):
                found.update(checkpoint_options(value, dotted))
            elif str(key) == "ckpt" or str(key).endswith("_ckpt"):
                found[dotted] = value
    elif isinstance(config, list):
        for index, value in enumerate(config):
            found.update(checkpoint_options(value, f"{prefix}.{index}"))
    return found


def check_checkpoint_options(config: Any, prefix: str) -> None:
    """Stop when a checkpoint option of ``config`` (see :func:`checkpoint_options`) is ``???``
    or names no file; ``null`` options are left out. A run calls this before it prepares any
    data, instead of failing when the model is built or first validated.

    Raises:
        ValueError: an option left ``???`` (required, not given).
        FileNotFoundError: an option naming no file.
    """
    for key, value in checkpoint_options(config, prefix).items():
        if value is not None:
            checkpoint_file(value, key)
