"""keras-hub backbones and tasks, and users' functional subclasses.

keras-hub models are functional subclasses: built through the functional
constructor, with a `get_config()` of constructor arguments. They are traced from
their graph, top level or nested; a pruned backbone is a plain functional
`keras.Model` with the same inputs and outputs, a pruned task is the same task
class rebuilt around its pruned backbone (its preprocessor included). Models are
built from constructor arguments at small widths (`tests/_hub_models.py`), never
downloaded.
"""

import warnings

import keras
import numpy as np
import pytest

from keras_filterprune import (
    FilterPruneWarning,
    apply_plan,
    count_macs,
    export_tflite,
    mask_model,
    plan_pruning,
    prune_keras_model,
    score_filters,
)
from keras_filterprune.graph import graph_of
from tests import oracle
from tests._hub_models import HUB_BACKBONES, hub_backbone, hub_inputs
from tests._hub_presets import HUB_TASKS, build_task

keras_hub = pytest.importorskip("keras_hub")

# Backbones whose blocks are keras-hub composite layers (a call() around several
# convolutions): traced inside, their convolutions pruned like any other.
COMPOSITE = {
    "EfficientNetV2": "FusedMBConvBlock",
    "EfficientNetEdgeTPU": "FusedMBConvBlock",
    "MobileNetV3": "DepthwiseConvBlock",
    "HGNetV2": "HGNetV2Embeddings",
}


@pytest.fixture(autouse=True)
def _free_memory():
    yield
    keras.backend.clear_session()


def _check_exact(model, plan, pruned, x):
    y = oracle.outputs(pruned, x)
    oracle.assert_close(y, oracle.outputs(mask_model(model, plan), x), what="mask")
    dead = oracle.dead_channels_model(model, plan)
    oracle.assert_close(y, oracle.outputs(dead, x), what="dead channels")
    return y


@pytest.mark.parametrize("name", list(HUB_BACKBONES))
def test_backbone_prunes_exactly(name):
    model = hub_backbone(name)
    before = oracle.snapshot(model)
    x = hub_inputs(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FilterPruneWarning)  # nothing left opaque
        plan = plan_pruning(model, 0.5)
    pruned = apply_plan(model, plan)
    y = _check_exact(model, plan, pruned, x)
    oracle.assert_untouched(model, before)
    # A functional keras.Model with the same inputs and outputs structure.
    assert type(pruned) is keras.Model or type(pruned).__name__ == "Functional"
    out, ref = pruned(x), model(x)
    assert keras.tree.map_structure(lambda t: None, out) == keras.tree.map_structure(
        lambda t: None, ref
    )
    if name in COMPOSITE:  # pruned inside the blocks
        composites = graph_of(model).walk.composites.values()
        assert COMPOSITE[name] in {type(layer).__name__ for layer in composites}
        assert any(
            g.removed and any("/" in p for p in g.producers) for g in plan.groups
        )
    oracle.assert_differs(y, oracle.outputs(model, x), what=name)
    assert count_macs(pruned) < 0.6 * count_macs(model), plan.summary()


def test_grouped_cspnet_keeps_groups_and_slots():
    model = hub_backbone("CSPNetGrouped")
    plan = plan_pruning(model, 0.5)
    pruned = apply_plan(model, plan)
    grouped = [layer for layer in pruned.layers if getattr(layer, "groups", 1) > 1]
    originals = {layer.name: layer for layer in model.layers}
    assert grouped
    for layer in grouped:
        old = originals[layer.name]
        assert layer.groups == old.groups  # slot-wise: the groups stay
        assert layer.filters == old.filters // 2


@pytest.mark.parametrize("name", ["ResNet", "EfficientNet"])
def test_image_classifier_keeps_its_class_and_preprocessing(name, tmp_path):
    backbone = hub_backbone(name)
    size = tuple(backbone.inputs[0].shape[1:3])
    preprocessor = keras_hub.models.ImageClassifierPreprocessor(
        image_converter=keras_hub.layers.ImageConverter(image_size=size, scale=1 / 255)
    )
    task = keras_hub.models.ImageClassifier(
        backbone=backbone, num_classes=4, preprocessor=preprocessor
    )
    oracle.randomize(task, 1)
    before = oracle.snapshot(task)
    plan = plan_pruning(task, 0.5)
    pruned = apply_plan(task, plan)
    oracle.assert_untouched(task, before)
    assert type(pruned) is type(task)
    assert pruned.preprocessor is not None and pruned.preprocessor is not preprocessor
    assert count_macs(pruned) < 0.6 * count_macs(task)
    # Exact on preprocessed inputs, and it still predicts on raw images.
    x = hub_inputs(task, batch=3)
    _check_exact(task, plan, pruned, x)
    raw = np.random.default_rng(0).uniform(0, 255, (3, 40, 52, 3)).astype("float32")
    y = pruned.predict(raw, verbose=0)
    assert y.shape == (3, 4) and np.isfinite(y).all()
    # Saved and loaded as the task it is.
    pruned.save(tmp_path / "task.keras")
    loaded = keras.models.load_model(tmp_path / "task.keras")
    assert type(loaded) is type(task)
    np.testing.assert_allclose(loaded.predict(raw, verbose=0), y, atol=1e-5)


def test_pruned_backbone_saves_and_exports_to_tflite(tmp_path):
    model = hub_backbone("ResNetV2")
    pruned = prune_keras_model(model, 0.5)
    pruned.save(tmp_path / "b.keras")
    loaded = keras.models.load_model(tmp_path / "b.keras")
    x = hub_inputs(model)
    oracle.assert_close(oracle.outputs(loaded, x), oracle.outputs(pruned, x))
    pytest.importorskip("ai_edge_litert")
    report = export_tflite(pruned, tmp_path / "b.tflite", representative_data=x)
    assert report.passed, str(report)


def test_pyramid_dict_outputs_are_kept():
    model = hub_backbone("HGNetV2")
    pruned = prune_keras_model(model, 0.5)
    x = hub_inputs(model)
    assert sorted(pruned(x)) == sorted(model(x)) == ["stage1", "stage2", "stem"]


@pytest.mark.parametrize("criterion", ["mean_activation", "apoz", "hrank"])
def test_active_criteria_score_layers_inside_a_task(criterion):
    backbone = hub_backbone("VGG")
    task = keras_hub.models.ImageClassifier(backbone=backbone, num_classes=3)
    x = hub_inputs(task, batch=8)
    nested = score_filters(task, criterion, data=x)
    alone = score_filters(backbone, criterion, data=x)
    prefix = backbone.name + "/"
    inner = {k[len(prefix) :]: v for k, v in nested.items() if k.startswith(prefix)}
    assert inner.keys() == alone.keys()
    for key, value in alone.items():
        np.testing.assert_allclose(inner[key], value, rtol=1e-5, atol=1e-6)


def test_taylor_scores_a_task_with_labels():
    task = keras_hub.models.ImageClassifier(backbone=hub_backbone("VGG"), num_classes=3)
    task.compile(loss="sparse_categorical_crossentropy")
    x = hub_inputs(task, batch=8)
    y = np.arange(8) % 3
    plan = plan_pruning(task, 0.5, "taylor", data=(x, y))
    assert plan.num_removed > 0
    _check_exact(task, plan, apply_plan(task, plan), x)


# -- users' own functional subclasses ------------------------------------------
@keras.saving.register_keras_serializable(package="test_hub")
class TinyNet(keras.Model):
    """A functional subclass whose config holds constructor arguments."""

    def __init__(self, width=8, **kwargs):
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(width, 3, padding="same", name="c1")(inputs)
        x = keras.layers.BatchNormalization(name="bn1")(x)
        x = keras.layers.ReLU(name="r1")(x)
        x = keras.layers.Conv2D(width, 3, padding="same", name="c2")(x)
        outputs = keras.layers.GlobalAveragePooling2D(name="gap")(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.width = width

    def get_config(self):
        return {"width": self.width, "name": self.name}


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(4, 3)

    def call(self, x):
        y = self.conv(x)
        return y if keras.ops.mean(y) > 0 else -y  # control flow on a value


def test_users_functional_subclass_top_level_and_nested():
    net = TinyNet(width=8, name="tiny")
    oracle.randomize(net, 0)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    plan = plan_pruning(net, 0.5)
    pruned = apply_plan(net, plan)
    assert pruned.get_layer("c1").filters == 4
    _check_exact(net, plan, pruned, x)

    inputs = keras.Input((8, 8, 3))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="head")(net(inputs)))
    plan = plan_pruning(outer, 0.5)
    pruned = apply_plan(outer, plan)
    assert pruned.get_layer("tiny").get_layer("c2").filters == 4
    _check_exact(outer, plan, pruned, x)


def test_untraceable_subclassed_models_keep_the_clear_error():
    model = Subclassed()
    model(np.zeros((1, 8, 8, 3), "float32"))
    with pytest.raises(TypeError, match="subclassed model"):
        plan_pruning(model, 0.5)


@pytest.mark.parametrize("name", list(HUB_TASKS))
def test_tasks_prune_exactly_predict_save_and_reload(name, tmp_path):
    """Detectors, segmenters and classifiers whose heads are composite layers:
    the task class when it can take the pruned backbone, else a plain functional
    model with a warning; never a crash."""
    task = oracle.randomize(build_task(name), 0)
    x = hub_inputs(task)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FilterPruneWarning)
        plan = plan_pruning(task, 0.5)
        pruned = apply_plan(task, plan)
    said = [str(w.message) for w in caught if w.category is FilterPruneWarning]
    assert not [m for m in said if "no pruning handler" in m], said
    if type(pruned) is not type(task):
        assert any("plain functional keras.Model" in m for m in said), said
    y = _check_exact(task, plan, pruned, x)
    oracle.assert_differs(y, oracle.outputs(task, x), what=name)
    assert count_macs(pruned) < 0.6 * count_macs(task), plan.summary()
    pruned.predict(x, verbose=0)
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    reloaded = keras.saving.load_model(path)
    oracle.assert_close(oracle.outputs(reloaded, x), y, what="reloaded")


@pytest.mark.parametrize("name", ["MobileNetV3", "EfficientNetV2"])
def test_pruned_composite_backbones_export_to_tflite(name, tmp_path):
    pytest.importorskip("ai_edge_litert")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TFLite export needs the TensorFlow backend")
    model = hub_backbone(name)
    pruned = prune_keras_model(model, 0.5)
    report = export_tflite(pruned, str(tmp_path / "pruned.tflite"))
    assert report.passed, str(report)
