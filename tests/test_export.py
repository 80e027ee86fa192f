"""Tests of keras_filterprune/export.py: round trips, sizes, bad input."""

import dataclasses
import os
import re
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_filterprune import FilterPruneWarning, cli, export
from keras_filterprune._export_checks import CheckFailed, judge
from keras_filterprune._files import NATIVE_LOGS_ENV, native_output_captured
from keras_filterprune.export import (
    TOLERANCES,
    ExportCheckError,
    ExportReport,
    export_saved_model,
    export_tflite,
    save_keras,
)
from keras_filterprune.runtime import feeds
from keras_filterprune.runtime.litert import run_tflite

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
    """The bound of the mode, on the outputs' span with zero included (written
    out here, not taken from the exporter)."""
    atol, rtol = TOLERANCES[quantization]
    span = max(float(max(r.max(), 0) - min(r.min(), 0)) for r in reference)
    return atol + rtol * span


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
        samples = feeds.samples(data, model)
        assert len(samples) == 6, form
        np.testing.assert_array_equal(samples[5]["image"], x[5:6], err_msg=form)
    multi = two_io_model()
    a, b = inputs_like(multi, 3)
    pairs = tf.data.Dataset.from_tensor_slices(((a, b), np.zeros(3))).batch(2)
    assert len(feeds.samples(pairs, multi)) == 3
    assert len(feeds.samples([a, b], multi)) == 3
    with pytest.raises(ValueError, match="inputs"):
        feeds.samples([a, b, a], multi)
    with pytest.raises(ValueError, match="empty"):
        feeds.samples([], model)


def test_nan_or_shape_mismatch_fails_the_check():
    ref = [np.array([[1.0, 2.0]])]
    assert judge(None, ref, [np.array([[1.0, np.nan]])], None)["passed"] is False
    assert judge(None, ref, [np.array([[1.0, 2.00001]])], None)["passed"]
    with pytest.raises(CheckFailed, match="shape"):
        judge(None, ref, [np.array([1.0, 2.0])], None)


@tensorflow_backend
def test_verify_false_skips_check(tmp_path):
    report = export_tflite(plain_cnn(4), tmp_path / "m.tflite", verify=False)
    assert (report.max_abs_diff, report.tolerance, report.passed) == (None, None, None)
    assert "not checked against Keras (verify=False)" in str(report)


@tensorflow_backend
def test_failed_verification_warns_or_raises(tmp_path):
    model = image_cnn()
    with pytest.warns(FilterPruneWarning, match="written anyway") as record:
        report = export_tflite(
            model, tmp_path / "m.tflite", "float16", tolerance=0.0, strict=False
        )
    assert report.passed is False and os.path.exists(report.path)
    assert str(tmp_path / "m.tflite") in str(record[0].message)
    with pytest.raises(ExportCheckError, match="Nothing was written"):
        export_tflite(model, tmp_path / "s.tflite", "float16", tolerance=0)
    assert_only(tmp_path, "m.tflite")


# ----------------------------------------------------------------------------------
# Honest checks: criteria, wording, strict by default, no temporary paths
# ----------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="tests")
class _EagerOnly(keras.layers.Layer):
    """Doubles its input when run eagerly (Keras) but not once traced (every
    SavedModel/TFLite export): an export that deliberately differs."""

    def call(self, x):
        return x * 2.0 if tf.executing_eagerly() else x


def differing_model(name="differs"):
    inp = keras.Input((4,), name="features")
    return keras.Model(inp, keras.layers.Dense(3)(_EagerOnly()(inp)), name=name)


def assert_no_temporary_path(text):
    assert not re.search(r"\.tmp|kfp-", text), text


def test_report_wording_fp32():
    common = dict(path="m.tflite", format="tflite", size_bytes=2048, seconds=1.5)
    failed = ExportReport(
        **common,
        quantization=None,
        max_abs_diff=0.195,
        tolerance=0.0259,
        passed=False,
        num_verify=8,
        output_scale=2580.0,
        criterion="absolute",
    )
    assert failed.verification == (
        "TFLite (float32) in LiteRT vs Keras on 8 random inputs: max |difference| "
        "0.195 exceeds the allowed 0.0259 (1e-4 + 1e-5 x the output scale "
        "2.58e+03): FAILED"
    )
    assert (
        str(failed)
        == f"m.tflite: TFLite (float32), 2.0 KiB, 1.50 s. {failed.verification}"
    )
    ok = ExportReport(
        path="m.keras",
        format="keras",
        size_bytes=10,
        quantization=None,
        max_abs_diff=0.0,
        tolerance=1.1e-4,
        passed=True,
        seconds=0.1,
        num_verify=4,
        verify_data="representative",
        output_scale=1.0,
        criterion="absolute",
    )
    assert ok.verification.endswith(
        "on 4 representative inputs: max |difference| 0 is within the allowed "
        "0.00011 (1e-4 + 1e-5 x the output scale 1): passed"
    )


def test_report_wording_quantized():
    report = ExportReport(
        path="m.tflite",
        format="tflite",
        size_bytes=2048,
        quantization="int8",
        max_abs_diff=0.017,
        tolerance=0.05,
        passed=True,
        seconds=1.0,
        num_verify=8,
        verify_data="representative",
        output_scale=1.0,
        criterion="relative",
        top1_agreement=1.0,
        top1_near_ties=1,
    )
    assert report.max_relative_error == pytest.approx(0.017)
    assert report.verification == (
        "TFLite (int8) in LiteRT vs Keras on 8 representative inputs: top-1 "
        "agreement 100% (needs >= 90%; 1 near tie within the allowed error counted "
        "as agreeing), max error 1.7% of the output scale 1 (needs <= 5%): passed"
    )
    user = dataclasses.replace(report, criterion="tolerance", tolerance=0.01)
    assert "0.017 exceeds the allowed 0.01 (set by `tolerance=`)" in user.verification


def test_quantized_outputs_are_judged_on_their_scale():
    rng = np.random.default_rng(0)
    # Near-constant probabilities (an uncertain softmax): int8 stores them over
    # [0, 1], so an error of 0.00174 is 0.17 % of their scale and passes, where
    # a bound on their peak-to-peak range (0.002) would reject it.
    probs = 0.1 + rng.uniform(-1e-3, 1e-3, (8, 10))
    noisy = probs + rng.choice([-1.74e-3, 1.74e-3], probs.shape)
    verdict = judge("int8", [probs], [noisy], None)
    assert verdict["passed"] and verdict["criterion"] == "relative"
    assert verdict["output_scale"] == 1.0
    assert verdict["max_abs_diff"] == pytest.approx(1.74e-3)
    assert verdict["top1_agreement"] == 1.0 and verdict["top1_near_ties"] > 0
    # The same error fails float32's tight check.
    assert not judge(None, [probs], [noisy], None)["passed"]
    # Logits: the scale is their span with zero included.
    logits = np.array([[1.0, 0.8, -1.0], [2.0, -1.0, 0.0]])
    assert judge("int8", [logits], [logits], None)["output_scale"] == 3.0
    # Within 5 % of the scale everywhere, but the first input's top class
    # changes by more than a near tie: the top-1 criterion fails it.
    flipped = logits + np.array([[-0.11, 0.11, 0.0], [0.0, 0.0, 0.0]])
    verdict = judge("int8", [logits], [flipped], None)
    assert verdict["max_abs_diff"] <= verdict["tolerance"]
    assert verdict["top1_agreement"] == 0.5 and not verdict["passed"]
    # An error beyond 5 % of the scale fails whatever the top-1 agreement.
    assert not judge("int8", [logits], [logits + 0.2], None)["passed"]
    # Feature maps are not classifier-like: no top-1 agreement.
    maps = rng.normal(size=(2, 4, 4, 3))
    assert judge("float16", [maps], [maps], None)["top1_agreement"] is None


@tensorflow_backend
def test_near_constant_softmax_passes_int8(tmp_path):
    inp = keras.Input((16,))
    small = keras.initializers.RandomNormal(stddev=0.002, seed=0)
    out = keras.layers.Dense(10, activation="softmax", kernel_initializer=small)(inp)
    model = keras.Model(inp, out)
    data = np.random.default_rng(0).normal(size=(64, 16)).astype("float32")
    report = export_tflite(model, tmp_path / "m.tflite", "int8", data, verbose=0)
    assert report.passed, report
    ref = keras_outputs(model, data[:8])[0]
    # The former bound, 1e-3 + 0.1 x the peak-to-peak range, rejected this file.
    assert report.max_abs_diff > 1e-3 + 0.1 * np.ptp(ref)
    assert "top-1 agreement" in report.verification


@tensorflow_backend
@pytest.mark.parametrize("kind", ["saved_model", "tflite"])
def test_strict_by_default_leaves_nothing(kind, tmp_path):
    model = differing_model()
    target = tmp_path / ("sm" if kind == "saved_model" else "m.tflite")
    write = export_saved_model if kind == "saved_model" else export_tflite
    with pytest.raises(ExportCheckError, match="Nothing was written") as info:
        write(model, target)
    assert_only(tmp_path)
    message = str(info.value)
    assert str(target) in message and "exceeds the allowed" in message
    assert_no_temporary_path(message)
    assert info.value.report.passed is False and info.value.report.path == str(target)
    with pytest.warns(FilterPruneWarning, match="written anyway") as record:
        report = write(model, target, strict=False)
    assert report.passed is False and os.path.exists(target)
    assert str(target) in str(record[0].message)
    assert_no_temporary_path(str(record[0].message))
    assert_no_temporary_path(str(report))


def test_unloadable_keras_file_is_reported(tmp_path):
    inp = keras.Input((4, 4))
    model = keras.Model(inp, _QR()(inp))  # _QR is not registered serializable
    with pytest.raises(ExportCheckError, match="register_keras_serializable") as info:
        save_keras(model, tmp_path / "m.keras")
    assert_only(tmp_path)
    assert "does not reload" in str(info.value)
    assert_no_temporary_path(str(info.value))
    with pytest.warns(FilterPruneWarning, match="register_keras_serializable"):
        report = save_keras(model, tmp_path / "m.keras", strict=False)
    assert report.passed is False and report.problem.startswith("the file does not")
    assert_no_temporary_path(report.problem)
    report = save_keras(model, tmp_path / "m.keras", custom_objects={"_QR": _QR})
    assert report.passed


def test_save_keras_without_optimizer(tmp_path):
    model = plain_cnn(32)
    model.compile(optimizer="adam", loss="mse")
    x = inputs_like(model, 4)
    model.fit(x, np.zeros((4, 10)), verbose=0)
    full = save_keras(model, tmp_path / "full.keras")
    lean = save_keras(model, tmp_path / "lean.keras", include_optimizer=False)
    assert lean.passed and lean.size_bytes < 0.5 * full.size_bytes  # adam: m and v
    assert model.optimizer is not None  # the model itself is untouched
    assert not keras.saving.load_model(tmp_path / "lean.keras").compiled
    assert keras.saving.load_model(tmp_path / "full.keras").optimizer is not None
    # Dict outputs keep their structure; a Sequential never called is fine too.
    inp = keras.Input((5,), name="features")
    heads = {"a": keras.layers.Dense(1)(inp), "b": keras.layers.Dense(2)(inp)}
    for model in (
        keras.Model(inp, heads),
        keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]),
    ):
        model.compile(optimizer="sgd", loss="mse")
        path = tmp_path / f"{model.name}.keras"
        assert save_keras(model, path, include_optimizer=False).passed
        reloaded = keras.saving.load_model(path)
        assert not reloaded.compiled
        x = inputs_like(model, 2)
        assert type(reloaded(x)) is type(model(x))


# ----------------------------------------------------------------------------------
# Native output kept off the terminal; progress lines
# ----------------------------------------------------------------------------------
def test_native_output_is_captured(capfd, monkeypatch):
    monkeypatch.delenv(NATIVE_LOGS_ENV, raising=False)
    with native_output_captured() as native:
        os.write(1, b"native stdout\n")
        os.write(2, b"native stderr\n")
    assert capfd.readouterr() == ("", "")
    assert "native stdout" in native.text and "native stderr" in native.text
    # When the call fails, what it printed goes with the error (paths aliased).
    with pytest.raises(ValueError) as info:
        with native_output_captured({"/tmp/kfp-x": "<model>"}):
            os.write(2, b"reading /tmp/kfp-x/saved_model.pb\n")
            raise ValueError("conversion failed")
    assert "reading <model>/saved_model.pb" in "".join(info.value.__notes__)
    assert capfd.readouterr() == ("", "")
    # KERAS_FILTERPRUNE_NATIVE_LOGS=1 (the CLI's --debug) shows it.
    monkeypatch.setenv(NATIVE_LOGS_ENV, "1")
    with native_output_captured():
        os.write(2, b"native stderr\n")
    assert capfd.readouterr().err == "native stderr\n"


@tensorflow_backend
def test_int8_export_prints_progress_and_no_converter_noise(tmp_path, capfd):
    model = image_cnn(name="noisy")
    data = inputs_like(model, 32, seed=2)
    report = export_tflite(model, tmp_path / "m.tflite", "int8", data)
    assert report.passed
    run_tflite(report.path, inputs_like(model, 2))
    out, err = capfd.readouterr()
    assert out == (
        "export_tflite: converting 'noisy' to TFLite (int8), calibrating activation "
        "ranges on 32 representative samples...\n"
    )
    for noise in ("fully_quantize", "XNNPACK", "inference_type", "absl"):
        assert noise not in out + err
    assert err == ""
    export_tflite(model, tmp_path / "q.tflite", "dynamic", verbose=0)
    assert capfd.readouterr() == ("", "")


# ----------------------------------------------------------------------------------
# Command line: the export command says what it checked
# ----------------------------------------------------------------------------------
@tensorflow_backend
def test_cli_export_reports_the_check(tmp_path, capsys):
    save_keras(image_cnn(), tmp_path / "m.keras")
    save_keras(differing_model(), tmp_path / "bad.keras", custom_objects=None)
    out = tmp_path / "m.tflite"
    assert cli.main(["export", str(tmp_path / "m.keras"), "--tflite", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"to {out}: TFLite (float32)" in text
    assert "check: TFLite (float32) in LiteRT vs Keras on 8 random inputs:" in text
    assert text.rstrip().endswith(": passed")
    bad = tmp_path / "bad.tflite"
    argv = ["export", str(tmp_path / "bad.keras"), "--tflite", str(bad)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "was not written" in err and "exceeds the allowed" in err
    assert not bad.exists()
    assert_no_temporary_path(err)


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
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"old")
    with pytest.raises(RuntimeError, match="cannot trace"):
        export_saved_model(model, tmp_path / "sm")
    assert_only(tmp_path, "sm")
    assert os.listdir(tmp_path / "sm") == ["saved_model.pb"]

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
    (tmp_path / "sm").mkdir()  # an old SavedModel is replaced whole
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"old")
    (tmp_path / "sm" / "stale").write_text("x")
    assert export_saved_model(model, tmp_path / "sm").passed
    assert "stale" not in os.listdir(tmp_path / "sm")
    # A directory of other files is never deleted.
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a SavedModel"):
        export_saved_model(model, tmp_path / "notes")
    assert os.listdir(tmp_path / "notes") == ["mine.txt"]
    (tmp_path / "notes" / "mine.txt").unlink()
    (tmp_path / "notes").rmdir()
    assert_only(tmp_path, "m.tflite", "sm")


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
