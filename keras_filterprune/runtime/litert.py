"""Running TFLite files in the LiteRT interpreter (`ai_edge_litert`, the
`litert` extra): `run_tflite`, and the runner the exporter, the benchmarks and
latency measuring share (`Runner`, `interpreter_class`, `sorted_outputs`).

Float inputs are quantised for int8-input models and int8 outputs dequantised, so
results compare directly with Keras. What LiteRT logs from C++ while it loads a
file (`INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`) is kept off the
terminal unless `KERAS_FILTERPRUNE_NATIVE_LOGS=1`.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from keras_filterprune._files import native_output_captured
from keras_filterprune._validation import check_bool

__all__ = ["Runner", "interpreter_class", "run_tflite", "sorted_outputs"]

_LITERT_HINT = (
    "Benchmarking and checking TFLite files needs the LiteRT runtime: "
    "pip install keras-filterprune[litert]"
)


def interpreter_class():
    """LiteRT's `Interpreter` class, or an ImportError with the install hint."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise ImportError(_LITERT_HINT) from e
    return Interpreter


class Runner:
    """A LiteRT interpreter on one signature, inputs set by name."""

    def __init__(self, model: str | os.PathLike | bytes, num_threads: int) -> None:
        if isinstance(model, (bytes, bytearray)):
            content = bytes(model)
        elif isinstance(model, (str, os.PathLike)):
            if not os.path.isfile(model):
                raise FileNotFoundError(f"No TFLite file at {os.fspath(model)!r}.")
            with open(model, "rb") as f:
                content = f.read()
        else:
            raise TypeError(
                "Expected a .tflite path or its bytes. "
                f"Received: {type(model).__name__}"
            )
        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"`num_threads` must be >= 1. Received: {num_threads!r}")
        interpreter = interpreter_class()
        source = (
            f"{os.fspath(model)!r}"
            if isinstance(model, (str, os.PathLike))
            else "the TFLite bytes given"
        )
        try:
            with native_output_captured():
                self.interpreter = interpreter(
                    model_content=content, num_threads=num_threads
                )
        except (ValueError, RuntimeError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise ValueError(
                f"{source} is not a TFLite model LiteRT can load ({reason}). "
                "Export one with keras_filterprune.export_tflite."
            ) from None
        signatures = self.interpreter.get_signature_list()
        if signatures:
            runner = self.interpreter.get_signature_runner(next(iter(signatures)))
            self.input_details = runner.get_input_details()
            self.output_details = runner.get_output_details()
        else:  # a flatbuffer without signature: name tensors by position
            self.input_details = {
                f"input_{i}": d
                for i, d in enumerate(self.interpreter.get_input_details())
            }
            self.output_details = {
                f"output_{i}": d
                for i, d in enumerate(self.interpreter.get_output_details())
            }

    def set_inputs(self, feed: dict[str, np.ndarray]) -> None:
        if set(feed) != set(self.input_details):
            raise ValueError(
                f"The TFLite model takes inputs {sorted(self.input_details)}. "
                f"Received: {sorted(feed)}"
            )
        for name, value in feed.items():
            detail = self.input_details[name]
            _check_input(name, value, detail)
            self.interpreter.resize_tensor_input(detail["index"], value.shape)
        with native_output_captured():  # delegates are applied here
            self.interpreter.allocate_tensors()
        for name, value in feed.items():
            detail = self.input_details[name]
            self.interpreter.set_tensor(detail["index"], _to_tensor(value, detail))

    def invoke(self) -> None:
        self.interpreter.invoke()

    def as_feed(self, inputs: Any) -> dict[str, np.ndarray]:
        """`{name: array}` from a dict, or from an array for a one-input model."""
        if not isinstance(inputs, dict):
            if not hasattr(inputs, "shape") and not isinstance(inputs, (list, tuple)):
                raise TypeError(
                    "`inputs` must be an array, or a dict {input name: array}. "
                    f"Received: {type(inputs).__name__}"
                )
            if len(self.input_details) != 1:
                raise ValueError(
                    f"The TFLite model has {len(self.input_details)} inputs "
                    f"{sorted(self.input_details)}: pass a dict {{name: array}}."
                )
            inputs = {next(iter(self.input_details)): inputs}
        return {k: np.asarray(v) for k, v in inputs.items()}

    def run(self, feed: dict[str, np.ndarray], dequantize: bool = True) -> dict:
        """Runs `feed`, in chunks when the file has a fixed batch size."""
        first = next(iter(self.input_details.values()))
        fixed = (
            int(first["shape_signature"][0]) if len(first["shape_signature"]) else -1
        )
        batch = len(next(iter(feed.values())))
        if fixed < 1 or fixed == batch:
            self.set_inputs(feed)
            self.invoke()
            return self.outputs(dequantize)
        if batch % fixed:
            raise ValueError(
                f"The TFLite model has a fixed batch size {fixed}; the batch of "
                f"{batch} is not a multiple of it."
            )
        chunks = []
        for i in range(0, batch, fixed):
            self.set_inputs({k: v[i : i + fixed] for k, v in feed.items()})
            self.invoke()
            chunks.append(self.outputs(dequantize))
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

    def outputs(self, dequantize: bool) -> dict[str, np.ndarray]:
        result = {}
        for name, detail in self.output_details.items():
            value = self.interpreter.get_tensor(detail["index"])
            scale, zero = detail["quantization"]
            if dequantize and scale and np.issubdtype(value.dtype, np.integer):
                value = (value.astype(np.float32) - zero) * scale
            result[name] = value
        return result

    def random_feed(self, batch_size: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        feed = {}
        for name, d in self.input_details.items():
            shape = [
                batch_size if i == 0 else s for i, s in enumerate(d["shape_signature"])
            ]
            if any(s < 0 for s in shape):
                raise ValueError(
                    f"Input {name!r} has unknown dimensions {d['shape_signature']}; "
                    "pass `inputs=`."
                )
            if np.issubdtype(d["dtype"], np.integer):
                info = np.iinfo(d["dtype"])
                feed[name] = rng.integers(
                    max(info.min, -128), min(info.max, 127), size=shape
                ).astype(d["dtype"])
            else:
                feed[name] = rng.standard_normal(shape).astype(d["dtype"])
        return feed


def _check_input(name: str, value: np.ndarray, detail: dict) -> None:
    """`value` fits input `name`: numbers, its rank and every fixed dimension
    but the batch."""
    if value.dtype.kind not in "biuf":
        raise TypeError(
            f"`inputs` for {name!r} must be numbers. Received an array of dtype "
            f"{value.dtype}."
        )
    signature = [int(d) for d in detail["shape_signature"]]
    if value.ndim != len(signature) or any(
        want >= 0 and got != want for got, want in zip(value.shape[1:], signature[1:])
    ):
        expected = tuple(None if d < 0 else d for d in signature)
        raise ValueError(
            f"`inputs` for {name!r} has shape {value.shape}; the TFLite model "
            f"takes {expected} (the batch may differ)."
        )


def _to_tensor(value: Any, detail: dict) -> np.ndarray:
    value = np.asarray(value)
    dtype = detail["dtype"]
    scale, zero = detail["quantization"]
    if scale and np.issubdtype(dtype, np.integer) and value.dtype.kind == "f":
        info = np.iinfo(dtype)
        value = np.clip(np.round(value / scale + zero), info.min, info.max)
    return value.astype(dtype)


def sorted_outputs(outputs: dict[str, Any]) -> list[np.ndarray]:
    """Signature outputs in Keras' flattening order (`output_0, output_1, …`)."""

    def key(name: str):
        m = re.fullmatch(r"output_(\d+)", name)
        return (0, int(m.group(1)), "") if m else (1, 0, name)

    return [np.asarray(outputs[k]) for k in sorted(outputs, key=key)]


def run_tflite(
    path_or_bytes: str | os.PathLike | bytes,
    inputs: Any,
    *,
    num_threads: int = 2,
    dequantize: bool = True,
) -> Any:
    """Runs a TFLite model in LiteRT on a batch of inputs.

    Float inputs are quantised for int8-input models, and int8 outputs are
    dequantised (unless `dequantize=False`), so the results compare directly with
    the Keras model's.

    Args:
        path_or_bytes: a `.tflite` path or the flatbuffer bytes.
        inputs: an array (one-input model) or a dict `{input name: array}` (the
            names are the `keras.Input` names). The batch size may differ from the
            one the file was converted with when its batch dimension is dynamic.
        num_threads: int. Interpreter threads. Defaults to `2`.
        dequantize: bool. Return int8 outputs as floats. Defaults to `True`.

    Returns:
        One array for a one-output model; a list for the outputs of a model with
        list outputs (in Keras order); a dict for a model with dict outputs.

    Raises:
        ValueError: the inputs do not match the model's.
        TypeError: `dequantize` is not a bool.
        ImportError: `ai-edge-litert` is not installed.

    Example:

    >>> import os, tempfile, keras, numpy as np
    >>> from keras_filterprune import export_tflite
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = export_tflite(model, os.path.join(d, "m.tflite"), verbose=0).path
    ...     y = run_tflite(path, np.ones((3, 4), "float32"))
    >>> y.shape
    (3, 2)
    """
    check_bool(dequantize, "dequantize")
    runner = Runner(path_or_bytes, num_threads)
    outputs = runner.run(runner.as_feed(inputs), dequantize)
    ordered = sorted_outputs(outputs)
    if len(ordered) == 1:
        return ordered[0]
    if all(re.fullmatch(r"output_\d+", k) for k in outputs):
        return ordered
    return outputs
