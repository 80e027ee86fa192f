"""Tests of keras_filterprune/scoring.py: which activations active criteria see."""

import keras
import numpy as np
import pytest

from keras_filterprune import (
    apply_plan,
    mask_model,
    plan_pruning,
    score_filters,
)
from tests._models import case_model, inputs_for


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

    relu = keras.ops.convert_to_numpy(
        keras.Model(inputs, model.get_layer("relu").output)(data)
    )
    expected = 1.0 - np.mean(relu == 0, axis=(0, 1, 2))
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    pool = keras.ops.convert_to_numpy(
        keras.Model(inputs, model.get_layer("pool").output)(data)
    )
    assert not np.allclose(scores, 1.0 - np.mean(pool == 0, axis=(0, 1, 2)))


@pytest.mark.parametrize(
    "criterion", ["l1_norm", "l2_norm", "operator_norm", "geometric_median"]
)
@pytest.mark.parametrize("case", ["residual_projection", "separable", "flatten_dense"])
def test_masked_model_scores_like_the_pruned_model(case, criterion):
    """`within=plan` scores the live filters of a masked model exactly as the
    physically pruned model scores them, so hard-mode pruning needs no surgery."""
    model = case_model(case)
    plan = plan_pruning(model, 0.5, "l1_norm")
    masked = mask_model(model, plan)
    pruned = apply_plan(model, plan)
    within = score_filters(masked, criterion, within=plan)
    small = score_filters(pruned, criterion)
    for path, scores in small.items():
        kept = plan.kept_filters(path)
        np.testing.assert_allclose(within[path][kept], scores, rtol=1e-6, atol=1e-9)
        # Removed filters get the smallest kept score: never above a kept one.
        gone = np.setdiff1d(np.arange(len(within[path])), kept)
        assert np.all(within[path][gone] <= scores.min() + 1e-12)
    # Without `within`, the zeroed filters change relative criteria's scores.
    if criterion in ("operator_norm", "geometric_median"):
        plain = score_filters(masked, criterion)
        assert any(
            not np.allclose(plain[p][plan.kept_filters(p)], s) for p, s in small.items()
        )


def test_masked_model_active_scores_like_the_pruned_model():
    model = case_model("plain_chain")
    plan = plan_pruning(model, 0.5, "l1_norm")
    x = inputs_for(model, batch=8)
    within = score_filters(mask_model(model, plan), "mean_activation", x, within=plan)
    small = score_filters(apply_plan(model, plan), "mean_activation", x)
    for path, scores in small.items():
        np.testing.assert_allclose(
            within[path][plan.kept_filters(path)], scores, rtol=1e-5
        )
