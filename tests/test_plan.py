"""Tests of keras_filterprune/plan.py: the planner's options and plans as data."""

import dataclasses
import functools
import json
import math

import keras
import numpy as np
import pytest

from keras_filterprune import (
    FilterPruneWarning,
    PruningCallback,
    PruningPlan,
    apply_plan,
    count_macs,
    mask_model,
    plan_pruning,
    score_filters,
)
from keras_filterprune._cost import cost_model
from keras_filterprune.graph import trace_channels
from keras_filterprune.plan import estimate_macs, recover_plan
from keras_filterprune.pruning_plan import GroupPlan
from tests import oracle
from tests._models import case_model, inputs_for, width

L = keras.layers


@functools.cache
def wide_model() -> keras.Model:
    """Wide enough (16-64 channels) that MAC/param targets can be met closely."""
    inputs = keras.Input((16, 16, 3))
    x = L.Conv2D(32, 3, padding="same", name="stem")(inputs)
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(x))
    y = L.Conv2D(48, 3, padding="same", activation="relu", name="r1")(x)
    y = L.BatchNormalization(name="r2_bn")(
        L.Conv2D(32, 3, padding="same", name="r2")(y)
    )
    x = L.Add(name="add")([x, y])
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    x = L.Conv2D(64, 1, activation="relu", name="pw")(x)
    s = L.GlobalAveragePooling2D(name="se_gap")(x)
    s = L.Dense(16, activation="relu", name="sq")(s)
    s = L.Reshape((1, 1, 64), name="se_shape")(L.Dense(64, "sigmoid", name="ex")(s))
    x = L.Multiply(name="se")([x, s])
    x = L.SeparableConv2D(40, 3, strides=2, padding="same", name="sep")(x)
    x = L.MaxPooling2D(2, name="pool")(x)  # 4 x 4 x 40
    x = L.Dense(24, activation="relu", name="fc")(L.Flatten(name="flat")(x))
    return oracle.randomize(
        keras.Model(inputs, L.Dense(10, name="head")(x), name="wide")
    )


def _kept(plan):
    return {g.id: len(g.keep) for g in plan.groups}


def _prunable(plan):
    return [g for g in plan.groups if not g.frozen]


# ---------------------------------------------------------------------------
# Plans as data
# ---------------------------------------------------------------------------


def test_json_round_trip_and_file(tmp_path):
    plan = plan_pruning(wide_model(), 0.5, "l1_norm")
    text = plan.to_json()
    again = PruningPlan.from_json(text)
    assert again.get_config() == plan.get_config()
    assert json.loads(text)["format"] == "keras_filterprune.PruningPlan/1"
    path = tmp_path / "plan.json"
    plan.save(path)
    loaded = PruningPlan.load(str(path))
    assert loaded.get_config() == plan.get_config()
    assert loaded.kept_filters("r2") == plan.kept_filters("stem")
    assert isinstance(loaded.groups[0], GroupPlan)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_summary_and_repr():
    plan = plan_pruning(
        case_model("concat_frozen_branch"), 0.5, "l1_norm", exclude=["f"]
    )
    lines = plan.summary().splitlines()
    assert lines[0] == (
        "PruningPlan for 'concat_frozen_branch' (criterion=l1_norm, ratio=0.5, "
        "group_reduction=mean)"
    )
    assert lines[2].split() == ["0", "4/8", "stem"]
    assert (
        "4/4" in lines[3]
        and "[frozen: excluded by the user (at layer 'f')]" in lines[3]
    )
    assert lines[-2] == "total: 17/26 channels kept, 2 frozen of 5 groups"
    # The predicted MACs and params are those of the model apply_plan builds.
    pruned = apply_plan(case_model("concat_frozen_branch"), plan)
    before, after = plan.meta["macs"]
    assert after == count_macs(pruned) and before > after
    assert plan.meta["params"][1] == pruned.count_params()
    assert (
        lines[-1].startswith("predicted: MACs ")
        and f"({after / before:.2f}×)" in lines[-1]
    )
    assert repr(plan) == "<PruningPlan model='concat_frozen_branch' groups=5 removed=9>"


def test_replay_on_a_fresh_copy_gives_the_same_model(tmp_path):
    model = case_model("residual_projection")
    plan = plan_pruning(model, 0.5, "geometric_median")
    plan.save(tmp_path / "p.json")
    fresh = oracle.copy_model(model)
    replayed = apply_plan(fresh, PruningPlan.load(tmp_path / "p.json"))
    x = inputs_for(model)
    np.testing.assert_allclose(
        oracle.outputs(replayed, x)[0],
        oracle.outputs(apply_plan(model, plan), x)[0],
        rtol=0,
        atol=1e-6,
    )
    assert [w.shape for w in replayed.weights] == [
        w.shape for w in apply_plan(model, plan).weights
    ]


def test_plan_from_another_model_names_the_first_mismatching_layer():
    plan = plan_pruning(case_model("plain_chain"), 0.5, "l1_norm")
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = L.ReLU(name="relu1")(L.BatchNormalization(name="bn1")(x))
    x = L.Conv2D(10, 3, padding="same", name="c2")(x)  # 12 in the plan
    x = L.Conv2D(6, 3, name="c3")(x)
    x = L.Dense(3, name="head")(L.GlobalAveragePooling2D(name="head_gap")(x))
    other = keras.Model(inputs, x)
    with pytest.raises(
        ValueError, match="layer 'c2' has 10 filters in the model but 12"
    ):
        apply_plan(other, plan)
    with pytest.raises(ValueError, match="names layer 'c1', which model 'wide'"):
        apply_plan(wide_model(), plan)


def test_a_plan_cannot_remove_frozen_channels():
    model = case_model("layer_norm")
    config = plan_pruning(model, 0.5, "l1_norm").get_config()
    config["groups"][0]["keep"] = [0, 1, 2]  # the stem group, frozen by LayerNorm
    # A plan file that says so itself is corrupt ...
    with pytest.raises(
        ValueError,
        match=r"Corrupt pruning plan: groups\[0\]\.keep: a frozen group keeps all "
        "its channels",
    ):
        PruningPlan.from_config(config)
    # ... and one that says nothing is refused by the model.
    config["groups"][0]["frozen"] = None
    with pytest.raises(ValueError, match="cannot be pruned in this model: LayerNorm"):
        apply_plan(model, PruningPlan.from_config(config))
    with pytest.raises(TypeError, match="must be a keras_filterprune.PruningPlan"):
        apply_plan(model, config)


def test_a_frozen_group_of_a_plan_file_keeps_all_its_channels(tmp_path):
    """A group the file marks frozen but whose `keep` drops channels is corrupt,
    whatever the model says of that group (F12)."""
    model = wide_model()
    config = plan_pruning(model, 0.5, "l1_norm").get_config()
    i, group = next(
        (i, g) for i, g in enumerate(config["groups"]) if len(g["keep"]) < g["width"]
    )
    group["frozen"] = "frozen by hand"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(config))
    match = rf"groups\[{i}\]\.keep: a frozen group keeps all its channels"
    with pytest.raises(ValueError, match="Corrupt pruning plan: " + match):
        PruningPlan.from_config(config)
    with pytest.raises(ValueError, match=match):
        PruningPlan.load(path)
    # Frozen groups that keep everything (as `exclude` writes them) load.
    plan = plan_pruning(model, 0.5, "l1_norm", exclude=["r1"])
    assert PruningPlan.from_json(plan.to_json()).group_of("r1").frozen


def test_a_plan_naming_a_producer_the_model_lacks_does_not_match():
    """An unknown producer is refused by every function that matches a plan."""
    model = wide_model()
    config = plan_pruning(model, 0.5, "l1_norm").get_config()
    group = config["groups"][1]  # r1's
    group["producers"]["nope"] = list(range(group["width"]))
    plan = PruningPlan.from_config(config)
    for use in (apply_plan, mask_model, estimate_macs):
        with pytest.raises(
            ValueError,
            match="does not match the model: it names layer 'nope', which model "
            "'wide' does not have",
        ):
            use(model, plan)


def test_a_plan_applies_to_the_model_built_again_in_the_same_session():
    """Unnamed layers (BatchNorm, ReLU, Add, pooling) get new automatic names
    when the model is built again: a plan matches by its producers and groups."""

    def build():
        inputs = keras.Input((8, 8, 3))
        x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
        y = keras.layers.Conv2D(8, 3, padding="same", name="c2")(x)
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([x, y]))
        return keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="net")

    plan = PruningPlan.from_json(plan_pruning(build(), 0.5, "l1_norm").to_json())
    again = build()
    pruned = apply_plan(again, plan)
    assert pruned.get_layer("c1").filters == 4


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "must be JSON"),
        ("[]", "Not a keras-filterprune pruning plan"),
        ('{"format": "other/1", "groups": []}', "Not a keras-filterprune"),
        ('{"format": "keras_filterprune.PruningPlan/1"}', "Corrupt pruning plan"),
        (
            '{"format": "keras_filterprune.PruningPlan/1", "groups": [], "notes": 1}',
            "Corrupt pruning plan: notes: unknown field .*keep your own data in",
        ),
        (
            '{"format": "keras_filterprune.PruningPlan/1", "groups": [{"id": 0}]}',
            "Corrupt pruning plan",
        ),
        (
            '{"format": "keras_filterprune.PruningPlan/1", "groups": [{"id": 0, '
            '"width": 2, "producers": {"c": [0, 1]}, "members": ["c"], '
            '"keep": [0, 5]}]}',
            r"keeps channels outside \[0, 2\)",
        ),
        (
            '{"format": "keras_filterprune.PruningPlan/1", "groups": [{"id": 0, '
            '"width": "two", "producers": {}, "members": [], "keep": []}]}',
            "Corrupt pruning plan",
        ),
    ],
)
def test_corrupt_plans_are_value_errors(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        PruningPlan.from_json(text)
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        PruningPlan.load(path)


def test_binary_garbage_file_is_a_value_error(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b"\x00\x01\x02 plan")
    with pytest.raises(ValueError, match="must be JSON"):
        PruningPlan.load(path)


# ---------------------------------------------------------------------------
# Planner options
# ---------------------------------------------------------------------------


def test_ratio_zero_keeps_everything():
    plan = plan_pruning(wide_model(), 0.0, "l1_norm")
    assert plan.num_removed == 0
    assert all(len(g.keep) == g.width for g in plan.groups)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan")])
def test_ratio_outside_range_is_a_value_error(ratio):
    with pytest.raises(ValueError, match=r"`ratio` must be in \[0, 1\)"):
        plan_pruning(wide_model(), ratio)


@pytest.mark.parametrize("ratio", [True, "0.5", None])
def test_ratio_of_wrong_type_is_a_type_error(ratio):
    with pytest.raises(TypeError, match="`ratio` must be a number"):
        plan_pruning(wide_model(), ratio)


def test_extreme_ratio_keeps_min_filters():
    model = wide_model()
    plan = plan_pruning(model, 0.999999999, "l1_norm")
    assert all(len(g.keep) == 1 for g in _prunable(plan))
    plan = plan_pruning(model, 0.95, "l1_norm", min_filters=5)
    for g in _prunable(plan):
        assert len(g.keep) == max(5, math.ceil(0.05 * g.width)), g.producers
    pruned = apply_plan(model, plan)
    assert pruned.get_layer("stem").filters == 5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"round_to": 0}, "`round_to` must be an int >= 1"),
        ({"min_filters": 0}, "`min_filters` must be an int >= 1"),
        ({"group_reduction": "median"}, "`group_reduction` must be one of"),
        ({"target_macs": 1e6, "target_params": 1e5}, "at most one of"),
        ({"criterion": "nope"}, "nope"),
        ({"per_layer": {"nope": 0.5}}, "`per_layer` names layer 'nope'"),
        ({"per_layer": {"stem_bn": 0.5}}, "'stem_bn', which produces no prunable"),
        ({"per_layer": {"stem": 1.2}}, r"`per_layer\['stem'\]` must be in \[0, 1\)"),
        ({"exclude": ["nope"]}, "`exclude` names layer 'nope'"),
        ({"target_macs": 10}, "cannot be reached"),
        ({"criterion": "mean_activation", "greedy": True}, "needs a passive"),
        ({"criterion": "mean_activation"}, "needs `data`"),
    ],
)
def test_bad_arguments_are_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_pruning(wide_model(), **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"round_to": 2.0}, "`round_to` must be an int >= 1"),
        ({"min_filters": True}, "`min_filters` must be an int >= 1"),
        ({"global_ranking": "yes"}, "`global_ranking` must be a bool"),
        ({"per_layer": [("stem", 0.5)]}, "`per_layer` must be a dict"),
        ({"exclude": 5}, "`exclude` must be a layer name"),
        ({"target_macs": b"50%"}, "`target_macs` must be a number"),
    ],
)
def test_bad_argument_types_are_type_errors(kwargs, match):
    """One exception type and one message per bad value, the callback's too."""
    with pytest.raises(TypeError, match=match):
        plan_pruning(wide_model(), **kwargs)


@pytest.mark.parametrize("value", [float("nan"), -1.0, 0.0])
def test_bad_targets_are_value_errors_before_any_work(value):
    with pytest.raises(ValueError, match="`target_macs` must be in"):
        plan_pruning(wide_model(), target_macs=value)


@pytest.mark.parametrize(
    "kwargs, counter",
    [
        ({"target_macs": "50%"}, "count_macs"),
        ({"target_macs": " 30.5 % "}, "count_macs"),
        ({"target_params": "40%"}, "count_params"),
    ],
)
def test_budgets_as_percentages_of_the_unpruned_model(kwargs, counter):
    import keras_filterprune as kfp

    count = getattr(kfp, counter)
    model = wide_model()
    (value,) = kwargs.values()
    fraction = float(value.strip().rstrip("%")) / 100
    plan = plan_pruning(model, 0.0, "l1_norm", **kwargs)
    ratio = count(apply_plan(model, plan)) / count(model)
    assert fraction - 0.1 < ratio <= fraction, ratio
    # The same budget written as a count gives the same plan.
    name = next(iter(kwargs))
    absolute = plan_pruning(model, 0.0, "l1_norm", **{name: fraction * count(model)})
    assert [g.keep for g in absolute.groups] == [g.keep for g in plan.groups]


def test_infinite_target_prunes_nothing():
    plan = plan_pruning(wide_model(), target_params=float("inf"))
    assert plan.num_removed == 0


def test_per_layer_overrides_the_ratio():
    plan = plan_pruning(wide_model(), 0.5, "l1_norm", per_layer={"r1": 0.75, "r2": 0.0})
    assert len(plan.kept_filters("r1")) == 12  # 48 * 0.25
    assert len(plan.kept_filters("r2")) == 32  # the whole residual group is kept
    assert len(plan.kept_filters("stem")) == 32
    assert len(plan.kept_filters("pw")) == 32
    # a group with several producers gets the smallest of their ratios
    plan = plan_pruning(
        wide_model(), 0.5, "l1_norm", per_layer={"stem": 0.25, "r2": 0.75}
    )
    assert len(plan.kept_filters("stem")) == 24


def test_exclude_freezes_the_groups_of_a_layer():
    model = wide_model()
    plan = plan_pruning(model, 0.5, "l1_norm", exclude=["r1", "fc"])
    assert plan.group_of("r1").frozen == "excluded by the user (at layer 'r1')"
    assert plan.group_of("fc").frozen == "excluded by the user (at layer 'fc')"
    pruned = apply_plan(model, plan)
    assert pruned.get_layer("r1").filters == 48
    assert pruned.get_layer("fc").units == 24
    assert pruned.get_layer("pw").filters == 32
    # An excluded layer keeps its filters; the channels it reads may still go.
    assert pruned.get_layer("stem").filters == 16
    assert pruned.get_layer("r1").kernel.shape[2] == 16


def test_per_layer_cannot_prune_a_frozen_group():
    """A `per_layer` ratio for a group that cannot be pruned is an error naming
    the layer and why (P14), as a non-producer is; ratio 0 asks for nothing."""
    model = wide_model()
    with pytest.raises(
        ValueError,
        match=r"`per_layer` names 'head', whose channel group cannot be pruned: "
        r"model output .*per_layer\['head'\]=0.5",
    ):
        plan_pruning(model, 0.5, "l1_norm", per_layer={"head": 0.5})
    with pytest.raises(
        ValueError,
        match="`per_layer` names 'r2', whose channel group cannot be pruned: "
        "excluded by the user \\(at layer 'add'\\)",
    ):
        plan_pruning(model, 0.5, "l1_norm", per_layer={"r2": 0.5}, exclude=["add"])
    plan = plan_pruning(model, 0.5, "l1_norm", per_layer={"head": 0.0})
    assert len(plan.kept_filters("head")) == 10
    assert len(plan.kept_filters("r1")) == 24


@pytest.mark.parametrize(
    "model_name, per_layer, exclude, layer",
    [
        ("wide", {"r1": 0.5}, ["r1"], "r1"),
        ("wide", {"stem": 0.25, "r1": 0.3}, ["fc", "r1"], "r1"),
        ("nested_sequential", {"inner1": 0.5}, ["block/inner1"], "inner1"),
    ],
)
def test_a_layer_in_per_layer_and_exclude_is_refused(
    model_name, per_layer, exclude, layer
):
    """Contradictory (P50): one says prune its group so much, the other never."""
    model = wide_model() if model_name == "wide" else case_model(model_name)
    with pytest.raises(
        ValueError,
        match=f"Layer '{layer}' is both in `per_layer` .* and in `exclude` .*Remove "
        "it from one of them",
    ):
        plan_pruning(model, 0.5, "l1_norm", per_layer=per_layer, exclude=exclude)


def test_a_ratio_of_0_for_an_excluded_layer_asks_nothing():
    plan = plan_pruning(wide_model(), 0.5, per_layer={"r1": 0.0}, exclude=["r1"])
    assert len(plan.kept_filters("r1")) == plan.group_of("r1").width


@functools.cache
def _latency_case():
    from tests.test_latency import small_model, synthetic_table

    model = small_model("latency_case")
    return model, synthetic_table(model, out_step=8)


@pytest.mark.parametrize("budget", ["target_macs", "target_params", "target_latency"])
@pytest.mark.parametrize("value", ["150%", " 100.5 % ", "0%"])
def test_every_budget_refuses_a_percentage_outside_0_100(budget, value):
    """`target_latency='150%'` is refused as `target_macs='150%'` is (L24), not
    turned into a plan that removes nothing."""
    model, table = _latency_case()
    with pytest.raises(ValueError, match=rf"`{budget}` as a .*in \(0%, 100%\]"):
        plan_pruning(model, latency_table=table, **{budget: value})


def test_a_latency_budget_of_100_percent_removes_nothing():
    model, table = _latency_case()
    plan = plan_pruning(model, target_latency="100%", latency_table=table)
    assert plan.num_removed == 0


@pytest.mark.parametrize(
    "name, value",
    [
        ("ratio", lambda table: np.float32(0.25)),
        ("per_layer", lambda table: {"c2": np.float64(0.75)}),
        ("target_macs", lambda table: np.int64(2_000_000)),
        ("target_params", lambda table: np.float32(40_000.0)),
        ("target_latency", lambda table: np.float32(0.6 * table.model_ms)),
        ("round_to", lambda table: np.int64(16)),
        ("min_filters", lambda table: np.int32(40)),
        ("verbose", lambda table: np.int64(0)),
    ],
)
def test_numpy_scalars_are_numbers_for_every_option(name, value):
    """A NumPy scalar plans as the Python number it holds (P09: a float32
    `target_latency` was refused while an int64 `target_macs` was taken)."""
    model, table = _latency_case()
    value = value(table)
    plain = (
        {k: v.item() for k, v in value.items()}
        if isinstance(value, dict)
        else value.item()
    )
    options = {"ratio": 0.5, "latency_table": table}
    plan = plan_pruning(model, **{**options, name: value})
    same = plan_pruning(model, **{**options, name: plain})
    assert [g.keep for g in plan.groups] == [g.keep for g in same.groups]
    assert plan.num_removed > 0


@pytest.mark.parametrize(
    "verbose, error", [(-1, ValueError), ("1", TypeError), (0.5, TypeError)]
)
def test_verbose_is_checked_as_the_callback_checks_it(verbose, error):
    from keras_filterprune import PruningCallback

    with pytest.raises(error, match="`verbose` must be an int >= 0") as from_plan:
        plan_pruning(wide_model(), 0.5, verbose=verbose)
    with pytest.raises(error) as from_callback:
        PruningCallback(verbose=verbose)
    assert str(from_plan.value) == str(from_callback.value)


def test_verbose_true_is_one_as_in_keras():
    from keras_filterprune import PruningCallback

    assert plan_pruning(wide_model(), 0.5, verbose=False).num_removed > 0
    assert PruningCallback(verbose=True).verbose == 1


def test_cost_model_counts_params_exactly():
    """The planner's estimate of parameters equals the rebuilt model's count."""
    model = wide_model()
    graph = trace_channels(model)
    cost = cost_model(graph, "params")
    macs = cost_model(graph, "macs")
    for ratio, criterion in [(0.3, "l1_norm"), (0.5, "random"), (0.8, "l2_norm")]:
        plan = plan_pruning(model, ratio, criterion)
        flags = graph.element_keep(plan.keep_masks())
        pruned = apply_plan(model, plan)
        assert cost(flags) == pruned.count_params()
        # MACs: never under the real count (a target is never exceeded), and close.
        real = count_macs(pruned)
        assert real <= macs(flags) <= 1.02 * real


@pytest.mark.parametrize("fraction", [0.7, 0.4, 0.25])
@pytest.mark.parametrize("target", ["macs", "params"])
def test_targets_are_met_and_close(target, fraction):
    model = wide_model()
    before = count_macs(model) if target == "macs" else model.count_params()
    goal = fraction * before
    plan = plan_pruning(model, criterion="l1_norm", **{f"target_{target}": goal})
    pruned = apply_plan(model, plan)
    after = count_macs(pruned) if target == "macs" else pruned.count_params()
    assert after <= goal
    assert after >= 0.9 * goal, (after / before, plan.meta)
    assert 0 < plan.meta["ratio"] < 1


def test_target_above_the_model_cost_prunes_nothing():
    model = wide_model()
    plan = plan_pruning(model, target_params=2 * model.count_params())
    assert plan.num_removed == 0 and plan.meta["ratio"] == 0.0


def test_round_to_keeps_multiples():
    plan = plan_pruning(wide_model(), 0.6, "l1_norm", round_to=8)
    for g in _prunable(plan):
        assert len(g.keep) % 8 == 0 or len(g.keep) == g.width, (g.width, len(g.keep))
    assert len(plan.kept_filters("r1")) == 24  # ceil(19.2) = 20 -> 24
    assert len(plan.kept_filters("sq")) == 8  # ceil(6.4) = 7 -> 8


def test_group_reduction_of_a_residual_group():
    """The group score is the reduction of its producers' max-normalised scores."""
    model = case_model("residual_identity")
    scores = score_filters(model, "l1_norm")
    a = scores["stem"] / np.max(np.abs(scores["stem"]))
    b = scores["r2"] / np.max(np.abs(scores["r2"]))
    expected = {
        "mean": (a + b) / 2,
        "sum": a + b,
        "max": np.maximum(a, b),
        "l2": np.sqrt(a**2 + b**2),
    }
    keeps = set()
    for how, want in expected.items():
        plan = plan_pruning(model, 0.5, "l1_norm", group_reduction=how)
        group = plan.group_of("stem")
        np.testing.assert_allclose(group.scores, want, rtol=1e-12)
        assert group.keep == sorted(np.argsort(-want, kind="stable")[:4].tolist())
        assert plan.meta["group_reduction"] == how
        keeps.add(tuple(group.keep))
    assert len(keeps) > 1, "the reductions should not all agree on this model"


def test_global_ranking_removes_the_globally_lowest_channels():
    model = wide_model()
    plan = plan_pruning(model, 0.5, "l1_norm", global_ranking=True)
    groups = _prunable(plan)
    total = sum(g.width for g in groups)
    removed = sum(g.removed for g in groups)
    assert abs(removed - total // 2) <= len(groups)  # up to one per group (min 1)
    # Threshold property on per-group max-normalised scores.
    worst_kept = min(
        min(np.asarray(g.scores)[g.keep] / np.max(np.abs(g.scores))) for g in groups
    )
    best_removed = max(
        max(np.delete(np.asarray(g.scores), g.keep) / np.max(np.abs(g.scores)))
        for g in groups
        if g.removed
    )
    assert best_removed <= worst_kept
    uniform = plan_pruning(model, 0.5, "l1_norm")
    assert _kept(plan) != _kept(uniform)
    assert plan.meta["global_ranking"] is True


def test_greedy_scores_ignore_removed_input_channels():
    model = case_model("plain_chain")
    plan = plan_pruning(model, 0.5, "l1_norm", greedy=True)
    kept_c1 = plan.kept_filters("c1")
    kernel = model.get_layer("c2").kernel.numpy()[:, :, kept_c1, :]
    s = np.abs(kernel).reshape(-1, 12).sum(0)
    np.testing.assert_allclose(plan.group_of("c2").scores, s / s.max(), rtol=1e-6)
    full = np.abs(model.get_layer("c2").kernel.numpy()).reshape(-1, 12).sum(0)
    assert not np.allclose(s / s.max(), full / full.max())
    assert plan.meta["greedy"] is True
    x = inputs_for(model)
    oracle.assert_close(
        oracle.outputs(apply_plan(model, plan), x),
        oracle.outputs(
            oracle.zero_consumers(
                model,
                {
                    "c2": oracle.removed(plan, "c1"),
                    "c3": oracle.removed(plan, "c2"),
                    "head": oracle.removed(plan, "c3"),
                },
            ),
            x,
        ),
    )


def test_greedy_through_a_depthwise_multiplier():
    plan = plan_pruning(case_model("separable"), 0.5, "l2_norm", greedy=True)
    assert len(plan.kept_filters("sep")) == 6
    assert width(apply_plan(case_model("separable"), plan).get_layer("pw")) == 5


def test_criterion_callable_and_precomputed_scores():
    model = case_model("plain_chain")

    def my_l1(kernel):
        return np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(0)

    by_fn = plan_pruning(model, 0.5, my_l1)
    by_name = plan_pruning(model, 0.5, "l1_norm")
    assert _kept(by_fn) == _kept(by_name)
    assert [g.keep for g in by_fn.groups] == [g.keep for g in by_name.groups]
    assert by_fn.meta["criterion"] == "my_l1"
    scores = score_filters(model, "l1_norm")
    scores["c2"] = -scores["c2"]  # reversed ranking
    reused = plan_pruning(model, 0.5, scores=scores)
    assert reused.group_of("c2").keep != by_name.group_of("c2").keep


def test_active_criterion_plans_with_data():
    model = case_model("plain_chain")
    data = np.random.default_rng(3).normal(size=(8, 12, 12, 3)).astype("float32")
    plan = plan_pruning(model, 0.5, "mean_activation", data=data)
    assert len(plan.kept_filters("c2")) == 6
    assert plan.meta["criterion"] == "mean_activation"


# ---------------------------------------------------------------------------
# within=, recovery from zeros, MAC estimates (the planner owns them)
# ---------------------------------------------------------------------------


def test_plan_within_a_previous_plan_only_removes_more():
    model = wide_model()
    first = plan_pruning(model, 0.25, "l1_norm")
    masked = mask_model(model, first)
    second = plan_pruning(masked, 0.5, "l1_norm", within=first)
    for g1, g2 in zip(first.groups, second.groups):
        assert set(g2.keep) <= set(g1.keep)
        if not g2.frozen:
            assert len(g2.keep) == min(len(g1.keep), len(plan_keep(g2.width, 0.5)))
    # A smaller ratio keeps the previous widths (removed filters never return).
    third = plan_pruning(masked, 0.1, "l1_norm", within=first)
    assert [g.keep for g in third.groups] == [g.keep for g in first.groups]
    with pytest.raises(TypeError, match="must be a keras_filterprune.PruningPlan"):
        plan_pruning(model, 0.5, within={"groups": []})


def plan_keep(width, ratio):
    return range(math.ceil((1 - ratio) * width))


def test_recover_plan_finds_the_zeroed_filters():
    model = wide_model()
    assert recover_plan(model) is None
    plan = plan_pruning(model, 0.5, "l2_norm")
    recovered = recover_plan(mask_model(model, plan))
    assert [g.keep for g in recovered.groups] == [g.keep for g in plan.groups]
    assert recovered.meta == {"recovered": True}


@pytest.mark.parametrize(
    "case", ["residual_projection", "separable", "flatten_dense", "se_block"]
)
def test_estimate_macs_equals_the_pruned_models_count(case):
    model = case_model(case)
    for ratio in (0.3, 0.6):
        plan = plan_pruning(model, ratio, "l1_norm")
        assert estimate_macs(model, plan) == count_macs(apply_plan(model, plan))


# -- prune_norms: LayerNorm / GroupNorm / UnitNorm over channels, opt-in ---------
def _norm_model(norm: keras.layers.Layer, filters: int = 16) -> keras.Model:
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = norm(L.Conv2D(filters, 3, padding="same", name="stem")(inputs))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c")(x)
    outputs = L.Dense(3, name="head")(L.GlobalAveragePooling2D()(x))
    return oracle.randomize(keras.Model(inputs, outputs), 3)


def test_norm_groups_are_frozen_by_default_and_exact():
    model = _norm_model(keras.layers.LayerNormalization(name="ln"))
    plan = plan_pruning(model, 0.5)
    assert "prune_norms=True" in plan.group_of("stem").frozen
    assert len(plan.kept_filters("stem")) == 16 and "prune_norms" not in plan.meta
    x = inputs_for(model)
    y = oracle.outputs(apply_plan(model, plan), x)
    oracle.assert_close(y, oracle.outputs(mask_model(model, plan), x))


def test_prune_norms_slices_layer_norm_and_says_it_is_approximate(tmp_path):
    model = _norm_model(keras.layers.LayerNormalization(name="ln"))
    before = oracle.snapshot(model)
    plan = plan_pruning(model, 0.5, prune_norms=True)
    group = plan.group_of("stem")
    assert group.frozen is None and len(group.keep) == 8
    assert plan.meta["prune_norms"] is True
    assert plan.meta["approximate_groups"] == [group.id]
    pruned = apply_plan(model, plan)
    assert pruned.get_layer("ln").gamma.shape == (8,)
    oracle.assert_untouched(model, before)
    # Not the masked model: the statistics are over 8 channels now.
    x = inputs_for(model)
    y = oracle.outputs(pruned, x)[0]
    masked = oracle.outputs(mask_model(model, plan), x)[0]
    gap = float(np.abs(y - masked).max() / np.abs(masked).max())
    print(f"\nprune_norms LayerNorm: |pruned - masked| / |masked| = {gap:.3f}")
    assert np.isfinite(y).all() and gap > 1e-3
    # The opt-in travels with the plan file.
    plan.save(tmp_path / "p.json")
    replay = apply_plan(model, PruningPlan.load(tmp_path / "p.json"))
    oracle.assert_close(oracle.outputs(replay, x), [y])


def test_prune_norms_is_recovered_by_fine_tuning():
    model = _norm_model(keras.layers.LayerNormalization(name="ln"))
    pruned = apply_plan(model, plan_pruning(model, 0.5, prune_norms=True))
    x = np.random.default_rng(1).normal(size=(256, 8, 8, 3)).astype("float32")
    target = model.predict(x, verbose=0)

    def error():
        return float(np.mean((pruned.predict(x, verbose=0) - target) ** 2))

    start = error()
    pruned.compile(optimizer=keras.optimizers.Adam(3e-3), loss="mse")
    pruned.fit(x, target, epochs=30, batch_size=64, verbose=0)
    assert error() < 0.5 * start, (start, error())


def test_prune_norms_keeps_group_norm_groups_whole():
    norm = keras.layers.GroupNormalization(groups=4, name="gn")
    model = _norm_model(norm, filters=16)
    plan = plan_pruning(model, 0.5, prune_norms=True)
    kept = np.asarray(plan.kept_filters("stem"))
    assert len(kept) == 8
    blocks = kept.reshape(-1, 4)  # whole normalisation groups of 4 channels
    assert (blocks - blocks[:, :1] == np.arange(4)).all()
    assert (blocks[:, 0] % 4 == 0).all()
    pruned = apply_plan(model, plan)
    assert pruned.get_layer("gn").groups == 2
    assert np.isfinite(oracle.outputs(pruned, inputs_for(model))[0]).all()


def test_prune_norms_unit_normalization():
    model = _norm_model(keras.layers.UnitNormalization(name="un"))
    assert plan_pruning(model, 0.5).group_of("stem").frozen
    plan = plan_pruning(model, 0.5, prune_norms=True)
    pruned = apply_plan(model, plan)
    assert pruned.get_layer("stem").filters == 8


def test_prune_norms_must_be_a_bool():
    model = _norm_model(keras.layers.LayerNormalization(name="ln"))
    with pytest.raises(TypeError, match="prune_norms"):
        plan_pruning(model, 0.5, prune_norms="yes")


# -- importance="taylor": a latency budget spent where the loss suffers least --------
def _two_branch_model():
    """Branches `a` and `b` cost alike; the head ignores `b` (zero weights), so
    the loss gradient reaching `b` is zero and its Taylor importance too."""
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(32, 3, padding="same", name="a")(inputs)
    b = keras.layers.Conv2D(32, 3, padding="same", name="b")(inputs)
    pooled = [keras.layers.GlobalAveragePooling2D()(t) for t in (a, b)]
    x = keras.layers.Concatenate()(pooled)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(x))
    kernel, bias = model.get_layer("head").get_weights()
    kernel[32:] = 0.0
    model.get_layer("head").set_weights([kernel, bias])
    # b's filters are the larger by L1: the criterion alone would rank b first.
    weights = model.get_layer("b").get_weights()
    model.get_layer("b").set_weights([weights[0] * 10, weights[1]])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_taylor_importance_spends_a_latency_budget_where_the_loss_suffers_least():
    from tests.test_latency import synthetic_table

    model = _two_branch_model()
    table = synthetic_table(model, out_step=8)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, size=16)
    plan = plan_pruning(
        model, criterion="l1_norm", target_latency="70%", latency_table=table,
        importance="taylor", data=(x, y),
    )  # fmt: skip
    assert plan.meta["importance"] == "taylor"
    assert plan.meta["predicted_latency_ms"] <= 0.7 * table.model_ms + 1e-9
    assert len(plan.kept_filters("a")) == 32  # the branch the loss needs: whole
    assert len(plan.kept_filters("b")) < 32
    # Within a group, the criterion still chooses which channels go.
    l1 = np.abs(model.get_layer("b").get_weights()[0]).sum(axis=(0, 1, 2))
    kept = plan.kept_filters("b")
    assert sorted(kept) == sorted(np.argsort(-l1, kind="stable")[: len(kept)])
    # Without it, the per-group-normalised L1 scores decide: b is not singled out.
    default = plan_pruning(
        model, criterion="l1_norm", target_latency="70%", latency_table=table
    )
    assert "importance" not in default.meta


def test_importance_is_checked_at_the_boundary():
    from tests.test_latency import synthetic_table

    model = _two_branch_model()
    table = synthetic_table(model, out_step=8)
    x = np.zeros((4, 8, 8, 3), "float32")
    budget = dict(target_latency="70%", latency_table=table)
    with pytest.raises(ValueError, match=r"`importance` must be one of \('taylor',\)"):
        plan_pruning(model, importance="fisher", data=(x, np.zeros(4)), **budget)
    with pytest.raises(ValueError, match=r"importance='taylor'.*data=\(x, y\)"):
        plan_pruning(model, importance="taylor", **budget)
    with pytest.raises(ValueError, match="importance='taylor'.*target_latency="):
        plan_pruning(model, 0.5, importance="taylor", data=(x, np.zeros(4)))


# -- importance=SensitivityResult: each group thinned only as its curve allows --------
def test_sensitivity_curves_spend_a_latency_budget_where_the_score_suffers_least():
    from keras_filterprune import sensitivity_analysis
    from tests.test_latency import synthetic_table

    model = _two_branch_model()
    table = synthetic_table(model, out_step=8)
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype("float32")
    reference = keras.ops.convert_to_numpy(model(x))

    def fidelity(pruned):  # higher is better: the outputs kept
        outputs = keras.ops.convert_to_numpy(pruned(x))
        return -float(np.mean((outputs - reference) ** 2))

    curves = sensitivity_analysis(
        model, fidelity, criterion="l1_norm", ratios=(0.25, 0.5, 0.75), verbose=0
    )
    budget = dict(criterion="l1_norm", target_latency="70%", latency_table=table)
    plan = plan_pruning(model, importance=curves, **budget)
    assert plan.meta["importance"] == "sensitivity"
    assert plan.meta["predicted_latency_ms"] <= 0.7 * table.model_ms + 1e-9
    assert len(plan.kept_filters("a")) == 32  # the head reads a: its curve drops
    assert len(plan.kept_filters("b")) < 32  # b's curve is flat
    # Within a group the criterion still chooses which channels go.
    l1 = np.abs(model.get_layer("b").get_weights()[0]).sum(axis=(0, 1, 2))
    kept = plan.kept_filters("b")
    assert sorted(kept) == sorted(np.argsort(-l1, kind="stable")[: len(kept)])
    # The plan is plain data, and the callback takes the same option.
    assert PruningPlan.from_json(plan.to_json()).meta["importance"] == "sensitivity"


def test_sensitivity_curves_keep_a_group_above_its_steep_end():
    """The per-group-normalised L1 pricing drains the group whose channels save
    the most time down to `min_filters`; measured curves that fall off a cliff
    past half the group keep it above the cliff."""
    from keras_filterprune.sensitivity import SensitivityResult
    from tests.test_latency import synthetic_table

    model = _two_branch_model()
    weights = model.get_layer("b").get_weights()  # equal L1 in both branches
    model.get_layer("b").set_weights([weights[0] / 10, weights[1]])
    table = synthetic_table(model, out_step=1)
    ratios = (0.0, 0.25, 0.5, 0.75, 0.9)
    steep = [0.0, 0.0, 0.01, 0.5, 0.9]  # a cliff past half
    gentle = [0.0, 0.05, 0.1, 0.15, 0.2]
    curves = SensitivityResult(
        baseline=1.0,
        curves={
            "a": [(r, 1.0 - d) for r, d in zip(ratios, steep, strict=True)],
            "b": [(r, 1.0 - d) for r, d in zip(ratios, gentle, strict=True)],
        },
        groups={"a": ["a"], "b": ["b"]},
        widths={"a": 32, "b": 32},
        metric="accuracy",
        criterion="l1_norm",
    )
    budget = dict(criterion="l1_norm", target_latency="60%", latency_table=table)
    plan = plan_pruning(model, importance=curves, **budget)
    assert plan.meta["predicted_latency_ms"] <= 0.6 * table.model_ms + 1e-9
    assert len(plan.kept_filters("a")) >= 16  # never past a's cliff
    assert len(plan.kept_filters("b")) < 32  # b pays its share
    # The same budget with the groups' curves swapped swaps the widths.
    swapped = dataclasses.replace(
        curves, curves={"a": curves.curves["b"], "b": curves.curves["a"]}
    )
    other = plan_pruning(model, importance=swapped, **budget)
    assert len(other.kept_filters("b")) >= 16
    assert len(other.kept_filters("a")) < 32
    assert len(other.kept_filters("a")) == len(plan.kept_filters("b"))


def test_sensitivity_importance_is_checked_at_the_boundary():
    from keras_filterprune.sensitivity import SensitivityResult
    from tests.test_latency import synthetic_table

    model = _two_branch_model()
    table = synthetic_table(model, out_step=8)
    budget = dict(target_latency="70%", latency_table=table)
    points = [(0.0, 1.0), (0.5, 0.9)]
    good = SensitivityResult(
        1.0, {"a": points, "b": points}, {"a": ["a"], "b": ["b"]}, {"a": 32, "b": 32}
    )
    plan_pruning(model, importance=good, **budget)  # no data needed
    with pytest.raises(TypeError, match="`importance` must be None.*SensitivityResult"):
        plan_pruning(model, importance=good.to_dict(), **budget)
    with pytest.raises(ValueError, match="importance=<SensitivityResult>.*target_lat"):
        plan_pruning(model, 0.5, importance=good)
    with pytest.raises(
        FilterPruneWarning, match="criterion 'operator_norm'.*'l1_norm'"
    ):
        plan_pruning(model, criterion="l1_norm", importance=good, **budget)
    partial = SensitivityResult(1.0, {"a": points}, {"a": ["a"]}, {"a": 32})
    with pytest.raises(ValueError, match=r"no curve for the group of \['b'\]"):
        plan_pruning(model, importance=partial, **budget)
    narrow = SensitivityResult(
        1.0, {"a": points, "b": points}, {"a": ["a"], "b": ["b"]}, {"a": 16, "b": 32}
    )
    with pytest.raises(ValueError, match="16 channels in group 'a', but the model"):
        plan_pruning(model, importance=narrow, **budget)
    nan = SensitivityResult(
        1.0,
        {"a": [(0.0, 1.0), (0.5, float("nan"))], "b": points},
        {"a": ["a"], "b": ["b"]},
        {"a": 32, "b": 32},
    )
    with pytest.raises(ValueError, match="non-finite score.*group 'a'"):
        plan_pruning(model, importance=nan, **budget)
    with pytest.raises(ValueError, match="non-finite score or a ratio"):
        plan_pruning(
            model, importance=dataclasses.replace(nan, baseline=np.inf), **budget
        )
    for curves in (
        {"a": 0.5, "b": points},  # not a list of points
        {"a": [(0.0, 1.0, 2.0)], "b": points},  # not pairs
    ):
        bad = dataclasses.replace(good, curves=curves)
        with pytest.raises(ValueError, match="malformed curve for group 'a'"):
            plan_pruning(model, importance=bad, **budget)
    no_width = dataclasses.replace(good, widths={"b": 32})
    with pytest.raises(ValueError, match="no width for channels in group 'a'"):
        plan_pruning(model, importance=no_width, **budget)
    empty = dataclasses.replace(good, curves={"b": points})  # groups still name a
    with pytest.raises(ValueError, match=r"no curve for the group of \['a'\]"):
        plan_pruning(model, importance=empty, **budget)


def _chain_and_branch_model():
    """`a` feeds `c`, `b` does not: removing a channel of `a` saves time in two
    layers, so a budget priced by per-group-normalised scores drains `a`. One
    filter of `a` is 100x the others: a global ranking drains `a` too."""
    inputs = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(32, 3, padding="same", name="a")(inputs)
    c = keras.layers.Conv2D(32, 3, padding="same", name="c")(a)
    b = keras.layers.Conv2D(32, 3, padding="same", name="b")(inputs)
    pooled = [keras.layers.GlobalAveragePooling2D()(t) for t in (c, b)]
    x = keras.layers.Concatenate()(pooled)
    model = keras.Model(inputs, keras.layers.Dense(4, name="head")(x))
    kernel, bias = model.get_layer("a").get_weights()
    kernel[..., 0] *= 100
    model.get_layer("a").set_weights([kernel, bias])
    return model


def test_max_ratio_keeps_a_floor_under_a_latency_budget():
    """The default pricing drains the group whose channels save the most time
    down to `min_filters`; `max_ratio` bounds every group's loss, and the budget
    is still met by the others."""
    from tests.test_latency import synthetic_table

    model = _chain_and_branch_model()
    table = synthetic_table(model, out_step=1)
    budget = dict(criterion="l1_norm", target_latency="40%", latency_table=table)
    drained = plan_pruning(model, **budget)
    assert len(drained.kept_filters("a")) < 8  # hollowed
    plan = plan_pruning(model, max_ratio=0.75, **budget)
    assert min(len(plan.kept_filters(p)) for p in "abc") >= 8  # a quarter of 32
    assert plan.meta["predicted_latency_ms"] <= 0.4 * table.model_ms + 1e-9
    assert plan.meta["max_ratio"] == 0.75
    assert "max_ratio" not in drained.meta
    # The floor is rounded up to `round_to`, and one that leaves no room for the
    # budget says so.
    rounded = plan_pruning(model, max_ratio=0.7, round_to=8, **budget)
    assert min(len(rounded.kept_filters(p)) for p in "abc") >= 16  # 9.6 -> 16
    # Refused before any scoring, from the table's bound with the floor.
    assert table.min_latency_ms(1, 0.2) > 0.4 * table.model_ms > table.min_latency_ms()
    with pytest.raises(ValueError, match="with this latency table.*`max_ratio`=0.2"):
        plan_pruning(model, max_ratio=0.2, **budget)
    with pytest.raises(ValueError, match=r"`max_ratio` must be in \(0, 1\]"):
        table.min_latency_ms(1, 0)
    # The callback takes the option under the same name.
    callback = PruningCallback(epochs=[0], max_ratio=0.75, **budget)
    assert callback.get_config()["max_ratio"] == 0.75


def test_max_ratio_bounds_global_ranking_and_its_mac_budget():
    model = _chain_and_branch_model()
    unbounded = plan_pruning(model, 0.5, "l1_norm", global_ranking=True)
    assert len(unbounded.kept_filters("a")) < 8  # its normalised scores are low
    plan = plan_pruning(model, 0.5, "l1_norm", global_ranking=True, max_ratio=0.6)
    assert len(plan.kept_filters("a")) == math.ceil(0.4 * 32)
    macs = plan_pruning(
        model, criterion="l1_norm", global_ranking=True, max_ratio=0.6,
        target_macs="70%",
    )  # fmt: skip
    assert len(macs.kept_filters("a")) >= math.ceil(0.4 * 32)
    assert macs.meta["macs"][1] <= 0.7 * macs.meta["macs"][0]
    # `per_layer` ratios are taken as given.
    given = plan_pruning(
        model, 0.5, "l1_norm", global_ranking=True, max_ratio=0.6,
        per_layer={"a": 0.9},
    )  # fmt: skip
    assert len(given.kept_filters("a")) == math.ceil(0.1 * 32)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"max_ratio": 0.0}, ValueError, r"`max_ratio` must be in \(0, 1\]"),
        ({"max_ratio": 1.5}, ValueError, r"`max_ratio` must be in \(0, 1\]"),
        ({"max_ratio": float("nan")}, ValueError, r"`max_ratio` must be in"),
        ({"max_ratio": "0.5"}, TypeError, "`max_ratio` must be a number"),
        ({"max_ratio": True}, TypeError, "`max_ratio` must be a number"),
    ],
)
def test_max_ratio_is_checked_at_the_boundary(kwargs, error, match):
    with pytest.raises(error, match=match):
        plan_pruning(_two_branch_model(), **kwargs)
    with pytest.raises(error, match=match):
        PruningCallback(**kwargs)


def test_max_ratio_caps_a_uniform_ratio_and_a_schedule():
    """Whatever decides a group's width, it loses at most `max_ratio`: a uniform
    ratio above it is capped (and the plan says the ratio it applied), and so is
    every ratio of a callback's schedule."""
    from keras_filterprune import ConstantRatio

    model = _chain_and_branch_model()
    plan = plan_pruning(model, 0.8, "l1_norm", max_ratio=0.5)
    assert {len(plan.kept_filters(p)) for p in "abc"} == {16}
    assert plan.meta["ratio"] == 0.5
    assert _kept(plan) == _kept(plan_pruning(model, 0.5, "l1_norm"))
    # A schedule ending above `max_ratio` is legal, its ratios capped in fit.
    callback = PruningCallback(
        "l1_norm", schedule=ConstantRatio(0.9), max_ratio=0.4, mode="hard"
    )
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 3)).astype("float32")
    y = np.zeros((8,), "int32")
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, verbose=0, callbacks=[callback])
    assert min(len(callback.plan.kept_filters(p)) for p in "abc") >= 20  # 0.6 * 32
    assert callback.history[-1]["ratio"] == 0.4
