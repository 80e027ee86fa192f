"""Tests of keras_filterprune/surgery.py: the pruned model is right.

The oracle (issue 3): for every hand-built graph, `apply_plan(model, plan)(x)`
equals `mask_model(model, plan)(x)` AND the original model whose consuming layers
ignore the removed channels (zeroed by hand from the test's own wiring, see
`tests/oracle.py`), while it differs from the unpruned model.
"""

import contextlib

import keras
import numpy as np
import pytest

from keras_filterprune import (
    FilterPruneWarning,
    PruningPlan,
    apply_plan,
    mask_model,
    plan_pruning,
    prune_keras_model,
    score_filters,
)
from keras_filterprune.graph import trace_channels
from keras_filterprune.masking import weight_masks
from tests import oracle
from tests._models import CASES, case_model, inputs_for, width

CRITERIA = ["l1_norm", "l2_norm", "operator_norm", "geometric_median", "random"]


def _plan(case, criterion):
    """Plans at ratio 0.5; a case with an unknown layer must warn, naming it."""
    model = case_model(case.name)
    warns = (
        pytest.warns(FilterPruneWarning, match=case.warns)
        if case.warns
        else contextlib.nullcontext()
    )
    with warns:
        return plan_pruning(model, 0.5, criterion, **case.plan_kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_oracle(case):
    model = case_model(case.name)
    before = oracle.snapshot(model)
    criterion = CRITERIA[CASES.index(case) % len(CRITERIA)]
    plan = _plan(case, criterion)
    pruned = apply_plan(model, plan)
    x = inputs_for(model)
    y = oracle.outputs(pruned, x)
    oracle.assert_close(y, oracle.outputs(mask_model(model, plan), x), what="mask")
    reference = oracle.zero_consumers(model, case.rows(plan))
    oracle.assert_close(y, oracle.outputs(reference, x), what="zeroed consumers")
    dead = oracle.dead_channels_model(model, plan)
    oracle.assert_close(y, oracle.outputs(dead, x), what="dead channels")
    oracle.assert_differs(y, oracle.outputs(model, x), what=case.name)
    layers = oracle.layers_by_path(pruned)
    for path, n in case.widths.items():
        assert width(layers[path]) == n, path
    for path, reason in case.frozen.items():
        assert reason in (plan.group_of(path).frozen or ""), plan.summary()
    assert pruned.count_params() < model.count_params()
    oracle.assert_untouched(model, before)


def test_the_oracle_can_fail():
    """A wrong reference (Flatten read as `c·P + p`) or an unpruned model is
    caught: the checks above are not tautologies."""
    model = case_model("flatten_dense")
    plan = plan_pruning(model, 0.5, "l1_norm")
    x = inputs_for(model)
    y = oracle.outputs(apply_plan(model, plan), x)
    gone = oracle.removed(plan, "c1")
    wrong = {
        "fc": [c * 16 + p for c in gone for p in range(16)],
        "head": oracle.removed(plan, "fc"),
    }
    with pytest.raises(AssertionError, match=r"max \|diff\|"):
        oracle.assert_close(y, oracle.outputs(oracle.zero_consumers(model, wrong), x))
    unpruned = apply_plan(model, plan_pruning(model, 0.0))
    with pytest.raises(AssertionError, match="did not change the outputs"):
        oracle.assert_differs(oracle.outputs(unpruned, x), oracle.outputs(model, x))
    # The dead-channels reference of another plan (other channels removed).
    other = plan_pruning(model, 0.5, "random")
    assert other.kept_filters("c1") != plan.kept_filters("c1")
    dead = oracle.dead_channels_model(model, other)
    with pytest.raises(AssertionError, match=r"max \|diff\|"):
        oracle.assert_close(y, oracle.outputs(dead, x), what="other plan")


# ---------------------------------------------------------------------------
# weight_masks
# ---------------------------------------------------------------------------


def test_weight_masks_zero_removed_filters_and_consumed_rows():
    model = case_model("plain_chain")
    plan = plan_pruning(model, 0.5, "l1_norm")
    masks = weight_masks(model, plan)
    out1 = np.zeros(8)
    out1[plan.kept_filters("c1")] = 1
    out2 = np.zeros(12)
    out2[plan.kept_filters("c2")] = 1
    kernel1, bias1 = masks["c1"]
    np.testing.assert_array_equal(
        np.broadcast_to(kernel1, (3, 3, 3, 8)), np.broadcast_to(out1, (3, 3, 3, 8))
    )
    np.testing.assert_array_equal(bias1, out1)
    gamma, beta, mean, var = masks["bn1"]
    np.testing.assert_array_equal(gamma, out1)
    np.testing.assert_array_equal(beta, out1)
    assert mean is None and var is None  # non-trainable statistics are not masked
    kernel2 = np.broadcast_to(masks["c2"][0], (3, 3, 8, 12))
    np.testing.assert_array_equal(
        kernel2, np.broadcast_to(out1[:, None] * out2[None, :], (3, 3, 8, 12))
    )
    assert "relu1" not in masks
    # the head is frozen (model output) but reads c3's removed channels
    head_kernel, head_bias = masks["head"]
    assert head_bias is None
    assert head_kernel.shape[-1] in (1, 3) and head_kernel.shape[0] == 6


def test_weight_masks_depthwise_bias_follows_the_multiplier():
    model = case_model("separable")
    plan = plan_pruning(model, 0.5, "l1_norm")
    keep = np.zeros(8)
    keep[plan.kept_filters("stem")] = 1
    kernel, bias = masks = weight_masks(model, plan)["dw"]
    assert (
        masks
        and np.broadcast_to(kernel, (3, 3, 8, 2))[0, 0, :, 0].tolist() == keep.tolist()
    )
    np.testing.assert_array_equal(bias, np.repeat(keep, 2))


# ---------------------------------------------------------------------------
# Nothing lost: the input model is never modified, even by calls that raise
# ---------------------------------------------------------------------------


def _calls(model, other_plan):
    """Every public entry point, with arguments that succeed and that raise."""
    plan = plan_pruning(model, 0.5, "l1_norm")
    bad_plan = PruningPlan.from_config(
        {**plan.get_config(), "groups": plan.get_config()["groups"][1:]}
    )
    data = inputs_for(model, batch=4)
    ok = [
        lambda: plan_pruning(model, 0.5, "operator_norm"),
        lambda: plan_pruning(model, 0.3, "l1_norm", greedy=True, round_to=2),
        lambda: plan_pruning(model, 0.5, "l2_norm", global_ranking=True),
        lambda: apply_plan(model, plan),
        lambda: prune_keras_model(model, 0.4, "geometric_median"),
        lambda: mask_model(model, plan),
        lambda: weight_masks(model, plan),
        lambda: score_filters(model, "random"),
    ]
    raising = [
        lambda: plan_pruning(model, 1.5),
        lambda: plan_pruning(model, 0.5, "no_such_criterion"),
        lambda: plan_pruning(model, exclude=["no_such_layer"]),
        lambda: apply_plan(model, other_plan),
        lambda: apply_plan(model, bad_plan),
        lambda: prune_keras_model(model, per_layer={"no_such_layer": 0.5}),
        lambda: mask_model(model, other_plan),
        lambda: weight_masks(model, "not a plan"),
        lambda: score_filters(model, "no_such_criterion"),
        lambda: score_filters(model, "apoz"),  # active without data
    ]
    if not any(isinstance(layer, keras.Model) for layer in model.layers):
        # active criteria score top-level activations only (documented)
        ok.append(lambda: score_filters(model, "mean_activation", data=data))
    ok.append(lambda: plan_pruning(model, target_params=model.count_params() / 2))
    raising.append(lambda: plan_pruning(model, target_macs=1))
    return ok, raising


@pytest.mark.parametrize(
    "name", ["nested_sequential", "shared_layer", "separable", "keras_ops"]
)
def test_nothing_lost(name):
    model = case_model(name)
    other_plan = plan_pruning(case_model("plain_chain"), 0.5, "l1_norm")
    before = oracle.snapshot(model)
    ok, raising = _calls(model, other_plan)
    for call in ok:
        call()
        oracle.assert_untouched(model, before)
    for call in raising:
        with pytest.raises((ValueError, TypeError)):
            call()
        oracle.assert_untouched(model, before)


def test_snapshot_detects_a_change():
    """The "nothing lost" check itself can fail."""
    model = oracle.copy_model(case_model("plain_chain"))
    before = oracle.snapshot(model)
    kernel = model.get_layer("c2").kernel
    value = kernel.numpy()
    value[0, 0, 0, 0] = np.nextafter(value[0, 0, 0, 0], np.inf)
    kernel.assign(value)
    with pytest.raises(AssertionError, match="weight c2/kernel"):
        oracle.assert_untouched(model, before)


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3)

    def call(self, x):
        y = self.conv(x)
        return y if keras.ops.mean(y) > 0 else -y  # control flow on a value


ENTRY_POINTS = {
    "plan_pruning": lambda m: plan_pruning(m),
    "prune_keras_model": lambda m: prune_keras_model(m),
    "score_filters": lambda m: score_filters(m, "l1_norm"),
    "trace_channels": lambda m: trace_channels(m),
    "apply_plan": lambda m: apply_plan(m, _PLAN),
    "mask_model": lambda m: mask_model(m, _PLAN),
    "weight_masks": lambda m: weight_masks(m, _PLAN),
}
_PLAN = PruningPlan([], "x")


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_subclassed_and_unbuilt_models_are_clear_errors(entry):
    subclassed = _Subclassed()
    subclassed(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(TypeError, match="is a subclassed model that cannot be traced"):
        ENTRY_POINTS[entry](subclassed)
    unbuilt = keras.Sequential([keras.layers.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="is not built"):
        ENTRY_POINTS[entry](unbuilt)


def test_lambda_is_frozen_by_trace_and_refused_by_surgery():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.Lambda(lambda t: t * 2.0, name="lam")(x)
    x = keras.layers.Conv2D(4, 3, name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    plan = plan_pruning(model, 0.5, "l1_norm")
    assert "Lambda layers are opaque (at layer 'lam')" in plan.group_of("conv").frozen
    assert plan.group_of("conv2").frozen is None
    for fn in (apply_plan, mask_model):
        with pytest.raises(ValueError, match="Layer 'lam' is a Lambda layer"):
            fn(model, plan)


def test_unknown_criterion_is_a_value_error():
    model = case_model("plain_chain")
    for call in (
        lambda: score_filters(model, "l3_norm"),
        lambda: plan_pruning(model, 0.5, "l3_norm"),
        lambda: prune_keras_model(model, 0.5, "l3_norm"),
    ):
        with pytest.raises(ValueError, match="l3_norm"):
            call()


def test_nan_weights_are_a_value_error_naming_the_layer():
    model = oracle.copy_model(case_model("nested_sequential"))
    kernel = model.get_layer("block").get_layer("inner2").kernel
    value = kernel.numpy()
    value[1, 1, 2, 3] = np.nan
    kernel.assign(value)
    before = oracle.snapshot(model)
    with pytest.raises(ValueError, match="'block/inner2'.*NaN"):
        plan_pruning(model, 0.5, "operator_norm")
    with pytest.raises(ValueError, match="'block/inner2'"):
        score_filters(model, "l1_norm")
    oracle.assert_untouched(model, before)


# ---------------------------------------------------------------------------
# The pruned model is an ordinary Keras model
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "residual_projection",
        "separable",
        "nested_sequential",
        "keras_ops",
        "two_in_two_out",
    ],
)
def test_pruned_model_trains_saves_and_reloads(name, tmp_path):
    model = case_model(name)
    pruned = apply_plan(model, plan_pruning(model, 0.5, "l1_norm"))
    x = inputs_for(model, batch=8)
    targets = [np.zeros((8, *o.shape[1:]), "float32") for o in pruned.outputs]
    targets = targets[0] if len(targets) == 1 else targets
    pruned.compile(optimizer="sgd", loss="mse")
    history = pruned.fit(x, targets, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    reloaded = keras.models.load_model(path)
    oracle.assert_close(
        oracle.outputs(reloaded, x), oracle.outputs(pruned, x), rtol=1e-6
    )
    assert reloaded.count_params() == pruned.count_params()


def _initializers(config: dict, prefix: str = "") -> dict:
    found = {}
    for entry in config.get("layers", []):
        layer = entry["config"]
        for key, value in layer.items():
            if key.endswith("_initializer"):
                found[f"{prefix}{layer['name']}.{key}"] = value
        if "layers" in layer:
            found.update(_initializers(layer, f"{prefix}{layer['name']}/"))
    return found


class _Scaled(keras.layers.Layer):
    """A user's layer whose initializer argument is not an attribute of its
    name: the rebuild leaves it alone."""

    def __init__(self, scale_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.init_config = keras.initializers.serialize(
            keras.initializers.get(scale_initializer)
        )

    def build(self, input_shape):
        init = keras.initializers.get(self.init_config)
        self.scale = self.add_weight(shape=(input_shape[-1],), initializer=init)

    def call(self, x):
        return x * self.scale

    def get_config(self):
        return {**super().get_config(), "scale_initializer": self.init_config}


def test_the_pruned_model_keeps_its_initializers():
    """The rebuild creates weights with zeros (they are all set from the original;
    on JAX a random initializer compiles a kernel per new shape), and gives each
    layer its initializers back: a pruned model's config is the original's, less
    the channels, and `clone_model` of it initialises as the original would."""
    inner_in = keras.Input((8, 8, 16))
    y = keras.layers.Conv2D(16, 3, padding="same", kernel_initializer="he_normal")(
        inner_in
    )
    y = keras.layers.BatchNormalization(
        gamma_initializer=keras.initializers.Constant(0.5)
    )(y)
    inner = keras.Model(inner_in, y, name="inner")
    inputs = keras.Input((8, 8, 3))
    x = inner(keras.layers.Conv2D(16, 3, padding="same")(inputs))
    x = _Scaled(scale_initializer=keras.initializers.Constant(2.0))(x)
    x = keras.layers.SeparableConv2D(8, 3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, bias_initializer="ones")(x)
    model = keras.Model(inputs, outputs)
    with pytest.warns(FilterPruneWarning, match="no pruning handler"):
        plan = plan_pruning(model, 0.5, "l1_norm")  # _Scaled's group is frozen
    pruned = apply_plan(model, plan)
    before, after = (
        _initializers(model.get_config()),
        _initializers(pruned.get_config()),
    )
    assert len(before) == 14 and after == before
    x = inputs_for(model, batch=2)
    dead = oracle.dead_channels_model(model, plan)  # every weight came across
    oracle.assert_close(oracle.outputs(pruned, x), oracle.outputs(dead, x))
    fresh = keras.models.clone_model(pruned)  # initialised from the config
    bias = {w.path: w for w in fresh.weights}
    assert any(p.endswith("bias") and np.all(v.numpy() == 1) for p, v in bias.items())
    gamma = [w for w in fresh.weights if w.path.endswith("gamma")]
    assert gamma and np.all(keras.ops.convert_to_numpy(gamma[0].value) == 0.5)


def test_layers_that_forward_their_initializers_rebuild_unchanged():
    """An LSTM's `kernel_initializer` is its cell's (a read-only property), and
    MultiHeadAttention keeps its own under another name: their configs are
    rebuilt as they are, and everything prunes as before."""
    inputs = keras.Input((12, 4))
    x = keras.layers.Conv1D(16, 3, padding="same", kernel_initializer="he_normal")(
        inputs
    )
    x = keras.layers.Conv1D(8, 3, padding="same")(x)
    x = keras.layers.LSTM(
        6, recurrent_initializer="orthogonal", return_sequences=True, name="lstm"
    )(x)
    x = keras.layers.MultiHeadAttention(
        2, 4, kernel_initializer="glorot_normal", name="mha"
    )(x, x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    with pytest.warns(FilterPruneWarning):  # the LSTM's and MHA's groups: frozen
        plan = plan_pruning(model, 0.5, "l1_norm")
    pruned = apply_plan(model, plan)
    assert width(oracle.layers_by_path(pruned)[model.layers[1].name]) == 8
    assert _initializers(pruned.get_config()) == _initializers(model.get_config())
    x = inputs_for(model, batch=2)
    dead = oracle.dead_channels_model(model, plan)
    oracle.assert_close(oracle.outputs(pruned, x), oracle.outputs(dead, x))
    masked = mask_model(model, plan)
    oracle.assert_close(oracle.outputs(masked, x), oracle.outputs(dead, x))


def test_targets_on_a_model_with_keras_ops():
    model = case_model("keras_ops")
    plan = plan_pruning(model, 0.5, target_params=model.count_params() / 2)
    assert apply_plan(model, plan).count_params() <= model.count_params() / 2


def _resnext(groups: int, width: int = 16, blocks: int = 2) -> keras.Model:
    """ResNeXt bottleneck blocks (1x1 → grouped 3x3 → 1x1, identity residual),
    then two grouped convolutions in a row."""
    L = keras.layers
    inputs = keras.Input((10, 10, 8))
    x = L.Conv2D(32, 3, padding="same", name="stem")(inputs)
    for b in range(blocks):
        y = L.ReLU()(L.BatchNormalization()(L.Conv2D(width, 1, name=f"b{b}_in")(x)))
        y = L.Conv2D(width, 3, padding="same", groups=groups, name=f"b{b}_g")(y)
        y = L.ReLU()(L.BatchNormalization()(y))
        x = L.Add()([x, L.Conv2D(32, 1, name=f"b{b}_out")(y)])
    y = L.Conv2D(2 * width, 3, padding="same", groups=groups, name="g1")(x)
    y = L.Conv2D(2 * width, 3, padding="same", groups=groups, name="g2")(y)
    outputs = L.Dense(3, name="head")(L.GlobalAveragePooling2D()(y))
    return keras.Model(inputs, outputs, name=f"resnext_g{groups}")


@pytest.mark.parametrize("groups", [2, 4, 8])
def test_grouped_convolutions_prune_slot_wise_and_exactly(groups):
    model = oracle.randomize(_resnext(groups), groups)
    before = oracle.snapshot(model)
    plan = plan_pruning(model, 0.5, "l1_norm")
    pruned = apply_plan(model, plan)
    x = np.random.default_rng(0).normal(size=(2, 10, 10, 8)).astype("float32")
    y = oracle.outputs(pruned, x)
    oracle.assert_close(y, oracle.outputs(mask_model(model, plan), x), what="mask")
    dead = oracle.dead_channels_model(model, plan)
    oracle.assert_close(y, oracle.outputs(dead, x), what="dead channels")
    oracle.assert_differs(y, oracle.outputs(model, x), what="resnext")
    oracle.assert_untouched(model, before)
    assert not plan.frozen_groups[:-1], plan.summary()  # only the head is frozen
    for name in ("b0_g", "b1_g", "g1", "g2"):
        layer, old = pruned.get_layer(name), model.get_layer(name)
        assert layer.groups == groups and layer.filters == old.filters // 2
        # Every group keeps the same slots: filter j and j + T go together.
        kept = np.asarray(plan.kept_filters(name)).reshape(groups, -1)
        slots = old.filters // groups
        assert (kept - kept[:1] == np.arange(groups)[:, None] * slots).all()
