"""Tests of keras_filterprune/distillation.py: Distiller."""

import keras
import numpy as np
import pytest

from keras_filterprune.distillation import Distiller

L = keras.layers


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
    distiller = Distiller(
        student, teacher, temperature=3.0, alpha=0.6, multi_label=False
    )
    # The teacher's softmax probabilities are read as log-probabilities.
    distiller_t1 = Distiller(student, teacher, temperature=1.0, alpha=1.0)
    distiller_t1.compile("sgd", loss="sparse_categorical_crossentropy")
    np_ = keras.ops.convert_to_numpy
    expected = _kd(np.log(np_(teacher(x))), np_(student(x)), 1.0)
    value = float(distiller_t1.compute_loss(x=x, y=y, y_pred=student(x)))
    assert value == pytest.approx(expected, rel=1e-4)
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
    assert (loaded.temperature, loaded.alpha) == (3.0, 0.6)
    assert loaded.multi_label is False and loaded.from_logits is None


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"temperature": 0}, ValueError, "`temperature`"),
        ({"alpha": 1.5}, ValueError, "`alpha`"),
        ({"alpha": float("nan")}, ValueError, "`alpha`"),
        ({"from_logits": "yes"}, TypeError, "`from_logits`"),
        ({"multi_label": 1}, TypeError, "`multi_label`"),
    ],
)
def test_distiller_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Distiller(_net(4), _net(8), **kwargs)
    with pytest.raises(TypeError, match="`teacher` must be a keras.Model"):
        Distiller(_net(4), "teacher")


def test_distiller_defaults_are_the_benchmarked_ones():
    # benchmarks/results/bench_distill.md: best mean over three pruned nets, never
    # below plain fine-tuning; the docstring cites it.
    distiller = Distiller(_net(4), _net(8))
    assert (distiller.temperature, distiller.alpha) == (2.0, 0.1)
    assert "bench_distill.md" in Distiller.__doc__


def _head_net(units, activation=None, width=8, name=None, seed=0):
    """Dense → Dense(units) logits → an `Activation` head (when given), and a
    second model on the same layers that returns the logits (the reference)."""
    inputs = keras.Input((6,))
    init = keras.initializers.RandomNormal(stddev=0.5, seed=seed)
    x = L.Dense(width, activation="tanh", kernel_initializer=init)(inputs)
    logits = L.Dense(units, kernel_initializer=init, name="logits")(x)
    out = L.Activation(activation, name="head")(logits) if activation else logits
    return keras.Model(inputs, out, name=name), keras.Model(inputs, logits)


def _bernoulli_kd(teacher_logits, student_logits, t):
    def sigmoid(z):
        return 1.0 / (1.0 + np.exp(-z))

    p = sigmoid(np.float64(teacher_logits) / t)
    q = sigmoid(np.float64(student_logits) / t)
    kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
    return float(np.mean(kl) * t * t)  # averaged over the batch and the units


@pytest.mark.parametrize(
    "units, activation, kwargs",
    [
        (1, "sigmoid", {}),  # Keras' binary example: one sigmoid unit
        (1, None, {}),  # a single logit
        (4, "sigmoid", {}),  # multi-label: sigmoid units
        (4, None, {"multi_label": True}),  # multi-label logits, declared
        (1, "sigmoid", {"from_logits": False}),
    ],
)
def test_distiller_binary_heads_use_the_bernoulli_kl(units, activation, kwargs):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.integers(0, 2, (32, units)).astype("float32")
    teacher, teacher_logits = _head_net(units, activation, 16, "t", seed=1)
    student, student_logits = _head_net(units, activation, 4, "s", seed=2)
    distiller = Distiller(student, teacher, temperature=3.0, alpha=1.0, **kwargs)
    distiller.compile("sgd", loss=keras.losses.BinaryCrossentropy())
    np_ = keras.ops.convert_to_numpy
    value = float(distiller.compute_loss(x=x, y=y, y_pred=student(x)))
    expected = _bernoulli_kd(np_(teacher_logits(x)), np_(student_logits(x)), 3.0)
    assert expected > 1e-3  # a real signal (a softmax over one unit gave 0)
    assert value == pytest.approx(expected, rel=1e-4)


def test_distiller_binary_head_gradients_reach_the_student():
    # alpha=1: the soft term alone must move the student (it did not when the
    # KL of a one-unit head was a softmax over one unit, identically 0).
    rng = np.random.default_rng(6)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.integers(0, 2, (32, 1)).astype("float32")
    teacher, _ = _head_net(1, "sigmoid", 16, "t", seed=1)
    student, _ = _head_net(1, "sigmoid", 4, "s", seed=2)
    before = [w.copy() for w in student.get_weights()]
    distiller = Distiller(student, teacher, temperature=2.0, alpha=1.0)
    distiller.compile(keras.optimizers.SGD(0.5), loss="binary_crossentropy")
    first = float(distiller.compute_loss(x=x, y=y, y_pred=student(x)))
    distiller.fit(x, y, epochs=5, batch_size=32, verbose=0)
    after = float(distiller.compute_loss(x=x, y=y, y_pred=student(x)))
    assert all(not np.array_equal(a, b) for a, b in zip(student.get_weights(), before))
    assert after < first


def _two_heads(width, name, seed, dict_outputs=True, units=(3, 1)):
    inputs = keras.Input((6,))
    init = keras.initializers.RandomNormal(stddev=0.5, seed=seed)
    x = L.Dense(width, activation="tanh", kernel_initializer=init)(inputs)
    cls = L.Dense(units[0], kernel_initializer=init, name=f"{name}_cls")(x)
    binary = L.Dense(units[1], kernel_initializer=init, name=f"{name}_bin_logits")(x)
    prob = L.Activation("sigmoid", name=f"{name}_bin")(binary)
    outputs = {"cls": cls, "bin": prob} if dict_outputs else [cls, prob]
    return keras.Model(inputs, outputs), keras.Model(inputs, [cls, binary])


@pytest.mark.parametrize("dict_outputs", [True, False])
def test_distiller_multi_output_sums_the_kl_of_every_output(dict_outputs):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(16, 6)).astype("float32")
    y_cls = rng.integers(0, 3, 16)
    y_bin = rng.integers(0, 2, (16, 1)).astype("float32")
    teacher, teacher_ref = _two_heads(16, "t", 1, dict_outputs)
    student, student_ref = _two_heads(4, "s", 2, dict_outputs)
    distiller = Distiller(student, teacher, temperature=2.0, alpha=1.0)
    if dict_outputs:
        y = {"cls": y_cls, "bin": y_bin}
        loss = {
            "cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "bin": keras.losses.BinaryCrossentropy(),
        }
    else:
        y = [y_cls, y_bin]
        loss = [
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            keras.losses.BinaryCrossentropy(),
        ]
    distiller.compile("adam", loss=loss)
    np_ = keras.ops.convert_to_numpy
    (t_cls, t_bin), (s_cls, s_bin) = teacher_ref(x), student_ref(x)
    expected = _kd(np_(t_cls), np_(s_cls), 2.0) + _bernoulli_kd(
        np_(t_bin), np_(s_bin), 2.0
    )
    value = float(distiller.compute_loss(x=x, y=y, y_pred=student(x)))
    assert value == pytest.approx(expected, rel=1e-4)
    history = distiller.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def _outputs(structure):
    inputs = keras.Input((6,))
    x = L.Dense(8)(inputs)
    outputs = keras.tree.map_structure(lambda units: L.Dense(units)(x), structure)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize(
    "student, teacher, shown",
    [
        (3, 2, "student outputs (None, 3), teacher outputs (None, 2)"),
        (
            1,
            [1, 1],
            "student outputs (None, 1), teacher outputs [(None, 1), (None, 1)]",
        ),
        ({"a": 3}, 3, "student outputs {'a': (None, 3)}, teacher outputs (None, 3)"),
        ({"a": 3, "b": 1}, {"a": 3, "c": 1}, "teacher outputs {'a': (None, 3), 'c'"),
        ([3, 1], [3, 2], "teacher outputs [(None, 3), (None, 2)]"),
    ],
)
def test_distiller_refuses_mismatched_outputs(student, teacher, shown):
    with pytest.raises(ValueError, match="must have the same outputs") as info:
        Distiller(_outputs(student), _outputs(teacher))
    assert shown in str(info.value)


def test_distiller_checks_subclassed_models_on_the_first_batch():
    class Net(keras.Model):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.hidden, self.head = L.Dense(8), L.Dense(units)

        def call(self, inputs):
            return self.head(self.hidden(inputs))

    def built(units):
        net = Net(units)
        net(x)  # built, but its outputs are still unknown (no symbolic call)
        return net

    x = np.zeros((4, 6), "float32")
    y = np.zeros((4,), "int32")
    distiller = Distiller(built(3), built(2))  # not refused yet
    distiller.compile("sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match=r"student outputs \(\w+, 3\), teacher"):
        distiller.fit(x, y, epochs=1, verbose=0)
    distiller = Distiller(built(3), built(3))
    distiller.compile("sgd", loss=keras.losses.SparseCategoricalCrossentropy(True))
    distiller.fit(x, y, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "student, teacher, kwargs, match",
    [
        ((1, "softmax"), (1, "softmax"), {}, "softmax over one unit is always 1"),
        ((3, "sigmoid"), (3, "softmax"), {}, "same kind of head"),
        ((3, None), (3, "softmax"), {"multi_label": True}, "head is a softmax"),
        ((3, "sigmoid"), (3, None), {"multi_label": False}, "head is a sigmoid"),
    ],
)
def test_distiller_refuses_heads_that_disagree(student, teacher, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Distiller(_head_net(*student)[0], _head_net(*teacher)[0], **kwargs)
