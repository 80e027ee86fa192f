"""Keras → TFLite flatbuffer conversion, TFLite builtin ops only.

Keras `model.export(..., format="tf_saved_model")` then
`tf.lite.TFLiteConverter.from_saved_model` (see `keras_filterprune.export` for why
this path); what TensorFlow and the converter print from C++ is kept off the
terminal and shown with the error when conversion fails.
"""

from __future__ import annotations

import re
import tempfile
import warnings

import keras
import numpy as np

from keras_filterprune._files import native_output_captured, without_temporary_paths

__all__ = ["convert_tflite"]


def convert_tflite(
    model: keras.Model,
    quantization: str | None,
    samples: list[dict[str, np.ndarray]] | None,
    int8_io: bool,
) -> bytes:
    """The TFLite flatbuffer of `model`, converted with `quantization` (int8
    calibrated on the batch-1 feeds `samples`; `int8_io` makes its inputs and
    outputs int8). Raises a RuntimeError saying what failed."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="kfp-export-") as saved:
        aliases = {saved: f"<the SavedModel of {model.name!r}>"}
        try:
            with native_output_captured(aliases):
                model.export(saved, format="tf_saved_model", verbose=False)
        except Exception as e:
            reason = without_temporary_paths(str(e), aliases)
            raise RuntimeError(
                f"Keras could not trace {model.name!r} for TFLite conversion: {reason}"
            ) from e
        error = None
        with native_output_captured(aliases) as native:
            converter = tf.lite.TFLiteConverter.from_saved_model(saved)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            if quantization is not None:
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
            if quantization == "float16":
                converter.target_spec.supported_types = [tf.float16]
            elif quantization == "int8":
                converter.representative_dataset = lambda: iter(samples)
                converter.target_spec.supported_ops = [
                    tf.lite.OpsSet.TFLITE_BUILTINS_INT8
                ]
                if int8_io:
                    converter.inference_input_type = tf.int8
                    converter.inference_output_type = tf.int8
            try:
                with warnings.catch_warnings():  # the calibrator's tf.lite.Interpreter
                    warnings.filterwarnings(
                        "ignore", message=r".*tf\.lite\.Interpreter"
                    )
                    return converter.convert()
            except Exception as e:
                error = e
    # Outside the capture: the converter's own log goes with the error.
    failure = RuntimeError(_converter_hint(error, quantization, aliases))
    tail = native.tail()
    if tail and hasattr(failure, "add_note"):
        failure.add_note(f"Converter output:\n{tail}")
    raise failure from error


def _converter_hint(error: Exception, quantization: str | None, aliases) -> str:
    text = without_temporary_paths(str(error), aliases)
    ops = re.findall(r"(?:TF Select ops|Custom ops): ([^\n]+)", text)
    what = f"ops that are not TFLite builtins ({', '.join(ops)})" if ops else "an error"
    message = (
        f"TFLite conversion (quantization={quantization!r}) failed on {what}. "
        "Replace the layers that use them with TFLite-supported ops, or convert "
        "yourself with `converter.target_spec.supported_ops` including "
        "`tf.lite.OpsSet.SELECT_TF_OPS` if your runtime has the Flex delegate."
    )
    if quantization == "int8":
        message += (
            " Some ops have no int8 kernel: quantization='dynamic' keeps float "
            "activations."
        )
    first = next((ln for ln in text.splitlines() if ln.strip()), text)[:300]
    return f"{message} Converter said: {first}"
