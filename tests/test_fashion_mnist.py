"""Tests of keras_filterprune/datasets/fashion_mnist.py."""

import gzip
import os
import struct

import numpy as np
import pytest

from keras_filterprune.datasets import FASHION_MNIST_CLASSES, fashion_mnist

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
needs_debian_files = pytest.mark.skipif(
    not os.path.isfile(os.path.join(DEBIAN_DIR, "train-images-idx3-ubyte.gz")),
    reason=f"Fashion-MNIST not installed in {DEBIAN_DIR} "
    "(apt-get install dataset-fashion-mnist, or `make sysdeps`)",
)


def _idx_bytes(array: np.ndarray) -> bytes:
    """Serialises a uint8 array as idx, writing the header by hand."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_split(directory, rng, n_train=12, n_test=5, gz=True):
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
    }
    for name, array in arrays.items():
        data = _idx_bytes(np.asarray(array, dtype=np.uint8))
        if gz:
            with gzip.open(directory / (name + ".gz"), "wb") as f:
                f.write(data)
        else:
            (directory / name).write_bytes(data)
    return {k: np.asarray(v, dtype=np.uint8) for k, v in arrays.items()}


def test_classes():
    assert len(FASHION_MNIST_CLASSES) == 10
    assert FASHION_MNIST_CLASSES[0] == "T-shirt/top"
    assert FASHION_MNIST_CLASSES[9] == "Ankle boot"


@needs_debian_files
def test_debian_files():
    (x_train, y_train), (x_test, y_test) = fashion_mnist()
    assert x_train.shape == (60000, 28, 28, 1) and x_train.dtype == np.float32
    assert x_test.shape == (10000, 28, 28, 1) and x_test.dtype == np.float32
    assert y_train.shape == (60000,) and y_test.shape == (10000,)
    assert y_train.dtype == np.uint8
    assert 0.0 == x_train.min() and x_train.max() == 1.0
    assert 0.0 <= x_test.min() and x_test.max() <= 1.0
    assert np.bincount(y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10


@needs_debian_files
def test_debian_files_subset_raw():
    (x_train, y_train), (x_test, y_test) = fashion_mnist(
        DEBIAN_DIR, normalize=False, subset=(100, 20)
    )
    assert x_train.shape == (100, 28, 28, 1) and x_train.dtype == np.uint8
    assert x_test.shape == (20, 28, 28, 1) and y_test.shape == (20,)
    # The first training label of Fashion-MNIST is 9 (ankle boot), the next a 0.
    assert y_train[:2].tolist() == [9, 0]
    assert x_train.max() > 200


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_small_files(tmp_path, rng, gz):
    arrays = _write_split(tmp_path, rng, gz=gz)
    (x_train, y_train), (x_test, y_test) = fashion_mnist(str(tmp_path))
    assert x_train.shape == (12, 28, 28, 1) and x_train.dtype == np.float32
    np.testing.assert_array_equal(
        x_train[..., 0] * 255.0, arrays["train-images-idx3-ubyte"].astype(np.float32)
    )
    np.testing.assert_array_equal(y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])
    assert x_test.shape == (5, 28, 28, 1)

    (x_train, y_train), (x_test, y_test) = fashion_mnist(
        tmp_path, normalize=False, subset=3
    )
    assert x_train.dtype == np.uint8 and x_train.shape == (3, 28, 28, 1)
    np.testing.assert_array_equal(
        x_train[..., 0], arrays["train-images-idx3-ubyte"][:3]
    )
    assert y_train.tolist() == [0, 1, 2] and y_test.tolist() == [0, 3, 6]
    x_train[0, 0, 0, 0] = 7  # a writable copy, not a view of the file buffer

    (x_train, _), (x_test, y_test) = fashion_mnist(tmp_path, subset=(4, None))
    assert len(x_train) == 4 and len(x_test) == 5
    (x_train, _), _ = fashion_mnist(tmp_path, subset=1000)  # more than there is
    assert len(x_train) == 12


def test_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere.*apt-get install"):
        fashion_mnist(missing)


def test_missing_file(tmp_path, rng):
    _write_split(tmp_path, rng)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError) as info:
        fashion_mnist(tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "t10k-labels-idx1-ubyte" in message
    assert "dataset-fashion-mnist" in message and "path=" in message


def test_truncated_gzip_file(tmp_path, rng):
    _write_split(tmp_path, rng)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        fashion_mnist(tmp_path)


def test_truncated_raw_file(tmp_path, rng):
    _write_split(tmp_path, rng, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.*truncated"):
        fashion_mnist(tmp_path)


def test_not_gzip_and_bad_magic(tmp_path, rng):
    _write_split(tmp_path, rng)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(b"this is not gzip data at all")
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        fashion_mnist(tmp_path)
    with gzip.open(path, "wb") as f:
        f.write(b"\x12\x34\x56\x78" + bytes(100))
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz.*magic"):
        fashion_mnist(tmp_path)


def test_images_and_labels_disagree(tmp_path, rng):
    _write_split(tmp_path, rng, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(
        _idx_bytes(np.zeros(11, np.uint8))
    )
    with pytest.raises(ValueError, match="12 uint8 labels"):
        fashion_mnist(tmp_path)


@pytest.mark.parametrize(
    ("subset", "error"),
    [(0, ValueError), ((5, -1), ValueError), ((1, 2, 3), ValueError)]
    + [(1.5, TypeError), ("10", TypeError), (True, TypeError)],
)
def test_bad_subset(tmp_path, rng, subset, error):
    _write_split(tmp_path, rng)
    with pytest.raises(error, match="subset"):
        fashion_mnist(tmp_path, subset=subset)


def test_header_declaring_a_huge_array(tmp_path, rng):
    _write_split(tmp_path, rng, gz=False)
    header = bytes([0, 0, 0x08, 3]) + struct.pack(">III", 2**31, 28, 28)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(header + bytes(784))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*truncated"):
        fashion_mnist(tmp_path)
