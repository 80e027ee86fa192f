"""Fashion-MNIST from local idx files (never downloaded).

Debian's `dataset-fashion-mnist` package installs the four files under
`/usr/share/datasets/fashion-mnist`; any directory holding them (gzipped or not) works.

References:
    - Xiao, Rasul and Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
      Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from typing import IO

import numpy as np

__all__ = ["FASHION_MNIST_CLASSES", "fashion_mnist"]

DEFAULT_PATH = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""The 10 class names, indexed by label."""

_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# idx type codes (third byte of the magic number) -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _find(directory: str, stem: str) -> str | None:
    """The path of `stem` in `directory`: `.gz` first, then raw, dash or dot style."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem + ".gz", stem, dotted + ".gz", dotted):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def _read_exact(stream: IO[bytes], n: int, path: str) -> bytes:
    # In chunks, so that a corrupt header declaring a huge array costs no memory.
    chunks, left = [], n
    while left:
        chunk = stream.read(min(left, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    data = b"".join(chunks)
    if len(data) != n:
        raise ValueError(
            f"idx file '{path}' is truncated: expected {n} more bytes, found "
            f"{len(data)}. Reinstall `dataset-fashion-mnist` or replace the file."
        )
    return data


def _read_idx(path: str, count: int | None = None) -> np.ndarray:
    """Reads an idx file (optionally gzipped), at most `count` items of the first axis.

    Raises:
        ValueError: naming `path`, when the file is not a valid, complete idx file.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            magic = _read_exact(stream, 4, path)
            if magic[:2] != b"\x00\x00" or magic[2] not in _IDX_DTYPES:
                raise ValueError(
                    f"'{path}' is not an idx file: bad magic number 0x{magic.hex()}."
                )
            dtype, ndim = _IDX_DTYPES[magic[2]], magic[3]
            if ndim == 0:
                raise ValueError(f"idx file '{path}' declares 0 dimensions.")
            header = _read_exact(stream, 4 * ndim, path)
            dims = [int(d) for d in np.frombuffer(header, dtype=">u4")]
            if count is not None:
                dims[0] = min(dims[0], count)
            size = math.prod(dims) * dtype.itemsize
            data = _read_exact(stream, size, path)
            if count is None and stream.read(1):
                raise ValueError(
                    f"idx file '{path}' has data past the {dims} array its header "
                    "declares."
                )
    except (FileNotFoundError, PermissionError):
        raise
    except (OSError, EOFError, zlib.error) as e:
        # gzip.BadGzipFile is an OSError; a truncated gzip stream is an EOFError.
        raise ValueError(f"Cannot read idx file '{path}': {e}") from e
    return (
        np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))
    )


def _subset_sizes(subset) -> tuple[int | None, int | None]:
    if subset is None:
        return None, None
    pair = subset if isinstance(subset, (tuple, list)) else (subset, subset)
    if len(pair) != 2:
        raise ValueError(
            "`subset` must be an int or a (train_n, test_n) pair. "
            f"Received: subset={subset!r}"
        )
    for n in pair:
        if n is None:
            continue
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError(
                "`subset` must be an int, None or a (train_n, test_n) pair of ints. "
                f"Received: subset={subset!r}"
            )
        if n < 1:
            raise ValueError(
                f"`subset` sizes must be positive. Received: subset={subset!r}"
            )
    return tuple(None if n is None else int(n) for n in pair)


def fashion_mnist(
    path: str | os.PathLike | None = None,
    *,
    normalize: bool = True,
    subset: int | tuple[int | None, int | None] | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads Fashion-MNIST from local idx files, never downloading.

    Args:
        path: `str` or path-like. A directory holding `train-images-idx3-ubyte`,
            `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
            `t10k-labels-idx1-ubyte`, each gzipped (`.gz`) or not. Defaults to
            `None`, which means `/usr/share/datasets/fashion-mnist` (installed by
            Debian's `dataset-fashion-mnist`).
        normalize: `bool`. Return images as float32 in `[0, 1]` (divided by 255)
            instead of the raw uint8. Defaults to `True`.
        subset: `int`, a `(train_n, test_n)` pair, or `None`. Keep only the first
            `n` examples of each split (both, or each with its own size; `None`
            keeps a whole split), for quick runs. Only those examples are read.
            Defaults to `None` (everything).

    Returns:
        `((x_train, y_train), (x_test, y_test))`: images of shape `(N, 28, 28, 1)`
        (float32 in `[0, 1]`, or uint8 when `normalize=False`) and uint8 labels of
        shape `(N,)` indexing `FASHION_MNIST_CLASSES`; 60,000 training and 10,000
        test examples in full.

    Raises:
        FileNotFoundError: the directory or one of the files is missing.
        ValueError: a file is corrupt or truncated (the message names it), the
            images and labels disagree, or `subset` is not positive.
        NotADirectoryError: `path` is a file.
        TypeError: `subset` is not an int or a pair of ints, `normalize` not a
            bool or `path` not a path.

    Example:

    >>> FASHION_MNIST_CLASSES[9]
    'Ankle boot'
    >>> (x_train, y_train), (x_test, y_test) = fashion_mnist(
    ...     subset=(1000, 100))  # doctest: +SKIP
    >>> x_train.shape, x_train.dtype, y_test.shape  # doctest: +SKIP
    ((1000, 28, 28, 1), dtype('float32'), (100,))
    """
    train_n, test_n = _subset_sizes(subset)
    if not isinstance(normalize, (bool, np.bool_)):
        raise TypeError(
            f"`normalize` must be a bool. Received: normalize={normalize!r}"
        )
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            "`path` must be None or the directory of the Fashion-MNIST idx files "
            f"(str or os.PathLike). Received: path={path!r}"
        )
    directory = os.fspath(DEFAULT_PATH if path is None else path)
    hint = (
        "Install Debian's `dataset-fashion-mnist` (`apt-get install "
        "dataset-fashion-mnist`) or pass `path=` a directory holding the four "
        "idx files."
    )
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(
            f"Fashion-MNIST `path` '{directory}' is a file, not a directory: pass "
            "the directory holding the four idx files."
        )
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"Fashion-MNIST directory '{directory}' does not exist. {hint}"
        )
    files = {key: _find(directory, stem) for key, stem in _FILES.items()}
    missing = [_FILES[key] for key, found in files.items() if found is None]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST files missing from '{directory}': "
            f"{', '.join(f'{m}[.gz]' for m in missing)}. {hint}"
        )
    splits = []
    for split, n in (("train", train_n), ("test", test_n)):
        x_path, y_path = files[f"x_{split}"], files[f"y_{split}"]
        x = _read_idx(x_path, n)
        y = _read_idx(y_path, n)
        if x.ndim != 3 or x.dtype != np.uint8:
            raise ValueError(
                f"'{x_path}' must hold uint8 images of shape (N, rows, cols). "
                f"Found {x.dtype} of shape {x.shape}."
            )
        if y.ndim != 1 or y.dtype != np.uint8 or len(y) != len(x):
            raise ValueError(
                f"'{y_path}' must hold {len(x)} uint8 labels, one per image of "
                f"'{x_path}'. Found {y.dtype} of shape {y.shape}."
            )
        if y.size and y.max() >= len(FASHION_MNIST_CLASSES):
            raise ValueError(
                f"'{y_path}' holds label {int(y.max())}; Fashion-MNIST labels are "
                f"0-{len(FASHION_MNIST_CLASSES) - 1}."
            )
        x = x[..., np.newaxis]
        if normalize:
            x = x.astype(np.float32) / np.float32(255.0)
        splits.append((x, y))
    return splits[0], splits[1]
