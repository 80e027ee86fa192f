"""Tests of keras_filterprune/recovery.py: BatchNorm recalibration."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_filterprune as kfp
from keras_filterprune.recovery import recalibrate_batchnorm
from tests import oracle

L = keras.layers


def _bn_model(nested=False, dropout=0.0):
    inputs = keras.Input((6,))
    x = L.Dense(5, name="dense")(inputs)
    x = L.Dropout(dropout, name="drop")(x)
    x = L.BatchNormalization(momentum=0.99, name="bn")(x)
    if nested:
        inner_in = keras.Input((5,))
        inner = keras.Model(
            inner_in,
            L.BatchNormalization(name="bn_inner")(L.Dense(4)(inner_in)),
            name="inner",
        )
        x = inner(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x))


def _batch_stats(model, x, batch_size, layer="dense"):
    features = keras.Model(model.inputs[0], model.get_layer(layer).output)
    batches = [
        keras.ops.convert_to_numpy(features(x[i : i + batch_size]))
        for i in range(0, len(x), batch_size)
    ]
    return (
        np.mean([b.mean(axis=0) for b in batches], axis=0),
        np.mean([b.var(axis=0) for b in batches], axis=0),
    )


def test_moving_statistics_become_the_plain_average_of_the_batches():
    rng = np.random.default_rng(0)
    model = _bn_model(dropout=0.5)
    x = rng.normal(3.0, 2.0, size=(100, 6)).astype("float32")
    before = {v.path: v.numpy().copy() for v in model.weights}
    assert recalibrate_batchnorm(model, x, batch_size=32) == 4  # 32, 32, 32, 4
    mean, var = _batch_stats(model, x, 32)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), var, rtol=1e-4, atol=1e-5)
    for v in model.weights:  # nothing but the moving statistics changed
        if "moving" not in v.path:
            np.testing.assert_array_equal(v.numpy(), before[v.path])
    assert bn.momentum == 0.99
    assert model.get_layer("drop").rate == 0.5  # silenced meanwhile, restored


def test_recalibration_asks_the_handler_which_layers_keep_statistics():
    from keras_filterprune.handlers import PassThroughHandler, unregister_handler

    class SubclassedNorm(L.BatchNormalization):
        pass

    model = keras.Sequential([keras.Input((3,)), SubclassedNorm(name="norm")])
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    assert recalibrate_batchnorm(model, x, batch_size=8) == 1  # BatchNorm's handler
    kfp.handlers.register_handler(SubclassedNorm, PassThroughHandler())  # no statistics
    try:
        before = model.get_layer("norm").moving_mean.numpy().copy()
        assert recalibrate_batchnorm(model, np.zeros_like(x)) == 0
        np.testing.assert_array_equal(model.get_layer("norm").moving_mean, before)
    finally:
        unregister_handler(SubclassedNorm)


def test_nested_models_and_data_forms():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 2, 64)
    reference = _bn_model(nested=True)
    recalibrate_batchnorm(reference, x, batch_size=16)
    inner_bn = reference.get_layer("inner").get_layer("bn_inner")
    assert not np.allclose(inner_bn.moving_mean.numpy(), 0.0)
    for data, kwargs in [
        ((x, y), {"batch_size": 16}),
        (tf.data.Dataset.from_tensor_slices((x, y)).batch(16), {}),
        ((x[i : i + 16] for i in range(0, 64, 16)), {}),
        (tf.data.Dataset.from_tensor_slices(x).batch(16).repeat(), {"steps": 4}),
    ]:
        model = _bn_model(nested=True)
        model.set_weights(reference.get_weights())
        for layer in (
            model.get_layer("bn"),
            model.get_layer("inner").get_layer("bn_inner"),
        ):
            layer.moving_mean.assign(np.zeros(layer.moving_mean.shape))
        assert recalibrate_batchnorm(model, data, **kwargs) == 4
        for a, b in zip(model.weights, reference.weights):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_failures_restore_momentum_and_bad_arguments():
    model = _bn_model()

    def broken():
        yield np.zeros((4, 6), "float32")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        recalibrate_batchnorm(model, broken())
    assert model.get_layer("bn").momentum == 0.99
    with pytest.raises(ValueError, match="yielded no batch"):
        recalibrate_batchnorm(model, iter([]))
    with pytest.raises(TypeError, match="`data` must be"):
        recalibrate_batchnorm(model, 3)
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        recalibrate_batchnorm("model", np.zeros((2, 6)))
    with pytest.raises(ValueError, match="`steps`"):
        recalibrate_batchnorm(model, np.zeros((2, 6)), steps=0)
    plain = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    assert recalibrate_batchnorm(plain, np.zeros((2, 3))) == 0


def test_apply_plan_recalibrates_the_pruned_model():
    rng = np.random.default_rng(2)
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.Conv2D(6, 3, name="c2")(L.ReLU()(x))
    x = L.BatchNormalization(name="bn2")(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(L.GlobalAveragePooling2D()(x)))
    data = rng.normal(1.0, 2.0, size=(32, 8, 8, 3)).astype("float32")
    before = oracle.snapshot(model)
    plain = kfp.prune_keras_model(model, 0.5, "l1_norm")
    calibrated = kfp.prune_keras_model(model, 0.5, "l1_norm", calibration_data=data)
    oracle.assert_untouched(model, before)
    bn2 = calibrated.get_layer("bn2")
    assert not np.allclose(
        bn2.moving_mean.numpy(), plain.get_layer("bn2").moving_mean.numpy()
    )
    expected = recalibrate_batchnorm(plain, data)
    assert expected == 1
    np.testing.assert_allclose(
        bn2.moving_mean.numpy(),
        plain.get_layer("bn2").moving_mean.numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


# ---------------------------------------------------------------------------
# recalibrate_batchnorm's progress bar
# ---------------------------------------------------------------------------


def test_recalibrate_batchnorm_progress_bar(capsys):
    x = np.random.default_rng(8).normal(size=(100, 6)).astype("float32")
    model = _bn_model()
    recalibrate_batchnorm(model, x, batch_size=32)
    assert capsys.readouterr().out == ""  # silent by default, as before
    recalibrate_batchnorm(model, x, batch_size=32, verbose=1)
    out = capsys.readouterr().out
    assert "4/4" in out and "step" in out
    recalibrate_batchnorm(model, x, batch_size=32, steps=2, verbose="auto")
    assert "2/2" in capsys.readouterr().out
    batches = (x[i : i + 50] for i in range(0, 100, 50))  # no length: counted
    recalibrate_batchnorm(model, batches, verbose=2)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "2/2" in out and "step" in out  # one line
    for verbose, error in [(3, ValueError), ("yes", TypeError), (True, TypeError)]:
        with pytest.raises(error, match="`verbose` must be"):
            recalibrate_batchnorm(model, x, verbose=verbose)


def _dense_bn():
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.BatchNormalization()]
    )


def _values(model):
    return [keras.ops.convert_to_numpy(v).copy() for v in model.variables]


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_recalibration_refuses_non_finite_batches_and_leaves_the_model(bad):
    model = _dense_bn()
    x = np.random.default_rng(0).random((64, 4)).astype("float32")
    x[40, 1] = bad
    before = _values(model)
    with pytest.raises(ValueError, match=r"batch 2 \(0-based\) holds NaN or Inf"):
        recalibrate_batchnorm(model, x, batch_size=16)
    for a, b in zip(before, _values(model)):
        np.testing.assert_array_equal(a, b)


def test_recalibration_failing_halfway_leaves_the_model_as_it_was():
    model = _dense_bn()
    before = _values(model)

    def batches():
        yield np.ones((4, 4), "float32") * 3.0  # would change the statistics
        raise OSError("the disk went away")

    with pytest.raises(OSError, match="disk went away"):
        recalibrate_batchnorm(model, batches())
    for a, b in zip(before, _values(model)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="non-finite statistics"):
        recalibrate_batchnorm(model, np.full((8, 4), 1e38, "float32"))
    for a, b in zip(before, _values(model)):
        np.testing.assert_array_equal(a, b)
