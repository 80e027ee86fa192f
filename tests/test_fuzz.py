"""Fuzzing the surgery: random DAGs of supported layers, random plans, 0 mismatches.

Hypothesis draws a graph layer by layer from the shapes of the tensors built so far
(so every graph is valid), randomises its weights and BatchNorm statistics, plans
with a random ratio, criterion and planner options, and checks that the pruned
model computes what `mask_model` computes, and that the input model is untouched.
Runs are reproducible (`derandomize=True`, no example database).
"""

import warnings

import keras
import numpy as np
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from keras_filterprune import (
    FilterPruneWarning,
    apply_plan,
    mask_model,
    plan_pruning,
)
from tests import oracle

try:
    import keras_hub
except ImportError:  # the `hub` extra is not installed: no keras-hub steps
    keras_hub = None

L = keras.layers


class FunctionalBlock(keras.Model):
    """A functional subclass, as keras-hub builds them: the constructor builds
    the graph and `get_config()` returns constructor arguments."""

    def __init__(self, shape, filters, **kwargs):
        inputs = keras.Input(shape)
        x = L.Conv2D(filters, 3, padding="same", name="conv")(inputs)
        x = L.BatchNormalization(name="bn")(x)
        outputs = L.ReLU(name="relu")(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.shape_, self.filters = shape, filters

    def get_config(self):
        return {"shape": self.shape_, "filters": self.filters, "name": self.name}


class HiddenGraphNet(keras.Model):
    """A whole model as a functional subclass whose config hides the graph."""

    def __init__(self, inputs, outputs, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

    def get_config(self):
        return {"name": self.name}


CRITERIA = ["l1_norm", "l2_norm", "operator_norm", "geometric_median", "random"]
ACTIVATIONS = [None, "relu", "tanh", "sigmoid", "swish"]
MERGES = [L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum]


def _settings(n):
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )


class GraphBuilder:
    """Draws one random, valid Functional graph; `recipe` describes it."""

    def __init__(self, data, kinds):
        self.data = data
        self.kinds = kinds
        self.recipe: list[str] = []
        self.count = 0

    def draw(self, strategy, label=None):
        return self.data.draw(strategy, label=label)

    def name(self, kind):
        self.count += 1
        return f"{kind}{self.count}"

    def units(self, low=1, high=12):
        return self.draw(st.integers(low, high))

    # -- steps: each takes a tensor, returns new tensors (or [] if not possible) ---
    def conv(self, x, tensors):
        side = x.shape[1]
        k = self.draw(st.sampled_from([1, 2, 3]))
        stride = self.draw(st.sampled_from([1, 2])) if side >= 4 else 1
        padding = self.draw(st.sampled_from(["same", "valid"])) if side > k else "same"
        layer = L.Conv2D(
            self.units(),
            k,
            strides=stride,
            padding=padding,
            activation=self.draw(st.sampled_from(ACTIVATIONS)),
            use_bias=self.draw(st.booleans()),
            name=self.name("conv"),
        )
        return [layer(x)]

    def bn(self, x, tensors):
        return [L.BatchNormalization(name=self.name("bn"))(x)]

    def act(self, x, tensors):
        choice = self.draw(st.integers(0, 5))
        layer = [
            lambda n: L.ReLU(name=n),
            lambda n: L.LeakyReLU(0.2, name=n),
            lambda n: L.PReLU(shared_axes=[1, 2], name=n),
            lambda n: L.PReLU(name=n),
            lambda n: L.Activation("tanh", name=n),
            lambda n: L.ELU(name=n),
        ][choice](self.name("act"))
        return [layer(x)]

    def depthwise(self, x, tensors):
        stride = self.draw(st.sampled_from([1, 2])) if x.shape[1] >= 4 else 1
        layer = L.DepthwiseConv2D(
            self.draw(st.sampled_from([1, 3])),
            strides=stride,
            depth_multiplier=self.draw(st.integers(1, 3)),
            padding="same",
            name=self.name("dw"),
        )
        return [layer(x)]

    def separable(self, x, tensors):
        layer = L.SeparableConv2D(
            self.units(),
            3,
            depth_multiplier=self.draw(st.integers(1, 2)),
            padding="same",
            activation=self.draw(st.sampled_from(ACTIVATIONS)),
            name=self.name("sep"),
        )
        return [layer(x)]

    def grouped(self, x, tensors):
        c = x.shape[-1]
        if c < 2:
            return []
        choices = [g for g in (2, 4, 8) if c % g == 0 and g < c]
        if choices and self.draw(st.booleans()):  # slot-wise: ResNeXt-style
            g = self.draw(st.sampled_from(choices))
            filters = g * self.draw(st.integers(1, 3))
            layer = L.Conv2D(filters, 3, padding="same", groups=g, name=self.name("g"))
            return [layer(x)]
        m = self.draw(st.integers(1, 2))  # depthwise as a grouped conv
        return [L.Conv2D(c * m, 3, padding="same", groups=c, name=self.name("gdw"))(x)]

    def pool(self, x, tensors):
        side = x.shape[1]
        choice = self.draw(st.integers(0, 4))
        if choice == 0 and side >= 2:
            return [L.MaxPooling2D(2, padding="same", name=self.name("maxpool"))(x)]
        if choice == 1 and side >= 2:
            return [L.AveragePooling2D(2, padding="same", name=self.name("avgpool"))(x)]
        if choice == 2 and side <= 6:
            return [L.UpSampling2D(2, name=self.name("up"))(x)]
        if choice == 3:
            return [L.ZeroPadding2D(1, name=self.name("pad"))(x)]
        if side >= 4:
            return [L.Cropping2D(1, name=self.name("crop"))(x)]
        return []

    def transpose(self, x, tensors):
        if x.shape[1] > 8:
            return []
        layer = L.Conv2DTranspose(
            self.units(1, 8),
            self.draw(st.sampled_from([2, 3])),
            strides=self.draw(st.sampled_from([1, 2])),
            padding="same",
            name=self.name("tconv"),
        )
        return [layer(x)]

    def merge(self, x, tensors):
        partners = [t for t in tensors if tuple(t.shape) == tuple(x.shape)]
        y = self.draw(st.sampled_from(partners))
        if self.draw(st.booleans()):
            cls = self.draw(st.sampled_from(MERGES))
            return [cls(name=self.name("merge"))([x, y])]
        op = self.draw(st.sampled_from(["add", "mul", "scale"]))
        if op == "add":
            return [x + y]
        return [x * y] if op == "mul" else [x * 0.5]

    def concat(self, x, tensors):
        partners = [
            t
            for t in tensors
            if tuple(t.shape[1:3]) == tuple(x.shape[1:3]) and t.shape[-1] <= 24
        ]
        if not partners:
            return []
        parts = [x] + self.draw(
            st.lists(st.sampled_from(partners), min_size=1, max_size=2)
        )
        return [L.Concatenate(name=self.name("cat"))(parts)]

    def nested(self, x, tensors):
        block = keras.Sequential(
            [
                keras.Input(tuple(x.shape[1:])),
                L.Conv2D(self.units(), 3, padding="same", name=self.name("inner")),
                L.BatchNormalization(name=self.name("inner_bn")),
                L.ReLU(name=self.name("inner_relu")),
            ],
            name=self.name("block"),
        )
        return [block(x)]

    def subclass(self, x, tensors):
        """A nested functional subclass (its config: constructor arguments)."""
        block = FunctionalBlock(
            tuple(x.shape[1:]), self.units(), name=self.name("subblock")
        )
        return [block(x)]

    def hub(self, x, tensors):
        """A nested keras-hub backbone (VGG: conv blocks and a max pool)."""
        if keras_hub is None or x.shape[1] < 2:
            return []
        backbone = keras_hub.models.VGGBackbone(
            stackwise_num_repeats=[self.draw(st.integers(1, 2))],
            stackwise_num_filters=[self.units(2, 8)],
            image_shape=tuple(x.shape[1:]),
            name=self.name("hub"),
        )
        return [backbone(x)]

    def squeeze_excite(self, x, tensors):
        c = x.shape[-1]
        s = L.GlobalAveragePooling2D(name=self.name("se_gap"))(x)
        s = L.Dense(self.units(1, 4), activation="relu", name=self.name("sq"))(s)
        s = L.Dense(c, activation="sigmoid", name=self.name("ex"))(s)
        s = L.Reshape((1, 1, c), name=self.name("se_shape"))(s)
        return [L.Multiply(name=self.name("se"))([x, s])]

    def dense(self, x, tensors):
        return [L.Dense(self.units(), name=self.name("dense"))(x)]

    def shared(self, x, tensors):
        partners = [t for t in tensors if t.shape[-1] == x.shape[-1]]
        y = self.draw(st.sampled_from(partners))
        layer = L.Conv2D(self.units(), 3, padding="same", name=self.name("shared"))
        return [layer(x), layer(y)]

    # -- the whole graph -----------------------------------------------------------
    def build(self, max_steps=7):
        side = self.draw(st.integers(4, 10), "side")
        inputs = keras.Input((side, side, self.draw(st.integers(1, 4), "channels")))
        tensors = [inputs]
        for _ in range(self.draw(st.integers(1, max_steps), "steps")):
            kind = self.draw(st.sampled_from(self.kinds))
            x = self.draw(st.sampled_from(tensors[-3:]))
            new = getattr(self, kind)(x, tensors)
            self.recipe.append(
                f"{kind}({tuple(x.shape)}) -> {[tuple(t.shape) for t in new]}"
            )
            tensors.extend(new)
        x = tensors[-1]
        outputs = [self.head(x)]
        if len(tensors) > 2 and self.draw(st.integers(0, 3)) == 0:
            other = self.draw(st.sampled_from(tensors[1:-1]))
            outputs.append(L.Dense(2, name="aux")(L.GlobalAveragePooling2D()(other)))
        self.recipe.append(f"outputs {[tuple(o.shape) for o in outputs]}")
        if self.draw(st.integers(0, 3), "hidden graph") == 0:
            self.recipe.append("as a functional subclass (HiddenGraphNet)")
            return HiddenGraphNet(inputs, outputs)
        return keras.Model(inputs, outputs)

    def head(self, x):
        choice = self.draw(st.integers(0, 3), "head")
        if choice == 0:
            return L.Dense(3, name="head")(L.GlobalAveragePooling2D(name="gap")(x))
        if choice == 1:
            return L.Dense(3, name="head")(L.Flatten(name="flat")(x))
        if choice == 2:
            return L.Conv2D(2, 1, name="head")(x)
        return L.GlobalMaxPooling2D(name="head")(x)


def _check(data, model, **plan_kwargs):
    seed = data.draw(st.integers(0, 2**16), "seed")
    oracle.randomize(model, seed)
    before = oracle.snapshot(model)
    with warnings.catch_warnings():  # drawn options may keep every channel: said
        warnings.filterwarnings("ignore", "Nothing is removed", FilterPruneWarning)
        plan = plan_pruning(model, **plan_kwargs)
    pruned = apply_plan(model, plan)
    masked = mask_model(model, plan)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, *model.inputs[0].shape[1:])).astype("float32")
    y = oracle.outputs(pruned, x)
    oracle.assert_close(y, oracle.outputs(masked, x), what="pruned vs mask_model")
    dead = oracle.dead_channels_model(model, plan)  # shares no slicing rule
    oracle.assert_close(y, oracle.outputs(dead, x), what="pruned vs dead channels")
    assert pruned.count_params() <= model.count_params()
    assert pruned.count_params() < model.count_params() or plan.num_removed == 0
    oracle.assert_untouched(model, before)
    return plan


def _graph(data, kinds, max_steps=7):
    builder = GraphBuilder(data, kinds)
    try:
        model = builder.build(max_steps)
    finally:
        note("graph:\n  " + "\n  ".join(builder.recipe))
    return model


def _plan_kwargs(data):
    return {
        "ratio": data.draw(st.floats(0.1, 0.9), "ratio"),
        "criterion": data.draw(st.sampled_from(CRITERIA), "criterion"),
    }


BASIC = [
    "conv",
    "conv",
    "bn",
    "act",
    "depthwise",
    "separable",
    "pool",
    "merge",
    "concat",
]
RICH = [
    *BASIC,
    "grouped",
    "transpose",
    "nested",
    "subclass",
    "hub",
    "squeeze_excite",
    "dense",
    "shared",
]


@_settings(60)
@given(st.data())
def test_fuzz_basic_layers(data):
    _check(data, _graph(data, BASIC), **_plan_kwargs(data))


@_settings(60)
@given(st.data())
def test_fuzz_nested_grouped_transpose_se(data):
    _check(data, _graph(data, RICH), **_plan_kwargs(data))


@_settings(50)
@given(st.data())
def test_fuzz_planner_options(data):
    kwargs = _plan_kwargs(data)
    kwargs["round_to"] = data.draw(st.sampled_from([1, 2, 4]), "round_to")
    kwargs["min_filters"] = data.draw(st.integers(1, 3), "min_filters")
    kwargs["group_reduction"] = data.draw(
        st.sampled_from(["mean", "sum", "max", "l2"]), "group_reduction"
    )
    option = data.draw(st.sampled_from(["plain", "global", "greedy"]), "option")
    kwargs["global_ranking"] = option == "global"
    kwargs["greedy"] = option == "greedy"
    _check(data, _graph(data, RICH), **kwargs)


@_settings(40)
@given(st.data())
def test_fuzz_deep_graphs(data):
    _check(data, _graph(data, RICH, max_steps=14), **_plan_kwargs(data))


# Grouped convolutions (slot-wise), functional subclasses and nested keras-hub
# backbones, drawn often enough to meet each other.
STRUCTURED = ["conv", "grouped", "grouped", "subclass", "hub", "bn", "act", "merge"]


@_settings(40)
@given(st.data())
def test_fuzz_grouped_and_functional_subclasses(data):
    _check(data, _graph(data, STRUCTURED), **_plan_kwargs(data))
