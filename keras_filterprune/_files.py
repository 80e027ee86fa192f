"""Destinations checked before any work, and atomic writes: a failed write
leaves neither a partial file nor a temporary behind."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from typing import Any

_FILE_SUFFIXES = (".keras", ".h5", ".hdf5", ".tflite", ".pb", ".onnx", ".zip")


def _check_target(path: Any, kind: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a str or os.PathLike. Received: {path!r}")
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if kind == "saved_model":
        if suffix in _FILE_SUFFIXES:
            raise ValueError(
                f"A SavedModel is a directory; `path` must not end with {suffix!r}. "
                f"Received: path={path!r}. Use export_tflite() for '.tflite' and "
                "save_keras() for '.keras'."
            )
        if os.path.exists(path) and not os.path.isdir(path):
            raise FileExistsError(f"{path!r} is a file; a SavedModel is a directory.")
    else:
        want = {"tflite": ".tflite", "keras": ".keras"}[kind]
        if suffix != want:
            raise ValueError(
                f"`path` must end with {want!r} for a {kind} export. "
                f"Received: path={path!r}"
            )
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path!r} is a directory; pass a file path.")
    _check_parent(path, "path")
    return path


def _check_parent(path: str, name: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
        raise FileNotFoundError(
            f"The directory of `{name}` {parent!r} does not exist. Create it first, "
            "e.g. `os.makedirs(dirname, exist_ok=True)`."
        )
    if not os.path.isdir(parent):
        raise NotADirectoryError(f"{parent!r} is not a directory.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Cannot write in {parent!r} (permission denied); choose a writable "
            "directory."
        )


def _staging_name(path: str) -> str:
    parent, base = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(base)
    return os.path.join(parent, f".{stem}.{secrets.token_hex(4)}.tmp{ext}")


@contextlib.contextmanager
def _staged(path: str, directory: bool = False) -> Iterator[str]:
    """Yields a hidden sibling of `path`; moves it into place if no error occurred."""
    tmp = _staging_name(path)
    if directory:
        os.mkdir(tmp)
    try:
        yield tmp
        if directory:
            backup = None
            if os.path.isdir(path):
                backup = _staging_name(path) + ".old"
                os.rename(path, backup)
            try:
                os.rename(tmp, path)
            except OSError:
                if backup:
                    os.rename(backup, path)
                raise
            if backup:
                shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
        raise


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(
        os.path.getsize(os.path.join(root, f))
        for root, _, files in os.walk(path)
        for f in files
    )


def check_writable(path: Any, name: str = "path") -> str:
    """Checks, before any work, that a file can be written at `path`.

    Raises:
        TypeError: `path` is not a str or os.PathLike.
        IsADirectoryError: `path` is a directory.
        FileNotFoundError, NotADirectoryError, PermissionError: its directory is
            missing, not a directory, or read-only.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be a str or os.PathLike. Received: {path!r}")
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"`{name}` {path!r} is a directory; pass a file path.")
    _check_parent(path, name)
    return path


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically (no partial file, no temporary left)."""
    with _staged(path) as tmp:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
