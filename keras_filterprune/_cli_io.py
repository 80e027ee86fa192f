"""What the command line reads: models (`safe_mode=True`), data arrays and
representative data, each checked with a one-line `CommandError`."""

from __future__ import annotations

import os

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


class CommandError(Exception):
    """A failure to report as one line (exit code 1)."""


def existing_path(path: str, what: str) -> str:
    if not os.path.exists(path):
        raise CommandError(f"{what} '{path}' does not exist")
    return path


def load_model_file(path: str):
    import keras

    # Registers the package's custom layers (front-ends, shortcut pads, …).
    import keras_filterprune.audio  # noqa: F401
    import keras_filterprune.models  # noqa: F401

    existing_path(path, "model file")
    if os.path.isdir(path) or not path.endswith((".keras", ".h5", ".hdf5")):
        raise CommandError(
            f"'{path}' is not a Keras model file (expected MODEL.keras; convert "
            "SavedModels with keras.layers.TFSMLayer first)"
        )
    problem = _model_file_problem(path)
    if problem:
        raise CommandError(f"cannot load model '{path}': {problem}")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:
        raise CommandError(
            f"cannot load model '{path}': {type(e).__name__}: {e}"
        ) from e


def _model_file_problem(path: str) -> str | None:
    """Why `path` cannot be a Keras model file, read from its first bytes (Keras'
    own messages for such files say 'File not found' or name a zip member)."""
    import zipfile

    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        return f"cannot read it ({e.strerror})"
    if path.endswith(".keras"):
        if not zipfile.is_zipfile(path):
            return (
                "it is not a zip archive, as a .keras file is (damaged or truncated?)"
            )
        with zipfile.ZipFile(path) as archive:
            if "config.json" not in archive.namelist():
                return "the zip archive has no 'config.json': not a saved Keras model"
        return None
    if head != b"\x89HDF\r\n\x1a\n":
        return "it is not an HDF5 file, as a legacy .h5 model is (damaged?)"
    return None


_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
_DATA_FORMATS = (
    "a .npz of arrays x and y (np.savez(path, x=x, y=y)) or a .npy of inputs x "
    "(np.save(path, x))"
)


def _not_numbers(path: str, why: str) -> CommandError:
    return CommandError(
        f"'{path}' is not a NumPy array file of numbers: {why}. Save {_DATA_FORMATS}"
    )


def _array_error(path: str, name: str, error: Exception) -> CommandError:
    """NumPy's own message for an object array advises `allow_pickle`, which
    would let the file run code: never passed on."""
    if "pickle" in str(error):
        return _not_numbers(
            path,
            f"{name} holds Python objects (dtype object), which are not loaded "
            "(unpickling can run code)",
        )
    return CommandError(f"cannot read {name} of '{path}': {error}")


def _read_arrays(path: str) -> tuple[dict, bool]:
    """The arrays of an .npz (by name) or of an .npy (as `x`), never unpickled;
    and whether the file was an .npy. The format comes from the file's first
    bytes, not its name."""
    import numpy as np

    if os.path.isdir(path):
        raise CommandError(f"'{path}' is a directory; pass a file: {_DATA_FORMATS}")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
    except OSError as e:
        raise CommandError(f"cannot read data '{path}': {e.strerror}") from None
    if head == _NPY_MAGIC:
        try:
            return {"x": np.load(path, allow_pickle=False)}, True
        except Exception as e:
            raise _array_error(path, "its array", e) from None
    if head[:4] not in _ZIP_MAGICS:
        raise _not_numbers(path, "it is neither an .npz nor an .npy file")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception:
        raise _not_numbers(
            path, "it is a zip archive that NumPy cannot read (damaged?)"
        ) from None
    arrays = {}
    with data:
        for name in data.files:
            try:
                arrays[name] = data[name]
            except Exception as e:
                raise _array_error(path, f"its array {name!r}", e) from None
            if not isinstance(arrays[name], np.ndarray):
                raise _not_numbers(
                    path, f"it is a zip archive whose member {name!r} is not an array"
                )
    return arrays, False


def load_arrays(path: str, need_y: bool = False):
    """`x` and `y` (or `None`) from an .npz, or `x` alone from an .npy."""
    existing_path(path, "data file")
    arrays, npy = _read_arrays(path)
    if "x" in arrays:
        x, y = arrays["x"], arrays.get("y")
    elif set(arrays) == {"arr_0", "arr_1"}:
        x, y = arrays["arr_0"], arrays["arr_1"]
    elif set(arrays) == {"arr_0"}:
        x, y = arrays["arr_0"], None
    else:
        raise CommandError(
            f"'{path}' must hold arrays 'x' and 'y' (np.savez(path, x=..., y=...)); "
            f"found {sorted(arrays)}"
        )
    if need_y and y is None:
        held = "is an .npy file: it holds inputs x only" if npy else "has no 'y' array"
        raise CommandError(
            f"'{path}' {held}; labels are needed here: save x and y with "
            "np.savez(path, x=x, y=y)"
        )
    _check_numbers(path, x, "x")
    if y is not None:
        if y.ndim == 0 or y.dtype.kind not in "biuf":
            raise CommandError(
                f"'{path}': y must be numeric labels (class indices or one-hot "
                f"rows); found {y.dtype} of shape {y.shape}"
            )
        if len(x) != len(y):
            raise CommandError(f"'{path}': x has {len(x)} samples but y has {len(y)}")
    return x, y


def _check_numbers(path: str, x, name: str = "x") -> None:
    """An array of at least one example, numbers, no NaN or Inf."""
    import numpy as np

    if x.ndim == 0 or len(x) == 0:
        raise CommandError(f"'{path}': {name} holds no example (shape {x.shape})")
    if x.dtype.kind not in "biuf":
        raise CommandError(
            f"'{path}': {name} must hold numbers (model inputs); found dtype {x.dtype}"
        )
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise CommandError(
            f"'{path}': {name} holds NaN or Inf values; clean the data first "
            "(e.g. np.nan_to_num)"
        )


def check_fits(path: str, x, model, what: str) -> None:
    """`x` (one array) can feed the model's (single) input: same rank, same
    known dimensions after the batch axis."""
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        return  # several inputs: the library checks them
    want = tuple(inputs[0].shape)
    fits = x.ndim == len(want) and all(
        w is None or int(w) == d for d, w in zip(x.shape[1:], want[1:])
    )
    if not fits:
        shape = tuple(None if d is None else int(d) for d in want)
        raise CommandError(
            f"{what} '{path}': x has shape {x.shape} but the model takes inputs of "
            f"shape {shape} (the first axis is the batch)"
        )


def check_labels(path: str, y, model) -> None:
    """Labels are class indices in [0, classes) or one-hot rows of the model's
    output width (when the model has one output)."""
    import numpy as np

    outputs = getattr(model, "outputs", None) or []
    if len(outputs) != 1 or outputs[0].shape[-1] is None:
        return
    classes = int(outputs[0].shape[-1])
    if y.ndim >= 2 and y.shape[-1] == classes:
        return  # one-hot (or soft) rows
    if y.ndim != 1:
        raise CommandError(
            f"'{path}': y must be class indices (shape (N,)) or one-hot rows (shape "
            f"(N, {classes})); found shape {y.shape}"
        )
    if y.dtype.kind == "f" and not np.all(np.equal(np.mod(y, 1), 0)):
        raise CommandError(
            f"'{path}': y must hold class indices (integers); found values such as "
            f"{y[np.mod(y, 1) != 0][0].item()!r}"
        )
    if classes > 1 and (y.min() < 0 or y.max() >= classes):
        bad = y[(y < 0) | (y >= classes)][0].item()
        raise CommandError(
            f"'{path}': y holds label {bad!r} but the model has {classes} classes "
            f"(labels 0 to {classes - 1})"
        )


def load_representative(path: str, model):
    import numpy as np

    existing_path(path, "representative data")
    if os.path.isdir(path):
        import keras

        shape = model.inputs[0].shape
        if len(shape) != 4:
            raise CommandError(
                "a directory of images only suits image models (input (H, W, C)); "
                f"this model's input is {tuple(shape)}. Pass a .npy array instead"
            )
        files = [f for f in os.listdir(path) if f.lower().endswith(_IMAGE_SUFFIXES)]
        if not files:
            raise CommandError(f"no images ({', '.join(_IMAGE_SUFFIXES)}) in '{path}'")
        color = {1: "grayscale", 3: "rgb", 4: "rgba"}.get(shape[-1])
        if color is None:
            raise CommandError(f"images cannot feed an input with {shape[-1]} channels")
        images = [
            keras.utils.img_to_array(
                keras.utils.load_img(
                    os.path.join(path, f),
                    color_mode=color,
                    target_size=(shape[1], shape[2]),
                )
            )
            for f in sorted(files)[:500]
        ]
        return np.stack(images).astype("float32") / 255.0
    x = load_arrays(path)[0]
    check_fits(path, x, model, "representative data")
    return x
