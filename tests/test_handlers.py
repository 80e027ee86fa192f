"""Tests of keras_filterprune/handlers.py: per-layer channel rules and the registry."""

import keras
import numpy as np
import pytest

from keras_filterprune import FilterPruneWarning, plan_pruning
from keras_filterprune.graph import trace_channels
from keras_filterprune.handlers import (
    DepthwiseHandler,
    FreezeHandler,
    LayerHandler,
    MergeHandler,
    NormHandler,
    PassThroughHandler,
    ProducerHandler,
    get_handler,
    register_handler,
)
from tests._models import case_model

L = keras.layers


def _built(layer, shape):
    layer.build(shape)
    return layer


def _rules(layer):
    return dict(
        zip(
            [w.path.split("/")[-1] for w in layer.weights],
            get_handler(layer).weight_axes(layer),
        )
    )


def test_registry_lookup_follows_the_mro():
    class MyConv(L.Conv2D):
        pass

    assert isinstance(get_handler(L.Conv2D(4, 3)), ProducerHandler)
    assert get_handler(MyConv(4, 3)) is get_handler(L.Conv2D(4, 3))
    assert isinstance(get_handler(L.Add()), MergeHandler)
    assert isinstance(get_handler(L.DepthwiseConv2D(3)), DepthwiseHandler)
    assert isinstance(get_handler(L.LayerNormalization()), NormHandler)
    assert isinstance(get_handler(L.Permute((2, 1))), FreezeHandler)
    assert get_handler(L.Layer()) is None
    assert get_handler(L.Dense(3)).produces and not get_handler(L.ReLU()).produces


def test_register_handler_by_class_and_by_name():
    class Scale(L.Layer):
        pass

    class _TestOnlyOther(L.Layer):
        pass

    handler = PassThroughHandler()
    register_handler(Scale, handler)
    assert get_handler(Scale()) is handler
    register_handler("_TestOnlyOther", FreezeHandler("why"))
    assert get_handler(_TestOnlyOther()).reason == "why"


def test_register_handler_rejects_bad_arguments():
    with pytest.raises(TypeError, match="LayerHandler instance"):
        register_handler(L.Layer, PassThroughHandler)  # the class, not an instance
    with pytest.raises(TypeError, match="keras.layers.Layer subclass"):
        register_handler(int, PassThroughHandler())
    with pytest.raises(TypeError, match="keras.layers.Layer subclass"):
        register_handler(L.Dense(2), PassThroughHandler())


def test_conv_dense_and_transpose_weight_axes():
    conv = _built(L.Conv2D(6, 3), (None, 8, 8, 4))
    assert _rules(conv) == {
        "kernel": [(2, "in", 1), (3, "out", 1)],
        "bias": [(0, "out", 1)],
    }
    dense = _built(L.Dense(5), (None, 7))
    assert _rules(dense) == {
        "kernel": [(0, "in", 1), (1, "out", 1)],
        "bias": [(0, "out", 1)],
    }
    tconv = _built(L.Conv2DTranspose(6, 3), (None, 8, 8, 4))  # kernel (3, 3, 6, 4)
    assert tuple(tconv.kernel.shape) == (3, 3, 6, 4)
    assert _rules(tconv)["kernel"] == [(2, "out", 1), (3, "in", 1)]
    conv1d = _built(L.Conv1D(6, 3, use_bias=False), (None, 10, 4))
    assert _rules(conv1d) == {"kernel": [(1, "in", 1), (2, "out", 1)]}


def test_separable_and_depthwise_weight_axes():
    sep = _built(L.SeparableConv2D(6, 3, depth_multiplier=2), (None, 8, 8, 4))
    assert _rules(sep) == {
        "depthwise_kernel": [(2, "in", 1)],
        "pointwise_kernel": [(2, "in", 2), (3, "out", 1)],
        "bias": [(0, "out", 1)],
    }
    dw = _built(L.DepthwiseConv2D(3, depth_multiplier=3), (None, 8, 8, 4))
    assert _rules(dw) == {"kernel": [(2, "in", 1)], "bias": [(0, "in", 3)]}


def test_grouped_depthwise_conv_weight_axes_and_config():
    conv = _built(L.Conv2D(8, 3, groups=4), (None, 8, 8, 4))  # m = 2
    handler = get_handler(conv)
    assert handler.weight_axes(conv) == [[(3, "in", 2)], [(0, "in", 2)]]
    assert ProducerHandler.depthwise_multiplier(conv, 4) == 2
    assert ProducerHandler.depthwise_multiplier(conv, 8) is None  # not depthwise
    config = handler.prune_config(conv, conv.get_config(), 6)
    assert (config["filters"], config["groups"]) == (6, 3)


def test_pass_through_slices_per_channel_weights_only():
    bn = _built(L.BatchNormalization(), (None, 4, 4, 5))
    assert list(_rules(bn).values()) == [[(0, "in", 1)]] * 4
    prelu = _built(L.PReLU(shared_axes=[1, 2]), (None, 4, 4, 5))  # alpha (1, 1, 5)
    assert list(_rules(prelu).values()) == [[(2, "in", 1)]]
    prelu_full = _built(L.PReLU(), (None, 4, 4, 5))  # alpha (4, 4, 5)
    assert list(_rules(prelu_full).values()) == [[(2, "in", 1)]]


def test_prune_config():
    conv = L.Conv2D(8, 3)
    assert get_handler(conv).prune_config(conv, conv.get_config(), 3)["filters"] == 3
    dense = L.Dense(8)
    assert get_handler(dense).prune_config(dense, dense.get_config(), 5)["units"] == 5
    reshape = L.Reshape((1, 1, 8))
    new = get_handler(reshape).prune_config(reshape, reshape.get_config(), 3)
    assert tuple(new["target_shape"]) == (1, 1, 3)
    bn = L.BatchNormalization()
    assert get_handler(bn).prune_config(bn, bn.get_config(), 3) == bn.get_config()


def test_kernel_layouts_for_criteria():
    tconv = _built(L.Conv2DTranspose(6, 3), (None, 8, 8, 4))
    k = get_handler(tconv).kernel(tconv)
    assert k.shape == (3, 3, 4, 6)  # (*spatial, C_in, N), like a Conv2D
    np.testing.assert_array_equal(k, np.swapaxes(tconv.kernel.numpy(), -1, -2))
    sep = _built(L.SeparableConv2D(6, 3, depth_multiplier=2), (None, 8, 8, 4))
    assert get_handler(sep).kernel(sep).shape == (1, 1, 8, 6)
    with pytest.raises(NotImplementedError, match="no prunable kernel"):
        get_handler(L.ReLU()).kernel(L.ReLU())


def test_kernel_input_keep_repeats_and_takes_grouped_slots():
    keep = np.array([True, False, True, True])
    conv = _built(L.Conv2D(6, 3), (None, 8, 8, 4))
    np.testing.assert_array_equal(get_handler(conv).kernel_input_keep(conv, keep), keep)
    sep = _built(L.SeparableConv2D(6, 3, depth_multiplier=2), (None, 8, 8, 4))
    rows = get_handler(sep).kernel_input_keep(sep, keep)
    np.testing.assert_array_equal(rows, np.repeat(keep, 2))
    assert len(rows) == get_handler(sep).kernel(sep).shape[-2]
    grouped = _built(L.Conv2D(6, 3, groups=2), (None, 8, 8, 4))  # 2 slots per group
    slots = np.array([True, False, True, False])  # slot j alike in every group
    rows = get_handler(grouped).kernel_input_keep(grouped, slots)
    np.testing.assert_array_equal(rows, [True, False])
    assert len(rows) == get_handler(grouped).kernel(grouped).shape[-2]


def test_latency_kind_of_each_kernel():
    def kind(layer, shape):
        return get_handler(layer).latency_kind(_built(layer, shape))

    assert kind(L.Conv2D(6, 3), (None, 8, 8, 4)) == "conv"
    assert kind(L.Dense(6), (None, 4)) == "conv"
    assert kind(L.SeparableConv2D(6, 3), (None, 8, 8, 4)) == "conv"
    assert kind(L.DepthwiseConv2D(3), (None, 8, 8, 4)) == "depthwise"
    assert kind(L.Conv2D(6, 3, groups=2), (None, 8, 8, 4)) is None  # grouped
    assert kind(L.Conv2D(8, 3, groups=4), (None, 8, 8, 4)) is None  # as depthwise
    assert kind(L.BatchNormalization(), (None, 8, 8, 4)) is None
    assert LayerHandler().latency_kind(L.ReLU()) is None


def test_statistics_weights_are_declared_by_the_handler():
    bn = L.BatchNormalization()
    assert get_handler(bn).statistics_weights(bn) == ("moving_mean", "moving_variance")
    _built(bn, (None, 4, 4, 5))
    names = get_handler(bn).statistics_weights(bn)
    assert all(any(w is getattr(bn, n) for w in bn.weights) for n in names)
    for layer in (L.Conv2D(4, 3), L.LayerNormalization(), L.PReLU()):
        assert get_handler(layer).statistics_weights(layer) == ()


def test_layer_scale_handler_by_name():
    """ConvNeXt's LayerScale is not a public class: its handler is found by name."""

    class LayerScale(L.Layer):
        def __init__(self, init_values, projection_dim, **kwargs):
            super().__init__(**kwargs)
            self.projection_dim = projection_dim

        def build(self, input_shape):
            self.gamma = self.add_weight(shape=(self.projection_dim,), name="gamma")

        def get_config(self):
            return {**super().get_config(), "projection_dim": self.projection_dim}

    layer = _built(LayerScale(1e-6, 8), (None, 4, 4, 8))
    handler = get_handler(layer)
    assert isinstance(handler, PassThroughHandler)
    assert handler.weight_axes(layer) == [[(0, "in", 1)]]
    assert handler.prune_config(layer, layer.get_config(), 5)["projection_dim"] == 5


def test_custom_handler_drives_trace_and_surgery():
    """A handler that is not a built-in class: channels swap halves."""

    class SwapHalves(L.Layer):
        def call(self, x):
            c = x.shape[-1] // 2
            return keras.ops.concatenate([x[..., c:], x[..., :c]], axis=-1)

    class SwapHandler(LayerHandler):
        def propagate(self, layer, call, inputs, tracer):
            ids = inputs[0]
            c = len(ids) // 2
            return [np.concatenate([ids[c:], ids[:c]])]

    register_handler(SwapHalves, SwapHandler())
    from keras_filterprune import apply_plan, mask_model, plan_pruning
    from tests import oracle

    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", name="a")(inputs)
    x = SwapHalves(name="swap")(x)
    x = L.Conv2D(4, 3, padding="same", name="b")(x)
    model = oracle.randomize(keras.Model(inputs, x))
    plan = plan_pruning(model, 0.5, "l2_norm")
    pruned = apply_plan(model, plan)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    gone = oracle.removed(plan, "a")
    rows = [(c + 4) % 8 for c in gone]  # a's channel c is b's input 4+c (mod 8)
    assert sorted(rows) != sorted(gone), "not discriminative: pick another seed"
    reference = oracle.zero_consumers(model, {"b": rows})
    oracle.assert_close(oracle.outputs(pruned, x), oracle.outputs(reference, x))
    oracle.assert_close(
        oracle.outputs(pruned, x), oracle.outputs(mask_model(model, plan), x)
    )


def test_merge_handler_freezes_array_constants():
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(3, 1, name="conv")(inputs)
    y = x * np.array([1.0, 2.0, 3.0], dtype="float32")
    from keras_filterprune.graph import trace_channels

    graph = trace_channels(keras.Model(inputs, L.Conv2D(2, 1, name="h")(y)))
    assert "an array constant takes part" in graph.group_of("conv").frozen


def test_case_models_have_handlers_for_every_layer():
    """Every layer of the hand-built graphs (except the deliberately unknown one)
    has a handler, so no test silently relies on freezing."""
    for name in ("separable", "se_reshape", "keras_ops", "conv1d_audio", "prelu"):
        from keras_filterprune.walk import walk_model

        for call in walk_model(case_model(name)).calls:
            assert get_handler(call.layer) is not None, (name, call.path)


def test_softmax_head_freezes_only_its_own_outputs():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    graph = trace_channels(model)
    assert graph.group_of("conv").frozen is None
    plan = plan_pruning(model, 0.5, "l1_norm")
    assert len(plan.kept_filters("conv")) == 4


def test_excluded_conv_keeps_its_filters_but_not_its_inputs():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, name="conv2")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(x))
    plan = plan_pruning(model, 0.5, "l1_norm", exclude=["conv2"])
    assert "excluded by the user" in plan.group_of("conv2").frozen
    assert len(plan.kept_filters("conv2")) == 8
    assert len(plan.kept_filters("conv1")) == 4


def test_unregister_handler_and_macs_taught_by_the_handler():
    """`register_handler` teaches MACs too: profile and `target_macs` use them."""
    from keras_filterprune import count_macs
    from keras_filterprune.handlers import unregister_handler
    from keras_filterprune.profile import profile_model

    class Costly(L.Layer):  # a per-channel layer with weights and a real cost
        def build(self, shape):
            self.w = self.add_weight(shape=(shape[-1],), name="w")

        def call(self, x):
            return x * self.w

    class CostlyHandler(PassThroughHandler):
        def macs(self, layer, inputs, outputs):
            return 10 * int(np.prod(outputs[0][1:]))

    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(8, 1, name="conv")(inputs)
    x = Costly(name="costly")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    with pytest.warns(FilterPruneWarning, match="'costly'"):
        before = count_macs(model)
    with pytest.warns(FilterPruneWarning, match="'costly'"):
        assert "costly" in profile_model(model).uncounted
    register_handler(Costly, CostlyHandler())
    assert count_macs(model) == before + 10 * 4 * 4 * 8
    assert profile_model(model).uncounted == ()
    plan = plan_pruning(model, 0.0, "l1_norm", target_macs=before)
    assert plan.kept_filters("conv") != list(range(8))  # the costly layer counts
    assert unregister_handler(Costly).__class__ is CostlyHandler
    assert unregister_handler(Costly) is None
    with pytest.warns(FilterPruneWarning, match="'costly'"):
        assert count_macs(model) == before
    with pytest.raises(TypeError, match="layer_cls"):
        unregister_handler(3)
