"""Tests of keras_filterprune/graph.py: which channels must share one mask.

The expected groups are written out by hand from each test graph's wiring.
"""

import warnings

import keras
import numpy as np
import pytest

from keras_filterprune import FilterPruneWarning
from keras_filterprune.graph import trace_channels
from tests._models import CASES, case_model

L = keras.layers

# case → [(producers, width, frozen reason substring or None), ...] in order
EXPECTED = {
    "plain_chain": [({"c1"}, 8, None), ({"c2"}, 12, None), ({"c3"}, 6, None)],
    "flatten_dense": [({"c1"}, 8, None), ({"fc"}, 5, None)],
    "residual_identity": [
        ({"stem", "r2"}, 8, None),
        ({"r1"}, 8, None),
        ({"c_out"}, 6, None),
    ],
    "residual_projection": [
        ({"stem"}, 8, None),
        ({"r1"}, 6, None),
        ({"proj", "r2"}, 12, None),
        ({"c_out"}, 5, None),
    ],
    "two_adds_sharing": [({"stem", "a", "b"}, 8, None), ({"c1", "c2"}, 4, None)],
    "concat_frozen_branch": [
        ({"stem"}, 8, None),
        ({"f"}, 4, None),
        ({"p"}, 6, None),
        ({"c"}, 5, None),
    ],
    "se_block": [({"stem", "ex"}, 8, None), ({"sq"}, 4, None), ({"c"}, 6, None)],
    "se_reshape": [({"stem", "ex"}, 8, None), ({"sq"}, 4, None), ({"c"}, 6, None)],
    "separable": [({"stem"}, 8, None), ({"pw"}, 10, None), ({"sep"}, 12, None)],
    "transpose_decoder": [({"e1"}, 8, None), ({"t1"}, 6, None), ({"t2"}, 4, None)],
    "grouped_slots": [({"stem"}, 4, None), ({"g"}, 4, None), ({"c"}, 6, None)],
    "grouped_depthwise": [({"stem"}, 8, None), ({"pw"}, 6, None)],
    "conv1d_audio": [({"conv1"}, 8, None), ({"conv2"}, 12, None), ({"fc"}, 6, None)],
    "nested_sequential": [
        ({"stem"}, 8, None),
        ({"block/inner1"}, 10, None),
        ({"block/inner2"}, 6, None),
        ({"after"}, 5, None),
    ],
    "conv_ranks_1d": [({"c1"}, 8, None), ({"sep"}, 6, None), ({"t"}, 5, None)],
    "conv_ranks_3d": [({"c1"}, 6, None), ({"c2"}, 4, None), ({"t"}, 3, None)],
    "nested_functional": [
        ({"s1"}, 6, None),
        ({"s2", "inner/ia"}, 6, None),
        ({"inner/ic"}, 5, None),
        ({"after"}, 4, None),
    ],
    "shared_layer": [({"a", "b"}, 8, None), ({"shared"}, 6, None)],
    "two_in_two_out": [({"a"}, 8, None), ({"b"}, 4, None), ({"c"}, 6, None)],
    "keras_ops": [({"a", "b"}, 8, None), ({"c"}, 6, None)],
    "prelu": [({"stem"}, 8, None), ({"c"}, 6, None)],
    "layer_norm": [
        (
            {"stem"},
            8,
            "LayerNormalization normalises over the channels (prune_norms=True "
            "prunes it, approximately) (at layer 'ln')",
        ),
        ({"c"}, 6, None),
    ],
    "custom_unhandled": [
        ({"stem"}, 8, "UnhandledScale has no pruning handler"),
        ({"c"}, 6, None),
    ],
    "custom_handled": [({"stem"}, 8, None), ({"c"}, 6, None)],
}
for _merge in ("subtract", "multiply", "average", "maximum", "minimum"):
    EXPECTED[f"merge_{_merge}"] = [
        ({"stem"}, 8, None),
        ({"a", "b"}, 8, None),
        ({"c"}, 6, None),
    ]


def _trace(name, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FilterPruneWarning)
        return trace_channels(case_model(name), **kwargs)


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_groups_match_the_wiring(name):
    graph = _trace(name)
    outputs = {len(case_model(name).outputs)}
    got = [(set(g.producers), g.width, g.frozen) for g in graph.groups]
    # The heads (model outputs) come last and are frozen as outputs.
    heads = [g for g in got if g[2] and "model output" in g[2]]
    assert len(heads) in outputs
    body = [g for g in got if not (g[2] and "model output" in g[2])]
    expected = EXPECTED[name]
    assert [(p, w) for p, w, _ in body] == [(p, w) for p, w, _ in expected]
    for (_, _, frozen), (_, _, reason) in zip(body, expected):
        if reason is None:
            assert frozen is None
        else:
            assert reason in frozen
    # Producers of one group: channel maps cover range(width), each channel as
    # often as any other (a grouped conv maps one filter per group to a channel).
    for g in graph.groups:
        for channels in g.producers.values():
            counts = np.bincount(channels, minlength=g.width)
            assert counts.min() == counts.max() > 0
        assert set(g.producers) <= set(g.members)


def test_members_carry_the_group():
    graph = _trace("residual_identity")
    group = graph.group_of("stem")
    assert group is graph.group_of("r2")
    for member in ("stem_bn", "stem_relu", "r2_bn", "add", "add_relu", "c_out", "r1"):
        assert member in group.members
    assert "r1_bn" not in group.members
    with pytest.raises(KeyError):
        graph.group_of("stem_bn")  # not a producer


def test_depthwise_multiplier_repeats_ids():
    graph = _trace("separable")
    walk = graph.walk
    dw = next(c for c in walk.calls if c.path == "dw")
    ids_in = graph.tensor_ids[dw.inputs[0]]
    ids_out = graph.tensor_ids[dw.outputs[0]]
    assert ids_out.tolist() == np.repeat(ids_in, 2).tolist()


def test_flatten_tiles_channels_position_major():
    graph = _trace("flatten_dense")
    flat = next(c for c in graph.walk.calls if c.path == "flatten")
    ids_in = graph.tensor_ids[flat.inputs[0]]
    ids_out = graph.tensor_ids[flat.outputs[0]]
    assert len(ids_out) == 16 * 8
    # feature p*C + c carries channel c (channels-last), not c*P + p
    assert ids_out.tolist() == np.tile(ids_in, 16).tolist()
    assert ids_out[8 + 3] == ids_in[3] and ids_out[3 * 8 + 5] == ids_in[5]


def test_concatenate_offsets():
    graph = _trace("concat_frozen_branch")
    cat = next(c for c in graph.walk.calls if c.path == "cat")
    parts = [graph.tensor_ids[k] for k in cat.inputs]
    out = graph.tensor_ids[cat.outputs[0]]
    assert out.tolist() == np.concatenate(parts).tolist()
    assert [len(p) for p in parts] == [4, 6, 3]


def test_element_keep_maps_group_masks_to_every_tensor():
    graph = _trace("residual_identity")
    g = graph.group_of("stem").id
    mask = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=bool)
    flags = graph.element_keep({g: mask})
    for call in graph.walk.calls:
        if call.path in ("stem_bn", "add", "add_relu", "r2_bn"):
            assert flags[graph.tensor_ids[call.outputs[0]]].tolist() == mask.tolist()
        if call.path == "r1":  # another group: untouched
            assert flags[graph.tensor_ids[call.outputs[0]]].all()


def test_exclude_freezes_with_reason_and_unknown_name_is_an_error():
    graph = _trace("concat_frozen_branch", exclude=["f"])
    assert graph.group_of("f").frozen == "excluded by the user (at layer 'f')"
    assert graph.group_of("p").frozen is None
    with pytest.raises(ValueError, match="'nope', which is not in the model"):
        _trace("plain_chain", exclude=["nope"])


def test_nested_path_can_be_excluded_by_short_or_full_name():
    for name in ("inner1", "block/inner1"):
        graph = _trace("nested_sequential", exclude=[name])
        assert "excluded by the user" in graph.group_of("block/inner1").frozen
        assert graph.group_of("block/inner2").frozen is None


def test_unknown_layer_warns_once_naming_it():
    model = case_model("custom_unhandled")
    with pytest.warns(FilterPruneWarning, match=r"'scale' \(UnhandledScale\)") as rec:
        graph = trace_channels(model)
    assert len([w for w in rec if w.category is FilterPruneWarning]) == 1
    assert "scale" in graph.frozen_layers
    with warnings.catch_warnings():
        warnings.simplefilter("error", FilterPruneWarning)
        trace_channels(model, warn=False)


def test_lambda_freezes_without_warning():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, name="conv")(inputs)
    x = L.Lambda(lambda t: t * 2.0, name="lam")(x)
    x = L.Conv2D(4, 3, name="conv2")(x)
    model = keras.Model(inputs, L.GlobalAveragePooling2D()(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FilterPruneWarning)
        graph = trace_channels(model)
    assert graph.group_of("conv").frozen == "Lambda layers are opaque (at layer 'lam')"
    assert graph.frozen_layers["lam"] == ["Lambda layers are opaque"]


def _tiny(*layers, shape=(8, 8, 3), head=True):
    inputs = keras.Input(shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    if head:
        x = L.Conv2D(2, 1, name="head")(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize(
    "layer, reason",
    [
        (L.Permute((2, 1, 3)), "permutes axes"),
        (L.Reshape((8, 2, 32)), "reshapes the channel axis"),
        (L.Reshape((8, 4, 16)), "reshapes the channel axis"),
        (L.Activation("softmax"), "softmax mixes the channel axis"),
        (L.Softmax(axis=-1), "softmax over the channel axis"),
        (L.BatchNormalization(axis=1), "normalises over axis 1"),
        (L.Rescaling(scale=np.linspace(1, 2, 8)), "per-channel rescaling"),
        (L.LayerNormalization(axis=(1, 3)), "normalises over axis [1, 3]"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, L.Layer) else None,
)
def test_layers_that_mix_channels_freeze(layer, reason):
    conv = L.Conv2D(8, 3, padding="same", name="conv")
    graph = trace_channels(_tiny(conv, layer))
    assert reason in graph.group_of("conv").frozen


@pytest.mark.parametrize(
    "layer",
    [
        L.Softmax(axis=1),
        L.Rescaling(0.5),
        L.Activation("swish"),
        L.Reshape((16, 4, 8)),  # the last axis is kept: channel c stays c
        L.ZeroPadding2D(1),
        L.Cropping2D(1),
        L.UpSampling2D(2),
        L.SpatialDropout2D(0.3),
        L.LeakyReLU(),
    ],
    ids=lambda v: type(v).__name__,
)
def test_channel_preserving_layers_pass(layer):
    conv = L.Conv2D(8, 3, padding="same", name="conv")
    graph = trace_channels(_tiny(conv, layer))
    assert graph.group_of("conv").frozen is None


def test_conv_with_softmax_activation_and_channels_first_freeze():
    conv = L.Conv2D(8, 3, activation="softmax", name="conv")
    graph = trace_channels(_tiny(conv, L.Conv2D(4, 1, name="c2")))
    assert "softmax activation" in graph.group_of("conv").frozen
    conv = L.Conv2D(8, 3, data_format="channels_first", name="conv")
    graph = trace_channels(_tiny(conv, shape=(3, 8, 8), head=False))
    assert "channels_first" in graph.group_of("conv").frozen


def test_broadcast_single_channel_merge():
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, padding="same", name="a")(inputs)
    gate = L.Conv2D(1, 3, padding="same", activation="sigmoid", name="gate")(inputs)
    x = L.Multiply(name="mul")([a, gate])
    model = keras.Model(inputs, L.Conv2D(2, 1, name="head")(x))
    graph = trace_channels(model)
    assert graph.group_of("a").frozen is None
    assert "broadcast single channel" in graph.group_of("gate").frozen


def test_concatenate_on_a_spatial_axis_merges():
    inputs = keras.Input((8, 8, 3))
    a = L.Conv2D(8, 3, padding="same", name="a")(inputs)
    b = L.Conv2D(8, 3, padding="same", name="b")(inputs)
    x = L.Concatenate(axis=1, name="cat")([a, b])
    graph = trace_channels(keras.Model(inputs, L.Conv2D(2, 1, name="head")(x)))
    assert graph.group_of("a") is graph.group_of("b")


def test_flatten_with_unknown_spatial_size_freezes():
    inputs = keras.Input((None, 4, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = L.Flatten(name="flat")(L.GlobalAveragePooling2D(keepdims=True)(x))
    graph = trace_channels(keras.Model(inputs, L.Dense(4, name="fc")(x)))
    # (None, 1, 1, 8) → flattened: known size, so it is not frozen ...
    assert graph.group_of("conv").frozen is None
    y = L.Flatten(name="flat2")(L.Conv2D(8, 1, name="conv2")(inputs))
    graph = trace_channels(keras.Model(inputs, y))
    # ... but (None, None, 4, 8) is
    assert graph.frozen_layers["flat2"] == ["unknown spatial size"]


def test_nested_model_called_twice_unites_its_inputs():
    inner = keras.Sequential(
        [keras.Input((6, 6, 4)), L.Conv2D(4, 3, padding="same", name="conv")],
        name="inner",
    )
    inputs = keras.Input((6, 6, 4))
    y = L.Conv2D(2, 1, name="head")(inner(inner(inputs)))
    graph = trace_channels(keras.Model(inputs, y))
    # The second call feeds the conv its own output: one weight set reads both the
    # model input (frozen) and its own filters, so its group is frozen.
    assert "model input" in graph.group_of("inner/conv").frozen


def test_summary_lists_groups():
    graph = _trace("layer_norm")
    text = graph.summary()
    assert text.splitlines()[0] == "ChannelGraph of 'layer_norm': 3 groups"
    assert "producers stem  [frozen: LayerNormalization" in text
    assert "producers c  [prunable]" in text
