"""Hand-built test graphs and the keras.applications zoo, built once per process.

Every hand-built case knows its own wiring: `rows(plan)` names, for each layer that
*consumes* a pruned channel set, which of its input rows read removed channels (the
independent oracle of `tests/oracle.py` zeroes exactly those), and `widths` the
width each producer must have after pruning at `ratio`.

Models are cached (`functools.cache`): tests must not modify them, which is itself
checked by the "nothing lost" tests.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import keras
import numpy as np

from keras_filterprune.handlers import PassThroughHandler, register_handler
from tests.oracle import flat_rows, randomize, removed, repeat_rows

L = keras.layers
Rows = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], keras.Model]
    rows: Callable[..., Rows]
    widths: dict[str, int]
    frozen: dict[str, str] = dataclasses.field(default_factory=dict)
    plan_kwargs: dict = dataclasses.field(default_factory=dict)
    warns: str | None = None  # a FilterPruneWarning must match this


def _conv(n, k=3, name=None, **kw):
    return L.Conv2D(n, k, padding="same", name=name, **kw)


def _head(x, name="head", units=3):
    x = L.GlobalAveragePooling2D(name=f"{name}_gap")(x)
    return L.Dense(units, name=name)(x)


def _finish(inputs, outputs, name, seed=0):
    return randomize(keras.Model(inputs, outputs, name=name), seed)


# -- custom layers (not registered: apply_plan must rebuild them anyway) -----------


class UnhandledScale(L.Layer):
    """A per-channel scale keras-filterprune knows nothing about."""

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(input_shape[-1],), name="scale")

    def call(self, x):
        return x * self.scale


class HandledScale(UnhandledScale):
    """The same layer, taught with `register_handler(..., PassThroughHandler())`
    when this module is imported (before any test: `conftest` restores the
    registry to that state after each test)."""


register_handler(HandledScale, PassThroughHandler())


# -- the cases ------------------------------------------------------------------


def plain_chain():
    inputs = keras.Input((12, 12, 3))
    x = _conv(8, name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = _conv(12, name="c2", activation="relu")(x)
    x = L.Conv2D(6, 3, name="c3")(x)  # valid
    return _finish(inputs, _head(x), "plain_chain")


def flatten_dense():
    inputs = keras.Input((8, 8, 3))
    x = _conv(8, name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.MaxPooling2D(2, name="pool")(x)  # 4 x 4 x 8
    x = L.Flatten(name="flatten")(x)  # 128 = 16 positions x 8 channels
    x = L.Dense(5, activation="tanh", name="fc")(x)
    return _finish(inputs, L.Dense(3, name="head")(x), "flatten_dense")


def residual_identity():
    inputs = keras.Input((10, 10, 3))
    x = L.ReLU(name="stem_relu")(
        L.BatchNormalization(name="stem_bn")(_conv(8, name="stem")(inputs))
    )
    y = L.ReLU(name="r1_relu")(
        L.BatchNormalization(name="r1_bn")(_conv(8, name="r1")(x))
    )
    y = L.BatchNormalization(name="r2_bn")(_conv(8, name="r2")(y))
    z = L.ReLU(name="add_relu")(L.Add(name="add")([x, y]))
    z = _conv(6, name="c_out")(z)
    return _finish(inputs, _head(z), "residual_identity")


def residual_projection():
    inputs = keras.Input((10, 10, 3))
    x = L.ReLU(name="stem_relu")(_conv(8, name="stem")(inputs))
    s = L.BatchNormalization(name="proj_bn")(_conv(12, 1, name="proj")(x))
    y = L.ReLU(name="r1_relu")(_conv(6, name="r1")(x))
    y = L.BatchNormalization(name="r2_bn")(_conv(12, name="r2")(y))
    z = L.ReLU(name="add_relu")(L.Add(name="add")([s, y]))
    z = _conv(5, name="c_out")(z)
    return _finish(inputs, _head(z), "residual_projection")


def two_adds_sharing():
    inputs = keras.Input((10, 10, 3))
    x = L.ReLU(name="stem_relu")(_conv(8, name="stem")(inputs))
    a = _conv(8, name="a", activation="relu")(x)
    b = _conv(8, name="b", activation="relu")(x)
    s1 = L.Add(name="add1")([x, a])
    s2 = L.Add(name="add2")([b, x])
    c1 = _conv(4, name="c1")(s1)
    c2 = _conv(4, name="c2")(s2)
    z = L.Add(name="add3")([c1, c2])
    return _finish(inputs, _head(z), "two_adds_sharing")


def concat_frozen_branch():
    inputs = keras.Input((10, 10, 3))
    x = L.ReLU(name="stem_relu")(_conv(8, name="stem")(inputs))
    p = _conv(6, name="p", activation="relu")(x)
    f = _conv(4, name="f", activation="relu")(inputs)  # excluded by the user
    z = L.Concatenate(name="cat")([f, p, inputs])  # offsets 0, 4, 10
    z = _conv(5, name="c")(z)
    return _finish(inputs, _head(z), "concat_frozen_branch")


def se_block(reshape: bool):
    inputs = keras.Input((8, 8, 3))
    x = L.ReLU(name="stem_relu")(_conv(8, name="stem")(inputs))
    s = L.GlobalAveragePooling2D(keepdims=not reshape, name="se_gap")(x)
    s = L.Dense(4, activation="relu", name="sq")(s)
    s = L.Dense(8, activation="sigmoid", name="ex")(s)
    if reshape:
        s = L.Reshape((1, 1, 8), name="se_reshape")(s)
    y = L.Multiply(name="se_mul")([x, s])
    y = _conv(6, name="c")(y)
    name = "se_reshape" if reshape else "se_block"
    return _finish(inputs, _head(y), name)


def separable():
    inputs = keras.Input((8, 8, 3))
    x = L.ReLU(name="stem_relu")(
        L.BatchNormalization(name="stem_bn")(_conv(8, name="stem")(inputs))
    )
    d = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    d = L.ReLU(name="dw_relu")(L.BatchNormalization(name="dw_bn")(d))  # 16 channels
    p = L.ReLU(name="pw_relu")(
        L.BatchNormalization(name="pw_bn")(_conv(10, 1, name="pw")(d))
    )
    s = L.SeparableConv2D(12, 3, depth_multiplier=2, padding="same", name="sep")(p)
    s = L.BatchNormalization(name="sep_bn")(s)
    return _finish(inputs, _head(s), "separable")


def transpose_decoder():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="e1")(inputs)
    x = L.Conv2DTranspose(6, 3, strides=2, padding="same", name="t1")(x)
    x = L.ReLU(name="t1_relu")(L.BatchNormalization(name="t1_bn")(x))
    x = L.Conv2DTranspose(4, 3, padding="same", activation="relu", name="t2")(x)
    return _finish(inputs, L.Conv2D(2, 1, name="out")(x), "transpose_decoder")


def grouped_slots():
    inputs = keras.Input((8, 8, 4))
    x = L.ReLU(name="stem_relu")(_conv(8, name="stem")(inputs))
    g = _conv(8, name="g", groups=2)(x)
    g = L.ReLU(name="g_relu")(g)
    y = _conv(6, name="c")(g)
    return _finish(inputs, _head(y), "grouped_slots")


def grouped_depthwise():
    inputs = keras.Input((8, 8, 3))
    x = L.ReLU(name="stem_relu")(_conv(8, name="stem")(inputs))
    g = L.ReLU(name="g_relu")(_conv(16, name="g", groups=8)(x))  # depthwise, m = 2
    y = _conv(6, 1, name="pw")(g)
    return _finish(inputs, _head(y), "grouped_depthwise")


def conv1d_audio():
    inputs = keras.Input((64, 4))  # 64 frames x 4 bands
    x = L.Conv1D(8, 5, padding="same", name="conv1")(inputs)
    x = L.ReLU(name="relu1")(L.BatchNormalization(name="bn1")(x))
    x = L.MaxPooling1D(2, name="pool1")(x)
    x = L.Conv1D(12, 3, name="conv2")(x)
    x = L.ReLU(name="relu2")(L.BatchNormalization(name="bn2")(x))
    x = L.GlobalAveragePooling1D(name="gap")(x)
    x = L.Dense(6, activation="relu", name="fc")(x)
    return _finish(inputs, L.Dense(3, name="head")(x), "conv1d_audio")


def nested_sequential():
    inputs = keras.Input((8, 8, 3))
    x = L.ReLU(name="stem_relu")(_conv(8, name="stem")(inputs))
    block = keras.Sequential(
        [
            keras.Input((8, 8, 8)),
            _conv(10, name="inner1"),
            L.BatchNormalization(name="inner_bn"),
            L.ReLU(name="inner_relu"),
            _conv(6, name="inner2"),
        ],
        name="block",
    )
    y = _conv(5, name="after")(block(x))
    return _finish(inputs, _head(y), "nested_sequential")


def shared_layer():
    inputs = keras.Input((8, 8, 3))
    a = _conv(8, name="a", activation="relu")(inputs)
    b = _conv(8, 1, name="b", activation="tanh")(inputs)
    shared = _conv(6, name="shared")
    z = L.Add(name="add")([shared(a), shared(b)])
    return _finish(inputs, _head(z), "shared_layer")


def two_in_two_out():
    in1 = keras.Input((8, 8, 3), name="image")
    in2 = keras.Input((8, 8, 1), name="mask")
    a = _conv(8, name="a", activation="relu")(in1)
    b = _conv(4, name="b", activation="relu")(in2)
    c = _conv(6, name="c", activation="relu")(L.Concatenate(name="cat")([a, b]))
    out1 = _head(c, "head1")
    out2 = L.Conv2D(2, 1, name="d")(c)
    return _finish([in1, in2], [out1, out2], "two_in_two_out")


def keras_ops():
    inputs = keras.Input((8, 8, 3))
    a = _conv(8, name="a")(inputs)
    b = _conv(8, name="b")(inputs)
    z = (a + b) * 2.0
    z = _conv(6, name="c", activation="relu")(z)
    return _finish(inputs, _head(z), "keras_ops")


def merge(cls):
    def build():
        inputs = keras.Input((8, 8, 3))
        x = L.ReLU(name="stem_relu")(_conv(8, name="stem")(inputs))
        a = _conv(8, name="a", activation="relu")(x)
        b = _conv(8, name="b", activation="tanh")(x)
        z = cls(name="merge")([a, b])
        z = _conv(6, name="c")(z)
        return _finish(inputs, _head(z), f"merge_{cls.__name__.lower()}")

    build.__name__ = f"merge_{cls.__name__.lower()}"
    return build


def prelu():
    inputs = keras.Input((8, 8, 3))
    x = L.PReLU(shared_axes=[1, 2], name="prelu1")(_conv(8, name="stem")(inputs))
    x = L.PReLU(name="prelu2")(_conv(6, name="c")(x))  # alpha (8, 8, 6)
    return _finish(inputs, _head(x), "prelu")


def layer_norm():
    inputs = keras.Input((8, 8, 3))
    x = L.LayerNormalization(name="ln")(_conv(8, name="stem")(inputs))
    x = _conv(6, name="c", activation="relu")(x)
    return _finish(inputs, _head(x), "layer_norm")


def custom(cls):
    def build():
        inputs = keras.Input((8, 8, 3))
        x = cls(name="scale")(_conv(8, name="stem")(inputs))
        x = _conv(6, name="c", activation="relu")(x)
        return _finish(inputs, _head(x), f"custom_{cls.__name__.lower()}")

    build.__name__ = f"custom_{cls.__name__.lower()}"
    return build


def conv_ranks_1d():
    inputs = keras.Input((32, 3))
    x = L.Conv1D(8, 3, padding="same", name="c1")(inputs)
    x = L.DepthwiseConv1D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = L.ReLU(name="dw_relu")(x)  # 16 channels: c1's channel c at 2c, 2c + 1
    x = L.SeparableConv1D(6, 3, depth_multiplier=2, padding="same", name="sep")(x)
    x = L.Conv1DTranspose(5, 3, strides=2, padding="same", name="t")(x)
    x = L.Dense(3, name="head")(L.GlobalAveragePooling1D(name="gap")(x))
    return _finish(inputs, x, "conv_ranks_1d")


def conv_ranks_3d():
    inputs = keras.Input((6, 6, 6, 2))
    x = L.Conv3D(6, 3, padding="same", name="c1")(inputs)
    x = L.ReLU(name="relu")(L.BatchNormalization(name="bn")(x))
    x = L.Conv3D(4, 3, name="c2")(x)
    x = L.Conv3DTranspose(3, 2, strides=2, name="t")(x)
    x = L.Dense(3, name="head")(L.GlobalAveragePooling3D(name="gap")(x))
    return _finish(inputs, x, "conv_ranks_3d")


def nested_functional():
    """A nested Functional model with two inputs, one merged with its own conv."""
    a = keras.Input((8, 8, 6))
    b = keras.Input((8, 8, 6))
    z = L.Add(name="iadd")([L.Conv2D(6, 3, padding="same", name="ia")(a), b])
    z = L.Conv2D(5, 3, padding="same", name="ic")(z)
    inner = keras.Model([a, b], z, name="inner")
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(6, 3, padding="same", name="s1")(inputs)
    y = L.Conv2D(6, 3, padding="same", name="s2")(inputs)
    x = L.Conv2D(4, 1, name="after")(inner([x, y]))
    return _finish(inputs, _head(x), "nested_functional")


def _r(plan, **consumers) -> Rows:
    return {k.replace("__", "/"): v for k, v in consumers.items()}


def _gone(plan, *producers):
    """Removed filters of producers that must share one mask (checked)."""
    sets = [removed(plan, p) for p in producers]
    for p, s in zip(producers[1:], sets[1:]):
        assert s.tolist() == sets[0].tolist(), f"{producers[0]} and {p} differ"
    return sets[0]


MERGES = [L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum]

CASES = [
    Case(
        "plain_chain",
        plain_chain,
        lambda p: {
            "c2": _gone(p, "c1"),
            "c3": _gone(p, "c2"),
            "head": _gone(p, "c3"),
        },
        {"c1": 4, "c2": 6, "c3": 3, "head": 3},
    ),
    Case(
        "flatten_dense",
        flatten_dense,
        lambda p: {"fc": flat_rows(_gone(p, "c1"), 8, 16), "head": _gone(p, "fc")},
        {"c1": 4, "fc": 3, "head": 3},
    ),
    Case(
        "residual_identity",
        residual_identity,
        lambda p: {
            "r1": _gone(p, "stem", "r2"),
            "r2": _gone(p, "r1"),
            "c_out": _gone(p, "stem", "r2"),
            "head": _gone(p, "c_out"),
        },
        {"stem": 4, "r1": 4, "r2": 4, "c_out": 3},
    ),
    Case(
        "residual_projection",
        residual_projection,
        lambda p: {
            "proj": _gone(p, "stem"),
            "r1": _gone(p, "stem"),
            "r2": _gone(p, "r1"),
            "c_out": _gone(p, "proj", "r2"),
            "head": _gone(p, "c_out"),
        },
        {"stem": 4, "proj": 6, "r1": 3, "r2": 6, "c_out": 3},
    ),
    Case(
        "two_adds_sharing",
        two_adds_sharing,
        lambda p: {
            "a": _gone(p, "stem", "a", "b"),
            "b": _gone(p, "stem"),
            "c1": _gone(p, "stem"),
            "c2": _gone(p, "stem"),
            "head": _gone(p, "c1", "c2"),
        },
        {"stem": 4, "a": 4, "b": 4, "c1": 2, "c2": 2},
    ),
    Case(
        "concat_frozen_branch",
        concat_frozen_branch,
        lambda p: {
            "p": _gone(p, "stem"),
            "c": 4 + _gone(p, "p"),
            "head": _gone(p, "c"),
        },
        {"stem": 4, "p": 3, "f": 4, "c": 3},
        frozen={"f": "excluded by the user"},
        plan_kwargs={"exclude": ["f"]},
    ),
    Case(
        "se_block",
        functools.partial(se_block, False),
        lambda p: {
            "sq": _gone(p, "stem", "ex"),
            "ex": _gone(p, "sq"),
            "c": _gone(p, "stem"),
            "head": _gone(p, "c"),
        },
        {"stem": 4, "sq": 2, "ex": 4, "c": 3},
    ),
    Case(
        "se_reshape",
        functools.partial(se_block, True),
        lambda p: {
            "sq": _gone(p, "stem", "ex"),
            "ex": _gone(p, "sq"),
            "c": _gone(p, "stem"),
            "head": _gone(p, "c"),
        },
        {"stem": 4, "sq": 2, "ex": 4, "c": 3},
    ),
    Case(
        "separable",
        separable,
        lambda p: {
            "pw": repeat_rows(_gone(p, "stem"), 2),
            "sep": repeat_rows(_gone(p, "pw"), 2),
            "head": _gone(p, "sep"),
        },
        {"stem": 4, "pw": 5, "sep": 6},
    ),
    Case(
        "transpose_decoder",
        transpose_decoder,
        lambda p: {
            "t1": _gone(p, "e1"),
            "t2": _gone(p, "t1"),
            "out": _gone(p, "t2"),
        },
        {"e1": 4, "t1": 3, "t2": 2, "out": 2},
    ),
    Case(  # groups=2: slot j of both groups is kept or removed together
        "grouped_slots",
        grouped_slots,
        lambda p: {
            "g": np.unique(_gone(p, "stem") % 4),
            "c": _gone(p, "g"),
            "head": _gone(p, "c"),
        },
        {"stem": 4, "g": 4, "c": 3},
    ),
    Case(
        "grouped_depthwise",
        grouped_depthwise,
        lambda p: {"pw": repeat_rows(_gone(p, "stem"), 2), "head": _gone(p, "pw")},
        {"stem": 4, "g": 8, "pw": 3},
    ),
    Case(
        "conv1d_audio",
        conv1d_audio,
        lambda p: {
            "conv2": _gone(p, "conv1"),
            "fc": _gone(p, "conv2"),
            "head": _gone(p, "fc"),
        },
        {"conv1": 4, "conv2": 6, "fc": 3, "head": 3},
    ),
    Case(
        "nested_sequential",
        nested_sequential,
        lambda p: {
            "block/inner1": _gone(p, "stem"),
            "block/inner2": _gone(p, "block/inner1"),
            "after": _gone(p, "block/inner2"),
            "head": _gone(p, "after"),
        },
        {"stem": 4, "block/inner1": 5, "block/inner2": 3, "after": 3},
    ),
    Case(
        "conv_ranks_1d",
        conv_ranks_1d,
        lambda p: {
            "sep": repeat_rows(repeat_rows(_gone(p, "c1"), 2), 2),
            "t": _gone(p, "sep"),
            "head": _gone(p, "t"),
        },
        {"c1": 4, "sep": 3, "t": 3},
    ),
    Case(
        "conv_ranks_3d",
        conv_ranks_3d,
        lambda p: {"c2": _gone(p, "c1"), "t": _gone(p, "c2"), "head": _gone(p, "t")},
        {"c1": 3, "c2": 2, "t": 2},
    ),
    Case(
        "nested_functional",
        nested_functional,
        lambda p: {
            "inner/ia": _gone(p, "s1"),
            "inner/ic": _gone(p, "s2", "inner/ia"),
            "after": _gone(p, "inner/ic"),
            "head": _gone(p, "after"),
        },
        {"s1": 3, "s2": 3, "inner/ia": 3, "inner/ic": 3, "after": 2},
    ),
    Case(
        "shared_layer",
        shared_layer,
        lambda p: {"shared": _gone(p, "a", "b"), "head": _gone(p, "shared")},
        {"a": 4, "b": 4, "shared": 3},
    ),
    Case(
        "two_in_two_out",
        two_in_two_out,
        lambda p: {
            "c": np.concatenate([_gone(p, "a"), 8 + _gone(p, "b")]),
            "head1": _gone(p, "c"),
            "d": _gone(p, "c"),
        },
        {"a": 4, "b": 2, "c": 3, "head1": 3, "d": 2},
    ),
    Case(
        "keras_ops",
        keras_ops,
        lambda p: {"c": _gone(p, "a", "b"), "head": _gone(p, "c")},
        {"a": 4, "b": 4, "c": 3},
    ),
    *[
        Case(
            f"merge_{cls.__name__.lower()}",
            merge(cls),
            lambda p: {
                "a": _gone(p, "stem"),
                "b": _gone(p, "stem"),
                "c": _gone(p, "a", "b"),
                "head": _gone(p, "c"),
            },
            {"stem": 4, "a": 4, "b": 4, "c": 3},
        )
        for cls in MERGES
    ],
    Case(
        "prelu",
        prelu,
        lambda p: {"c": _gone(p, "stem"), "head": _gone(p, "c")},
        {"stem": 4, "c": 3},
    ),
    Case(
        "layer_norm",
        layer_norm,
        lambda p: {"head": _gone(p, "c")},
        {"stem": 8, "c": 3},
        frozen={
            "stem": "LayerNormalization normalises over the channels (prune_norms="
            "True prunes it, approximately) (at layer 'ln')"
        },
    ),
    Case(
        "custom_unhandled",
        custom(UnhandledScale),
        lambda p: {"head": _gone(p, "c")},
        {"stem": 8, "c": 3},
        frozen={
            "stem": "UnhandledScale has no pruning handler and cannot be traced "
            "inside (its call uses weights of its own (scale/scale), which a "
            "traced graph cannot carry) (teach it with register_handler) (at "
            "layer 'scale')"
        },
        warns="'scale' \\(UnhandledScale\\) has no pruning handler",
    ),
    Case(
        "custom_handled",
        custom(HandledScale),
        lambda p: {"c": _gone(p, "stem"), "head": _gone(p, "c")},
        {"stem": 4, "c": 3},
    ),
]
CASES_BY_NAME = {case.name: case for case in CASES}


@functools.cache
def case_model(name: str) -> keras.Model:
    """The (randomised) model of a case, built once per process."""
    return CASES_BY_NAME[name].build()


def width(layer) -> int:
    """Output width of a producer layer."""
    for key in ("filters", "units"):
        if hasattr(layer, key):
            return int(getattr(layer, key))
    raise TypeError(type(layer).__name__)


def inputs_for(model: keras.Model, batch: int = 2, seed: int = 1):
    rng = np.random.default_rng(seed)
    xs = [
        rng.normal(size=(batch, *t.shape[1:])).astype("float32") for t in model.inputs
    ]
    return xs[0] if len(xs) == 1 else xs


# ---------------------------------------------------------------------------
# keras.applications
# ---------------------------------------------------------------------------

# name → (input side, slow)
ZOO = {
    "VGG16": (32, False),
    "ResNet50": (32, True),
    "ResNet50V2": (32, False),
    "ResNet101": (32, True),
    "MobileNet": (32, False),
    "MobileNetV2": (32, False),
    "MobileNetV3Small": (32, False),
    "DenseNet121": (32, True),
    "EfficientNetB0": (32, True),
    "Xception": (71, False),
    "InceptionV3": (75, True),
    "NASNetMobile": (32, True),
    "ConvNeXtTiny": (32, False),
    "EfficientNetV2B0": (32, True),
    "RegNetX002": (32, False),
}


def zoo_inputs(name: str, batch: int = 8, seed: int = 0) -> np.ndarray:
    """Random images for a zoo model; the model's BatchNorm is calibrated on them."""
    side, _ = ZOO[name]
    rng = np.random.default_rng(seed + 100)
    return rng.normal(size=(batch, side, side, 3)).astype("float32")


def zoo_model(name: str, seed: int = 0) -> keras.Model:
    """A keras.applications model with random weights, a 10-class logits head
    (`classifier_activation=None`: outputs before softmax) and BatchNormalization
    statistics calibrated on `zoo_inputs(name)` (see `oracle.calibrate`): at 32 px
    the last stages are 1 x 1, and statistics from other images than those the
    test feeds would blow activations up to 1e8."""
    from tests.oracle import calibrate

    side, _ = ZOO[name]
    model = getattr(keras.applications, name)(
        weights=None,
        include_top=True,
        classes=10,
        classifier_activation=None,
        input_shape=(side, side, 3),
    )
    return calibrate(model, zoo_inputs(name, seed=seed), seed)


def zoo_report(name: str, ratio: float = 0.5, criterion: str = "operator_norm"):
    """Prunes a zoo model and gathers what the zoo test and benchmark report.

    Returns a dict: `model`, `plan`, `pruned`, `snapshot` (of the model before any
    library call), `y` (pruned outputs), `y_mask` (`mask_model` outputs), `y_dead`
    (`oracle.dead_channels_model` outputs), `y_orig`,
    `seconds` (plan + apply), `params` and `macs` (before, after; `macs` is the
    exception when `profile_model` fails), `frozen` (`[(group id, first producer,
    reason)]`).
    """
    import time

    from keras_filterprune import apply_plan, count_macs, mask_model, plan_pruning
    from tests.oracle import dead_channels_model, outputs, snapshot

    model = zoo_model(name)
    x = zoo_inputs(name)[:2]
    before = snapshot(model)
    start = time.perf_counter()
    plan = plan_pruning(model, ratio, criterion)
    pruned = apply_plan(model, plan)
    seconds = time.perf_counter() - start
    masked = mask_model(model, plan)
    dead = dead_channels_model(model, plan)
    try:
        macs = (count_macs(model), count_macs(pruned))
    except Exception as e:  # noqa: BLE001 - reported, see test_zoo
        macs = e
    return {
        "model": model,
        "plan": plan,
        "pruned": pruned,
        "snapshot": before,
        "y": outputs(pruned, x),
        "y_mask": outputs(masked, x),
        "y_dead": outputs(dead, x),
        "y_orig": outputs(model, x),
        "seconds": seconds,
        "params": (model.count_params(), pruned.count_params()),
        "macs": macs,
        "frozen": [
            (g.id, next(iter(g.producers)), g.frozen) for g in plan.frozen_groups
        ],
    }
