"""Tracing inside layers (`keras_filterprune._inner`): composite layers and
subclassed models are pruned through their `call()`, exactly (two oracles), and
what cannot be traced is frozen and named, never pruned wrong."""

import warnings

import keras
import numpy as np
import pytest

from keras_filterprune import (
    FilterPruneWarning,
    apply_plan,
    count_macs,
    export_tflite,
    mask_model,
    plan_pruning,
    profile_model,
    prune_keras_model,
    score_filters,
)
from keras_filterprune.graph import trace_channels
from tests import oracle

L, ops = keras.layers, keras.ops
PACKAGE = "test_inner"


@keras.saving.register_keras_serializable(package=PACKAGE)
class SqueezeExcite(L.Layer):
    """keras-hub's SE block: a composite layer nested in another one."""

    def __init__(self, filters, bottleneck, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.bottleneck = filters, bottleneck
        self.reduce = L.Conv2D(bottleneck, 1, name=f"{self.name}_reduce")
        self.expand = L.Conv2D(filters, 1, name=f"{self.name}_expand")

    def call(self, x):
        s = ops.mean(x, axis=(1, 2), keepdims=True)
        return x * ops.hard_sigmoid(self.expand(ops.relu(self.reduce(s))))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "bottleneck": 4}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MBBlock(L.Layer):
    """An inverted residual block: expand, depthwise, SE, project, residual."""

    def __init__(self, filters, expansion=3, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.expansion = filters, expansion
        wide = filters * expansion
        self.expand = L.Conv2D(wide, 1, use_bias=False, name=f"{self.name}_expand")
        self.bn1 = L.BatchNormalization(name=f"{self.name}_bn1")
        self.dw = L.DepthwiseConv2D(3, padding="same", name=f"{self.name}_dw")
        self.bn2 = L.BatchNormalization(name=f"{self.name}_bn2")
        self.se = SqueezeExcite(wide, 4, name=f"{self.name}_se")
        self.project = L.Conv2D(filters, 1, name=f"{self.name}_project")
        self.bn3 = L.BatchNormalization(name=f"{self.name}_bn3")

    def call(self, x):
        h = ops.relu(self.bn1(self.expand(x)))
        h = ops.hard_silu(self.bn2(self.dw(h)))
        return x + self.bn3(self.project(self.se(h)))

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "expansion": self.expansion,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class Fuse(L.Layer):
    """Two tensor inputs, one output: `conv(a) + conv(b)`."""

    def __init__(self, filters, **kwargs):
        super().__init__(**kwargs)
        self.a = L.Conv2D(filters, 1, name=f"{self.name}_a")
        self.b = L.Conv2D(filters, 1, name=f"{self.name}_b")

    def call(self, inputs):
        return ops.relu(self.a(inputs[0]) + self.b(inputs[1]))


class ValueBranch(L.Layer):
    """Python control flow on a tensor value: cannot be traced."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(8, 1, name="vb_conv")

    def call(self, x):
        y = self.conv(x)
        return y if ops.mean(y) > 0 else -y

    def compute_output_shape(self, input_shape):  # Keras cannot infer it either
        return (*input_shape[:-1], 8)


class TrainingBranch(L.Layer):
    """A Python `if training:` (a drop path): one graph per mode."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(8, 1, name="tb_conv")

    def call(self, x, training=None):
        y = self.conv(x)
        return y * 0.5 if training else y


class OwnWeights(L.Layer):
    """A per-channel scale held by the layer itself, around a sub-layer."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(8, 1, name="ow_conv")

    def build(self, input_shape):
        self.conv.build(input_shape)
        self.gamma = self.add_weight(shape=(8,), initializer="ones", name="gamma")

    def call(self, x):
        return self.conv(x) * self.gamma


class LambdaInside(L.Layer):
    """A sub-layer holding a Python lambda: Keras cannot rebuild it from a config."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = L.Conv2D(8, 1, name="li_conv")
        self.act = L.Activation(lambda t: t * 2.0, name="li_act")

    def call(self, x):
        return self.act(self.conv(x))


def _stem(inputs, width=8):
    x = L.Conv2D(width, 3, padding="same", name="stem")(inputs)
    return L.BatchNormalization(name="stem_bn")(x)


def _head(x):
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return L.Dense(3, name="head")(x)


def mb_model(seed=0):
    inputs = keras.Input((12, 12, 3))
    x = _stem(inputs)
    x = MBBlock(8, name="b1")(x)
    x = MBBlock(8, name="b2")(x)
    return oracle.randomize(keras.Model(inputs, _head(x), name="mb"), seed)


def _x(model, batch=4, seed=1):
    shape = tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype("float32")


def _check_exact(model, plan, pruned, x):
    y = oracle.outputs(pruned, x)
    oracle.assert_close(y, oracle.outputs(mask_model(model, plan), x), what="mask")
    dead = oracle.dead_channels_model(model, plan)
    oracle.assert_close(y, oracle.outputs(dead, x), what="dead channels")
    oracle.assert_differs(y, oracle.outputs(model, x), what=model.name)
    return y


def test_composite_blocks_are_pruned_inside_exactly():
    model = mb_model()
    before = oracle.snapshot(model)
    x = _x(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FilterPruneWarning)
        plan = plan_pruning(model, 0.5, "l1_norm")
    assert (
        plan.kept_filters("b1/b1_expand")
        and len(plan.kept_filters("b1/b1_expand")) == 12
    )
    assert len(plan.kept_filters("b2/b2_se/b2_se_reduce")) == 2
    pruned = apply_plan(model, plan)
    _check_exact(model, plan, pruned, x)
    oracle.assert_untouched(model, before)
    # The pruned blocks are Functional models of their traced graphs, with the
    # sub-layer names kept.
    block = pruned.get_layer("b1")
    assert isinstance(block, keras.Model)
    assert block.get_layer("b1_expand").filters == 12
    assert block.get_layer("b1_se").get_layer("b1_se_reduce").filters == 2
    assert count_macs(pruned) < 0.6 * count_macs(model)


def test_an_untouched_composite_keeps_its_class():
    model = mb_model()
    x = _x(model)
    # Block 2's own groups and the residual stream are kept: nothing in it changes.
    plan = plan_pruning(
        model, 0.5, "l1_norm", exclude=["stem", "b2_expand", "b2_se_reduce"]
    )
    pruned = apply_plan(model, plan)
    assert type(pruned.get_layer("b2")) is MBBlock
    assert isinstance(pruned.get_layer("b1"), keras.Model)
    _check_exact(model, plan, pruned, x)
    # mask_model rebuilds without widths changing: every block keeps its class.
    assert type(mask_model(model, plan).get_layer("b1")) is MBBlock


def test_pruned_composites_save_reload_and_export(tmp_path):
    model = mb_model()
    x = _x(model)
    pruned = prune_keras_model(model, 0.5, "l1_norm")
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    reloaded = keras.saving.load_model(path)
    oracle.assert_close(oracle.outputs(reloaded, x), oracle.outputs(pruned, x))
    if keras.backend.backend() == "tensorflow":
        pytest.importorskip("ai_edge_litert")
        report = export_tflite(pruned, str(tmp_path / "pruned.tflite"))
        assert report.passed, str(report)  # the TFLite outputs match Keras'


def test_macs_are_counted_inside_composites():
    model = mb_model()
    # The same architecture written with the Functional API.
    inputs = keras.Input((12, 12, 3))
    x = _stem(inputs)
    for _ in ("b1", "b2"):
        h = L.Conv2D(24, 1, use_bias=False)(x)
        h = L.ReLU()(L.BatchNormalization()(h))
        h = L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(h))
        h = L.Activation("hard_silu")(h)
        s = L.GlobalAveragePooling2D(keepdims=True)(h)
        s = L.Conv2D(24, 1, activation="hard_sigmoid")(L.Conv2D(4, 1)(s))
        h = L.Multiply()([h, s])
        x = L.Add()([x, L.BatchNormalization()(L.Conv2D(8, 1)(h))])
    twin = keras.Model(inputs, _head(x))
    assert count_macs(model) == count_macs(twin)


def test_nested_shared_and_multi_input_composites():
    inputs = keras.Input((10, 10, 3))
    x = _stem(inputs)
    block = MBBlock(8, name="shared")
    y = block(block(x))  # one block, two call sites: its weights are shared
    z = Fuse(8, name="fuse")([x, y])
    model = oracle.randomize(keras.Model(inputs, _head(z), name="shared_model"), 2)
    graph = trace_channels(model, warn=False)
    assert {"shared", "shared/shared_se", "fuse"} <= set(graph.walk.composites)
    plan = plan_pruning(model, 0.5, "l1_norm")
    pruned = apply_plan(model, plan)
    _check_exact(model, plan, pruned, _x(model))
    assert pruned.get_layer("fuse").get_layer("fuse_a").filters == 4


def test_composite_in_a_sequential_model():
    model = keras.Sequential(
        [
            keras.Input((10, 10, 3)),
            L.Conv2D(8, 3, padding="same", name="stem"),
            MBBlock(8, name="blk"),
            L.Conv2D(6, 3, name="c"),
            L.GlobalAveragePooling2D(),
            L.Dense(2, name="head"),
        ],
        name="seq",
    )
    oracle.randomize(model, 3)
    plan = plan_pruning(model, 0.5, "l1_norm")
    pruned = apply_plan(model, plan)
    assert pruned.get_layer("blk").get_layer("blk_expand").filters == 12
    _check_exact(model, plan, pruned, _x(model))


@pytest.mark.parametrize(
    "cls, why",
    [
        (ValueBranch, "cannot be traced on symbolic tensors"),
        (TrainingBranch, "branches on `training`"),
        (OwnWeights, "uses weights of its own"),
    ],
)
def test_untraceable_layers_are_frozen_and_named(cls, why):
    inputs = keras.Input((8, 8, 3))
    x = _stem(inputs)
    x = cls(name="odd")(x)
    x = L.Conv2D(6, 3, name="c")(x)
    model = oracle.randomize(keras.Model(inputs, _head(x), name="odd_model"), 4)
    with pytest.warns(FilterPruneWarning, match=f"'odd' .*{why}"):
        plan = plan_pruning(model, 0.5, "l1_norm")
    assert (
        why in plan.group_of("stem").frozen and "'odd'" in plan.group_of("stem").frozen
    )
    assert plan.group_of("c").frozen is None
    pruned = apply_plan(model, plan)
    assert type(pruned.get_layer("odd")) is cls  # never rebuilt from a trace
    _check_exact(model, plan, pruned, _x(model))


def test_a_composite_that_cannot_be_rebuilt_is_counted_and_frozen():
    inputs = keras.Input((8, 8, 3))
    x = _stem(inputs)
    x = LambdaInside(name="odd")(x)
    x = L.Conv2D(6, 3, name="c")(x)
    model = oracle.randomize(keras.Model(inputs, _head(x), name="lambda_model"), 4)
    with pytest.warns(FilterPruneWarning, match="'odd'.*cannot be rebuilt.*lambda"):
        plan = plan_pruning(model, 0.5, "l1_norm")
    assert "inside 'odd', which cannot be rebuilt" in plan.group_of("stem").frozen
    assert "inside 'odd'" in plan.group_of("odd/li_conv").frozen
    assert plan.group_of("c").frozen is None
    pruned = apply_plan(model, plan)
    assert type(pruned.get_layer("odd")) is LambdaInside
    # Its convolution is counted: 8x8 positions, 8 input channels, 8 filters.
    assert profile_model(model).by_layer()["odd/li_conv"][1] == 8 * 8 * 8 * 8
    # Active criteria read a rebuilt copy: a clear error, no deep traceback.
    with pytest.raises(ValueError, match="inside 'odd', which cannot be rebuilt"):
        score_filters(model, "mean_activation", data=_x(model))
    _check_exact(model, plan, pruned, _x(model))


def test_active_criteria_score_layers_inside_composites():
    model = mb_model()
    x = _x(model, batch=8)
    scores = score_filters(model, "mean_activation", data=x)
    assert {"b1/b1_expand", "b2/b2_se/b2_se_reduce"} <= set(scores)
    assert scores["b1/b1_expand"].shape == (24,)


class TutorialConvNet(keras.Model):
    """The shape of the subclassed models of Keras' guides: layers in
    `__init__`, a `call()` chaining them."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.conv1 = L.Conv2D(16, 3, activation="relu", name="conv1")
        self.pool = L.MaxPooling2D(name="pool")
        self.block = MBBlock(16, expansion=2, name="block")
        self.conv2 = L.Conv2D(8, 3, activation="relu", name="conv2")
        self.dropout = L.Dropout(0.5, name="dropout")
        self.classifier = L.Dense(num_classes, name="classifier")

    def call(self, inputs, training=False):
        x = self.pool(self.conv1(inputs))
        x = self.conv2(self.block(x))
        x = ops.mean(x, axis=(1, 2))
        return self.classifier(self.dropout(x, training=training))


def test_subclassed_model_prunes_to_a_functional_model():
    model = TutorialConvNet()
    model(np.zeros((1, 14, 14, 3), "float32"))
    oracle.randomize(model, 5)
    before = oracle.snapshot(model)
    x = np.random.default_rng(0).normal(size=(4, 14, 14, 3)).astype("float32")
    plan = plan_pruning(model, 0.5, "l1_norm")
    assert plan.group_of("conv1").frozen is None
    scores = score_filters(model, "mean_activation", data=x)  # an active criterion
    assert scores["block/block_expand"].shape == (32,)
    with pytest.warns(FilterPruneWarning, match="subclassed model.*could not be kept"):
        pruned = apply_plan(model, plan)
    assert type(pruned) is not TutorialConvNet and isinstance(pruned, keras.Model)
    assert pruned.get_layer("conv1").filters == 8
    assert count_macs(pruned) < 0.6 * count_macs(model)
    with pytest.warns(FilterPruneWarning, match="subclassed model"):
        masked = mask_model(model, plan)
    y = oracle.outputs(pruned, x)
    oracle.assert_close(y, oracle.outputs(masked, x), what="mask")
    oracle.assert_differs(y, oracle.outputs(model, x))
    oracle.assert_untouched(model, before)


def test_recovery_and_sensitivity_reach_inside_composites():
    from keras_filterprune import recalibrate_batchnorm, sensitivity_analysis

    model = mb_model()
    x = _x(model, batch=16)
    bn = model.get_layer("b1").bn1
    before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    assert recalibrate_batchnorm(model, x) == 1  # one batch
    once = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    assert not np.allclose(once, before)
    # Recalibration replaces the statistics (it does not nudge them with the
    # layer's own momentum): the same data gives the same statistics again.
    recalibrate_batchnorm(model, x)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), once, 1e-5)

    def score(candidate):
        return -float(np.abs(oracle.outputs(candidate, x)[0]).mean())

    result = sensitivity_analysis(
        model, score, ratios=[0.5], criterion="l1_norm", verbose=0
    )
    assert any("b1/b1_expand" in name for name in result.curves)


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_pruning_callback_on_a_model_of_composite_blocks(mode):
    from keras_filterprune import PruningCallback

    model = mb_model()
    x = _x(model, batch=32)
    y = np.random.default_rng(0).integers(0, 3, 32)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = PruningCallback("l1_norm", ratio=0.5, epochs=(0,), mode=mode, verbose=0)
    model.fit(x, y, epochs=2, batch_size=16, callbacks=[callback], verbose=0)
    removed = ~np.isin(np.arange(24), callback.plan.kept_filters("b1/b1_expand"))
    kernel = keras.ops.convert_to_numpy(model.get_layer("b1").expand.kernel)
    assert removed.sum() == 12 and np.all(kernel[..., removed] == 0)
    pruned = callback.pruned_model()
    assert pruned.get_layer("b1").get_layer("b1_expand").filters == 12
    oracle.assert_close(oracle.outputs(pruned, x), oracle.outputs(model, x))


class TiedWeights(L.Layer):
    """A decoder that reuses its encoder's kernel: `ops.transpose(enc.kernel)`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.enc = L.Dense(6, name="tw_enc")

    def call(self, x):
        return ops.matmul(self.enc(x), ops.transpose(self.enc.kernel))


def test_a_weight_used_directly_is_never_frozen_into_a_copy():
    inputs = keras.Input((8,))
    x = L.Dense(8, name="pre")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="head")(TiedWeights(name="tied")(x)))
    with pytest.warns(FilterPruneWarning, match="'tied'.*concrete tensor"):
        plan = plan_pruning(model, 0.5, "l1_norm")
    assert "TiedWeights has no pruning handler" in plan.group_of("pre").frozen


def test_a_block_shared_at_two_sizes_is_traced_once_with_unknown_sizes():
    inputs = keras.Input((12, 12, 3))
    x = _stem(inputs)
    block = MBBlock(8, name="shared")
    small = L.MaxPooling2D(name="pool")(x)
    y = block(x)  # 12x12
    z = block(small)  # 6x6: the same block, other sizes
    z = L.UpSampling2D(name="up")(z)
    out = _head(L.Add(name="sum")([y, z]))
    model = oracle.randomize(keras.Model(inputs, out, name="two_sizes"), 6)
    graph = trace_channels(model, warn=False)
    assert "shared" in graph.walk.composites
    # Each call site is walked at its own sizes (true MACs)...
    expand = [c for c in graph.walk.calls if c.path == "shared/shared_expand"]
    assert [graph.walk.shapes[c.outputs[0]][1] for c in expand] == [12, 6]
    plan = plan_pruning(model, 0.5, "l1_norm")
    pruned = apply_plan(model, plan)
    # ... and rebuilt once for any size.
    block = pruned.get_layer("shared")
    assert isinstance(block, keras.Model) and block.inputs[0].shape[1] is None
    _check_exact(model, plan, pruned, _x(model))


@keras.saving.register_keras_serializable(package=PACKAGE)
class DictFuse(L.Layer):
    """A dict of tensors in, one out."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = L.Conv2D(8, 1, name=f"{self.name}_a")
        self.b = L.Conv2D(8, 1, name=f"{self.name}_b")

    def call(self, inputs):
        return ops.relu(self.a(inputs["small"]) + self.b(inputs["big"]))


def test_a_composite_taking_a_dict():
    inputs = keras.Input((8, 8, 3))
    x = _stem(inputs)
    y = L.Conv2D(4, 3, padding="same", name="side")(inputs)
    z = DictFuse(name="fuse")({"big": x, "small": y})
    model = oracle.randomize(keras.Model(inputs, _head(z), name="dict_model"), 7)
    plan = plan_pruning(model, 0.5, "l1_norm")
    assert plan.group_of("side").frozen is None and plan.group_of("stem").frozen is None
    pruned = apply_plan(model, plan)
    assert pruned.get_layer("fuse").get_layer("fuse_a").kernel.shape[-2] == 2
    _check_exact(model, plan, pruned, _x(model))


def test_mixed_precision_inputs_are_traced_at_full_precision():
    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = TutorialConvNet()
        model(np.zeros((1, 14, 14, 3), "float32"))
    finally:
        keras.config.set_dtype_policy(policy)
    graph = trace_channels(model, warn=False)
    assert graph.walk.calls[0].layer.name == "conv1"
    view_input = graph.walk.shapes[graph.walk.inputs[0]]
    assert view_input == (None, 14, 14, 3)
    with pytest.warns(FilterPruneWarning, match="subclassed"):
        pruned = prune_keras_model(model, 0.5, "l1_norm")
    assert pruned.inputs[0].dtype == "float32"
