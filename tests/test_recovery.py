"""Tests of keras_filterprune/recovery.py: BatchNorm recalibration, Distiller."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_filterprune as kfp
from keras_filterprune.recovery import Distiller, recalibrate_batchnorm
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
# Distiller
# ---------------------------------------------------------------------------


def _net(width, softmax=False, name=None):
    inputs = keras.Input((6,))
    x = L.Dense(width, activation="relu")(inputs)
    out = L.Dense(3, activation="softmax" if softmax else None)(x)
    return keras.Model(inputs, out, name=name)


def _kd(teacher_logits, student_logits, t):
    def softmax(z):
        z = z - z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    p, q = softmax(teacher_logits / t), softmax(student_logits / t)
    return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1)) * t * t)


@pytest.mark.parametrize("alpha", [0.0, 0.9, 1.0])
def test_distiller_loss_mixes_labels_and_soft_targets(alpha):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.integers(0, 3, 16)
    teacher, student = _net(16, name="teacher"), _net(4, name="student")
    distiller = Distiller(student, teacher, temperature=2.0, alpha=alpha)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    distiller.compile("sgd", loss=loss_fn)
    y_pred = student(x)
    value = float(distiller.compute_loss(x=x, y=y, y_pred=y_pred))
    hard = float(loss_fn(y, y_pred))
    np_ = keras.ops.convert_to_numpy
    soft = _kd(np_(teacher(x)), np_(y_pred), 2.0)
    assert value == pytest.approx((1 - alpha) * hard + alpha * soft, rel=1e-5)


def test_distiller_trains_only_the_student_and_handles_probabilities(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, 64)
    teacher, student = _net(16, softmax=True, name="t"), _net(4, name="s")
    before_t = [w.copy() for w in teacher.get_weights()]
    before_s = [w.copy() for w in student.get_weights()]
    distiller = Distiller(student, teacher)
    assert distiller._teacher_probs and not distiller._student_probs
    distiller.compile(
        "adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = distiller.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for a, b in zip(teacher.get_weights(), before_t):
        np.testing.assert_array_equal(a, b)
    assert teacher.trainable  # not changed
    assert any(
        not np.array_equal(a, b) for a, b in zip(student.get_weights(), before_s)
    )
    assert len(distiller.trainable_weights) == len(student.trainable_weights)
    # The student (the Distiller's predictions) round-trips through .keras.
    path = tmp_path / "d.keras"
    distiller.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, Distiller)
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0),
        distiller.predict(x, verbose=0),
        rtol=1e-5,
        atol=1e-6,
    )
    assert loaded.temperature == 4.0 and loaded.alpha == 0.9


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"temperature": 0}, ValueError, "`temperature`"),
        ({"alpha": 1.5}, ValueError, "`alpha`"),
        ({"alpha": float("nan")}, ValueError, "`alpha`"),
        ({"from_logits": "yes"}, TypeError, "`from_logits`"),
    ],
)
def test_distiller_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Distiller(_net(4), _net(8), **kwargs)
    with pytest.raises(TypeError, match="`teacher` must be a keras.Model"):
        Distiller(_net(4), "teacher")
