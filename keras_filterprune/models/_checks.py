"""Checks of the arguments the model builders share: `num_classes` and
`input_shape` (`check_model_args`), and `weights=` files, read before a model is
built so that a wrong file fails in seconds (`check_weights_file`)."""

import json
import numbers
import os
import zipfile

_UNSET = object()


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_model_args(
    *,
    num_classes,
    input_shape,
    rank,
    extra_errors=(),
    classifier_activation=_UNSET,
    name=_UNSET,
    min_size=None,
    fixed_size=False,
):
    """Validates the arguments every model builder shares; raises ValueError.

    `num_classes` and the dimensions of `input_shape` may be NumPy ints (the
    builders convert them with `int`). With `min_size` (the smallest height and
    width the architecture's poolings leave at least one pixel of) and
    `fixed_size` (a Flatten feeds a Dense, so no dimension may be `None`), a
    shape the network cannot be built for is refused here, naming
    `input_shape`, rather than deep inside Keras.
    """
    errors = [e for e in extra_errors if e]
    if not _is_int(num_classes) or num_classes < 1:
        errors.append(
            "`num_classes` must be a positive int. "
            f"Received: num_classes={num_classes!r}"
        )
    shape_ok = (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == rank
        and all(d is None or (_is_int(d) and d > 0) for d in input_shape)
    )
    if not shape_ok:
        errors.append(
            f"`input_shape` must be a tuple of {rank} positive ints (or None). "
            f"Received: input_shape={input_shape!r}"
        )
    elif fixed_size and None in tuple(input_shape):
        errors.append(
            "`input_shape` must be fully known here (a Flatten feeds a Dense "
            f"layer, whose weights need a fixed size). Received: "
            f"input_shape={tuple(input_shape)!r}"
        )
    elif min_size is not None and any(
        d is not None and d < m for d, m in zip(input_shape, min_size)
    ):
        errors.append(
            f"`input_shape` must be at least {tuple(min_size)} in its first "
            f"{len(min_size)} dimensions: the network's poolings would leave "
            f"nothing of a smaller input. Received: input_shape={tuple(input_shape)!r}"
        )
    if classifier_activation is not _UNSET:
        errors.extend(_activation_problem(classifier_activation))
    if name is not _UNSET and (not isinstance(name, str) or not name or "/" in name):
        errors.append(
            f"`name` must be a non-empty string without '/'. Received: name={name!r}"
        )
    if errors:
        raise ValueError("\n".join(errors))


def _activation_problem(activation):
    """`[]` for `None`, a Keras activation name or a callable; else the error."""
    if activation is None or callable(activation):
        return []
    if isinstance(activation, str):
        import keras

        try:
            keras.activations.get(activation)
        except (ValueError, TypeError):
            pass
        else:
            return []
    return [
        "`classifier_activation` must be None (logits), a Keras activation name "
        "(e.g. 'softmax', 'sigmoid') or a callable. Received: "
        f"classifier_activation={activation!r}"
    ]


_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: The files `keras.Model.load_weights` reads, by the end of their name.
KERAS_WEIGHTS_SUFFIXES = (".weights.h5", ".weights.json", ".keras", ".h5", ".hdf5")


def _is_hdf5(path):
    """Whether the HDF5 signature starts the file or a user block (512·2ⁿ)."""
    with open(path, "rb") as f:
        for offset in (0, 512, 1024, 2048, 4096, 8192):
            f.seek(offset)
            if f.read(8) == _HDF5_SIGNATURE:
                return True
    return False


def _keras_weights_problem(path):
    """What keeps `load_weights` from reading `path`, or `None`."""
    if path.endswith(".keras"):
        if not zipfile.is_zipfile(path):
            return "is not a zip archive, as a '.keras' file is"
        with zipfile.ZipFile(path) as archive:
            if "model.weights.h5" not in archive.namelist():
                return "is a zip archive without 'model.weights.h5'"
        return None
    if path.endswith(".weights.json"):
        try:
            with open(path, encoding="utf-8") as f:
                json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            return f"is not the JSON index of sharded weights ({e})"
        return None
    if not _is_hdf5(path):
        return "is not an HDF5 file (it lacks the HDF5 signature)"
    import h5py

    try:
        h5py.File(path, "r").close()
    except OSError as e:
        return f"is a damaged or truncated HDF5 file ({e})"
    return None


def _checkpoint_problem(path):
    """What keeps `load_vggish_checkpoint` from reading `path`, or `None`."""
    import tensorflow as tf

    try:
        tf.train.load_checkpoint(path)
    except (tf.errors.OpError, ValueError) as e:
        hint = ""
        if os.path.isfile(path) and _is_hdf5(path):
            hint = "; it is an HDF5 file: name it '.weights.h5' if Keras saved it"
        return f"is not a readable TF checkpoint ({e}){hint}"
    return None


def check_weights_file(weights, errors, *, checkpoint=False):
    """Checks `weights=` before a model is built, so that a wrong file fails
    in seconds, naming itself, instead of after building tens of millions of
    parameters. Appends what is wrong to `errors` (raised as one `ValueError`
    with the other arguments'); `None` is fine.

    Args:
        weights: The `weights=` argument: `None` or a local path.
        errors: The list of error messages of the constructor.
        checkpoint: Bool. Whether a path that is not a Keras weights file is
            read as a TF checkpoint (VGGish) instead of refused.

    Raises:
        TypeError: `weights` is neither `None` nor a path.
        PermissionError: the file cannot be read.
    """
    if weights is None:
        return
    if not isinstance(weights, (str, os.PathLike)):
        raise TypeError(
            "`weights` must be None or the local path of a weights file (str or "
            f"os.PathLike). Received: weights={weights!r}"
        )
    path = os.fspath(weights)
    keras_file = path.endswith(KERAS_WEIGHTS_SUFFIXES)
    expected = "a Keras weights file (" + ", ".join(KERAS_WEIGHTS_SUFFIXES) + ")"
    if checkpoint:
        expected = f"a VGGish TF checkpoint (e.g. 'vggish_model.ckpt') or {expected}"
    exists = os.path.isfile(path) or (
        checkpoint and not keras_file and os.path.isfile(path + ".index")
    )
    if not exists:
        reason = "a directory" if os.path.isdir(path) else "no such file"
        errors.append(
            f"`weights` must be None or the local path of {expected}; weights are "
            f"never downloaded. Received: weights={path!r} ({reason})"
        )
        return
    if not checkpoint and not keras_file:
        errors.append(
            f"`weights` must be {expected}; `load_weights` reads no other. "
            f"Received: weights={path!r}. A PyTorch checkpoint (.pth) must be "
            "converted to a Keras model first and saved with `save_weights`."
        )
        return
    readable = path if os.path.isfile(path) else path + ".index"
    try:
        with open(readable, "rb") as f:
            f.read(1)
    except PermissionError as e:
        raise PermissionError(
            f"`weights`: cannot read '{readable}' ({e.strerror}). Make it readable "
            "(e.g. `chmod u+r`) or pass another file."
        ) from e
    problem = _keras_weights_problem(path) if keras_file else _checkpoint_problem(path)
    if problem is not None:
        errors.append(
            f"`weights`: '{path}' {problem}. Pass {expected} saved from this "
            "architecture (e.g. with `model.save_weights('x.weights.h5')`), and "
            "check that the copy is complete."
        )


def load_weights_file(model, weights):
    """`model.load_weights(weights)`, a failure (weights of another
    architecture, another layer naming) being a ValueError naming the file."""
    path = os.fspath(weights)
    try:
        model.load_weights(path)
    except Exception as e:  # noqa: BLE001 - Keras and h5py raise many kinds
        detail = " ".join(str(e).split())
        detail = detail if len(detail) <= 300 else detail[:297] + "..."
        raise ValueError(
            f"`weights`: '{path}' does not fit the '{model.name}' architecture "
            "built with these arguments (was it saved from another model, or "
            f"with other `num_classes`/`input_shape`?). ({type(e).__name__}: "
            f"{detail})"
        ) from e
