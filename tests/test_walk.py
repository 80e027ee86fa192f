"""Tests of keras_filterprune/walk.py: call sites flattened from public structure."""

import keras
import numpy as np
import pytest

from keras_filterprune._config import check_model
from keras_filterprune.handlers import FreezeHandler, register_handler
from keras_filterprune.walk import walk_model
from tests._models import CASES, case_model

L = keras.layers


def _paths(walk):
    return [call.path for call in walk.calls]


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_walk_is_topological_and_complete(name):
    model = case_model(name)
    walk = walk_model(model)
    produced = set(walk.inputs)
    for call in walk.calls:
        assert all(k in produced for k in call.inputs), call.path
        assert not produced.intersection(call.outputs), "a tensor produced twice"
        produced.update(call.outputs)
    assert all(k in produced for k in walk.outputs)
    # Every channel-carrying tensor has a known shape (needed by the handlers).
    for call in walk.calls:
        for key in call.outputs:
            assert walk.channels(key) is not None, (call.path, walk.shapes.get(key))
    assert [walk.channels(k) for k in walk.outputs] == [
        t.shape[-1] for t in model.outputs
    ]


def test_chain_order_shapes_and_layers():
    model = case_model("plain_chain")
    walk = walk_model(model)
    assert _paths(walk) == ["c1", "bn1", "relu1", "c2", "c3", "head_gap", "head"]
    assert walk.shapes[walk.calls[0].outputs[0]] == (None, 12, 12, 8)
    assert walk.shapes[walk.calls[4].outputs[0]] == (None, 10, 10, 6)
    assert walk.layers["c2"] is model.get_layer("c2")
    assert [c.node_index for c in walk.calls] == [0] * 7


def test_nested_sequential_is_flattened_with_paths():
    model = case_model("nested_sequential")
    walk = walk_model(model)
    assert _paths(walk)[2:6] == [
        "block/inner1",
        "block/inner_bn",
        "block/inner_relu",
        "block/inner2",
    ]
    block = model.get_layer("block")
    assert walk.layers["block/inner1"] is block.get_layer("inner1")
    # The nested model's input is the stem's ReLU output.
    relu_out = walk.calls[1].outputs
    assert walk.model_inputs == {"block": relu_out}
    # Shapes inside the Sequential are filled in (the config does not hold them).
    inner2 = walk.calls[5]
    assert walk.shapes[inner2.outputs[0]] == (None, 8, 8, 6)


def test_nested_model_called_twice_lists_its_calls_twice():
    inner = keras.Sequential(
        [keras.Input((6, 6, 4)), L.Conv2D(4, 3, padding="same", name="conv")],
        name="inner",
    )
    inputs = keras.Input((6, 6, 4))
    y = inner(inner(inputs))
    model = keras.Model(inputs, y)
    walk = walk_model(model)
    assert _paths(walk) == ["inner/conv", "inner/conv"]
    assert [c.node_index for c in walk.calls] == [0, 1]
    assert walk.calls[1].inputs == walk.calls[0].outputs
    assert list(walk.layers) == ["inner/conv"]


def test_shared_layer_has_one_path_and_two_nodes():
    model = case_model("shared_layer")
    walk = walk_model(model)
    shared = [c for c in walk.calls if c.path == "shared"]
    assert [c.node_index for c in shared] == [0, 1]
    a = next(c for c in walk.calls if c.path == "a")
    b = next(c for c in walk.calls if c.path == "b")
    assert {shared[0].inputs[0], shared[1].inputs[0]} == {a.outputs[0], b.outputs[0]}


def test_keras_ops_are_call_sites():
    model = case_model("keras_ops")
    walk = walk_model(model)
    ops = [c for c in walk.calls if c.path not in ("a", "b", "c", "head_gap", "head")]
    assert [type(c.layer).__name__ for c in ops] == ["Add", "Multiply"]
    assert len(ops[0].inputs) == 2 and len(ops[1].inputs) == 1
    assert not any(c.constants for c in ops)  # `* 2.0` is a scalar
    assert walk.channels(ops[1].outputs[0]) == 8


def test_array_constant_is_flagged():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(3, 1, name="conv")(inputs)
    y = x * np.array([1.0, 2.0, 3.0], dtype="float32")
    walk = walk_model(keras.Model(inputs, y))
    assert walk.calls[-1].constants


def test_two_inputs_two_outputs():
    model = case_model("two_in_two_out")
    walk = walk_model(model)
    assert len(walk.inputs) == 2 and len(walk.outputs) == 2
    assert [walk.shapes[k] for k in walk.inputs] == [(None, 8, 8, 3), (None, 8, 8, 1)]
    assert [walk.channels(k) for k in walk.outputs] == [3, 2]


def test_multi_output_layer():
    class Split(L.Layer):
        def call(self, x):
            return [x[..., :2], x[..., 2:]]

        def compute_output_shape(self, s):
            return [(*s[:-1], 2), (*s[:-1], s[-1] - 2)]

    inputs = keras.Input((4, 4, 5))
    a, b = Split(name="split")(inputs)
    model = keras.Model(inputs, [L.Conv2D(1, 1, name="ca")(a), b])
    # Traced inside, its slicing ops are the call sites (a `GetItem` per output).
    traced = walk_model(model)
    assert [c.path.split("/")[0] for c in traced.calls] == ["split", "split", "ca"]
    assert traced.outputs[1] == traced.calls[1].outputs[0]
    # With a handler, the layer is one call site with two outputs.
    register_handler(Split, FreezeHandler("test"))
    walk = walk_model(model)
    split = walk.calls[0]
    assert len(split.outputs) == 2
    assert walk.calls[1].inputs == [split.outputs[0]]
    assert walk.outputs[1] == split.outputs[1]


def test_sequential_model():
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="c"), L.Flatten(name="f")]
    )
    walk = walk_model(model)
    assert _paths(walk) == ["c", "f"]
    assert walk.shapes[walk.outputs[0]] == (None, 144)


class Subclassed(keras.Model):
    def __init__(self, branch=False):
        super().__init__()
        self.branch = branch
        self.conv = L.Conv2D(4, 3, name="conv")

    def call(self, x):
        y = self.conv(x)
        if self.branch:
            return y if keras.ops.mean(y) > 0 else -y  # control flow on a value
        return keras.ops.relu(y)


def test_subclassed_model_is_walked_through_its_call():
    model = Subclassed()
    model(np.zeros((1, 8, 8, 3), "float32"))
    walk = walk_model(model)
    assert [type(call.layer).__name__ for call in walk.calls] == ["Conv2D", "Relu"]
    assert walk.calls[0].path == "conv"
    assert walk.shapes[walk.outputs[0]] == (None, 6, 6, 4)


def test_untraceable_subclassed_model_is_a_clear_type_error():
    model = Subclassed(branch=True)
    model(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(TypeError, match="subclassed model that cannot be traced"):
        walk_model(model)


def test_unbuilt_subclassed_model_is_a_clear_value_error():
    with pytest.raises(ValueError, match="not built"):
        walk_model(Subclassed())


def test_unbuilt_sequential_is_a_clear_value_error():
    model = keras.Sequential([L.Conv2D(4, 3)])
    with pytest.raises(ValueError, match="not built"):
        walk_model(model)


def test_not_a_model():
    with pytest.raises(TypeError, match="Received: model of type Conv2D"):
        check_model(L.Conv2D(4, 3))
    with pytest.raises(TypeError, match="of type str"):
        walk_model("resnet")


def test_check_model_returns_the_functional_config():
    model = case_model("plain_chain")
    config = check_model(model)
    assert [e["name"] for e in config["layers"]][1:3] == ["c1", "bn1"]
    seq = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    assert check_model(seq) is None
