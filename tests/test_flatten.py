"""Tests of keras_filterprune/_flatten.py: a flat copy computes what the model does."""

import keras
import numpy as np

from keras_filterprune._flatten import flat_model
from tests import oracle

L = keras.layers


def _nested_model() -> keras.Model:
    i = keras.Input((6, 6, 4))
    inner = keras.Model(
        i, L.ReLU(name="r")(L.Conv2D(4, 3, padding="same", name="c")(i)), name="inner"
    )
    seq = keras.Sequential(
        [keras.Input((6, 6, 4)), L.Conv2D(5, 1, name="s1"), L.BatchNormalization()],
        name="seq",
    )
    x = keras.Input((6, 6, 4))
    y = inner(x)
    z = inner(L.Conv2D(4, 1, name="mid")(y) * 0.5)  # called twice, a Keras op between
    outputs = {"a": seq(z + y), "b": L.Dense(2, name="head")(L.Flatten()(z))}
    return oracle.randomize(keras.Model(x, outputs, name="outer"), 0)


def test_flat_copy_computes_the_same_outputs_and_maps_paths():
    model = _nested_model()
    before = oracle.snapshot(model)
    flat, paths = flat_model(model)
    assert not any(isinstance(layer, keras.Model) for layer in flat.layers)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 4)).astype("float32")
    oracle.assert_close(oracle.outputs(flat, x), oracle.outputs(model, x))
    assert paths["seq/s1"] == "seq__s1" and paths["head"] == "head"
    assert paths["inner@0/c"] == "inner__0__c" and "inner/c" not in paths
    oracle.assert_untouched(model, before)


def test_flat_copy_owns_its_weights():
    model = _nested_model()
    flat, paths = flat_model(model)
    flat.get_layer(paths["seq/s1"]).kernel.assign(
        np.zeros(flat.get_layer(paths["seq/s1"]).kernel.shape)
    )
    assert np.abs(model.get_layer("seq").get_layer("s1").kernel.numpy()).max() > 0
