"""Tests of keras_filterprune.callbacks.PruningCallback."""

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest

from keras_filterprune import FilterPruneWarning
from keras_filterprune.callbacks import PruningCallback
from keras_filterprune.masking import weight_masks
from keras_filterprune.schedules import ConstantRatio, PolynomialRatio

N, SIZE, CLASSES = 128, 10, 3


def make_model(compile=True, optimizer="adam"):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.Conv2D(16, 3, activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(CLASSES, name="head")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    if compile:
        model.compile(
            optimizer,
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    return model


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, CLASSES, size=N)
    return x, y


def masked_values(model, plan):
    """Every weight value (and optimizer slot) that the plan's masks zero."""
    out = {}
    for path, masks in weight_masks(model, plan).items():
        layer = model.get_layer(path)
        for variable, mask in zip(layer.weights, masks):
            if mask is not None:
                value = keras.ops.convert_to_numpy(variable)
                out[variable.path] = value[np.broadcast_to(mask, value.shape) == 0]
    return out


def slot_values(model, plan):
    masks = {}
    for path, layer_masks in weight_masks(model, plan).items():
        for variable, mask in zip(model.get_layer(path).weights, layer_masks):
            if mask is not None:
                masks[variable.path.replace("/", "_")] = mask
    out = {}
    for slot in model.optimizer.variables:
        for key, mask in masks.items():
            if slot.name.startswith(key + "_") and slot.name[len(key) + 1 :] in (
                "momentum",
                "velocity",
            ):
                value = keras.ops.convert_to_numpy(slot)
                out[slot.name] = value[np.broadcast_to(mask, value.shape) == 0]
    return out


def n_keep(width, ratio):
    return max(1, math.ceil((1 - ratio) * width - 1e-9))


# ---------------------------------------------------------------------------
# Hard pruning: exact zeros, pruned_model equivalence
# ---------------------------------------------------------------------------


def test_hard_mode_keeps_exact_zeros_and_pruned_model_matches(xy):
    x, y = xy
    model = make_model()
    callback = PruningCallback("l1_norm", 0.5, epochs=(0,), mode="hard", verbose=0)
    history = model.fit(x, y, epochs=3, batch_size=32, callbacks=[callback], verbose=0)
    plan = callback.plan
    assert plan is not None and plan.num_removed > 0
    assert plan.kept_filters("conv1") == plan.kept_filters("conv2")  # Add group
    assert len(plan.kept_filters("conv3")) == 8
    values = masked_values(model, plan)
    assert values and all(np.all(v == 0) for v in values.values())
    slots = slot_values(model, plan)
    assert len(slots) >= 2 * len(values)  # momentum and velocity of each
    assert all(np.all(v == 0) for v in slots.values())
    # The weights trained on: two more epochs after the event.
    assert model.optimizer.iterations.numpy() == 12
    assert history.history["pruned_macs_ratio"][0] < 0.5

    pruned = callback.pruned_model()
    assert pruned.get_layer("conv1").filters == 4
    assert pruned.count_params() < model.count_params()
    np.testing.assert_allclose(
        pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4
    )
    # Compiled like the trained model, with a fresh optimizer of the same config.
    assert type(pruned.optimizer) is type(model.optimizer)
    assert pruned.optimizer is not model.optimizer
    assert int(pruned.optimizer.iterations.numpy()) == 0
    assert pruned.optimizer.get_config()["learning_rate"] == pytest.approx(
        model.optimizer.get_config()["learning_rate"]
    )
    logs = pruned.fit(x, y, epochs=1, batch_size=64, verbose=0).history
    assert set(logs) == {"loss", "accuracy"}
    assert not callback.pruned_model(compile=False).compiled


def my_loss(y_true, y_pred):
    return keras.ops.mean(keras.ops.square(y_pred))


@pytest.mark.filterwarnings("ignore:The object being serialized includes a `lambda`")
def test_pruned_model_compiles_with_custom_losses(xy):
    x, _ = xy
    targets = np.zeros((N, CLASSES), "float32")
    for loss, metrics in ((my_loss, ["mae"]), (lambda t, p: my_loss(t, p), None)):
        model = make_model(compile=False)
        model.compile("sgd", loss, metrics=metrics)
        callback = PruningCallback("l1_norm", epochs=(0,), mode="hard", verbose=0)
        model.fit(x, targets, epochs=1, batch_size=64, callbacks=[callback], verbose=0)
        if metrics:  # a plain function: rebuilt from the compile config
            pruned = callback.pruned_model()
            assert set(pruned.fit(x, targets, verbose=0).history) == {"loss", "mae"}
        else:  # a lambda: same loss, fresh optimizer, and a warning
            with pytest.warns(FilterPruneWarning, match="fresh optimizer only"):
                pruned = callback.pruned_model()
            assert pruned.compiled and pruned.optimizer is not model.optimizer


def test_hard_mode_with_sgd_momentum(xy):
    x, y = xy
    model = make_model(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    callback = PruningCallback("l2_norm", 0.25, epochs=(0, 1), mode="hard", verbose=0)
    model.fit(x, y, epochs=3, batch_size=32, callbacks=[callback], verbose=0)
    assert all(np.all(v == 0) for v in masked_values(model, callback.plan).values())
    slots = slot_values(model, callback.plan)
    assert slots and all(np.all(v == 0) for v in slots.values())


def test_slots_are_matched_by_the_longest_variable_path():
    from keras_filterprune.masking import slot_variables as _slot_variables

    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="dense")(inputs)
    outputs = keras.layers.Dense(2, name="dense_kernel")(x)  # "dense_kernel_bias"
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.Adam(), "mse")
    model.optimizer.build(model.trainable_variables)
    slots, ambiguous = _slot_variables(model)
    assert ambiguous == []
    for variable in model.trainable_variables:
        names = sorted(s.name for s in slots[id(variable)])
        key = variable.path.replace("/", "_")
        assert names == [f"{key}_momentum", f"{key}_velocity"]


# ---------------------------------------------------------------------------
# Iterative schedules
# ---------------------------------------------------------------------------


def plan_recorder(callback):
    """A callback listed after `callback` that keeps the plan of every event."""
    plans = []

    def record(epoch, logs):
        if callback.plan is not None and (not plans or plans[-1] is not callback.plan):
            plans.append(callback.plan)

    return plans, keras.callbacks.LambdaCallback(on_epoch_end=record)


def test_iterative_widths_shrink_to_final_ratio(xy):
    x, y = xy
    model = make_model()
    schedule = PolynomialRatio(0.2, 0.75, begin_step=0, end_step=2, frequency=1)
    callback = PruningCallback(
        schedule=schedule, schedule_unit="epoch", mode="hard", verbose=0
    )
    plans, recorder = plan_recorder(callback)
    history = model.fit(
        x, y, epochs=4, batch_size=32, callbacks=[callback, recorder], verbose=0
    )
    assert [e["epoch"] for e in callback.history] == [0, 1, 2]
    ratios = [e["ratio"] for e in callback.history]
    assert ratios == sorted(ratios) and ratios[-1] == pytest.approx(0.75)
    kept = np.array([e["kept"] for e in callback.history])  # events x groups
    assert np.all(np.diff(kept, axis=0) <= 0)  # never grows back
    assert np.any(np.diff(kept, axis=0) < 0)
    final = callback.plan
    for g in final.groups:
        expected = g.width if g.frozen else n_keep(g.width, 0.75)
        assert len(g.keep) == expected
    # Each plan keeps a subset of what the previous one kept.
    assert len(plans) == 3
    for before, after in zip(plans, plans[1:]):
        for gb, ga in zip(before.groups, after.groups):
            assert set(ga.keep) <= set(gb.keep)
    macs = [e["macs_ratio"] for e in callback.history]
    assert macs == sorted(macs, reverse=True)
    assert history.history["pruned_macs_ratio"] == pytest.approx(macs + macs[-1:])
    assert all(np.all(v == 0) for v in masked_values(model, final).values())


def test_soft_mode_regrows_and_rescored(xy):
    x, y = xy
    model = make_model()
    callback = PruningCallback("l1_norm", 0.5, epochs=(0, 2), mode="soft", verbose=0)
    plans, recorder = plan_recorder(callback)
    zero_at_event = []
    check = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: zero_at_event.append(
            all(np.all(v == 0) for v in masked_values(model, callback.plan).values())
        )
    )
    callbacks = [callback, recorder, check]
    model.fit(x, y, epochs=4, batch_size=32, callbacks=callbacks, verbose=0)
    assert [e["epoch"] for e in callback.history] == [0, 2]
    # Zeroed once at the first event (the filters regrow in epoch 1); from the
    # last event of the fit on (epoch 2) the masks are held, so no regrown filter
    # is cut from the trained network at the end.
    assert zero_at_event == [True, False, True, True]
    assert plans  # each event re-scored (the regrowth: zero_at_event[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FilterPruneWarning)
        pruned = callback.pruned_model(compile=False)
    assert pruned.get_layer("conv3").filters == 8
    np.testing.assert_allclose(
        pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4
    )


def test_soft_mode_without_a_known_end_lets_filters_regrow(xy):
    """Data of unknown length: the fit's last step is unknown, so the masks are
    never held, the filters regrow, and `pruned_model` says so."""
    import tensorflow as tf

    x, y = xy

    def batches():
        for i in range(0, len(x), 16):
            yield x[i : i + 16], y[i : i + 16]

    spec = (
        tf.TensorSpec((None, *x.shape[1:]), tf.float32),
        tf.TensorSpec((None,), tf.int64),
    )
    data = tf.data.Dataset.from_generator(batches, output_signature=spec)
    model = make_model()
    schedule = ConstantRatio(0.5, begin_step=2, end_step=2)
    callback = PruningCallback("l1_norm", schedule=schedule, mode="soft", verbose=0)
    model.fit(data, epochs=1, callbacks=[callback], verbose=0)
    assert [e["step"] for e in callback.history] == [2]
    assert any(np.any(v != 0) for v in masked_values(model, callback.plan).values())
    with pytest.warns(FilterPruneWarning, match="trained again"):
        callback.pruned_model(compile=False)


def test_soft_mode_every_epoch_ends_masked(xy):
    x, y = xy
    model = make_model()
    callback = PruningCallback("l1_norm", 0.5, mode="soft", verbose=0)
    model.fit(x, y, epochs=2, batch_size=32, callbacks=[callback], verbose=0)
    assert [e["epoch"] for e in callback.history] == [0, 1]
    assert all(np.all(v == 0) for v in masked_values(model, callback.plan).values())
    pruned = callback.pruned_model()  # no warning: the last epoch pruned
    np.testing.assert_allclose(
        pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-4
    )


# ---------------------------------------------------------------------------
# TFMOT schedules, tf.data, steps
# ---------------------------------------------------------------------------


def test_tfmot_polynomial_decay_on_tf_data(xy):
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    import tensorflow as tf

    x, y = xy
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)  # 4 steps/epoch
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.25, final_sparsity=0.5, begin_step=0, end_step=8, frequency=4
    )
    model = make_model()
    callback = PruningCallback(schedule=schedule, mode="hard", verbose=0)
    model.fit(dataset, epochs=3, callbacks=[callback], shuffle=False, verbose=0)
    assert [e["step"] for e in callback.history] == [0, 4, 8]
    assert [e["epoch"] for e in callback.history] == [0, 0, 1]
    expected = [float(schedule(s)[1].numpy()) for s in (0, 4, 8)]
    assert [e["ratio"] for e in callback.history] == pytest.approx(expected)
    assert len(callback.plan.kept_filters("conv3")) == 8
    assert all(np.all(v == 0) for v in masked_values(model, callback.plan).values())
    config = callback.get_config()
    restored = PruningCallback.from_config(json.loads(json.dumps(config)))
    assert type(restored.schedule) is type(schedule)
    assert restored.schedule.get_config() == schedule.get_config()


@pytest.mark.skipif(
    keras.backend.backend() == "torch",
    reason="Keras' PyTorch trainer only allows steps_per_execution=1",
)
def test_steps_per_execution_does_not_skip_events(xy):
    x, y = xy
    model = make_model(compile=False)
    model.compile("adam", "sparse_categorical_crossentropy", steps_per_execution=3)
    schedule = ConstantRatio(0.25, begin_step=2, end_step=5, frequency=2)
    callback = PruningCallback(schedule=schedule, verbose=0)
    model.fit(x, y, epochs=1, batch_size=16, callbacks=[callback], verbose=0)
    # Callbacks run after steps 3 and 6: the pruning steps 2 and 4 are not lost.
    assert [e["step"] for e in callback.history] == [2, 4]


# ---------------------------------------------------------------------------
# Mixed precision, active criteria, logs, reuse
# ---------------------------------------------------------------------------


@pytest.fixture
def mixed_precision():
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(policy)


def test_mixed_precision(xy, mixed_precision):
    x, y = xy
    model = make_model()
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    callback = PruningCallback("l1_norm", 0.5, epochs=(0,), mode="hard", verbose=0)
    model.fit(x, y, epochs=2, batch_size=32, callbacks=[callback], verbose=0)
    assert all(np.all(v == 0) for v in masked_values(model, callback.plan).values())
    slots = slot_values(model, callback.plan)
    assert slots and all(np.all(v == 0) for v in slots.values())
    pruned = callback.pruned_model()
    assert isinstance(pruned.optimizer, keras.optimizers.LossScaleOptimizer)
    np.testing.assert_allclose(
        pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-2
    )


def test_active_criterion_uses_data(xy):
    x, y = xy
    model = make_model()
    callback = PruningCallback(
        "mean_activation", 0.5, epochs=(1,), mode="hard", data=x[:32], verbose=0
    )
    model.fit(x, y, epochs=2, batch_size=32, callbacks=[callback], verbose=0)
    assert callback.plan.meta["criterion"] == "mean_activation"
    assert len(callback.plan.kept_filters("conv3")) == 8


def test_logs_reach_csv_logger_and_one_line_per_event_on_stdout(xy, tmp_path, capsys):
    x, y = xy
    model = make_model()
    callback = PruningCallback("l1_norm", 0.5, epochs=(1,))
    csv = tmp_path / "log.csv"
    history = model.fit(
        x,
        y,
        epochs=2,
        batch_size=32,
        callbacks=[callback, keras.callbacks.CSVLogger(str(csv))],
        verbose=0,
    )
    ratios = history.history["pruned_macs_ratio"]
    assert ratios[0] == 1.0 and ratios[1] == pytest.approx(
        callback.history[-1]["macs_ratio"]
    )
    header, *rows = csv.read_text().splitlines()
    assert "pruned_macs_ratio" in header.split(",")
    assert len(rows) == 2
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "PruningCallback" in line]
    assert len(lines) == 1, out
    ratio = callback.history[-1]["macs_ratio"]
    assert lines[0].startswith("Epoch 2: PruningCallback soft-pruned ")
    assert f"MACs {ratio:.2f}×" in lines[0]


def test_verbose_0_prints_nothing_and_logging_mode_logs(xy, capsys, caplog):
    x, y = xy
    quiet = PruningCallback("l1_norm", 0.5, epochs=(0,), verbose=0)
    make_model().fit(x, y, epochs=1, callbacks=[quiet], verbose=0)
    assert "PruningCallback" not in capsys.readouterr().out
    keras.config.disable_interactive_logging()
    try:
        with caplog.at_level("INFO", logger="keras_filterprune.callbacks"):
            loud = PruningCallback("l1_norm", 0.5, epochs=(0,))
            make_model().fit(x, y, epochs=1, callbacks=[loud], verbose=0)
    finally:
        keras.config.enable_interactive_logging()
    assert "PruningCallback" not in capsys.readouterr().out
    assert any("PruningCallback soft-pruned" in r.message for r in caplog.records)


def test_reusable_across_fits(xy):
    x, y = xy
    callback = PruningCallback("l1_norm", 0.5, epochs=(0,), mode="hard", verbose=0)
    first = make_model()
    first.fit(x, y, epochs=1, batch_size=64, callbacks=[callback], verbose=0)
    assert len(callback.history) == 1
    # Continuing on the same model: the plan is recovered from the zeros, kept.
    keep = [g.keep for g in callback.plan.groups]
    first.fit(x, y, epochs=2, batch_size=64, callbacks=[callback], verbose=0)
    assert [g.keep for g in callback.plan.groups] == keep
    assert all(np.all(v == 0) for v in masked_values(first, callback.plan).values())
    # A fresh model starts from scratch.
    second = make_model()
    second.fit(x, y, epochs=1, batch_size=64, callbacks=[callback], verbose=0)
    assert len(callback.history) == 1 and callback.history[0]["step"] == 2


def test_backup_and_restore_keeps_masks(xy, tmp_path):
    x, y = xy

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    def run(extra):
        model = make_model()
        callback = PruningCallback(
            schedule=ConstantRatio(0.5, begin_step=4, end_step=4),
            mode="hard",
            verbose=0,
        )
        backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
        callbacks = [callback, backup, *extra]
        model.fit(x, y, epochs=4, batch_size=32, callbacks=callbacks, verbose=0)
        return model, callback

    with pytest.raises(RuntimeError, match="interrupted"):
        run([Interrupt()])
    model, callback = run([])
    assert callback.history == []  # the event happened before the interruption
    assert callback.plan is not None and callback.plan.meta == {"recovered": True}
    assert int(model.optimizer.iterations.numpy()) == 16
    assert len(callback.plan.kept_filters("conv1")) == 4
    assert all(np.all(v == 0) for v in masked_values(model, callback.plan).values())


# ---------------------------------------------------------------------------
# MirroredStrategy (own process: logical devices must be set before TF starts)
# ---------------------------------------------------------------------------

_MIRRORED = textwrap.dedent(
    """
    import os, sys, tempfile
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_callbacks import make_model, masked_values
    from keras_filterprune import PruningCallback
    from keras_filterprune.masking import weight_masks

    keras.utils.set_random_seed(0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    x = np.random.rand(128, 10, 10, 3).astype("float32")
    y = np.random.randint(0, 3, 128)
    backup_dir = tempfile.mkdtemp()

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("interrupted")

    def run(extra):
        with strategy.scope():
            model = make_model()
        callback = PruningCallback("l1_norm", 0.5, epochs=(0,), mode="hard",
                                   verbose=0)
        backup = keras.callbacks.BackupAndRestore(backup_dir)
        model.fit(x, y, epochs=4, batch_size=32, verbose=0,
                  callbacks=[callback, backup, *extra])
        return model, callback

    try:
        run([Interrupt()])
    except RuntimeError:
        pass
    model, callback = run([])
    assert int(model.optimizer.iterations.numpy()) == 16
    assert callback.plan.meta == {"recovered": True}
    kernel = model.get_layer("conv1").kernel
    replicas = strategy.experimental_local_results(kernel.value)
    assert len(replicas) == 2
    for path, masks in weight_masks(model, callback.plan).items():
        for variable, mask in zip(model.get_layer(path).weights, masks):
            if mask is None:
                continue
            for copy in strategy.experimental_local_results(variable.value):
                value = copy.numpy()
                assert np.all(value[np.broadcast_to(mask, value.shape) == 0] == 0)
    pruned = callback.pruned_model(compile=False)
    np.testing.assert_allclose(pruned.predict(x, verbose=0),
                               model.predict(x, verbose=0), atol=1e-4)
    print("OK", [len(g.keep) for g in callback.plan.groups])
    """
)


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="tf.distribute is TensorFlow's"
)
def test_mirrored_strategy_and_backup_and_restore():
    from tests._timeouts import HANG_GUARD_S  # (the workers import this file)

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(
        [sys.executable, "-c", _MIRRORED, os.path.dirname(__file__)],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout


# ---------------------------------------------------------------------------
# Bad input, config
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"ratio": 1.5}, ValueError, r"must be in \[0, 1\)\. Received: ratio=1.5"),
        ({"ratio": "half"}, TypeError, "ratio"),
        ({"epochs": ()}, ValueError, "epochs"),
        ({"epochs": (0, -1)}, ValueError, "epochs"),
        ({"epochs": 3}, TypeError, "sequence of 0-based epoch"),
        ({"epochs": (0.5,)}, TypeError, "epochs"),
        ({"mode": "medium"}, ValueError, "`mode` must be one of"),
        ({"schedule_unit": "b", "schedule": ConstantRatio(0.5)}, ValueError, "unit"),
        ({"schedule": ConstantRatio(0.5), "epochs": (1,)}, ValueError, "not both"),
        ({"schedule": ConstantRatio(0.5), "ratio": 0.3}, ValueError, "unused"),
        ({"schedule": 0.5}, TypeError, "schedule"),
        ({"criterion": "nope"}, ValueError, "Unknown criterion"),
        ({"criterion": "apoz"}, ValueError, "needs `data`"),
        ({"per_layer": {"conv1": 1.0}}, ValueError, r"per_layer\['conv1'\]"),
        ({"per_layer": [("conv1", 0.5)]}, TypeError, "per_layer"),
        ({"exclude": [1]}, TypeError, "exclude"),
        ({"group_reduction": "median"}, ValueError, "group_reduction"),
        ({"round_to": 0}, ValueError, "round_to"),
        ({"min_filters": 1.0}, TypeError, "min_filters"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        PruningCallback(**kwargs)


def test_schedule_ratio_out_of_range_names_the_step(xy):
    x, y = xy
    model = make_model()
    callback = PruningCallback(schedule=lambda step: (step == 3, 1.2), verbose=0)
    with pytest.raises(ValueError, match=r"ratio=1.2 at step 3"):
        model.fit(x, y, epochs=1, batch_size=32, callbacks=[callback], verbose=0)
    callback = PruningCallback(
        schedule=lambda epoch: (True, -0.5), schedule_unit="epoch", verbose=0
    )
    with pytest.raises(ValueError, match=r"ratio=-0.5 at epoch 0"):
        model.fit(x, y, epochs=1, batch_size=32, callbacks=[callback], verbose=0)


class TutorialNet(keras.Model):
    """A subclassed model (a `call()`), as in most Keras tutorials."""

    def __init__(self, branch=False):
        super().__init__()
        self.branch = branch
        self.conv1 = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")
        self.conv2 = keras.layers.Conv2D(8, 3, name="conv2")
        self.head = keras.layers.Dense(CLASSES, name="head")

    def call(self, inputs):
        x = self.conv2(self.conv1(inputs))
        if self.branch and keras.ops.mean(x) > 0:  # control flow on a value
            x = -x
        return self.head(keras.ops.mean(x, axis=(1, 2)))


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_subclassed_model_is_pruned_through_its_traced_call(xy, mode):
    x, y = xy
    model = TutorialNet()
    model.compile("adam", "sparse_categorical_crossentropy")
    model(x[:1])
    callback = PruningCallback("l1_norm", ratio=0.5, epochs=(0,), mode=mode, verbose=0)
    model.fit(x, y, epochs=2, batch_size=32, callbacks=[callback], verbose=0)
    removed = ~np.isin(np.arange(8), callback.plan.kept_filters("conv1"))
    kernel = keras.ops.convert_to_numpy(model.conv1.kernel)
    assert removed.sum() == 4 and np.all(kernel[..., removed] == 0)
    with pytest.warns(FilterPruneWarning, match="subclassed model"):
        pruned = callback.pruned_model()
    assert pruned.get_layer("conv1").filters == 4
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pruned(x[:4])),
        keras.ops.convert_to_numpy(model(x[:4])),
        rtol=1e-4,
        atol=1e-5,
    )


def test_untraceable_subclassed_model_fails_at_train_begin(xy):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("Keras itself cannot fit this model on JAX and PyTorch")
    x, y = xy
    model = TutorialNet(branch=True)
    model.compile("adam", "sparse_categorical_crossentropy")
    model(x[:1])
    batches = []
    counter = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batches.append(batch)
    )
    callback = PruningCallback("l1_norm", verbose=0)
    with pytest.raises(TypeError, match="subclassed model that cannot be traced"):
        model.fit(x, y, epochs=1, callbacks=[callback, counter], verbose=0)
    assert batches == []


def test_options_that_do_not_fit_the_model_fail_at_train_begin(xy):
    x, y = xy
    cases = [
        ({"exclude": ["nope"]}, "nope"),
        ({"per_layer": {"nope": 0.5}}, "nope"),
        ({"per_layer": {"head": 0.5}}, "'head', whose channel group cannot be"),
        ({"per_layer": {"conv2": 0.5}, "exclude": ["add"]}, "'conv2', whose"),
    ]
    for kwargs, match in cases:
        batches = []
        counter = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs, seen=batches: seen.append(batch)
        )
        callback = PruningCallback("l1_norm", epochs=(1,), verbose=0, **kwargs)
        with pytest.raises(ValueError, match=match):
            make_model().fit(x, y, epochs=2, callbacks=[counter, callback], verbose=0)
        assert batches == [], kwargs


def test_pruned_model_before_any_event(xy):
    x, y = xy
    callback = PruningCallback("l1_norm", epochs=(5,), verbose=0)
    with pytest.raises(ValueError, match="No pruning event"):
        callback.pruned_model()
    with pytest.warns(
        FilterPruneWarning, match=r"names no epoch of this fit \(epochs 0-0"
    ):
        make_model().fit(x, y, epochs=1, batch_size=64, callbacks=[callback], verbose=0)
    with pytest.raises(ValueError, match="No pruning event"):
        callback.pruned_model()


def test_epochs_outside_a_resumed_fit_warn(xy):
    x, y = xy
    callback = PruningCallback("l1_norm", epochs=(1,), verbose=0)
    with pytest.warns(FilterPruneWarning, match=r"no epoch of this fit \(epochs 2-2"):
        make_model().fit(
            x, y, epochs=3, initial_epoch=2, callbacks=[callback], verbose=0
        )
    assert callback.history == []


def test_config_round_trip():
    callback = PruningCallback(
        "geometric_median",
        schedule=PolynomialRatio(0.1, 0.5, 0, 10, frequency=2),
        schedule_unit="epoch",
        mode="hard",
        per_layer={"conv3": 0.25},
        exclude="conv1",
        group_reduction="max",
        round_to=2,
        min_filters=2,
        verbose=0,
    )
    config = callback.get_config()
    restored = PruningCallback.from_config(json.loads(json.dumps(config)))
    assert restored.get_config() == config
    assert restored.schedule == callback.schedule
    assert restored.exclude == ["conv1"]
    plain = PruningCallback("l1_norm", 0.3, epochs=[2, 0, 2])
    assert plain.epochs == (0, 2)
    assert PruningCallback.from_config(plain.get_config()).get_config() == (
        plain.get_config()
    )


def test_config_round_trip_with_sensitivity_curves():
    """A SensitivityResult given as `importance` is written as its dict."""
    from keras_filterprune.sensitivity import SensitivityResult
    from tests.test_latency import synthetic_table

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, name="conv1"),
            keras.layers.Flatten(),
            keras.layers.Dense(2, name="head"),
        ]
    )
    table = synthetic_table(model)
    curves = SensitivityResult(
        0.9, {"conv1": [(0.0, 0.9), (0.5, 0.7)]}, {"conv1": ["conv1"]}, {"conv1": 8}
    )
    callback = PruningCallback(
        "l1_norm", target_latency="50%", latency_table=table, importance=curves
    )
    config = callback.get_config()
    assert config["importance"] == curves.to_dict()
    restored = PruningCallback.from_config(json.loads(json.dumps(config)))
    assert restored.importance == curves
    # Curves that miss a group the budget may move fail when training begins,
    # not at the first pruning event.
    model.compile("sgd", "mse")
    x, y = np.zeros((4, 8, 8, 1), "float32"), np.zeros((4, 2), "float32")
    partial = PruningCallback(
        "l1_norm",
        target_latency="50%",
        latency_table=table,
        importance=dataclasses.replace(curves, curves={}, groups={}, widths={}),
        verbose=0,
    )
    with pytest.raises(ValueError, match=r"no curve for the group of \['conv1'\]"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[partial])


def test_ratio_zero_with_per_layer_still_prunes_those_layers(xy):
    """A zero ratio skips an event (TFMOT), unless `per_layer` ratios are set."""
    x, y = xy
    model = make_model()
    callback = PruningCallback(
        "l1_norm", ratio=0.0, epochs=(0,), per_layer={"conv1": 0.5}, verbose=0
    )
    model.fit(x, y, epochs=1, callbacks=[callback], verbose=0)
    assert len(callback.history) == 1
    assert callback.pruned_model().get_layer("conv1").filters == 4


def test_full_config_round_trip_with_every_planning_option():
    callback = PruningCallback(
        "l1_norm",
        epochs=(0, 1),
        mode="hard",
        target_macs="50%",
        group_reduction="l2",
        round_to=2,
        min_filters=2,
        greedy=True,
        prune_norms=True,
        verbose=0,
    )
    config = callback.get_config()
    assert config["target_macs"] == "50%" and config["greedy"] is True
    restored = PruningCallback.from_config(json.loads(json.dumps(config)))
    assert restored.get_config() == config
    with pytest.raises(ValueError, match="at most one of"):
        PruningCallback(target_macs="50%", target_params="50%")
    with pytest.raises(ValueError, match="target_macs='50%'"):
        PruningCallback(target_macs=0.5)


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_a_budget_is_spent_gradually_and_met_at_the_last_event(xy, mode):
    x, y = xy
    model = make_model()
    callback = PruningCallback(
        "l1_norm", epochs=(0, 1, 2), mode=mode, target_macs="50%", verbose=0
    )
    model.fit(x, y, epochs=3, batch_size=32, callbacks=[callback], verbose=0)
    ratios = [event["macs_ratio"] for event in callback.history]
    assert len(ratios) == 3
    for k, ratio in enumerate(ratios, start=1):
        goal = 1.0 - k / 3 * 0.5  # k/3 of the way from 1.0 to 0.5
        assert ratio <= goal + 1e-9 and ratio > goal - 0.15, (k, ratios)
    assert ratios[0] > ratios[2]
    pruned = callback.pruned_model()
    from keras_filterprune import count_macs

    assert count_macs(pruned) / count_macs(make_model()) == pytest.approx(ratios[-1])


def test_a_budget_follows_the_schedule_share(xy):
    x, y = xy
    schedule = PolynomialRatio(0.25, 0.5, 0, 1, frequency=1)  # half, then all
    callback = PruningCallback(
        "l1_norm",
        schedule=schedule,
        schedule_unit="epoch",
        mode="hard",
        target_params="40%",
        verbose=0,
    )
    make_model().fit(x, y, epochs=2, callbacks=[callback], verbose=0)
    plans = [event["kept"] for event in callback.history]
    assert len(plans) == 2 and plans[0] != plans[1]
    params = callback.plan.meta["params"]
    assert params[1] <= 0.4 * params[0]


def _bn_stats(model):
    bn = model.get_layer("bn1")
    return [keras.ops.convert_to_numpy(v).copy() for v in bn.non_trainable_weights]


def test_calibration_data_recalibrates_after_events_and_at_the_end(xy, capsys):
    from keras_filterprune import recalibrate_batchnorm

    x, y = xy
    keras.utils.set_random_seed(1)
    callback = PruningCallback(
        "l1_norm", 0.5, epochs=(0,), mode="hard", calibration_data=x[:64]
    )
    model = make_model(optimizer=keras.optimizers.SGD(0.5))
    model.fit(x, y, epochs=2, batch_size=16, callbacks=[callback], verbose=0)
    out = capsys.readouterr().out
    assert "BatchNorm recalibrated on 2 batches" in out  # after the event
    assert "PruningCallback: BatchNorm recalibrated on 2 batches." in out  # at end
    stats = _bn_stats(model)
    recalibrate_batchnorm(model, x[:64])  # again: nothing left to change
    for a, b in zip(stats, _bn_stats(model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Without it the statistics are stale after training (the test can fail).
    keras.utils.set_random_seed(1)
    plain = make_model(optimizer=keras.optimizers.SGD(0.5))
    quiet = PruningCallback("l1_norm", 0.5, epochs=(0,), mode="hard", verbose=0)
    plain.fit(x, y, epochs=2, batch_size=16, callbacks=[quiet], verbose=0)
    stale = _bn_stats(plain)
    recalibrate_batchnorm(plain, x[:64])
    assert not np.allclose(stale[0], _bn_stats(plain)[0], atol=1e-4)
    pruned = callback.pruned_model()
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(pruned(x[:8])),
        keras.ops.convert_to_numpy(model(x[:8])),
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("bad", [iter([np.zeros((2, 10, 10, 3))]), "x.npy", 3])
def test_calibration_data_that_cannot_be_read_again_is_refused(bad):
    with pytest.raises(TypeError, match="calibration_data"):
        PruningCallback(calibration_data=bad)
