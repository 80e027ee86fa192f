"""Tests of keras_filterprune/scoring.py: which activations active criteria see."""

import keras
import numpy as np

from keras_filterprune import score_filters


def test_active_scores_read_the_end_of_the_elementwise_chain():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)  # not elementwise: the chain ends
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(x))
    bn = model.get_layer("bn")
    bn.set_weights([np.linspace(-1, 1, 6).astype("float32")] + bn.get_weights()[1:])
    data = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype("float32")

    scores = score_filters(model, "apoz", data=data)["conv"]

    relu = keras.Model(inputs, model.get_layer("relu").output)(data).numpy()
    expected = 1.0 - np.mean(relu == 0, axis=(0, 1, 2))
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    pool = keras.Model(inputs, model.get_layer("pool").output)(data).numpy()
    assert not np.allclose(scores, 1.0 - np.mean(pool == 0, axis=(0, 1, 2)))
