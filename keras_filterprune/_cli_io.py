"""What the command line reads: models (`safe_mode=True`), data arrays and
representative data, each checked with a one-line `CommandError`."""

from __future__ import annotations

import os

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


class CommandError(Exception):
    """A failure to report as one line (exit code 1)."""


def _existing(path: str, what: str) -> str:
    if not os.path.exists(path):
        raise CommandError(f"{what} '{path}' does not exist")
    return path


def _load_model(path: str):
    import keras

    # Registers the package's custom layers (front-ends, shortcut pads, …).
    import keras_filterprune.audio  # noqa: F401
    import keras_filterprune.models  # noqa: F401

    _existing(path, "model file")
    if os.path.isdir(path) or not path.endswith((".keras", ".h5", ".hdf5")):
        raise CommandError(
            f"'{path}' is not a Keras model file (expected MODEL.keras; convert "
            "SavedModels with keras.layers.TFSMLayer first)"
        )
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:
        raise CommandError(
            f"cannot load model '{path}': {type(e).__name__}: {e}"
        ) from e


def _load_arrays(path: str, need_y: bool = False):
    import numpy as np

    _existing(path, "data file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as e:
        raise CommandError(f"cannot read data '{path}': {e}") from e
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
        raise CommandError(f"'{path}' has no 'y' array (labels)")
    if y is not None and len(x) != len(y):
        raise CommandError(f"'{path}': x has {len(x)} samples but y has {len(y)}")
    return x, y


def _load_representative(path: str, model):
    import numpy as np

    _existing(path, "representative data")
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
    if path.endswith(".npz"):
        return _load_arrays(path)[0]
    try:
        return np.load(path, allow_pickle=False)
    except Exception as e:
        raise CommandError(f"cannot read representative data '{path}': {e}") from e
