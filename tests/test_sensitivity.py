"""Sensitivity analysis (Li et al. 2017, §3.2): curves, suggestions, plots."""

from __future__ import annotations

import dataclasses
import functools

import keras
import numpy as np
import pytest

from keras_filterprune import (
    PruningPlan,
    apply_plan,
    plan_pruning,
    sensitivity_analysis,
)
from keras_filterprune.sensitivity import SensitivityResult

RATIOS = (0.25, 0.5, 0.75, 0.9)


def _task(n: int, seed: int):
    """Four noisy 8x8 prototypes: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    prototypes = np.random.default_rng(99).random((4, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 4, n)
    x = prototypes[y] + rng.normal(0, 0.25, (n, 8, 8, 1)).astype("float32")
    return x, y


@functools.cache
def _trained():
    """A small trained CNN with a residual pair (conv2 + conv3 tied by Add)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(
        inputs
    )
    a = keras.layers.Conv2D(12, 3, padding="same", name="conv2")(x)
    b = keras.layers.Conv2D(12, 1, name="conv3")(x)
    x = keras.layers.ReLU()(keras.layers.Add()([a, b]))
    x = keras.layers.MaxPooling2D()(x)
    outputs = keras.layers.Dense(4, name="head")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs, name="small")
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(*_task(512, 1), epochs=8, batch_size=64, verbose=0)
    return model


@functools.cache
def _result() -> SensitivityResult:
    return sensitivity_analysis(
        _trained(), data=_task(256, 2), ratios=RATIOS, verbose=0
    )


def test_curves_are_sane():
    model = _trained()
    result = _result()
    assert result.metric == "accuracy"
    assert result.baseline > 0.8  # the model learned the task
    # Two prunable groups: conv1, and the residual pair as one unit.
    assert set(result.curves) == {"conv1", "conv2"}
    assert sorted(result.groups["conv2"]) == ["conv2", "conv3"]
    assert result.widths == {"conv1": 8, "conv2": 12}
    assert result.ratios == list(RATIOS)
    for points in result.curves.values():
        assert points[0] == (0.0, result.baseline)
        assert [r for r, _ in points] == [0.0, *RATIOS]
        assert all(0.0 <= s <= 1.0 for _, s in points)
    # Removing 90% of a group costs accuracy; removing 25% costs little.
    worst = min(min(s for _, s in points) for points in result.curves.values())
    assert worst < result.baseline - 0.05
    # The model is untouched: its weights are the trained ones.
    x, y = _task(256, 2)
    assert model.evaluate(x, y, verbose=0, return_dict=True)["accuracy"] == (
        pytest.approx(result.baseline)
    )


def test_points_match_the_physically_pruned_model():
    """A masked evaluation equals the accuracy of `apply_plan`'s smaller model."""
    model = _trained()
    x, y = _task(256, 2)
    plan = plan_pruning(model, 0.5)
    for name, points in _result().curves.items():
        gid = plan.group_of(name).id
        groups = [
            g
            if g.id == gid
            else type(g)(**{**g.__dict__, "keep": list(range(g.width))})
            for g in plan.groups
        ]
        small = apply_plan(model, PruningPlan(groups, plan.model_name))
        acc = float(np.mean(np.argmax(small.predict(x, verbose=0), -1) == y))
        assert dict(points)[0.5] == pytest.approx(acc)


@pytest.mark.parametrize("max_drop", [0.0, 0.02, 0.1, 0.3])
def test_suggested_ratio_respects_the_target_drop(max_drop):
    result = _result()
    suggested = result.suggest_ratios(max_drop)
    assert set(suggested) == {"conv1", "conv2", "conv3"}
    assert suggested["conv2"] == suggested["conv3"]  # one unit
    for name, points in result.curves.items():
        ratio = suggested[name]
        scores = dict(points)
        # Every ratio up to the suggestion keeps the drop within the target ...
        assert all(
            result.baseline - s <= max_drop + 1e-9 for r, s in points if r <= ratio
        )
        # ... and the next tested ratio would not.
        larger = [r for r, _ in points if r > ratio]
        if larger:
            assert result.baseline - scores[min(larger)] > max_drop
    # The suggestion plugs into the planner.
    plan = plan_pruning(_trained(), 0.0, per_layer=suggested)
    assert len(plan.kept_filters("conv1")) == round(8 * (1 - suggested["conv1"]))


def test_suggest_ratios_stops_at_the_first_violation():
    result = SensitivityResult(
        0.9,
        {"a": [(0.0, 0.9), (0.2, 0.89), (0.4, 0.7), (0.6, 0.895)]},
        {"a": ["a", "a2"]},
        {"a": 10},
    )
    assert result.suggest_ratios(0.05) == {"a": 0.2, "a2": 0.2}
    assert result.suggest_ratios(0.25) == {"a": 0.6, "a2": 0.6}
    assert result.suggest_ratios(0.1, relative=True) == {"a": 0.2, "a2": 0.2}
    with pytest.raises(ValueError, match="max_drop"):
        result.suggest_ratios(-0.1)


def test_markdown_dict_and_figure():
    result = _result()
    table = result.to_markdown()
    assert "| conv2 (+1 tied) | 12 |" in table
    assert table.count("\n") == 5  # title, blank, header, rule, two groups
    data = result.to_dict()
    assert data["curves"]["conv1"][0] == [0.0, result.baseline]
    fig = result.plot(max_drop=0.05)
    ax = fig.axes[0]
    assert len(ax.lines) == 3  # two curves and the threshold
    assert ax.get_ylabel() == "accuracy"


def test_eval_fn_groups_and_uncompiled_models():
    model = _trained()
    x, y = _task(128, 3)
    calls = []

    def agreement(m):
        calls.append(m)
        return float(np.mean(np.argmax(m.predict(x, verbose=0), -1) == y))

    result = sensitivity_analysis(
        model, agreement, ratios=(0.5,), groups=["conv3"], verbose=0
    )
    assert list(result.curves) == ["conv2"]  # conv3's group, named by conv2
    assert result.metric == "agreement"
    assert len(calls) == 2 and calls[0] is not model
    # Uncompiled: accuracy of argmax predictions.
    plain = keras.models.clone_model(model)
    plain.set_weights(model.get_weights())
    result = sensitivity_analysis(plain, data=(x, y), ratios=(0.5,), verbose=0)
    assert result.metric == "accuracy"
    assert result.baseline == pytest.approx(agreement(model))


def test_active_criterion_scores_with_the_data():
    result = sensitivity_analysis(
        _trained(), data=_task(64, 4), ratios=(0.5,), criterion="apoz", verbose=0
    )
    assert result.criterion == "apoz"
    assert set(result.curves) == {"conv1", "conv2"}


def test_bad_arguments():
    model = _trained()
    data = _task(16, 5)
    with pytest.raises(ValueError, match="exactly one"):
        sensitivity_analysis(model, verbose=0)
    with pytest.raises(ValueError, match="exactly one"):
        sensitivity_analysis(model, lambda m: 1.0, data, verbose=0)
    with pytest.raises(TypeError, match="callable"):
        sensitivity_analysis(model, 3, verbose=0)
    with pytest.raises(ValueError, match="ratios"):
        sensitivity_analysis(model, data=data, ratios=(0.0, 0.5), verbose=0)
    with pytest.raises(ValueError, match="ratios"):
        sensitivity_analysis(model, data=data, ratios=(), verbose=0)
    with pytest.raises(ValueError, match="not in the model"):
        sensitivity_analysis(model, data=data, groups=["nope"], verbose=0)
    with pytest.raises(ValueError, match="cannot be pruned"):
        sensitivity_analysis(model, data=data, groups=["head"], verbose=0)
    with pytest.raises(ValueError, match="Unknown|unknown"):
        sensitivity_analysis(model, data=data, criterion="nope", verbose=0)
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        sensitivity_analysis(model, data=data[0], verbose=0)
    with pytest.raises(ValueError, match="non-finite"):
        sensitivity_analysis(model, lambda m: float("nan"), verbose=0)
    with pytest.raises(TypeError, match="number"):
        sensitivity_analysis(model, lambda m: "high", verbose=0)
    with pytest.raises(TypeError, match="ratio"):
        sensitivity_analysis(model, data=data, ratio=0.5, verbose=0)


def test_sensitivity_recalibrates_batchnorm_by_default():
    """With `data`, each pruned copy gets fresh BatchNorm statistics before it is
    scored (stale ones would measure the mismatch, not the filters); the
    model's own statistics are never touched."""
    rng = np.random.default_rng(5)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, name="c1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Conv2D(8, 3, name="c2")(keras.layers.ReLU()(x))
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    data = rng.normal(2.0, 1.0, (48, 8, 8, 1)).astype("float32"), rng.integers(0, 3, 48)
    before = [w.copy() for w in model.get_weights()]
    seen = []

    def spy(m):
        seen.append(m.get_layer("bn2").moving_mean.numpy().copy())
        return 0.5

    kwargs = {"ratios": (0.5,), "verbose": 0, "calibration_data": data[0]}
    sensitivity_analysis(model, spy, **kwargs)
    assert not np.allclose(seen[1], seen[0])  # recalibrated for the pruned copy
    seen.clear()
    sensitivity_analysis(model, spy, **kwargs, recalibrate=False)
    assert all(np.array_equal(s, seen[0]) for s in seen)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


class _Flip(keras.layers.Layer):
    """Reverses the channels: no handler knows it (its groups are frozen)."""

    def call(self, x):
        return keras.ops.flip(x, axis=-1)


def test_a_frozen_layer_is_reported_once_at_the_callers_line_and_lambdas_work():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, name="c1")(inputs)
    x = _Flip(name="flip")(x)
    x = keras.layers.Conv2D(8, 3, name="c2")(x)
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)  # not rebuildable
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(6, 1, name="c3")(x))
    model = keras.Model(inputs, keras.layers.Dense(4)(x))
    with pytest.warns(Warning) as caught:
        result = sensitivity_analysis(
            model, data=_task(32, 3), ratios=(0.25, 0.5, 0.75), verbose=0
        )
    notes = [w for w in caught if "has no pruning handler" in str(w.message)]
    assert len(notes) == 1, [str(w.message) for w in caught]
    assert notes[0].filename == __file__
    # c1 is frozen by the flip, c2 by the Lambda; the copy shares the Lambda.
    assert list(result.curves) == ["c3"]
    assert [r for r, _ in result.curves["c3"]] == [0.0, 0.25, 0.5, 0.75]


def test_removal_costs_add_up_to_the_curve():
    result = SensitivityResult(
        0.9,
        {"g": [(0.0, 0.9), (0.25, 0.95), (0.5, 0.8), (0.75, 0.5)]},
        {"g": ["conv"]},
        {"g": 8},
    )
    costs = result.removal_costs(["conv"], 8)
    assert costs.shape == (8,) and np.all(costs > 0)
    cumulative = np.cumsum(costs[::-1])  # removing from the last kept on
    tiny = 1e-6 * 0.4 / 8  # a flat stretch's cost: of the largest drop
    # A bump (0.95 above the baseline) is no gain: the drop stays 0 until 25 %.
    np.testing.assert_allclose(cumulative[1], 2 * tiny, atol=1e-12)
    np.testing.assert_allclose(cumulative[3], 0.1 + 4 * tiny)  # 50 % removed
    np.testing.assert_allclose(cumulative[5], 0.4 + 6 * tiny)  # 75 % removed
    # Past the last tested ratio the drop rises by the largest drop of any group.
    np.testing.assert_allclose(cumulative[7], 0.4 + 0.4 + 8 * tiny)
    assert result.removal_costs(["other", "conv"], 8).tolist() == costs.tolist()
    # A score's offset changes nothing (a negated loss, a fidelity near 0).
    shifted = SensitivityResult(
        -5.0,
        {"g": [(r, v - 5.9) for r, v in result.curves["g"]]},
        result.groups,
        result.widths,
    )
    np.testing.assert_allclose(shifted.removal_costs(["conv"], 8), costs)
    # A curve without its (0, baseline) point still starts from no drop.
    np.testing.assert_allclose(
        dataclasses.replace(
            result, curves={"g": [p for p in result.curves["g"] if p[0] > 0]}
        ).removal_costs(["conv"], 8),
        costs,
    )


def test_removal_costs_read_the_widths_the_analysis_kept():
    """Ratio 0.1 of 12 channels keeps 11 (not 10.8); with `round_to=4`, ratio
    0.5 keeps 8 (not 6): the curves are priced at what was measured."""
    result = sensitivity_analysis(
        _trained(), data=_task(64, 2), ratios=(0.1, 0.5), round_to=4, verbose=0
    )
    assert result.kept["conv2"] == [12, 12, 8]
    drops = dict(result.drops()["conv2"])
    costs = result.removal_costs(["conv2"], 12)
    measured = max(0.0, drops[0.5], drops[0.1])
    largest = max(result.baseline - s for c in result.curves.values() for _, s in c)
    tiny = 1e-6 * max(largest, 1e-12) / 12
    np.testing.assert_allclose(costs[8:].sum(), measured + 4 * tiny, atol=1e-9)
    assert SensitivityResult.from_dict(result.to_dict()) == result


def test_from_dict_inverts_to_dict():
    result = _result()
    again = SensitivityResult.from_dict(result.to_dict())
    assert again == result
    with pytest.raises(TypeError, match=r"SensitivityResult.to_dict\(\).*bogus"):
        SensitivityResult.from_dict({**result.to_dict(), "bogus": 1})
    with pytest.raises(TypeError, match="Received: list"):
        SensitivityResult.from_dict([1, 2])
    with pytest.raises(TypeError, match=r"data\['curves'\]` must map"):
        SensitivityResult.from_dict({**result.to_dict(), "curves": {"conv1": 0.5}})


@pytest.mark.parametrize(
    "field, value",
    [
        ("baseline", "0.9"),
        ("baseline", float("nan")),
        ("groups", {"conv1": ["conv1"]}),  # conv2's curve has no group
        ("groups", {"conv1": "conv1", "conv2": ["conv2"]}),
        ("widths", {"conv1": 8, "conv2": 0}),
        ("widths", {"conv1": 8}),
        ("kept", {"conv1": [8, 6.5]}),
        ("metric", 3),
    ],
)
def test_from_dict_names_a_wrong_field(field, value):
    data = {**_result().to_dict(), field: value}
    with pytest.raises(TypeError, match=rf"`data\['{field}'\]` must be"):
        SensitivityResult.from_dict(data)


def test_save_and_load(tmp_path):
    import json
    import re

    result = _result()
    path = tmp_path / "curves.json"
    result.save(path)
    assert SensitivityResult.load(path) == result
    assert SensitivityResult.load(str(path)).removal_costs(["conv2"], 12).shape == (12,)
    with pytest.raises(FileNotFoundError):
        result.save(tmp_path / "missing" / "c.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.json"]
    bad = {**json.loads(path.read_text()), "widths": {"conv1": "8"}}
    nan = json.loads(path.read_text())
    nan["curves"]["conv1"][1][1] = float("nan")  # json writes NaN, and reads it
    huge = path.read_text().replace('"baseline": ', '"baseline": 1' + "0" * 400, 1)
    for text, match in [
        ("{not json", "not valid JSON"),
        (json.dumps([1, 2]), "Received: list"),
        (json.dumps(bad), r"data\['widths'\]"),
        (json.dumps(nan), r"data\['curves'\]\['conv1'\]` must hold finite"),
        (huge, "baseline"),
        ("[" * 100_000, ""),  # too deep for the parser
    ]:
        path.write_text(text)
        with pytest.raises(
            ValueError, match=f"curves '{re.escape(str(path))}': .*{match}"
        ):
            SensitivityResult.load(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="not UTF-8 text"):
        SensitivityResult.load(path)
    with pytest.raises(FileNotFoundError):
        SensitivityResult.load(tmp_path / "none.json")
    with pytest.raises(TypeError, match="`path` must be"):
        SensitivityResult.load(3)
