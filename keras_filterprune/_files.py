"""Destinations checked before any work, atomic writes (a failed write leaves
neither a partial file nor a temporary behind), untrusted JSON files read, messages
naming the user's paths, not temporary ones, and native output kept off the terminal."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from typing import Any

#: Set to `1` to let TensorFlow, the TFLite converter and LiteRT write their own
#: logs to the terminal (the command line's `--debug` sets it).
NATIVE_LOGS_ENV = "KERAS_FILTERPRUNE_NATIVE_LOGS"

_FILE_SUFFIXES = (".keras", ".h5", ".hdf5", ".tflite", ".pb", ".onnx", ".zip")


def _fspath(path: Any, name: str = "path") -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be a str or os.PathLike. Received: {path!r}")
    return os.fspath(path)


def check_target(path: Any, kind: str) -> str:
    path = _fspath(path)
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
        if os.path.isdir(path) and _holds_other_files(path):
            raise FileExistsError(
                f"`path` {path!r} is a directory holding files that are not a "
                "SavedModel; the export replaces the whole directory, so it would "
                "delete them. Pass a new directory (or an old SavedModel's)."
            )
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


def _holds_other_files(directory: str) -> bool:
    """Whether `directory` is neither empty nor a SavedModel (`saved_model.pb`
    or `saved_model.pbtxt` at its top)."""
    entries = os.listdir(directory)
    saved_model = {"saved_model.pb", "saved_model.pbtxt"} & set(entries)
    return bool(entries) and not saved_model


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
def staged(path: str, directory: bool = False) -> Iterator[str]:
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


def file_size(path: str) -> int:
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
    path = _fspath(path, name)
    if os.path.isdir(path):
        raise IsADirectoryError(f"`{name}` {path!r} is a directory; pass a file path.")
    _check_parent(path, name)
    return path


def same_file(a: str, b: str) -> bool:
    """Whether paths `a` and `b` name one file or directory: the same file when
    both exist (hard links, bind mounts), else the same resolved path (symlinks,
    `./d/../x` spellings, a file still to be written)."""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    resolved = (os.path.normcase(os.path.realpath(p)) for p in (a, b))
    return next(resolved) == next(resolved)


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically (no partial file, no temporary left)."""
    with staged(path) as tmp:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)


def parse_json(text: Any, what: str, written_by: str, where: str = "") -> Any:
    """The JSON document in `text` (`str` or UTF-8 bytes), read as untrusted.

    Raises:
        TypeError: `text` is neither a `str` nor bytes.
        ValueError: "Cannot read <what><where>: <problem>; it must be JSON, as
            written by <written_by>." (not UTF-8, not JSON, or nested too deeply
            for the parser). `where` names the source, e.g. `" 'plan.json'"`.
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise TypeError(
            f"Cannot read {what}: it must be JSON text (str or bytes). "
            f"Received: {type(text).__name__}"
        )
    try:
        return json.loads(text if isinstance(text, str) else str(text, "utf-8"))
    except UnicodeDecodeError as e:
        problem = f"not UTF-8 text ({e.reason} at byte {e.start})"
    except json.JSONDecodeError as e:
        problem = f"not valid JSON ({e})"
    except RecursionError:
        problem = "not valid JSON (nested too deeply to parse)"
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        problem = f"not valid JSON ({e})"
    raise ValueError(
        f"Cannot read {what}{where}: {problem}; it must be JSON, as written by "
        f"{written_by}."
    )


def read_json(path: Any, what: str, written_by: str) -> Any:
    """The JSON document in the file at `path`, read as untrusted: errors name
    the file, `what` it should be and what writes one (`written_by`).

    Raises:
        TypeError: `path` is not a str or os.PathLike.
        FileNotFoundError: "No <what> at '<path>'.".
        OSError: another reason the file cannot be read (e.g. a directory).
        ValueError: not UTF-8, not JSON, or nested too deeply (`parse_json`).
    """
    path = _fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"No {what} at '{path}'.") from None
    except OSError as e:
        raise type(e)(f"Cannot read {what} '{path}': {e.strerror or e}.") from e
    return parse_json(data, what, written_by, f" '{path}'")


def without_temporary_paths(text: str, aliases: Mapping[str, str]) -> str:
    """Replaces each temporary path in `text` (absolute, as given, or its base
    name) with what the user knows it as: their own path, or a description."""
    for tmp, name in aliases.items():
        for form in dict.fromkeys(
            (os.path.abspath(tmp), tmp, os.path.basename(os.path.normpath(tmp)))
        ):
            if form:
                text = text.replace(form, name)
    return text


def native_logs_shown() -> bool:
    """Whether `KERAS_FILTERPRUNE_NATIVE_LOGS` asks for native logs on screen."""
    value = os.environ.get(NATIVE_LOGS_ENV, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


class NativeOutput:
    """What native code wrote while captured: `text`, set when the block exits."""

    def __init__(self) -> None:
        self.text = ""

    def tail(self, lines: int = 12, chars: int = 2000) -> str:
        kept = [ln for ln in self.text.splitlines() if ln.strip()][-lines:]
        return "\n".join(kept)[-chars:]


# fds 1 and 2 belong to the whole process: one capture at a time.
_CAPTURE_LOCK = threading.RLock()


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()


@contextlib.contextmanager
def native_output_captured(
    aliases: Mapping[str, str] | None = None,
) -> Iterator[NativeOutput]:
    """Sends what is written to file descriptors 1 and 2 to a temporary file.

    TensorFlow, the TFLite converter (`fully_quantize: 0, ...`) and LiteRT
    (`Created TensorFlow Lite XNNPACK delegate for CPU.`) log from C++ straight
    to the process's stdout and stderr, whatever `TF_CPP_MIN_LOG_LEVEL` says, so
    redirecting `sys.stdout` is not enough: the descriptors themselves are
    redirected around the native call and restored in `finally`. Wrap only the
    native call (Python output inside the block is captured too). When the
    block raises, the last captured lines are added to the exception as a note
    (temporary paths replaced by `aliases`). Nothing is captured when
    `KERAS_FILTERPRUNE_NATIVE_LOGS=1` or when the descriptors cannot be
    duplicated.
    """
    captured = NativeOutput()
    if native_logs_shown():
        yield captured
        return
    with _CAPTURE_LOCK:
        saved: list[int] = []
        try:
            saved = [os.dup(1), os.dup(2)]
        except OSError:
            for fd in saved:
                os.close(fd)
            yield captured
            return
        failure: BaseException | None = None
        with tempfile.TemporaryFile() as sink:
            _flush_python_streams()
            try:
                os.dup2(sink.fileno(), 1)
                os.dup2(sink.fileno(), 2)
                yield captured
            except BaseException as e:
                failure = e
                raise
            finally:
                _flush_python_streams()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                for fd in saved:
                    os.close(fd)
                sink.seek(0)
                captured.text = without_temporary_paths(
                    sink.read().decode("utf-8", "replace"), aliases or {}
                )
                tail = captured.tail()
                if failure is not None and tail and hasattr(failure, "add_note"):
                    failure.add_note(f"Native output before the failure:\n{tail}")
