"""Latency tables (`measure_latency_table`, `LatencyTable`) and planning to a
latency target (`plan_pruning(target_latency=...)`).

Measuring is tested on a tiny model with few widths; the planner is tested on
synthetic tables whose costs are known exactly (staircases of 32 output
channels, linear input costs), so that its choices can be checked."""

import functools
import json
import math
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_filterprune as kfp
from keras_filterprune import plan_pruning
from keras_filterprune.graph import graph_of
from keras_filterprune.latency import LatencyTable, measure_latency_table
from keras_filterprune.latency.measure import detect_step, sample_widths
from keras_filterprune.latency.units import unit_specs

STEPS = {"conv": {"in": 1, "out": 8}, "depthwise": {"in": 8}}
QUICK_TIMING = {"min_round_ms": 2.0, "target_ci": None}
"""The timing of the tests that measure: a fixed number of short rounds (6, so
that each time has an interval), never a time cap that a slow machine could hit
first; what is recorded is checked, not how precise it is (test_runtime tests
the stopping rule with a fake clock)."""


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
                **spec["numbered"],
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


def test_a_table_is_plain_data_without_tensorflow_or_litert():
    """`LatencyTable` (and the planner's use of it) imports neither TensorFlow
    nor LiteRT: a table is read, checked, saved and asked for predictions in a
    fresh process that never loads them."""
    code = (
        "import sys\n"
        "from keras_filterprune.latency.table import LatencyTable, "
        "parse_latency_target\n"
        "import keras_filterprune.latency.budget\n"
        "doc = {'format': 'keras-filterprune-latency-table', 'version': 1,\n"
        "  'model_name': 'm', 'model_ms': 1.0, 'steps': {'conv': {'out': 4}},\n"
        "  'settings': {'runtime': 'litert', 'num_threads': 2,\n"
        "               'quantization': None},\n"
        "  'groups': {'0': 8}, 'units': [{'path': 'c', 'layer': 'Conv2D',\n"
        "    'kind': 'conv', 'in': {'fixed': 3, 'groups': {}},\n"
        "    'out': {'fixed': 0, 'groups': {'0': 1.0}}, 'full_ms': 0.5,\n"
        "    'curves': {'in': None,\n"
        "               'out': {'step': 4, 'widths': [4, 8], 'ms': [0.3, 0.5]}}}]}\n"
        "table = LatencyTable.from_json(LatencyTable.from_dict(doc).to_json())\n"
        "assert abs(table.predict({0: 3}) - 0.6) < 1e-9, table.predict({0: 3})\n"
        "assert parse_latency_target('50%', table) == 0.5\n"
        "heavy = [m for m in ('keras', 'tensorflow', 'ai_edge_litert')\n"
        "         if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr


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
    # A target without a table is a usage error since #28 (exit status 2).
    assert main(args) == 2  # no table: one line on stderr, no file
    assert main([*args[:4], "--measure-latency"]) == 1  # needs the target
    assert main(["prune", str(model_path), "-o", str(out), "--round-to", "x"]) == 2


def test_sensitivity_curves_price_a_latency_budget_on_the_command_line(tmp_path):
    """`sensitivity --json` writes curves that `prune --importance` reads: the
    plan is the one `plan_pruning(importance=SensitivityResult.load(...))` makes."""
    from keras_filterprune.cli import main

    model = small_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    table = synthetic_table(model)
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 8, 8, 3), dtype="float32"), rng.integers(0, 10, 64)
    np.savez(tmp_path / "xy.npz", x=x, y=y)
    table.save(tmp_path / "t.json")
    model.save(tmp_path / "m.keras")
    curves = tmp_path / "curves.json"
    argv = [
        "sensitivity",
        str(tmp_path / "m.keras"),
        "--data",
        str(tmp_path / "xy.npz"),
    ]
    assert main([*argv, "--ratios", "0.25", "0.5", "0.75", "--json", str(curves)]) == 0
    out, plan_out = tmp_path / "p.keras", tmp_path / "plan.json"
    argv = ["prune", str(tmp_path / "m.keras"), "-o", str(out), "--plan-out"]
    argv += [str(plan_out), "--target-latency", "50%", "--latency-table"]
    assert main([*argv, str(tmp_path / "t.json"), "--importance", str(curves)]) == 0
    plan = kfp.PruningPlan.load(plan_out)
    assert plan.meta["importance"] == "sensitivity"
    expected = plan_pruning(
        model,
        target_latency="50%",
        latency_table=table,
        importance=kfp.sensitivity.SensitivityResult.load(curves),
    )
    assert [g.keep for g in plan.groups] == [g.keep for g in expected.groups]
    assert any(len(g.keep) < g.width for g in plan.groups)
    assert keras.saving.load_model(out).count_params() < model.count_params()


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


def _set(path, value):
    """A change to a table's dict: `path` ("units.1.curves.out.ms.1") := value."""

    def change(data):
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        for key in parents:
            data = data[key if isinstance(data, list) else str(key)]
        data[last if isinstance(data, list) else str(last)] = value

    return change


def _drop(path):
    def change(data):
        *parents, last = path.split(".")
        for key in parents:
            data = data[int(key) if isinstance(data, list) else key]
        del data[last]

    return change


# (change, field named in the message). The synthetic table of small_model():
# units c1, c2, c3, head; groups 0 (c1, 64), 1 (c2, 64), 2 (c3, 96), 3 (head, 10);
# c2 reads group 0, its output curve is timed at widths [32, 64].
CORRUPT = [
    (_set("model_ms", math.inf), "model_ms"),
    (_set("units.1.call", -1), r"units\[1\]\.call"),
    (_set("units.1.call", 0.5), r"units\[1\]\.call"),
    (_set("units.1.full_ms_ci", -0.1), r"units\[1\]\.full_ms_ci"),
    (_set("units.1.full_ms_ci", "2%"), r"units\[1\]\.full_ms_ci"),
    (_set("units.1.curves.out.ms_ci", [0.01]), r"units\[1\]\.curves\.out\.ms_ci"),
    (_set("settings.model_ms_ci", math.nan), r"settings\.model_ms_ci"),
    (_set("settings.timing", 3), r"settings\.timing"),
    (_set("model_ms", math.nan), "model_ms"),
    (_set("model_ms", 0), "model_ms"),
    (_set("model_ms", "12"), "model_ms"),
    (_set("model_ms", True), "model_ms"),
    (_set("model_name", 5), "model_name"),
    (_drop("units"), "units"),
    (_set("units", []), "units"),
    (_set("units", "c1"), "units"),
    (_set("units.0", 5), r"units\[0\]"),
    (_set("unit", []), "unit: unknown field"),
    (_set("settings", []), "settings"),
    (_drop("settings.num_threads"), r"settings\.num_threads"),
    (_set("settings.num_threads", "2"), r"settings\.num_threads"),
    (_set("settings.num_threads", 0), r"settings\.num_threads"),
    (_set("settings.num_threads", 2.5), r"settings\.num_threads"),
    (_set("settings.num_threads", True), r"settings\.num_threads"),
    (_set("settings.quantization", "int4"), r"settings\.quantization"),
    (_drop("settings.quantization"), r"settings\.quantization"),
    (_set("settings.runtime", "onnx"), r"settings\.runtime.*runtime 'onnx'"),
    (_set("settings.runtime", ["litert"]), r"settings\.runtime"),
    (_set("settings.machine", "x86"), r"settings\.machine"),
    (_set("settings.machine", {"cpus": 0}), r"settings\.machine\.cpus"),
    (_set("settings.rounds", 0), r"settings\.rounds"),
    (_set("settings.invoke_overhead_ms", -1.0), r"settings\.invoke_overhead_ms"),
    (_set("settings.runtime_version", 2), r"settings\.runtime_version"),
    (_set("steps", [32]), "steps"),
    (_set("steps.conv.out", 0), r"steps\.conv\.out"),
    (_set("steps.conv.out", "32"), r"steps\.conv\.out"),
    (_set("steps.pool", {"in": 2}), "steps.*unknown kernel kind 'pool'"),
    (_set("steps.conv.side", 2), r"steps\.conv.*unknown axis 'side'"),
    (_set("groups", [64]), "groups"),
    (_set("groups.0", -64), r"groups\[0\]"),
    (_set("groups.0", 64.5), r"groups\[0\]"),
    (_set("groups.x", 3), "groups.*group ids"),
    (_drop("groups.1"), r"units\[1\]\.out\.groups.*group 1 is not one of"),
    (_set("units.1.out.groups", {"7": 1.0}), r"units\[1\]\.out\.groups.*group 7"),
    (_set("units.1.in.groups.0", 0.3), r"units\[1\]\.in\.groups\[0\]"),
    (_set("units.1.in.groups.0", -1.0), r"units\[1\]\.in\.groups\[0\]"),
    (_set("units.1.in.fixed", -1.0), r"units\[1\]\.in\.fixed"),
    (_set("units.1.in.fixed", 1.5), r"units\[1\]\.in\.fixed"),
    (_set("units.1.in", {"fixed": 0, "groups": {}}), r"units\[1\]\.in: has no"),
    (_drop("units.1.in"), r"units\[1\]\.in: missing"),
    (_set("units.0.full_ms", math.inf), r"units\[0\]\.full_ms"),
    (_set("units.0.full_ms", -1.0), r"units\[0\]\.full_ms"),
    (_set("units.0.full_ms", 0), r"units\[0\]\.full_ms"),
    (_drop("units.0.full_ms"), r"units\[0\]\.full_ms: missing"),
    (_set("units.0.path", 3), r"units\[0\]\.path"),
    (_set("units.0.kind", "pool"), r"units\[0\]\.kind"),
    (_set("units.0.kind", ["conv"]), r"units\[0\]\.kind"),
    (_set("units.0.curves", None), r"units\[0\]\.curves"),
    (_set("units.0.curves.side", None), r"units\[0\]\.curves.*unknown axis"),
    (_set("units.1.curves.out.ms.1", math.inf), r"units\[1\]\.curves\.out\.ms\[1\]"),
    (_set("units.1.curves.out.ms.0", -0.5), r"units\[1\]\.curves\.out\.ms\[0\]"),
    (_set("units.1.curves.out.ms.0", 1e300), r"units\[1\]\.curves\.out\.ms\[0\]"),
    (_set("units.1.curves.out.ms", [1.0]), r"units\[1\]\.curves\.out\.ms: .*one"),
    (_set("units.1.curves.out.ms", 1.0), r"units\[1\]\.curves\.out\.ms"),
    (_set("units.1.curves.out.step", 0), r"units\[1\]\.curves\.out\.step"),
    (_set("units.1.curves.out.widths", []), r"units\[1\]\.curves\.out\.widths"),
    (
        _set("units.1.curves.out.widths", [64, 32]),
        r"units\[1\]\.curves\.out\.widths: must incr",
    ),
    (
        _set("units.1.curves.out.widths", [16, 32]),
        r"units\[1\]\.curves\.out\.widths: must end",
    ),
    (_set("units.1.curves.out.widths.0", -8), r"units\[1\]\.curves\.out\.widths\[0\]"),
    (
        _set("units.1.curves.out.widths.0", 32.0),
        r"units\[1\]\.curves\.out\.widths\[0\]",
    ),
    (
        _set("units.1.curves.out.widths.1", 65),
        r"units\[1\]\.curves\.out\.widths\[1\]: .*\[1, 64\]",
    ),
]


@functools.cache
def _table_json() -> str:
    return synthetic_table(small_model()).to_json()


@pytest.mark.parametrize("change, field", CORRUPT)
def test_corrupt_tables_are_refused_naming_the_file_and_field(change, field, tmp_path):
    data = json.loads(_table_json())
    change(data)
    with pytest.raises(ValueError, match=rf"^Corrupt latency table: {field}"):
        LatencyTable.from_dict(data)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    where = re.escape(f"Corrupt latency table '{path}': ")
    with pytest.raises(ValueError, match=rf"^{where}{field}"):
        LatencyTable.load(path)


@pytest.mark.parametrize(
    "content, match",
    [
        (np.random.default_rng(0).bytes(256), "table '{path}': not UTF-8 text"),
        (b"\xff\xfe{}", "table '{path}': not UTF-8 text"),
        (b"", "table '{path}': not valid JSON"),
        (None, "table '{path}': not valid JSON"),  # the first half of a table
        (b"[" * 100_000, "table '{path}': not valid JSON"),
        (b"[1, 2]", "Not a keras-filterprune latency table '{path}'"),
        (b'{"format": "keras_filterprune.PruningPlan/1"}', "Not a keras-filter"),
        (b'{"format": "keras-filterprune-latency-table"}', "'{path}' has format ve"),
    ],
    ids=["random", "bom", "empty", "truncated", "deep", "list", "plan", "version"],
)
def test_files_that_are_not_tables_are_refused_naming_the_file(
    content, match, tmp_path
):
    if content is None:
        text = _table_json()
        content = text[: len(text) // 2].encode()
    path = tmp_path / "t.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(match.format(path=path))) as info:
        LatencyTable.load(path)
    assert f"'{path}'" in str(info.value)
    with pytest.raises(ValueError, match="Cannot read latency table:|Not a|format v"):
        LatencyTable.from_json(content)


def test_tables_as_measured_load_as_before(tmp_path):
    """Every setting `measure_latency_table` records, tuples and NumPy numbers
    in a table built in Python: accepted, and saved as the same JSON."""
    data = json.loads(_table_json())
    data["settings"].update(
        runtime_version="2.1.0",
        machine={"cpu": "Intel Xeon", "cpus": 2, "platform": "Linux"},
        converter="tensorflow 2.19.0, keras 3.10.0",
        rounds=5,
        invoke_overhead_ms=0.004,
        measured_at="2025-01-01T00:00:00+00:00",
    )
    table = LatencyTable.from_dict(data)
    assert json.loads(table.to_json()) == data
    assert "full_ms_ci" not in table.units[0]  # tables before #30: no spreads
    spread = json.loads(json.dumps(data))
    spread["settings"].update(model_ms_ci=0.01, timing={"target_ci": 0.02})
    spread["units"][1]["full_ms_ci"] = 0.015
    out = spread["units"][1]["curves"]["out"]
    out["ms_ci"] = [None] * (len(out["widths"]) - 1) + [0.015]
    assert json.loads(LatencyTable.from_dict(spread).to_json()) == spread
    table.save(tmp_path / "t.json")
    assert LatencyTable.load(tmp_path / "t.json").to_dict() == table.to_dict()
    curve = table.units[1]["curves"]["out"]
    units = [dict(u) for u in table.units]
    units[1]["curves"] = {
        "in": units[1]["curves"]["in"],
        "out": {**curve, "widths": tuple(curve["widths"]), "ms": np.array(curve["ms"])},
    }
    rebuilt = LatencyTable(
        model_name=table.model_name,
        model_ms=np.float32(table.model_ms),
        settings={**table.settings, "num_threads": np.int64(2)},
        steps=table.steps,
        groups={np.int64(g): np.int64(w) for g, w in table.groups.items()},
        units=units,
    )
    assert rebuilt.predict({0: 16}) == pytest.approx(table.predict({0: 16}))


def test_a_table_object_is_checked_when_built_and_when_planned():
    model = small_model()
    table = synthetic_table(model)
    with pytest.raises(ValueError, match=r"^Corrupt latency table: model_ms"):
        LatencyTable(**{**_init_args(table), "model_ms": -1.0})
    table.units[2]["full_ms"] = math.nan  # changed after it was built
    with pytest.raises(ValueError, match=r"Corrupt latency table: units\[2\].full_ms"):
        plan_pruning(model, target_latency="50%", latency_table=table)
    table = synthetic_table(model)
    table.settings["num_threads"] = "four"
    with pytest.raises(ValueError, match=r"settings\.num_threads.*'four'"):
        plan_pruning(model, 0.5, latency_table=table, round_to="auto")


def _init_args(table):
    names = ("model_name", "model_ms", "settings", "steps", "groups", "units")
    return {k: getattr(table, k) for k in names}


@pytest.mark.parametrize(
    "change, match",
    [
        (
            lambda m: m.update(c2=32),
            r"channel group 1 \(layer 'c2'\) has 32 channels in model 'small' but "
            "64 in the table",
        ),
        (
            lambda m: m.update(extra=10),  # as wide as the head, group 3
            r"model 'small' has channel group 4 \(layer 'head'\) of 10 channels, "
            "which the table does not have",
        ),
    ],
)
def test_a_table_of_another_model_says_which_group_differs(change, match):
    widths = {"c1": 64, "c2": 64, "c3": 96}
    change(widths)
    table = synthetic_table(small_model())
    with pytest.raises(ValueError, match=match + r".*measure_latency_table"):
        plan_pruning(
            _chain(widths), target_latency="50%", latency_table=table, verbose=0
        )


def _chain(widths):
    inputs = keras.Input((8, 8, 3))
    x = inputs
    for name, width in widths.items():
        x = keras.layers.Conv2D(width, 3, padding="same", name=name)(x)
    outputs = keras.layers.Dense(10, name="head")(
        keras.layers.GlobalAveragePooling2D()(x)
    )
    return keras.Model(inputs, outputs, name="small")


def test_a_table_whose_layers_differ_says_which_layer():
    model = small_model()
    data = json.loads(_table_json())
    data["units"][2]["in"]["groups"] = {"0": 1.0}  # c3 reads c1 (as wide as c2)
    with pytest.raises(ValueError, match=r"layer 'c3' has 64 input channels "):
        plan_pruning(model, 0.5, latency_table=LatencyTable.from_dict(data))
    data = json.loads(_table_json())
    data["units"][1]["path"] = "c9"
    with pytest.raises(ValueError, match="times layer 'c9', which model 'small'"):
        plan_pruning(model, 0.5, latency_table=LatencyTable.from_dict(data))
    plan = plan_pruning(_chain({"c1": 64, "c2": 32, "c3": 96}), 0.5)
    with pytest.raises(ValueError, match="group 1 .* 32 channels in the plan"):
        synthetic_table(model).latency_ms(plan)


def _siamese():
    """Two inputs through one shared stem and one shared conv: the table lists
    each shared layer once per call."""
    a, b = keras.Input((8, 8, 3)), keras.Input((8, 8, 3))
    stem = keras.layers.Conv2D(8, 3, padding="same", name="stem")
    shared = keras.layers.Conv2D(16, 3, padding="same", name="shared")
    x = keras.layers.Concatenate()([shared(stem(a)), shared(stem(b))])
    outputs = keras.layers.Conv2D(4, 1, name="head")(x)
    return keras.Model([a, b], outputs, name="siamese")


def test_a_table_lists_each_call_of_a_layer_once():
    """A layer repeated in a table counts twice (L11, L61): a copied unit is
    refused when the table is read, one numbered as a second call is refused for
    a model that calls the layer once, and a layer the model shares needs one
    unit per call."""
    model = small_model()
    data = json.loads(_table_json())
    data["units"].append(data["units"][0])  # c1 twice, as a hand edit would
    with pytest.raises(ValueError, match=r"units\[4\]: repeats layer 'c1' of unit"):
        LatencyTable.from_dict(data)
    data["units"][0] = {**data["units"][0], "call": 0}
    with pytest.raises(ValueError, match=r"units\[4\]: layer 'c1' is listed 2 tim"):
        LatencyTable.from_dict(data)
    data["units"][4] = {**data["units"][4], "call": 0}
    with pytest.raises(ValueError, match=r"units\[4\]: repeats .*\(call 0\)"):
        LatencyTable.from_dict(data)
    data["units"][4]["call"] = 1  # a shared layer's table looks so
    doubled = LatencyTable.from_dict(data)
    assert LatencyTable.from_json(doubled.to_json()).units[4]["call"] == 1
    match = r"times layer 'c1' twice, but model 'small' calls it once"
    with pytest.raises(ValueError, match=r"measured on model 'small'.*" + match):
        plan_pruning(model, target_latency="50%", latency_table=doubled)
    with pytest.raises(ValueError, match=match):
        plan_pruning(model, 0.5, latency_table=doubled, round_to="auto")
    siamese = _siamese()
    table = synthetic_table(siamese)
    assert [u["path"] for u in table.units].count("shared") == 2
    plan = plan_pruning(siamese, target_latency="80%", latency_table=table)
    assert plan.meta["predicted_latency_ms"] <= table.model_ms * 0.8 + 1e-9
    data = table.to_dict()
    data["units"] = [u for u in data["units"] if u["path"] != "stem"][:1] + [
        u for u in data["units"] if u["path"] != "shared"
    ]  # 'shared' once, 'stem' twice
    with pytest.raises(ValueError, match="times layer 'shared' once, but model 'si"):
        plan_pruning(siamese, 0.5, latency_table=LatencyTable.from_dict(data))


@pytest.mark.parametrize(
    "counts, error, match",
    [
        ({99: 3}, ValueError, r"channel group 99, .*its groups: \[0, 1, 2, 3\]"),
        ({"0": 4}, TypeError, r"keys must be channel group ids.*Write 0, not '0'"),
        ({None: 4}, TypeError, r"keys must be channel group ids.*None"),
        ({True: 4}, TypeError, "keys must be channel group ids"),
        ({0: -1, 1: 4}, ValueError, r"`counts\[0\]`.* in \[1, 64\].*=-1$"),
        ({0: 0}, ValueError, r"`counts\[0\]`.* in \[1, 64\]"),
        ({3: 11}, ValueError, r"`counts\[3\]`.* in \[1, 10\]"),
        ({0: math.nan, 1: 4}, ValueError, r"`counts\[0\]`.*=nan$"),
        ({0: math.inf}, ValueError, r"`counts\[0\]`.*=inf$"),
        ({0: 4.5}, ValueError, r"`counts\[0\]` must be a whole number"),
        ({0: "4"}, TypeError, r"`counts\[0\]` must be a number.*'4'"),
        ({0: True}, TypeError, r"`counts\[0\]` must be a number"),
        ([(0, 4)], TypeError, "`counts` must be a dict"),
    ],
)
def test_predict_checks_the_counts(counts, error, match):
    """Unknown groups, string keys, and counts outside [1, width] are errors
    naming the argument, not the unpruned latency or a NumPy message (L46,
    L47, L48, L62)."""
    table = synthetic_table(small_model())
    with pytest.raises(error, match=match):
        table.predict(counts)


def test_predict_takes_whole_numbers_of_any_type():
    table = synthetic_table(small_model())
    expected = table.predict({0: 32, 1: 64})
    assert table.predict({np.int64(0): 32.0, 1: np.int32(64)}) == expected
    assert 0 < table.predict({0: 1}) < expected  # 1 channel: the lowest count


@pytest.mark.parametrize(
    "min_filters, error", [(0, ValueError), (-2, ValueError), (1.5, TypeError)]
)
def test_min_latency_checks_min_filters_as_the_planner_does(min_filters, error):
    table = synthetic_table(small_model())
    with pytest.raises(error, match=r"`min_filters` must be an int >= 1"):
        table.min_latency_ms(min_filters)
    with pytest.raises(error, match=r"`min_filters` must be an int >= 1"):
        plan_pruning(small_model(), 0.5, min_filters=min_filters)


def test_calibrate_says_the_table_is_of_another_model_before_the_target():
    """A table of another model and a target its predictions cannot reach: the
    model that differs is the error (L42), naming the layer, not the target."""
    table = synthetic_table(small_model())
    other = _chain({"c1": 64, "c2": 32, "c3": 96})
    match = r"channel group 1 \(layer 'c2'\) has 32 channels in model 'small' but 64"
    for target in ("1%", "60%"):
        with pytest.raises(ValueError, match=match):
            kfp.latency.calibrate_latency_plan(other, target, table, verbose=0)
        with pytest.raises(ValueError, match=match):  # L20: the planner too
            plan_pruning(other, target_latency=target, latency_table=table)
    with pytest.raises(ValueError, match=r"percentage .* in \(0%, 100%\]"):
        kfp.latency.calibrate_latency_plan(small_model(), "150%", table, verbose=0)
    # The callback: a table of another model, then an unreachable target, both
    # before the first batch.
    x = np.zeros((4, *other.input_shape[1:]), "float32")
    y = np.zeros((4,), "int32")
    for model, target, said in ((other, "60%", match), (small_model(), "1%", "")):
        model.compile("sgd", "sparse_categorical_crossentropy")
        callback = kfp.PruningCallback(target_latency=target, latency_table=table)
        with pytest.raises(ValueError, match=said or "cannot be reached"):
            model.fit(x, y, epochs=1, callbacks=[callback], verbose=0)


def test_the_lowest_latency_is_a_bound_and_says_so():
    model = small_model()
    table = synthetic_table(model)
    lowest = table.min_latency_ms()
    assert lowest == pytest.approx(table.predict({g: 1 for g in table.groups}))
    assert table.min_latency_ms(16) > lowest
    plan = plan_pruning(model, target_latency=lowest * 1.01, latency_table=table)
    assert plan.meta["predicted_latency_ms"] <= lowest * 1.01 + 1e-9
    match = rf"cannot be reached.*predicted at {lowest:.4g} ms at best"
    with pytest.raises(ValueError, match=match):
        plan_pruning(model, target_latency=lowest * 0.99, latency_table=table)
    # A curve that dips below its smallest width counts at its lowest point.
    data = json.loads(_table_json())
    curve = data["units"][1]["curves"]["out"]  # widths [32, 64]
    curve["ms"] = [curve["ms"][-1] * 2, curve["ms"][-1] / 4, curve["ms"][-1]]
    curve["widths"] = [32, 48, 64]
    dipping = LatencyTable.from_dict(data)
    assert dipping.min_latency_ms() < dipping.predict({g: 1 for g in table.groups})


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
        ({"target_latency": "0%"}, ValueError, r"in \(0%, 100%\]"),
        ({"target_latency": True}, TypeError, "target_latency"),
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
    table = measure_latency_table(
        model, widths=2, steps=STEPS, rounds=2, verbose=0, **QUICK_TIMING
    )
    assert [u["path"] for u in table.units] == ["c1", "c2", "c3", "head"]
    assert table.steps == STEPS
    assert table.model_ms > 0 and all(u["full_ms"] > 0 for u in table.units)
    c2 = table.units[1]
    assert c2["curves"]["out"]["widths"] == [8, 32, 64]
    assert c2["curves"]["in"]["widths"] == [1, 32, 64]
    assert c2["curves"]["out"]["ms"][-1] == c2["full_ms"]
    # Each time's spread: the relative half-width of its 95 % interval.
    for unit in table.units:
        assert unit["full_ms_ci"] is None or unit["full_ms_ci"] >= 0
        for curve in unit["curves"].values():
            if curve is not None:
                assert len(curve["ms_ci"]) == len(curve["widths"])
    assert table.settings["timing"]["target_ci"] is None  # as asked
    assert table.settings["model_ms_ci"] >= 0  # at least 6 rounds: an interval
    settings = table.settings
    assert settings["runtime"] == "litert" and settings["num_threads"] == 2
    assert settings["runtime_version"] and settings["machine"]["cpus"] >= 1
    assert table.predict({}) == pytest.approx(table.model_ms)
    path = tmp_path / "t.json"
    table.save(path)
    # A target the measured table can reach: on a loaded machine a tiny model's
    # timings can make 80% unreachable (the fixed layers take the rest).
    floor = plan_pruning(model, 0.95, latency_table=path).meta["predicted_latency_ms"]
    target = max(0.8 * table.model_ms, (floor + table.model_ms) / 2)
    plan = plan_pruning(model, target_latency=target, latency_table=path)
    assert plan.meta["predicted_latency_ms"] <= target + 1e-9


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
    plan = kfp.latency.calibrate_latency_plan(
        model,
        "60%",
        table,
        criterion="l1_norm",
        iterations=3,
        tolerance=0.01,
        rounds=2,
        verbose=0,
        **QUICK_TIMING,
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
    ratios = plan.meta["measured_latency_ratios"]
    assert measured == pytest.approx(sum(ratios) / len(ratios), abs=1e-5)
    for step in steps:  # accepted only after a confirming timing
        if abs(step["measured"] / 0.6 - 1) <= 0.01:
            assert step["timings"] == 2
    if len(ratios) == 1:
        assert measured == pytest.approx(
            plan.meta["measured_latency_ms"] / plan.meta["measured_base_ms"],
            rel=1e-4,
        )
    assert all(ci >= 0 for ci in plan.meta["measured_latency_ci"])
    assert kfp.PruningPlan.from_json(plan.to_json()).meta["latency_iterations"]
    with pytest.raises(ValueError, match="cannot be reached"):  # before any timing
        kfp.latency.calibrate_latency_plan(model, "0.1%", table, verbose=0)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="converts with TensorFlow"
)
def test_calibrate_confirms_a_plan_before_accepting_it():
    pytest.importorskip("ai_edge_litert")
    model = small_model()
    plan = kfp.latency.calibrate_latency_plan(
        model,
        "60%",
        synthetic_table(model),
        criterion="l1_norm",
        iterations=3,
        tolerance=0.99,  # a measured ratio of at most 1.194 is accepted
        confirmations=2,
        rounds=2,
        verbose=0,
        **QUICK_TIMING,
    )
    steps = plan.meta["latency_iterations"]
    ratios = plan.meta["measured_latency_ratios"]
    mean = sum(ratios) / len(ratios)
    assert plan.meta["measured_latency_ratio"] == pytest.approx(mean, abs=1e-5)
    for step in steps:  # accepted only after two confirming timings
        if abs(step["measured"] / 0.6 - 1) <= 0.99:
            assert step["timed"] and step["timings"] == 3
            assert step is steps[-1]
    if abs(mean / 0.6 - 1) <= 0.99:  # the usual case, unless the machine is busy
        assert len(ratios) == 3 and len(set(ratios)) > 1  # three timings


@pytest.mark.slow  # calibrates with the CLI's default timing (a minute)
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
        ({"confirmations": -1}, "confirmations"),
        ({"min_round_ms": -1}, "min_round_ms"),
        ({"min_round_ms": math.inf}, "min_round_ms"),
        ({"target_ci": 0}, "target_ci"),
        ({"max_seconds": 0}, "max_seconds"),
    ],
)
def test_calibrate_rejects_bad_arguments(kwargs, match):
    model = small_model()
    args = {"latency_table": synthetic_table(model), **kwargs}
    with pytest.raises(ValueError, match=match):
        kfp.latency.calibrate_latency_plan(model, "60%", verbose=0, **args)
    with pytest.raises(TypeError, match="latency_table"):
        kfp.latency.calibrate_latency_plan(model, "60%", {"units": []})
    with pytest.raises(TypeError, match="rounds"):
        kfp.latency.calibrate_latency_plan(
            model, "60%", synthetic_table(model), rounds="3"
        )


def test_calibrate_checks_a_table_changed_after_it_was_made():
    model = small_model()
    table = synthetic_table(model)
    table.settings["num_threads"] = "four"  # not "invalid literal for int()"
    with pytest.raises(ValueError, match=r"^Corrupt latency table: settings\.num_"):
        kfp.latency.calibrate_latency_plan(model, "60%", table, verbose=0)
    table = synthetic_table(model)
    table.model_ms = math.nan
    with pytest.raises(ValueError, match=r"^Corrupt latency table: model_ms"):
        kfp.latency.calibrate_latency_plan(model, "60%", table, verbose=0)


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="JAX/PyTorch")
def test_calibrate_needs_tensorflow():
    model = small_model()
    with pytest.raises(RuntimeError, match="KERAS_BACKEND=tensorflow"):
        kfp.latency.calibrate_latency_plan(
            model, "60%", synthetic_table(model), verbose=0
        )
