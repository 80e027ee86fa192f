"""Trace once: the package remembers each model's `ChannelGraph` (`graph_of`), so
a whole workflow walks a model once and no public function takes a graph."""

import keras
import numpy as np
import pytest

import keras_filterprune as kfp
from keras_filterprune import graph as graph_module
from keras_filterprune.graph import graph_of
from keras_filterprune.masking import weight_masks
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
    kfp.prune_keras_model(_fresh(), 0.5, "l1_norm")
    assert len(traces) == 1


def _fresh(name="fresh") -> keras.Model:
    """A new model (`case_model` keeps one per process, traced by other tests)."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inputs)
    y = L.Conv2D(8, 3, padding="same", name="c2")(x)
    x = L.Add()([x, y])
    x = L.Conv2D(6, 3, name="c3")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="head")(x), name=name)


def test_a_workflow_traces_a_model_once(traces):
    model = _fresh()
    plan = kfp.plan_pruning(model, 0.5, "l1_norm", target_macs="60%")
    kfp.apply_plan(model, plan)
    weight_masks(model, plan)
    kfp.mask_model(model, plan)
    kfp.score_filters(model, "l2_norm")
    kfp.plan.estimate_macs(model, plan)
    # A plan read back from JSON is plain data; the model's trace is remembered.
    kfp.apply_plan(model, kfp.PruningPlan.from_json(plan.to_json()))
    assert kfp.profile_model(model) == graph_of(model).profile  # its walk reused
    assert len(traces) == 1
    kfp.plan_pruning(_fresh(), 0.5)  # another model: traced
    assert len(traces) == 2


def test_exclude_never_changes_the_remembered_graph(traces):
    model = _fresh()
    kfp.plan_pruning(model, 0.5, "l1_norm", exclude=["c1"])
    assert graph_of(model).groups[0].frozen is None
    assert kfp.plan_pruning(model, 0.5, "l1_norm").num_removed > 0
    assert len(traces) == 1


def test_graph_argument_is_ignored_with_a_deprecation_warning(traces):
    model = _fresh()
    with pytest.deprecated_call(match=r"apply_plan\(graph=\.\.\.\)` is ignored"):
        plan = kfp.plan_pruning(model, 0.5, graph="anything")
        kfp.apply_plan(model, plan, graph=object())
    assert len(traces) == 1


def test_a_model_whose_layers_change_is_traced_again(traces):
    model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="c1")])
    assert [g.width for g in graph_of(model).groups] == [4]
    model.add(L.Conv2D(6, 3, name="c2"))
    assert [g.width for g in graph_of(model).groups] == [4, 6]
    assert len(traces) == 2


def test_a_trace_goes_with_its_model(traces):
    import gc
    import weakref

    model = _fresh()
    kfp.plan_pruning(model, 0.5)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None, "the remembered trace must not keep its model alive"


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


def test_a_nested_model_or_an_activation_that_changes_is_traced_again(traces):
    inner = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="c1")])
    inputs = keras.Input((8, 8, 3))
    outer = keras.Model(inputs, L.GlobalAveragePooling2D()(inner(inputs)))
    assert [g.width for g in graph_of(outer).groups] == [4]
    inner.add(L.Conv2D(6, 3, name="c2"))
    assert [g.width for g in graph_of(outer).groups] == [4, 6]
    assert graph_of(outer).groups[0].frozen is None
    inner.get_layer("c1").activation = keras.activations.softmax
    assert "softmax" in (graph_of(outer).groups[0].frozen or "")
    assert len(traces) == 3


def test_a_profile_from_a_remembered_trace_is_counted_afresh():
    model = _fresh()
    kfp.plan_pruning(model, 0.5)
    before = kfp.profile_model(model)
    model.get_layer("c1").trainable = False
    after = kfp.profile_model(model)
    assert after.total_params == before.total_params
    assert after.trainable_params == before.trainable_params - 8 * 3 * 3 * 3 - 8
