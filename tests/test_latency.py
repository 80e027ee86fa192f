"""Latency tables (`measure_latency_table`, `LatencyTable`) and planning to a
latency target (`plan_pruning(target_latency=...)`).

Measuring is tested on a tiny model with few widths; the planner is tested on
synthetic tables whose costs are known exactly (staircases of 32 output
channels, linear input costs), so that its choices can be checked."""

import json
import math

import keras
import numpy as np
import pytest

import keras_filterprune as kfp
from keras_filterprune import LatencyTable, measure_latency_table, plan_pruning
from keras_filterprune._latency_measure import detect_step, sample_widths, unit_specs
from keras_filterprune.graph import graph_of

STEPS = {"conv": {"in": 1, "out": 8}, "depthwise": {"in": 8}}


def small_model(name="small"):
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(64, 3, padding="same", name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(64, 3, padding="same", name="c2")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Conv2D(96, 3, padding="same", name="c3")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def synthetic_table(model, out_step=32, in_curves=True, name=None):
    """A table whose units cost `full_ms · ceil(c_out/s)·s / full` along their
    output channels (and linearly along their inputs when `in_curves`)."""
    graph = graph_of(model)
    units = []
    for spec in unit_specs(graph):
        curves = {"in": None, "out": None}
        for axis in spec["axes"]:
            if axis == "in" and not in_curves:
                continue
            full = spec["widths"][axis]
            step = out_step if axis == "out" else 1
            widths = sample_widths(full, step, [i / 8 for i in range(1, 9)])
            ms = [math.ceil(w / step) * step / full for w in widths]
            curves[axis] = {"step": step, "widths": widths, "ms": ms}
        units.append(
            {
                "path": spec["path"],
                "layer": spec["layer"],
                "kind": spec["kind"],
                "in": spec["in"],
                "out": spec["out"],
                "full_ms": spec["widths"]["in"] * spec["widths"]["out"] / 1000,
                "curves": curves,
            }
        )
    total = sum(u["full_ms"] for u in units)
    return LatencyTable(
        model_name=name or model.name,
        model_ms=total * 1.2,
        settings={"runtime": "litert", "num_threads": 2, "quantization": None},
        steps={"conv": {"in": 1, "out": out_step}},
        groups={g.id: g.width for g in graph.groups},
        units=units,
    )


def kept(plan, layer):
    return len(plan.kept_filters(layer))


# -- the step model -----------------------------------------------------------------
def test_detect_step_finds_blocks_and_linear_costs(rng):
    widths = list(range(1, 65))
    for step in (32, 16, 8):
        ms = [0.1 + math.ceil(c / step) * step * 0.01 for c in widths]
        noisy = np.asarray(ms) * (1 + 0.02 * rng.standard_normal(64))
        assert detect_step(widths, noisy) == step
    linear = [0.05 + c * 0.01 for c in widths]
    assert detect_step(widths, np.asarray(linear) * (1 + 0.02 * rng.random(64))) == 1


def test_sample_widths_are_block_boundaries():
    points = sample_widths(100, 32, [0.25, 0.5, 0.75, 1.0])
    assert points == [32, 64, 96, 100]
    assert sample_widths(10, 32, 4) == [10]
    assert sample_widths(64, 1, 2) == [1, 32, 64]


def test_prediction_follows_the_staircase():
    model = small_model()
    table = synthetic_table(model, in_curves=False)
    g = graph_of(model).group_of("c1").id
    full = table.predict({})
    assert full == pytest.approx(table.model_ms)
    # 64 -> 40 filters on c1 costs as much as 64 (a block of 32 started).
    assert table.predict({g: 40}) == pytest.approx(full)
    assert table.predict({g: 32}) < full
    assert table.predict({g: 32}) == pytest.approx(table.predict({g: 17}))
    assert table.group_step(g) == 32


def test_json_round_trip(tmp_path):
    model = small_model()
    table = synthetic_table(model)
    path = tmp_path / "table.json"
    table.save(path)
    loaded = LatencyTable.load(path)
    assert loaded.to_dict() == table.to_dict()
    counts = {g: w // 2 for g, w in table.groups.items()}
    assert loaded.predict(counts) == pytest.approx(table.predict(counts))
    assert "c2" in loaded.summary() and "litert" in repr(loaded)


# -- the planner on synthetic tables -----------------------------------------------
@pytest.mark.parametrize("target", ["70%", "50%"])
def test_plan_hits_the_latency_target(target):
    model = small_model()
    table = synthetic_table(model)
    plan = plan_pruning(model, target_latency=target, latency_table=table)
    goal = table.model_ms * float(target[:-1]) / 100
    predicted = plan.meta["predicted_latency_ms"]
    assert predicted <= goal + 1e-9
    assert predicted >= goal * 0.85  # no more removed than needed
    assert plan.meta["target_latency_ms"] == pytest.approx(goal)
    assert table.latency_ms(plan) == pytest.approx(predicted, rel=1e-6)
    assert plan.meta["latency_table"]["runtime"] == "litert"
    oracle_model = kfp.apply_plan(model, plan)
    assert oracle_model.count_params() < model.count_params()


def test_plan_chooses_widths_where_time_is_saved():
    """Output costs in blocks of 32 and nothing else: every kept width is a
    block boundary (a width inside a block would remove filters for no time)."""
    model = small_model()
    table = synthetic_table(model, in_curves=False)
    plan = plan_pruning(model, target_latency="60%", latency_table=table)
    for layer in ("c1", "c2", "c3"):
        assert kept(plan, layer) % 32 == 0, (layer, kept(plan, layer))
    assert plan.meta["predicted_latency_ms"] <= 0.6 * table.model_ms + 1e-9


def test_plan_respects_exclude_per_layer_and_round_to():
    model = small_model()
    table = synthetic_table(model)
    plan = plan_pruning(
        model,
        target_latency="60%",
        latency_table=table,
        exclude=["c2"],
        per_layer={"c3": 0.5},
        round_to=8,
    )
    assert kept(plan, "c2") == 64
    assert kept(plan, "c3") == 48
    assert kept(plan, "c1") % 8 == 0 and kept(plan, "c1") < 64


def test_round_to_auto_uses_the_tables_steps():
    model = small_model()
    table = synthetic_table(model, out_step=16)
    plan = plan_pruning(model, 0.3, latency_table=table, round_to="auto")
    for layer in ("c1", "c2", "c3"):
        assert kept(plan, layer) % 16 == 0
    assert "predicted_latency_ms" in plan.meta
    with pytest.raises(ValueError, match="round_to='auto'.*latency_table"):
        plan_pruning(model, 0.3, round_to="auto")


def test_unreachable_target_says_what_is_reachable():
    model = small_model()
    table = synthetic_table(model)
    with pytest.raises(ValueError, match="cannot be reached.*predicted at"):
        plan_pruning(model, target_latency="1%", latency_table=table, exclude=["c1"])


def test_plan_from_a_table_file_and_on_the_command_line(tmp_path):
    from keras_filterprune.cli import main

    model = small_model()
    table = synthetic_table(model)
    path = tmp_path / "t.json"
    table.save(path)
    plan = plan_pruning(model, target_latency=table.model_ms / 2, latency_table=path)
    assert plan.meta["predicted_latency_ms"] <= table.model_ms / 2 + 1e-9
    model_path = tmp_path / "m.keras"
    model.save(model_path)
    out = tmp_path / "p.keras"
    args = ["prune", str(model_path), "-o", str(out), "--target-latency", "50%"]
    assert main([*args, "--latency-table", str(path)]) == 0
    pruned = keras.saving.load_model(out)
    assert pruned.count_params() < model.count_params()
    assert main(args) == 1  # no table: one line on stderr, no file
    assert main([*args[:4], "--measure-latency"]) == 1  # needs the target
    assert main(["prune", str(model_path), "-o", str(out), "--round-to", "x"]) == 2


# -- bad input ------------------------------------------------------------------
def test_a_table_of_another_model_is_refused():
    """Tables are matched by structure (layer paths and channel groups): the
    same architecture under another name fits, another architecture does not."""
    table = synthetic_table(small_model(), name="other")
    plan_pruning(small_model(), target_latency="50%", latency_table=table)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(16, 3, name="c1")(inputs)
    different = keras.Model(inputs, keras.layers.Dense(3)(x), name="small")
    with pytest.raises(ValueError, match="measured on model 'other' and does not"):
        plan_pruning(different, target_latency="50%", latency_table=table)
    model = small_model()
    plan = plan_pruning(different, 0.5)
    with pytest.raises(ValueError, match="does not fit"):
        synthetic_table(model).latency_ms(plan)


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d["settings"].update(runtime="onnx"), "runtime 'onnx'"),
        (lambda d: d.update(format="something"), "Not a keras-filterprune"),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d["units"][0]["curves"]["out"].update(ms=[1.0]), "Malformed"),
        (lambda d: d["units"][0].pop("full_ms"), "Malformed"),
        (lambda d: d.update(model_ms=0), "model_ms"),
    ],
)
def test_bad_table_files_are_refused(change, match):
    data = json.loads(synthetic_table(small_model()).to_json())
    change(data)
    with pytest.raises(ValueError, match=match):
        LatencyTable.from_json(json.dumps(data))


def test_bad_files_and_settings(tmp_path):
    table = synthetic_table(small_model())
    with pytest.raises(FileNotFoundError, match="No latency table"):
        LatencyTable.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        LatencyTable.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="num_threads=2, not num_threads=4"):
        table.check_settings(num_threads=4)
    table.check_settings(runtime="litert", quantization=None)
    with pytest.raises(ValueError, match="quantization=None, not quantization='int8'"):
        table.check_settings(quantization="int8")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"target_latency": "fast"}, ValueError, "target_latency"),
        ({"target_latency": -1}, ValueError, "positive"),
        ({"target_latency": "0%"}, ValueError, "positive"),
        ({"target_latency": True}, ValueError, "target_latency"),
        ({"target_latency": "50%", "target_macs": 1e6}, ValueError, "at most one of"),
        ({"target_latency": "50%", "global_ranking": True}, ValueError, "global"),
        ({"latency_table": 123}, TypeError, "LatencyTable"),
    ],
)
def test_bad_latency_arguments(kwargs, error, match):
    model = small_model()
    kwargs.setdefault("latency_table", synthetic_table(model))
    with pytest.raises(error, match=match):
        plan_pruning(model, **kwargs)


def test_target_latency_needs_a_table():
    with pytest.raises(ValueError, match="needs `latency_table="):
        plan_pruning(small_model(), target_latency="50%")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"runtime": "onnx"}, "runtime"),
        ({"quantization": "int4"}, "quantization"),
        ({"widths": 0}, "widths"),
        ({"widths": [0.5, 1.5]}, "widths"),
        ({"steps": {"conv": {"out": 0}}}, "steps"),
        ({"steps": {"pool": {"in": 2}}}, "steps"),
    ],
)
def test_measure_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        measure_latency_table(small_model(), **kwargs)


# -- measuring ------------------------------------------------------------------
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="converts with TensorFlow"
)
def test_measure_a_tiny_model(tmp_path):
    pytest.importorskip("ai_edge_litert")
    model = small_model()
    table = measure_latency_table(model, widths=2, steps=STEPS, rounds=2, verbose=0)
    assert [u["path"] for u in table.units] == ["c1", "c2", "c3", "head"]
    assert table.steps == STEPS
    assert table.model_ms > 0 and all(u["full_ms"] > 0 for u in table.units)
    c2 = table.units[1]
    assert c2["curves"]["out"]["widths"] == [8, 32, 64]
    assert c2["curves"]["in"]["widths"] == [1, 32, 64]
    assert c2["curves"]["out"]["ms"][-1] == c2["full_ms"]
    settings = table.settings
    assert settings["runtime"] == "litert" and settings["num_threads"] == 2
    assert settings["runtime_version"] and settings["machine"]["cpus"] >= 1
    assert table.predict({}) == pytest.approx(table.model_ms)
    path = tmp_path / "t.json"
    table.save(path)
    plan = plan_pruning(model, target_latency="80%", latency_table=path)
    assert plan.meta["predicted_latency_ms"] <= 0.8 * table.model_ms + 1e-9


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="JAX/PyTorch")
def test_measure_needs_tensorflow():
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=tensorflow"):
        measure_latency_table(small_model(), steps=STEPS)


# -- calibrating a plan by timing it ----------------------------------------------
@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="converts with TensorFlow"
)
def test_calibrate_times_the_plans_and_corrects_the_target():
    pytest.importorskip("ai_edge_litert")
    model = small_model()
    table = synthetic_table(model)  # costs made up: the measurements disagree
    plan = kfp.calibrate_latency_plan(
        model,
        "60%",
        table,
        criterion="l1_norm",
        iterations=3,
        tolerance=0.01,
        rounds=2,
        verbose=0,
    )
    steps = plan.meta["latency_iterations"]
    assert 1 <= sum(s["timed"] for s in steps) <= 3 and len(steps) <= 12
    assert steps[0]["requested"] == pytest.approx(0.6)
    for before, after in zip(steps, steps[1:]):  # the table's error corrected
        if before["timed"]:
            factor = before["predicted"] / before["measured"]
            expected = 0.6 * min(2.0, max(0.5, factor))
        else:  # a repeated plan: pushed once more
            factor = 0.6 / before["measured"]
            expected = before["requested"] * min(2.0, max(0.5, factor))
        assert after["requested"] == pytest.approx(min(1.0, expected), rel=1e-4)
    errors = [abs(s["measured"] / 0.6 - 1) for s in steps]
    measured = plan.meta["measured_latency_ratio"]
    assert abs(measured / 0.6 - 1) == pytest.approx(min(errors), abs=1e-5)
    assert measured == pytest.approx(
        plan.meta["measured_latency_ms"] / plan.meta["measured_base_ms"], rel=1e-4
    )
    assert kfp.PruningPlan.from_json(plan.to_json()).meta["latency_iterations"]
    with pytest.raises(ValueError, match="cannot be reached"):  # before any timing
        kfp.calibrate_latency_plan(model, "0.1%", table, verbose=0)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="converts with TensorFlow"
)
def test_measure_latency_on_the_command_line(tmp_path, capsys):
    pytest.importorskip("ai_edge_litert")
    from keras_filterprune.cli import main

    model = small_model()
    synthetic_table(model).save(tmp_path / "t.json")
    model.save(tmp_path / "m.keras")
    out, plan = tmp_path / "p.keras", tmp_path / "plan.json"
    args = ["prune", str(tmp_path / "m.keras"), "-o", str(out), "--plan-out", str(plan)]
    args += ["--target-latency", "60%", "--latency-table", str(tmp_path / "t.json")]
    assert main([*args, "--measure-latency"]) == 0
    assert "calibrate_latency_plan: asked 0.600" in capsys.readouterr().out
    meta = kfp.PruningPlan.load(plan).meta
    assert meta["measured_latency_ratio"] > 0 and meta["latency_iterations"]
    assert keras.saving.load_model(out).count_params() <= model.count_params()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tolerance": 0}, "tolerance"),
        ({"tolerance": 1.5}, "tolerance"),
        ({"iterations": 0}, "iterations"),
    ],
)
def test_calibrate_rejects_bad_arguments(kwargs, match):
    model = small_model()
    args = {"latency_table": synthetic_table(model), **kwargs}
    with pytest.raises(ValueError, match=match):
        kfp.calibrate_latency_plan(model, "60%", verbose=0, **args)
    with pytest.raises(TypeError, match="latency_table"):
        kfp.calibrate_latency_plan(model, "60%", {"units": []})
    with pytest.raises(TypeError, match="rounds"):
        kfp.calibrate_latency_plan(model, "60%", synthetic_table(model), rounds="3")


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="JAX/PyTorch")
def test_calibrate_needs_tensorflow():
    model = small_model()
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=tensorflow"):
        kfp.calibrate_latency_plan(model, "60%", synthetic_table(model), verbose=0)
