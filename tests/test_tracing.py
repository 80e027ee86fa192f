"""Trace once: every public function reuses the `ChannelGraph` it is given (or the
one a plan was made on), so a whole workflow walks the model once."""

import keras
import numpy as np
import pytest

import keras_filterprune as kfp
from keras_filterprune import graph as graph_module
from tests._models import case_model
from tests._timeouts import HANG_GUARD_S

L = keras.layers


@pytest.fixture
def traces(monkeypatch):
    """Counts the walks of a model by the channel tracer."""
    calls = []
    original = graph_module.walk_model

    def counting(model):
        calls.append(model.name)
        return original(model)

    monkeypatch.setattr(graph_module, "walk_model", counting)
    return calls


def test_prune_keras_model_traces_once(traces):
    kfp.prune_keras_model(case_model("residual_projection"), 0.5, "l1_norm")
    assert len(traces) == 1


def test_a_plan_carries_its_graph_to_surgery_and_masks(traces):
    model = case_model("plain_chain")
    plan = kfp.plan_pruning(model, 0.5, "l1_norm", target_macs=1e9)
    kfp.apply_plan(model, plan)
    kfp.weight_masks(model, plan)
    kfp.mask_model(model, plan)
    kfp.plan.estimate_macs(model, plan)
    assert len(traces) == 1
    # A plan read back from JSON has no graph: it is traced (once per call).
    kfp.apply_plan(model, kfp.PruningPlan.from_json(plan.to_json()))
    assert len(traces) == 2


def test_a_graph_is_reused_and_must_be_the_models(traces):
    model = case_model("plain_chain")
    graph = kfp.trace_channels(model)
    plan = kfp.plan_pruning(model, 0.5, "l1_norm", graph=graph, exclude=["c1"])
    kfp.apply_plan(model, kfp.PruningPlan.from_json(plan.to_json()), graph=graph)
    kfp.score_filters(model, "l2_norm", graph=graph)
    assert len(traces) == 1
    assert graph.groups[0].frozen is None, "exclude must not change the graph"
    with pytest.raises(ValueError, match="traced from model 'plain_chain'"):
        kfp.apply_plan(case_model("flatten_dense"), plan, graph=graph)
    with pytest.raises(TypeError, match="must be a keras_filterprune.ChannelGraph"):
        kfp.apply_plan(model, plan, graph="graph")


def test_sensitivity_analysis_traces_once(traces):
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, activation="relu", name="c1")(inputs)
    x = L.Conv2D(8, 3, activation="relu", name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(3, name="head")(x))
    rng = np.random.default_rng(0)
    data = rng.normal(size=(16, 8, 8, 1)), rng.integers(0, 3, 16)
    result = kfp.sensitivity_analysis(
        model, data=data, ratios=(0.25, 0.5, 0.75), verbose=0
    )
    assert sorted(result.curves) == ["c1", "c2"]  # the head is a model output
    assert len(traces) == 1


@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_callback_traces_once_per_fit(traces, mode):
    inputs = keras.Input((8, 8, 1))
    x = L.Conv2D(8, 3, activation="relu", name="c1")(inputs)
    x = L.BatchNormalization(name="bn")(x)
    x = L.Conv2D(8, 3, activation="relu", name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    callback = kfp.PruningCallback(
        "operator_norm", ratio=0.5, epochs=(0, 1, 2), mode=mode, verbose=0
    )
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 1))
    y = np.arange(16) % 2
    model.fit(x, y, epochs=3, callbacks=[callback], verbose=0)
    callback.pruned_model()
    assert len(callback.history) == 3
    assert len(traces) == 1


def test_profile_reuses_the_graph(traces):
    model = case_model("residual_projection")
    graph = kfp.trace_channels(model)
    assert kfp.profile_model(model, graph=graph) is graph.profile
    assert kfp.count_macs(model, graph=graph) == kfp.count_macs(model)
    assert len(traces) == 1
    with pytest.raises(ValueError, match="must be the ChannelGraph of `model`"):
        kfp.profile_model(case_model("plain_chain"), graph=graph)


@pytest.mark.slow
@pytest.mark.parametrize(
    "module", ["keras_filterprune.plan", "keras_filterprune.callbacks", "cli"]
)
def test_each_module_imports_on_its_own(module):
    """The lazy package namespace never loads half-initialised modules."""
    import subprocess
    import sys

    code = (
        "import keras_filterprune.cli as c; c.main(['--version'])"
        if module == "cli"
        else f"import {module}; import keras_filterprune as k; k.apply_plan"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr[-2000:]
