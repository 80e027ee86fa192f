"""Tests of keras_filterprune/export.py: round trips, sizes, bad input."""

import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_filterprune import FilterPruneWarning, export
from keras_filterprune.export import (
    TOLERANCES,
    ExportReport,
    export_saved_model,
    export_tflite,
    save_keras,
)
from keras_filterprune.runtime import run_tflite

BACKEND = keras.backend.backend()
tensorflow_backend = pytest.mark.skipif(
    BACKEND != "tensorflow",
    reason="SavedModel/TFLite export runs on the TensorFlow backend",
)


# ----------------------------------------------------------------------------------
# Models and helpers (reusable for pruned models and the audio zoo)
# ----------------------------------------------------------------------------------
def _randomize_bn(model, seed=0):
    """Gives BatchNormalization layers non-trivial statistics (as after training)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.2, beta.shape),
                    rng.normal(0, 0.2, mean.shape),
                    rng.uniform(0.5, 2.0, var.shape),
                ]
            )
    return model


def image_cnn(width=8, name="image_cnn"):
    """Conv/BN/ReLU/pool/Dropout/Dense on 16x16x3 images."""
    inp = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(width, 3, padding="same")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(2 * width, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5)(x)
    return _randomize_bn(keras.Model(inp, out, name=name))


def audio_cnn(frames=32, bands=8, name="audio_cnn"):
    """Conv1D over (frames, mel bands) features; `frames=None` for any length."""
    inp = keras.Input((frames, bands), name="logmel")
    x = keras.layers.Conv1D(8, 3, padding="same")(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.Conv1D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    out = keras.layers.Dense(4, activation="softmax")(x)
    return _randomize_bn(keras.Model(inp, out, name=name))


def plain_cnn(width, name=None):
    """Three 3x3 convs of `width` filters: params grow as width**2."""
    inp = keras.Input((16, 16, 3))
    x = inp
    for _ in range(3):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(10)(x), name=name)


def two_io_model():
    """Two inputs (declared 'zeta' before 'alpha') and two outputs of other shapes."""
    a = keras.Input((12, 4), name="zeta")
    b = keras.Input((6,), name="alpha")
    x = keras.layers.Conv1D(8, 3, activation="relu")(a)
    x = keras.layers.GlobalAveragePooling1D()(x)
    x = keras.layers.Concatenate()([x, b])
    return keras.Model([a, b], [keras.layers.Dense(3)(x), keras.layers.Dense(2)(x)])


def inputs_like(model, n, seed=1):
    """Random normal inputs for `model`: an array, or a list for several inputs."""
    rng = np.random.default_rng(seed)
    arrays = [
        rng.standard_normal((n, *t.shape[1:])).astype("float32") for t in model.inputs
    ]
    return arrays[0] if len(arrays) == 1 else arrays


def keras_outputs(model, x):
    outputs = keras.tree.flatten(model(x, training=False))
    return [keras.ops.convert_to_numpy(o) for o in outputs]


def tolerance(quantization, reference):
    atol, rtol = TOLERANCES[quantization]
    return atol + rtol * max(float(np.ptp(r)) for r in reference)


def assert_tflite_matches(model, path, x, quantization=None):
    """Runs the .tflite at `path` on `x` and compares with Keras (mode tolerance)."""
    feed = x
    if isinstance(x, list):
        feed = {t.name: v for t, v in zip(model.inputs, x, strict=True)}
    got = run_tflite(path, feed)
    got = got if isinstance(got, list) else [got]
    ref = keras_outputs(model, x)
    tol = tolerance(quantization, ref)
    for r, g in zip(ref, got, strict=True):
        assert r.shape == g.shape
        np.testing.assert_allclose(g, r, rtol=0, atol=tol)


def assert_only(directory, *names):
    """`directory` holds exactly `names`: no partial or temporary leftovers."""
    assert sorted(os.listdir(directory)) == sorted(names)


# ----------------------------------------------------------------------------------
# Round trips
# ----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [image_cnn, audio_cnn])
def test_keras_round_trip(make, tmp_path):
    model = make()
    report = save_keras(model, tmp_path / "m.keras")
    assert isinstance(report, ExportReport)
    assert (report.format, report.passed, report.max_abs_diff) == ("keras", True, 0.0)
    assert report.size_bytes == os.path.getsize(tmp_path / "m.keras")
    reloaded = keras.saving.load_model(tmp_path / "m.keras")
    x = inputs_like(model, 3)
    # Compiled (predict) and eager calls may differ in the last bit on JAX.
    np.testing.assert_allclose(
        reloaded.predict_on_batch(x),
        keras.ops.convert_to_numpy(model(x)),
        rtol=1e-6,
        atol=1e-7,
    )
    assert_only(tmp_path, "m.keras")


@pytest.mark.parametrize("make", [image_cnn, audio_cnn])
@tensorflow_backend
def test_saved_model_round_trip(make, tmp_path):
    model = make()
    report = export_saved_model(model, tmp_path / "sm")
    assert report.format == "saved_model" and report.passed
    assert report.max_abs_diff <= 1e-4 and report.size_bytes > 0
    layer = keras.layers.TFSMLayer(tmp_path / "sm", call_endpoint="serve")
    x = inputs_like(model, 3)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)),
        keras.ops.convert_to_numpy(model(x)),
        rtol=0,
        atol=1e-4,
    )
    assert_only(tmp_path, "sm")


@pytest.mark.parametrize(
    ("make", "quantization"),
    [
        (image_cnn, None),
        (image_cnn, "float16"),
        (image_cnn, "dynamic"),
        (image_cnn, "int8"),
        (audio_cnn, None),
        (audio_cnn, "int8"),
    ],
)
@tensorflow_backend
def test_tflite_round_trip(make, quantization, tmp_path):
    model = make()
    data = inputs_like(model, 64, seed=2)
    report = export_tflite(model, tmp_path / "m.tflite", quantization, data)
    assert report.passed, report
    assert report.quantization == quantization
    assert report.max_abs_diff <= report.tolerance
    assert report.size_bytes == os.path.getsize(tmp_path / "m.tflite")
    # Fresh inputs from the same distribution, checked independently.
    assert_tflite_matches(
        model, tmp_path / "m.tflite", inputs_like(model, 5), quantization
    )
    assert_only(tmp_path, "m.tflite")


@tensorflow_backend
def test_tflite_fp32_is_exact_to_1e4(tmp_path):
    model = image_cnn()
    report = export_tflite(model, tmp_path / "m.tflite")
    assert report.max_abs_diff < 1e-5 and report.tolerance <= 1.1e-4


@tensorflow_backend
def test_quantized_files_are_smaller(tmp_path):
    model = plain_cnn(32)
    data = inputs_like(model, 32)
    sizes = {
        q: export_tflite(model, tmp_path / f"{q}.tflite", q, data).size_bytes
        for q in (None, "float16", "int8")
    }
    assert 0.45 < sizes["float16"] / sizes[None] < 0.55
    assert 0.2 < sizes["int8"] / sizes[None] < 0.35  # + per-channel scales


@tensorflow_backend
def test_int8_io_has_int8_boundary(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model = image_cnn()
    data = inputs_like(model, 64, seed=2)
    report = export_tflite(model, tmp_path / "m.tflite", "int8", data, int8_io=True)
    assert report.passed, report
    interpreter = Interpreter(model_path=str(tmp_path / "m.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    assert_tflite_matches(model, tmp_path / "m.tflite", inputs_like(model, 5), "int8")
    raw = run_tflite(tmp_path / "m.tflite", inputs_like(model, 2), dequantize=False)
    assert raw.dtype == np.int8


@tensorflow_backend
def test_multi_input_multi_output(tmp_path):
    model = two_io_model()
    x = inputs_like(model, 4)
    assert save_keras(model, tmp_path / "m.keras").passed
    assert export_saved_model(model, tmp_path / "sm").passed
    layer = keras.layers.TFSMLayer(tmp_path / "sm", call_endpoint="serve")
    for got, ref in zip(layer(x), keras_outputs(model, x), strict=True):
        np.testing.assert_allclose(got, ref, atol=1e-4)
    assert export_tflite(model, tmp_path / "m.tflite").passed
    assert_tflite_matches(model, tmp_path / "m.tflite", x)
    # int8 calibrated from a list holding one batch per input.
    data = inputs_like(model, 32, seed=3)
    assert export_tflite(model, tmp_path / "q.tflite", "int8", data).passed
    assert_tflite_matches(model, tmp_path / "q.tflite", x, "int8")
    with pytest.raises(ValueError, match="pass a dict"):
        run_tflite(tmp_path / "m.tflite", x[0])


@tensorflow_backend
def test_variable_length_audio_needs_example_inputs(tmp_path):
    model = audio_cnn(frames=None)
    with pytest.raises(ValueError, match="representative_data"):
        export_tflite(model, tmp_path / "m.tflite")
    assert_only(tmp_path)
    data = np.random.default_rng(0).normal(size=(4, 40, 8)).astype("float32")
    assert export_tflite(model, tmp_path / "m.tflite", representative_data=data).passed
    longer = np.random.default_rng(1).normal(size=(2, 64, 8)).astype("float32")
    assert_tflite_matches(model, tmp_path / "m.tflite", longer)
    with pytest.raises(ValueError, match="unknown dimensions"):
        export_saved_model(model, tmp_path / "sm")
    assert export_saved_model(model, tmp_path / "sm", representative_data=data).passed
    assert save_keras(model, tmp_path / "m.keras", representative_data=data).passed
    assert_only(tmp_path, "m.tflite", "sm", "m.keras")


@tensorflow_backend
def test_fixed_batch_model_is_verified_in_chunks(tmp_path):
    inp = keras.Input((6,), batch_size=1)
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    report = export_tflite(model, tmp_path / "m.tflite", num_verify=3)
    assert report.passed


def test_representative_data_forms():
    model = image_cnn()
    x = inputs_like(model, 6)
    y = np.zeros((6,), "int32")
    forms = {
        "array": x,
        "list of unbatched samples": list(x),
        "tf.data (x, y) batches": tf.data.Dataset.from_tensor_slices((x, y)).batch(4),
        "generator function": lambda: ([x[i : i + 2]] for i in range(0, 6, 2)),
        "dict": {"image": x},
    }
    for form, data in forms.items():
        samples = export._samples(data, model)
        assert len(samples) == 6, form
        np.testing.assert_array_equal(samples[5]["image"], x[5:6], err_msg=form)
    multi = two_io_model()
    a, b = inputs_like(multi, 3)
    pairs = tf.data.Dataset.from_tensor_slices(((a, b), np.zeros(3))).batch(2)
    assert len(export._samples(pairs, multi)) == 3
    assert len(export._samples([a, b], multi)) == 3
    with pytest.raises(ValueError, match="inputs"):
        export._samples([a, b, a], multi)
    with pytest.raises(ValueError, match="empty"):
        export._samples([], model)


def test_nan_or_shape_mismatch_fails_the_check():
    ref = [np.array([[1.0, 2.0]])]
    assert export._compare(None, ref, [np.array([[1.0, np.nan]])], None)[2] is False
    assert export._compare(None, ref, [np.array([[1.0, 2.00001]])], None)[2] is True
    with pytest.raises(RuntimeError, match="shape"):
        export._compare(None, ref, [np.array([1.0, 2.0])], None)


@tensorflow_backend
def test_verify_false_skips_check(tmp_path):
    report = export_tflite(plain_cnn(4), tmp_path / "m.tflite", verify=False)
    assert (report.max_abs_diff, report.tolerance, report.passed) == (None, None, None)
    assert "not verified" in str(report)


@tensorflow_backend
def test_failed_verification_warns_or_raises(tmp_path):
    model = image_cnn()
    with pytest.warns(FilterPruneWarning, match="differs from the Keras model"):
        report = export_tflite(model, tmp_path / "m.tflite", "float16", tolerance=0.0)
    assert report.passed is False and os.path.exists(report.path)
    with pytest.raises(RuntimeError, match="strict=True"):
        export_tflite(model, tmp_path / "s.tflite", "float16", tolerance=0, strict=True)
    assert_only(tmp_path, "m.tflite")


# ----------------------------------------------------------------------------------
# File size follows parameter count
# ----------------------------------------------------------------------------------
@tensorflow_backend
def test_tflite_size_ratio_follows_param_ratio(tmp_path):
    wide, narrow = plain_cnn(48), plain_cnn(34)
    param_ratio = narrow.count_params() / wide.count_params()
    assert 0.45 < param_ratio < 0.55
    size = {
        name: export_tflite(m, tmp_path / f"{name}.tflite").size_bytes
        for name, m in (("wide", wide), ("narrow", narrow))
    }
    size_ratio = size["narrow"] / size["wide"]
    assert abs(size_ratio / param_ratio - 1) < 0.1, (size_ratio, param_ratio)


# ----------------------------------------------------------------------------------
# Bad input; nothing partial left behind
# ----------------------------------------------------------------------------------
@tensorflow_backend
def test_wrong_extension(tmp_path):
    model = plain_cnn(2)
    with pytest.raises(ValueError, match=r"'\.tflite'"):
        export_tflite(model, tmp_path / "m.keras")
    with pytest.raises(ValueError, match=r"'\.keras'"):
        save_keras(model, tmp_path / "m.h5")
    with pytest.raises(ValueError, match="SavedModel is a directory"):
        export_saved_model(model, tmp_path / "m.tflite")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        export_saved_model(model, tmp_path / "file")
    (tmp_path / "d.tflite").mkdir()
    with pytest.raises(IsADirectoryError):
        export_tflite(model, tmp_path / "d.tflite")
    assert_only(tmp_path, "file", "d.tflite")


@tensorflow_backend
def test_missing_or_unwritable_directory(tmp_path, monkeypatch):
    model = plain_cnn(2)
    missing = tmp_path / "no" / "such"
    for call, name in (
        (export_tflite, "m.tflite"),
        (save_keras, "m.keras"),
        (export_saved_model, "sm"),
    ):
        with pytest.raises(FileNotFoundError, match="os.makedirs"):
            call(model, missing / name)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        export_tflite(model, tmp_path / "file" / "m.tflite")
    monkeypatch.setattr(export.os, "access", lambda *args, **kwargs: False)
    with pytest.raises(PermissionError, match="writable"):
        export_tflite(model, tmp_path / "m.tflite")
    assert_only(tmp_path, "file")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere"
)
def test_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(PermissionError):
        export_tflite(plain_cnn(2), ro / "m.tflite")


@tensorflow_backend
def test_bad_arguments(tmp_path):
    model = plain_cnn(2)
    with pytest.raises(ValueError, match="representative_data"):
        export_tflite(model, tmp_path / "m.tflite", "int8")
    with pytest.raises(ValueError, match="quantization"):
        export_tflite(model, tmp_path / "m.tflite", "int4")
    with pytest.raises(ValueError, match="int8_io"):
        export_tflite(model, tmp_path / "m.tflite", "dynamic", int8_io=True)
    with pytest.raises(ValueError, match="num_verify"):
        export_tflite(model, tmp_path / "m.tflite", num_verify=0)
    with pytest.raises(TypeError, match="keras.Model"):
        export_tflite("model", tmp_path / "m.tflite")
    with pytest.raises(TypeError, match="path"):
        export_tflite(model, 3)

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="functional"):
        save_keras(Subclassed(), tmp_path / "m.keras")
    assert_only(tmp_path)


class _QR(keras.layers.Layer):
    """Uses an op (Qr) that is no TFLite builtin."""

    def call(self, x):
        return keras.ops.qr(x)[0]


@tensorflow_backend
def test_unsupported_op_fails_cleanly(tmp_path):
    inp = keras.Input((4, 4))
    model = keras.Model(inp, _QR()(inp))
    (tmp_path / "m.tflite").write_bytes(b"previous")
    with pytest.raises(RuntimeError, match="Qr.*SELECT_TF_OPS") as info:
        export_tflite(model, tmp_path / "m.tflite")
    assert info.value.__cause__ is not None
    assert (tmp_path / "m.tflite").read_bytes() == b"previous"
    assert_only(tmp_path, "m.tflite")


@tensorflow_backend
def test_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    model = plain_cnn(2)

    def broken_save(model, path, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(keras.saving, "save_model", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_keras(model, tmp_path / "m.keras")

    def broken_export(path, **kwargs):
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
            f.write(b"half")
        raise ValueError("cannot trace")

    monkeypatch.setattr(model, "export", broken_export)
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "old.pb").write_bytes(b"old")
    with pytest.raises(RuntimeError, match="cannot trace"):
        export_saved_model(model, tmp_path / "sm")
    assert_only(tmp_path, "sm")
    assert os.listdir(tmp_path / "sm") == ["old.pb"]

    class BrokenConverter:
        target_spec = types.SimpleNamespace()

        def convert(self):
            raise ValueError("converter crashed")

    monkeypatch.undo()
    monkeypatch.setattr(
        tf.lite.TFLiteConverter, "from_saved_model", lambda *a, **k: BrokenConverter()
    )
    with pytest.raises(RuntimeError, match="converter crashed") as info:
        export_tflite(model, tmp_path / "m.tflite")
    assert isinstance(info.value.__cause__, ValueError)
    assert_only(tmp_path, "sm")


@tensorflow_backend
def test_overwrites_existing_outputs(tmp_path):
    model = plain_cnn(2)
    (tmp_path / "m.tflite").write_bytes(b"old")
    export_tflite(model, tmp_path / "m.tflite", verify=False)
    assert (tmp_path / "m.tflite").read_bytes()[4:8] == b"TFL3"
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "stale").write_text("x")
    assert export_saved_model(model, tmp_path / "sm").passed
    assert "stale" not in os.listdir(tmp_path / "sm")
    assert_only(tmp_path, "m.tflite", "sm")


def test_unloadable_keras_file_is_reported(tmp_path):
    inp = keras.Input((4, 4))
    model = keras.Model(inp, _QR()(inp))  # _QR is not registered serializable
    with pytest.warns(FilterPruneWarning, match="register_keras_serializable"):
        report = save_keras(model, tmp_path / "m.keras")
    assert report.passed is False
    report = save_keras(model, tmp_path / "m.keras", custom_objects={"_QR": _QR})
    assert report.passed


@pytest.mark.skipif(BACKEND == "tensorflow", reason="JAX/PyTorch only")
@pytest.mark.parametrize("write", [export_saved_model, export_tflite])
def test_other_backends_are_told_what_to_do(write, tmp_path):
    model = image_cnn()
    with pytest.raises(RuntimeError, match="runs on the TensorFlow backend") as info:
        write(model, tmp_path / ("m.tflite" if write is export_tflite else "sm"))
    message = str(info.value)
    assert BACKEND in message and "KERAS_BACKEND=tensorflow" in message
    assert "\n" not in message
    assert os.listdir(tmp_path) == []
