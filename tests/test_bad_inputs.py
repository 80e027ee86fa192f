"""A battery of bad inputs against the public API, the CLI and the file readers.

Every case asserts the exception type, that the message names the culprit, that
the model given is bit-identical afterwards and that no file was left behind.
Plus hypothesis tests that feed random JSON plans and random numbers to the
validators: they either accept a value that satisfies the contract or raise a
`TypeError`/`ValueError`, never anything from deep inside.
"""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_filterprune as kfp
from keras_filterprune import _validation as v
from keras_filterprune import cli, masking
from keras_filterprune.handlers import PassThroughHandler, unregister_handler
from tests import oracle
from tests._models import case_model

L = keras.layers


@pytest.fixture(scope="module")
def model():
    return case_model("plain_chain")  # c1 (8) -> bn1 -> relu1 -> c2 (12) -> c3 -> head


@pytest.fixture(scope="module")
def plan(model):
    return kfp.plan_pruning(model, 0.5, "l1_norm")


def _plan_doc(plan, **changes):
    config = json.loads(plan.to_json())
    for path, value in changes.items():
        target = config
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key) if key.isdigit() else key]
        last = keys[-1]
        target[int(last) if last.isdigit() else last] = value
    return json.dumps(config)


def _scores(model, **changes):
    scores = kfp.score_filters(model, "l1_norm")
    scores.update(changes)
    return scores


def _nan_criterion(kernel):
    return np.full(kernel.shape[-1], np.nan)


def _short_criterion(kernel):
    return np.ones(kernel.shape[-1] - 1)


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = L.Dense(2)

    def call(self, x):
        if keras.ops.max(x) > 0:  # Python control flow on a tensor value
            return self.dense(x)
        return -self.dense(x)


def _subclassed():
    m = _Subclassed()
    m(np.zeros((1, 4), "float32"))
    return m


AUDIO = {"sample_rate": 16000, "clip_seconds": 0.1}

# (id, call(model, plan, tmp) -> None, exception, regex naming the culprit)
API = [
    # plan_pruning: numbers
    (
        "ratio_nan",
        lambda m, p, t: kfp.plan_pruning(m, float("nan")),
        ValueError,
        r"`ratio` must be in \[0, 1\)",
    ),
    (
        "ratio_inf",
        lambda m, p, t: kfp.plan_pruning(m, float("inf")),
        ValueError,
        "`ratio`",
    ),
    ("ratio_neg", lambda m, p, t: kfp.plan_pruning(m, -0.5), ValueError, "ratio=-0.5"),
    ("ratio_one", lambda m, p, t: kfp.plan_pruning(m, 1.0), ValueError, "ratio=1.0"),
    (
        "ratio_str",
        lambda m, p, t: kfp.plan_pruning(m, "0.5"),
        TypeError,
        "`ratio` must be a number",
    ),
    ("ratio_bool", lambda m, p, t: kfp.plan_pruning(m, True), TypeError, "`ratio`"),
    ("ratio_none", lambda m, p, t: kfp.plan_pruning(m, None), TypeError, "`ratio`"),
    ("ratio_list", lambda m, p, t: kfp.plan_pruning(m, [0.5]), TypeError, "`ratio`"),
    (
        "importance_int",
        lambda m, p, t: kfp.plan_pruning(m, target_latency="50%", importance=1),
        TypeError,
        '`importance` must be None, "taylor" or the SensitivityResult',
    ),
    (
        "importance_curves_without_latency_budget",
        lambda m, p, t: kfp.plan_pruning(
            m, importance=kfp.SensitivityResult(1.0, {}, {}, {})
        ),
        ValueError,
        "importance=<SensitivityResult>.*pass `target_latency=`",
    ),
    (
        "callback_importance_curves_without_latency_budget",
        lambda m, p, t: kfp.PruningCallback(
            importance=kfp.SensitivityResult(1.0, {}, {}, {}), target_macs="50%"
        ),
        ValueError,
        "importance=<SensitivityResult>.*pass `target_latency=`",
    ),
    (
        "target_macs_nan",
        lambda m, p, t: kfp.plan_pruning(m, target_macs=float("nan")),
        ValueError,
        "`target_macs`",
    ),
    (
        "target_macs_str",
        lambda m, p, t: kfp.plan_pruning(m, target_macs="abc"),
        ValueError,
        "`target_macs` as a string must be a percentage.*'50%'",
    ),
    (
        "target_macs_percent_over_100",
        lambda m, p, t: kfp.plan_pruning(m, target_macs="150%"),
        ValueError,
        r"in \(0%, 100%\].*'150%'",
    ),
    (
        "target_params_zero_percent",
        lambda m, p, t: kfp.plan_pruning(m, target_params="0%"),
        ValueError,
        "`target_params` as a string must be a percentage",
    ),
    (
        "target_macs_fraction_as_count",
        lambda m, p, t: kfp.plan_pruning(m, target_macs=0.5),
        ValueError,
        "`target_macs` is an absolute count.*target_macs='50%'",
    ),
    (
        "target_macs_list",
        lambda m, p, t: kfp.plan_pruning(m, target_macs=[0.5]),
        TypeError,
        "`target_macs` must be a number",
    ),
    (
        "target_macs_zero",
        lambda m, p, t: kfp.plan_pruning(m, target_macs=0),
        ValueError,
        "`target_macs`",
    ),
    (
        "target_macs_neg_inf",
        lambda m, p, t: kfp.plan_pruning(m, target_macs=-math.inf),
        ValueError,
        "`target_macs`",
    ),
    (
        "target_params_nan",
        lambda m, p, t: kfp.plan_pruning(m, target_params=float("nan")),
        ValueError,
        "`target_params`",
    ),
    (
        "target_params_bool",
        lambda m, p, t: kfp.plan_pruning(m, target_params=True),
        TypeError,
        "`target_params`",
    ),
    (
        "target_macs_tiny",
        lambda m, p, t: kfp.plan_pruning(m, target_macs=1),
        ValueError,
        "`target_macs`=1 cannot be reached",
    ),
    (
        "both_targets",
        lambda m, p, t: kfp.plan_pruning(m, target_macs=1e6, target_params=1e3),
        ValueError,
        "at most one of `target_macs`, `target_params` and `target_latency`",
    ),
    (
        "round_to_zero",
        lambda m, p, t: kfp.plan_pruning(m, round_to=0),
        ValueError,
        "`round_to` must be an int >= 1",
    ),
    (
        "round_to_float",
        lambda m, p, t: kfp.plan_pruning(m, round_to=8.0),
        TypeError,
        "`round_to`",
    ),
    (
        "round_to_bool",
        lambda m, p, t: kfp.plan_pruning(m, round_to=True),
        TypeError,
        "`round_to`",
    ),
    (
        "min_filters_neg",
        lambda m, p, t: kfp.plan_pruning(m, min_filters=-1),
        ValueError,
        "`min_filters`",
    ),
    (
        "min_filters_str",
        lambda m, p, t: kfp.plan_pruning(m, min_filters="2"),
        TypeError,
        "`min_filters`",
    ),
    (
        "reduction_bad",
        lambda m, p, t: kfp.plan_pruning(m, group_reduction="median"),
        ValueError,
        "`group_reduction` must be one of",
    ),
    (
        "reduction_none",
        lambda m, p, t: kfp.plan_pruning(m, group_reduction=None),
        ValueError,
        "`group_reduction`",
    ),
    (
        "global_ranking_str",
        lambda m, p, t: kfp.plan_pruning(m, global_ranking="yes"),
        TypeError,
        "`global_ranking` must be a bool",
    ),
    (
        "greedy_int",
        lambda m, p, t: kfp.plan_pruning(m, greedy=2),
        TypeError,
        "`greedy` must be a bool",
    ),
    (
        "greedy_active",
        lambda m, p, t: kfp.plan_pruning(m, criterion="apoz", greedy=True),
        ValueError,
        "`greedy=True` needs a passive",
    ),
    # plan_pruning: names
    (
        "criterion_unknown",
        lambda m, p, t: kfp.plan_pruning(m, criterion="nope"),
        ValueError,
        "Unknown criterion: 'nope'",
    ),
    (
        "criterion_int",
        lambda m, p, t: kfp.plan_pruning(m, criterion=3),
        TypeError,
        "criterion",
    ),
    (
        "criterion_active_no_data",
        lambda m, p, t: kfp.plan_pruning(m, criterion="taylor"),
        ValueError,
        "needs `data`",
    ),
    (
        "per_layer_list",
        lambda m, p, t: kfp.plan_pruning(m, per_layer=[("c1", 0.5)]),
        TypeError,
        "`per_layer` must be a dict",
    ),
    (
        "per_layer_unknown",
        lambda m, p, t: kfp.plan_pruning(m, per_layer={"nope": 0.5}),
        ValueError,
        "`per_layer` names layer 'nope'",
    ),
    (
        "per_layer_ratio",
        lambda m, p, t: kfp.plan_pruning(m, per_layer={"c1": 2}),
        ValueError,
        r"`per_layer\['c1'\]`",
    ),
    (
        "per_layer_nan",
        lambda m, p, t: kfp.plan_pruning(m, per_layer={"c1": float("nan")}),
        ValueError,
        r"`per_layer\['c1'\]`",
    ),
    (
        "per_layer_key",
        lambda m, p, t: kfp.plan_pruning(m, per_layer={1: 0.5}),
        TypeError,
        "`per_layer` keys",
    ),
    (
        "per_layer_not_producer",
        lambda m, p, t: kfp.plan_pruning(m, per_layer={"bn1": 0.5}),
        ValueError,
        "'bn1', which produces no prunable",
    ),
    (
        "exclude_int",
        lambda m, p, t: kfp.plan_pruning(m, exclude=5),
        TypeError,
        "`exclude` must be a layer name",
    ),
    (
        "exclude_ints",
        lambda m, p, t: kfp.plan_pruning(m, exclude=[1]),
        TypeError,
        "`exclude` must hold layer names",
    ),
    (
        "exclude_unknown",
        lambda m, p, t: kfp.plan_pruning(m, exclude=["nope"]),
        ValueError,
        "`exclude` names layer 'nope'",
    ),
    (
        "exclude_dict",
        lambda m, p, t: kfp.plan_pruning(m, exclude={"c1": 1}),
        TypeError,
        "`exclude`",
    ),
    # plan_pruning: scores are data
    (
        "scores_list",
        lambda m, p, t: kfp.plan_pruning(m, scores=[1, 2]),
        TypeError,
        "`scores` must be a dict",
    ),
    (
        "scores_missing",
        lambda m, p, t: kfp.plan_pruning(m, scores={"c1": np.ones(8)}),
        ValueError,
        "`scores` has no scores for layer 'c2'",
    ),
    (
        "scores_short",
        lambda m, p, t: kfp.plan_pruning(m, scores=_scores(m, c2=np.ones(3))),
        ValueError,
        r"shape \(3,\) for layer 'c2'",
    ),
    (
        "scores_nan",
        lambda m, p, t: kfp.plan_pruning(m, scores=_scores(m, c2=np.full(12, np.nan))),
        ValueError,
        "NaN or Inf scores for layer 'c2'",
    ),
    (
        "scores_inf",
        lambda m, p, t: kfp.plan_pruning(
            m, scores=_scores(m, c1=np.r_[np.inf, np.ones(7)])
        ),
        ValueError,
        "layer 'c1'",
    ),
    (
        "scores_str",
        lambda m, p, t: kfp.plan_pruning(m, scores=_scores(m, c2=["a"] * 12)),
        TypeError,
        "layer 'c2'",
    ),
    (
        "scores_2d",
        lambda m, p, t: kfp.plan_pruning(m, scores=_scores(m, c2=np.ones((12, 1)))),
        ValueError,
        r"shape \(12, 1\)",
    ),
    (
        "criterion_returns_nan",
        lambda m, p, t: kfp.plan_pruning(m, criterion=_nan_criterion),
        ValueError,
        "Criterion '_nan_criterion' gave NaN",
    ),
    (
        "criterion_returns_short",
        lambda m, p, t: kfp.plan_pruning(m, criterion=_short_criterion),
        ValueError,
        "Criterion '_short_criterion' gave scores of shape",
    ),
    (
        "greedy_returns_nan",
        lambda m, p, t: kfp.plan_pruning(m, criterion=_nan_criterion, greedy=True),
        ValueError,
        "NaN or Inf",
    ),
    (
        "within_not_plan",
        lambda m, p, t: kfp.plan_pruning(m, within={"groups": []}),
        TypeError,
        "`plan` must be a keras_filterprune.PruningPlan",
    ),
    # models that cannot be pruned
    (
        "model_none",
        lambda m, p, t: kfp.plan_pruning(None),
        TypeError,
        "`model` must be a built Keras",
    ),
    ("model_layer", lambda m, p, t: kfp.plan_pruning(L.Dense(2)), TypeError, "`model`"),
    (
        "model_subclassed",
        lambda m, p, t: kfp.plan_pruning(_subclassed()),
        TypeError,
        "subclassed model that cannot be traced.*control flow",
    ),
    (
        "model_unbuilt",
        lambda m, p, t: kfp.plan_pruning(keras.Sequential([L.Dense(2)])),
        ValueError,
        "is not built",
    ),
    (
        "prune_model_ratio",
        lambda m, p, t: kfp.prune_keras_model(m, 7),
        ValueError,
        "`ratio`",
    ),
    (
        "prune_model_kwarg",
        lambda m, p, t: kfp.prune_keras_model(m, 0.5, nope=1),
        TypeError,
        "nope",
    ),
    # apply_plan, masks
    (
        "apply_not_plan",
        lambda m, p, t: kfp.apply_plan(m, p.get_config()),
        TypeError,
        "`plan` must be a keras_filterprune.PruningPlan",
    ),
    (
        "apply_other_model",
        lambda m, p, t: kfp.apply_plan(case_model("flatten_dense"), p),
        ValueError,
        "The plan does not match the model",
    ),
    ("apply_none_model", lambda m, p, t: kfp.apply_plan(None, p), TypeError, "`model`"),
    (
        "masks_not_plan",
        lambda m, p, t: masking.weight_masks(m, "plan"),
        TypeError,
        "`plan`",
    ),
    (
        "mask_model_not_plan",
        lambda m, p, t: kfp.mask_model(m, None),
        TypeError,
        "`plan`",
    ),
    (
        "apply_huge_width",
        lambda m, p, t: kfp.apply_plan(
            m,
            kfp.PruningPlan.from_json(
                _plan_doc(p, **{"groups.0.width": 10**9, "groups.0.scores": None})
            ),
        ),
        ValueError,
        "does not match the model",
    ),
    # score_filters
    (
        "score_unknown_layer",
        lambda m, p, t: kfp.score_filters(m, "l1_norm", layers=["nope"]),
        ValueError,
        "`layers` names layer 'nope'",
    ),
    (
        "score_not_producer",
        lambda m, p, t: kfp.score_filters(m, "l1_norm", layers=["bn1"]),
        ValueError,
        r"`layers` names \['bn1'\]",
    ),
    (
        "score_layers_int",
        lambda m, p, t: kfp.score_filters(m, "l1_norm", layers=3),
        TypeError,
        "`layers`",
    ),
    (
        "score_unknown_criterion",
        lambda m, p, t: kfp.score_filters(m, "nope"),
        ValueError,
        "Unknown criterion",
    ),
    (
        "score_active_no_data",
        lambda m, p, t: kfp.score_filters(m, "apoz"),
        ValueError,
        "needs `data`",
    ),
    # trace_channels, profile
    (
        "trace_exclude_unknown",
        lambda m, p, t: kfp.graph.trace_channels(m, exclude=["nope"]),
        ValueError,
        "`exclude` names layer 'nope'",
    ),
    (
        "trace_subclassed",
        lambda m, p, t: kfp.graph.trace_channels(_subclassed()),
        TypeError,
        "subclassed model that cannot be traced",
    ),
    (
        "profile_not_model",
        lambda m, p, t: kfp.profile_model("model"),
        TypeError,
        "`model`",
    ),
    (
        "count_macs_dynamic",
        lambda m, p, t: kfp.count_macs(
            keras.Sequential([keras.Input((None, None, 3)), L.Conv2D(2, 3)])
        ),
        ValueError,
        "unknown \\(None\\) dims",
    ),
    # callback
    (
        "cb_ratio",
        lambda m, p, t: kfp.PruningCallback(ratio=1.5),
        ValueError,
        "ratio=1.5",
    ),
    (
        "cb_ratio_nan",
        lambda m, p, t: kfp.PruningCallback(ratio=float("nan")),
        ValueError,
        "`ratio`",
    ),
    (
        "cb_epochs_int",
        lambda m, p, t: kfp.PruningCallback(epochs=3),
        TypeError,
        "`epochs` must be a sequence",
    ),
    (
        "cb_epochs_neg",
        lambda m, p, t: kfp.PruningCallback(epochs=(-1,)),
        ValueError,
        "`epochs`",
    ),
    (
        "cb_mode",
        lambda m, p, t: kfp.PruningCallback(mode="medium"),
        ValueError,
        "`mode` must be one of",
    ),
    (
        "cb_unit",
        lambda m, p, t: kfp.PruningCallback(
            schedule=kfp.schedules.ConstantRatio(0.5), schedule_unit="batch"
        ),
        ValueError,
        "`schedule_unit`",
    ),
    (
        "cb_schedule_float",
        lambda m, p, t: kfp.PruningCallback(schedule=0.5),
        TypeError,
        "`schedule` must be a ratio schedule",
    ),
    (
        "cb_round_to",
        lambda m, p, t: kfp.PruningCallback(round_to=2.0),
        TypeError,
        "`round_to` must be an int >= 1",
    ),
    (
        "cb_round_to_zero",
        lambda m, p, t: kfp.PruningCallback(round_to=0),
        ValueError,
        "`round_to` must be an int >= 1",
    ),
    (
        "cb_verbose",
        lambda m, p, t: kfp.PruningCallback(verbose="loud"),
        TypeError,
        "`verbose`",
    ),
    (
        "cb_exclude",
        lambda m, p, t: kfp.PruningCallback(exclude=[1]),
        TypeError,
        "`exclude`",
    ),
    (
        "cb_per_layer",
        lambda m, p, t: kfp.PruningCallback(per_layer={"c1": -1}),
        ValueError,
        r"per_layer\['c1'\]",
    ),
    # schedules
    (
        "constant_ratio",
        lambda m, p, t: kfp.schedules.ConstantRatio(1.2),
        ValueError,
        "`ratio`",
    ),
    (
        "constant_begin",
        lambda m, p, t: kfp.schedules.ConstantRatio(0.5, begin_step=-1),
        ValueError,
        "`begin_step`",
    ),
    (
        "constant_frequency",
        lambda m, p, t: kfp.schedules.ConstantRatio(0.5, frequency=0),
        ValueError,
        "`frequency`",
    ),
    (
        "poly_final",
        lambda m, p, t: kfp.schedules.PolynomialRatio(0.1, float("nan"), 0, 10),
        ValueError,
        "`final_ratio`",
    ),
    (
        "poly_steps",
        lambda m, p, t: kfp.schedules.PolynomialRatio(0.1, 0.5, 10, 5),
        ValueError,
        "`end_step`",
    ),
    (
        "poly_step_float",
        lambda m, p, t: kfp.schedules.PolynomialRatio(0.1, 0.5, 0.5, 5),
        TypeError,
        "`begin_step`",
    ),
    # sensitivity
    (
        "sens_both",
        lambda m, p, t: kfp.sensitivity_analysis(m, lambda x: 1.0, data=(1, 2)),
        ValueError,
        "exactly one of `eval_fn`",
    ),
    (
        "sens_ratios",
        lambda m, p, t: kfp.sensitivity_analysis(m, lambda x: 1.0, ratios=(0.0, 1.0)),
        ValueError,
        "`ratios`",
    ),
    (
        "sens_batch",
        lambda m, p, t: kfp.sensitivity_analysis(m, lambda x: 1.0, batch_size=0),
        ValueError,
        "`batch_size`",
    ),
    (
        "sens_eval",
        lambda m, p, t: kfp.sensitivity_analysis(m, "acc"),
        TypeError,
        "`eval_fn` must be callable",
    ),
    (
        "sens_nan_score",
        lambda m, p, t: kfp.sensitivity_analysis(
            m, lambda x: float("nan"), ratios=(0.5,), verbose=0
        ),
        ValueError,
        "non-finite score",
    ),
    (
        "sens_groups",
        lambda m, p, t: kfp.sensitivity_analysis(m, lambda x: 1.0, groups=["nope"]),
        ValueError,
        "`groups` names 'nope'",
    ),
    # registries
    (
        "handler_class",
        lambda m, p, t: kfp.handlers.register_handler(L.Dense, PassThroughHandler),
        TypeError,
        "`handler` must be",
    ),
    (
        "handler_layer_cls",
        lambda m, p, t: kfp.handlers.register_handler(3, PassThroughHandler()),
        TypeError,
        "`layer_cls`",
    ),
    (
        "unregister_int",
        lambda m, p, t: unregister_handler(3.5),
        TypeError,
        "`layer_cls`",
    ),
    (
        "criterion_register_name",
        lambda m, p, t: kfp.criteria.register(1, np.ones),
        TypeError,
        "`name` must be a str",
    ),
    (
        "criterion_register_fn",
        lambda m, p, t: kfp.criteria.register("x", 3),
        TypeError,
        "`fn` must be callable",
    ),
    (
        "criterion_register_dup",
        lambda m, p, t: kfp.criteria.register("l1_norm", np.ones),
        ValueError,
        "already registered",
    ),
    (
        "criterion_unregister",
        lambda m, p, t: kfp.criteria.unregister("nope"),
        ValueError,
        "Unknown criterion: 'nope'",
    ),
    (
        "criterion_kernel_nan",
        lambda m, p, t: kfp.criteria.l1_norm(np.full((3, 3, 2, 4), np.nan)),
        ValueError,
        "NaN",
    ),
    (
        "criterion_kernel_rank",
        lambda m, p, t: kfp.criteria.operator_norm(np.ones(3)),
        ValueError,
        "rank",
    ),
    # plan files
    (
        "plan_json_type",
        lambda m, p, t: kfp.PruningPlan.from_json(3),
        TypeError,
        "must be JSON text",
    ),
    (
        "plan_json_garbage",
        lambda m, p, t: kfp.PruningPlan.from_json("{nope"),
        ValueError,
        "must be JSON",
    ),
    (
        "plan_keep_repeat",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.keep": [0, 0, 1]})
        ),
        ValueError,
        r"groups\[0\].keep: must be sorted and without repeats",
    ),
    (
        "plan_keep_float",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.keep": [0.0, 1.0]})
        ),
        ValueError,
        r"groups\[0\].keep: must hold ints",
    ),
    (
        "plan_keep_bool",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.keep": [True]})
        ),
        ValueError,
        r"groups\[0\].keep",
    ),
    (
        "plan_keep_empty",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.keep": []})
        ),
        ValueError,
        "must keep at least one channel",
    ),
    (
        "plan_keep_range",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.keep": [0, 99]})
        ),
        ValueError,
        "outside",
    ),
    (
        "plan_keep_neg",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.keep": [-1, 0]})
        ),
        ValueError,
        "outside",
    ),
    (
        "plan_keep_str",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.keep": "0,1"})
        ),
        ValueError,
        r"groups\[0\].keep",
    ),
    (
        "plan_width_str",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.width": "8"})
        ),
        ValueError,
        r"groups\[0\].width",
    ),
    (
        "plan_width_zero",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.width": 0})
        ),
        ValueError,
        r"groups\[0\].width",
    ),
    (
        "plan_id_neg",
        lambda m, p, t: kfp.PruningPlan.from_json(_plan_doc(p, **{"groups.0.id": -3})),
        ValueError,
        r"groups\[0\].id",
    ),
    (
        "plan_id_repeat",
        lambda m, p, t: kfp.PruningPlan.from_json(_plan_doc(p, **{"groups.1.id": 0})),
        ValueError,
        "repeat an id",
    ),
    (
        "plan_producers_list",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.producers": ["c1"]})
        ),
        ValueError,
        r"groups\[0\].producers",
    ),
    (
        "plan_members_int",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.members": [1]})
        ),
        ValueError,
        r"groups\[0\].members",
    ),
    (
        "plan_scores_nan",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.scores": [float("nan")] * 8})
        ),
        ValueError,
        r"groups\[0\].scores",
    ),
    (
        "plan_scores_len",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.scores": [1.0]})
        ),
        ValueError,
        r"groups\[0\].scores",
    ),
    (
        "plan_frozen_int",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.0.frozen": 1})
        ),
        ValueError,
        r"groups\[0\].frozen",
    ),
    (
        "plan_meta_list",
        lambda m, p, t: kfp.PruningPlan.from_json(_plan_doc(p, meta=[1])),
        ValueError,
        "meta: must be an object",
    ),
    (
        "plan_name_int",
        lambda m, p, t: kfp.PruningPlan.from_json(_plan_doc(p, model_name=3)),
        ValueError,
        "model_name",
    ),
    (
        "plan_groups_dict",
        lambda m, p, t: kfp.PruningPlan.from_json(_plan_doc(p, groups={})),
        ValueError,
        "groups: must be a list",
    ),
    (
        "plan_format",
        lambda m, p, t: kfp.PruningPlan.from_json(_plan_doc(p, format="x/2")),
        ValueError,
        "Not a keras-filterprune pruning plan",
    ),
    (
        "plan_shared_producer",
        lambda m, p, t: kfp.PruningPlan.from_json(
            _plan_doc(p, **{"groups.1.producers": {"c1": list(range(12))}})
        ),
        ValueError,
        "layer 'c1' is also a producer",
    ),
    (
        "plan_deep_json",
        lambda m, p, t: kfp.PruningPlan.from_json("[" * 100000),
        ValueError,
        "must be JSON",
    ),
    (
        "plan_load_missing",
        lambda m, p, t: kfp.PruningPlan.load(t / "none.json"),
        FileNotFoundError,
        "none.json",
    ),
    (
        "plan_load_binary",
        lambda m, p, t: kfp.PruningPlan.load(_write(t / "b.json", b"\xff\xfe\x00")),
        ValueError,
        "b.json': not UTF-8",
    ),
    (
        "plan_load_corrupt",
        lambda m, p, t: kfp.PruningPlan.load(_write(t / "c.json", b'{"format": 1}')),
        ValueError,
        "c.json'.*Not a keras-filterprune",
    ),
    (
        "plan_load_truncated",
        lambda m, p, t: kfp.PruningPlan.load(
            _write(t / "d.json", p.to_json().encode()[:50])
        ),
        ValueError,
        "d.json'.*must be JSON",
    ),
    (
        "plan_load_path_int",
        lambda m, p, t: kfp.PruningPlan.load(3),
        TypeError,
        "`path`",
    ),
    (
        "plan_save_missing_dir",
        lambda m, p, t: p.save(t / "no" / "plan.json"),
        FileNotFoundError,
        "does not exist",
    ),
    ("plan_save_dir", lambda m, p, t: p.save(t), IsADirectoryError, "is a directory"),
    (
        "plan_save_bad_meta",
        lambda m, p, t: _with_meta(p, {"x": object()}).save(t / "p.json"),
        TypeError,
        "cannot be written as JSON",
    ),
    (
        "plan_save_nan_meta",
        lambda m, p, t: _with_meta(p, {"x": float("nan")}).save(t / "p.json"),
        TypeError,
        "cannot be written as JSON",
    ),
    # exports
    (
        "tflite_suffix",
        lambda m, p, t: kfp.export_tflite(m, t / "m.tfl"),
        ValueError,
        "'.tflite'",
    ),
    (
        "tflite_quant",
        lambda m, p, t: kfp.export_tflite(m, t / "m.tflite", "int4"),
        ValueError,
        "`quantization` must be one of",
    ),
    (
        "tflite_int8_no_data",
        lambda m, p, t: kfp.export_tflite(m, t / "m.tflite", "int8"),
        ValueError,
        "needs `representative_data`",
    ),
    (
        "tflite_int8_io",
        lambda m, p, t: kfp.export_tflite(m, t / "m.tflite", int8_io=True),
        ValueError,
        "`int8_io=True`",
    ),
    (
        "tflite_missing_dir",
        lambda m, p, t: kfp.export_tflite(m, t / "x" / "m.tflite"),
        FileNotFoundError,
        "does not exist",
    ),
    (
        "tflite_num_verify",
        lambda m, p, t: kfp.export_tflite(m, t / "m.tflite", num_verify=0),
        ValueError,
        "`num_verify`",
    ),
    (
        "keras_suffix",
        lambda m, p, t: kfp.export.save_keras(m, t / "m.h5"),
        ValueError,
        "'.keras'",
    ),
    (
        "keras_tolerance",
        lambda m, p, t: kfp.export.save_keras(m, t / "m.keras", tolerance=-1),
        ValueError,
        "`tolerance`",
    ),
    (
        "keras_path_int",
        lambda m, p, t: kfp.export.save_keras(m, 3),
        TypeError,
        "`path`",
    ),
    (
        "saved_model_file",
        lambda m, p, t: kfp.export.export_saved_model(m, t / "m.tflite"),
        ValueError,
        "SavedModel is a directory",
    ),
    (
        "run_tflite_missing",
        lambda m, p, t: kfp.runtime.run_tflite(
            t / "none.tflite", np.ones((1, 12, 12, 3))
        ),
        FileNotFoundError,
        "none.tflite",
    ),
    (
        "run_tflite_type",
        lambda m, p, t: kfp.runtime.run_tflite(3.5, None),
        TypeError,
        "Expected a .tflite path",
    ),
    (
        "benchmark_runs",
        lambda m, p, t: kfp.runtime.benchmark_keras(m, runs=0),
        ValueError,
        "`runs`",
    ),
    # audio and models
    (
        "vggish_short",
        lambda m, p, t: kfp.audio.VGGishLogMel()(np.zeros((1, 100), "float32")),
        ValueError,
        "at least 400 samples",
    ),
    (
        "dcase_short",
        lambda m, p, t: kfp.audio.DCASELogMel(stft="matmul")(
            np.zeros((1, 500), "float32")
        ),
        ValueError,
        "at least 1025 samples",
    ),
    (
        "dcase_pad_mode",
        lambda m, p, t: kfp.audio.DCASELogMel(pad_mode="edge"),
        ValueError,
        "`pad_mode`",
    ),
    (
        "vggish_stft",
        lambda m, p, t: kfp.audio.VGGishLogMel(stft="fft"),
        ValueError,
        "`stft`",
    ),
    (
        "audio_labels_str",
        lambda m, p, t: kfp.audio.audio_dataset([_wav(t)], labels=["cat"], **AUDIO),
        ValueError,
        "`labels` must hold non-negative int",
    ),
    (
        "audio_labels_len",
        lambda m, p, t: kfp.audio.audio_dataset([_wav(t)], labels=[0, 1], **AUDIO),
        ValueError,
        "one label per file",
    ),
    (
        "audio_rate",
        lambda m, p, t: kfp.audio.audio_dataset(
            [_wav(t)], sample_rate=0, clip_seconds=1
        ),
        ValueError,
        "`sample_rate`",
    ),
    (
        "audio_missing",
        lambda m, p, t: kfp.audio.audio_dataset(t / "none.wav", **AUDIO),
        ValueError,
        "none.wav",
    ),
    (
        "audio_corrupt",
        lambda m, p, t: kfp.audio.load_audio(_write(t / "x.wav", b"RIFF junk"), 16000),
        ValueError,
        "x.wav",
    ),
    (
        "model_classes",
        lambda m, p, t: kfp.models.vgg16_cifar(num_classes=0),
        ValueError,
        "`num_classes`",
    ),
    (
        "resnet_depth",
        lambda m, p, t: kfp.models.resnet_cifar(depth=7),
        ValueError,
        "depth",
    ),
    (
        "fashion_missing",
        lambda m, p, t: kfp.datasets.fashion_mnist(t / "none"),
        FileNotFoundError,
        "none",
    ),
    (
        "callback_round_to_above_every_group",
        lambda m, p, t: kfp.PruningCallback(round_to=0),
        ValueError,
        "round_to",
    ),
    # Labels that do not fit the model's outputs.
    (
        "sensitivity_one_hot_width",
        lambda m, p, t: kfp.sensitivity_analysis(
            m, data=(_x(m), np.eye(7)[np.zeros(4, int)]), ratios=(0.5,), verbose=0
        ),
        ValueError,
        r"one-hot rows of width",
    ),
    (
        "sensitivity_recalibrate_string",
        lambda m, p, t: kfp.sensitivity_analysis(
            m, data=(_x(m), np.zeros(4, int)), recalibrate="yes", verbose=0
        ),
        TypeError,
        "`recalibrate` must be a bool",
    ),
    # Callback options: every planning option, checked at construction.
    (
        "callback_budget_below_one",
        lambda m, p, t: kfp.PruningCallback(target_macs=0.5),
        ValueError,
        "target_macs='50%'",
    ),
    (
        "callback_two_budgets",
        lambda m, p, t: kfp.PruningCallback(target_macs="50%", target_params="50%"),
        ValueError,
        "at most one of",
    ),
    (
        "callback_unknown_option_type",
        lambda m, p, t: kfp.PruningCallback(global_ranking="yes"),
        TypeError,
        "global_ranking",
    ),
    (
        "callback_calibration_generator",
        lambda m, p, t: kfp.PruningCallback(calibration_data=(x for x in [1])),
        TypeError,
        "calibration_data",
    ),
    (
        "grouped_conv_twin",
        lambda m, p, t: kfp.apply_plan(
            _grouped(4), kfp.plan_pruning(_grouped(2), 0.5, "l1_norm")
        ),
        ValueError,
        "8 filters in both, but they map to other channels",
    ),
]


def _x(model):
    return np.random.default_rng(0).normal(size=(4, *model.input_shape[1:]))


def _grouped(groups):
    inputs = keras.Input((8, 8, 4))
    x = L.Conv2D(8, 3, padding="same", name="a")(inputs)
    x = L.Conv2D(8, 3, padding="same", groups=groups, name="g")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, L.Dense(2, name="h")(x))


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def _wav(tmp):
    import soundfile as sf

    path = tmp / "a.wav"
    sf.write(path, np.zeros(1600, "float32"), 16000)
    return path


def _with_meta(plan, meta):
    clone = kfp.PruningPlan.from_json(plan.to_json())
    clone.meta = meta
    return clone


def _files(directory) -> set[str]:
    return {
        os.path.relpath(os.path.join(root, f), directory)
        for root, _, files in os.walk(directory)
        for f in files
    }


@pytest.mark.parametrize("case", API, ids=[c[0] for c in API])
def test_bad_input_is_a_clear_error(case, model, plan, tmp_path):
    _, call, error, match = case
    before = oracle.snapshot(model)
    files = _files(tmp_path)
    with pytest.raises(error, match=match) as info:
        call(model, plan, tmp_path)
    # One exception from the boundary, not from deep inside NumPy or TensorFlow.
    assert type(info.value).__module__ == "builtins", type(info.value)
    oracle.assert_untouched(model, before)
    new = _files(tmp_path) - files
    created = {f for f in new if f.endswith((".wav", ".json")) and "/" not in f}
    assert new <= created, f"left behind: {sorted(new - created)}"
    assert not any(".tmp" in f for f in new)


# ---------------------------------------------------------------------------
# The command line: exit code 1 or 2, one line naming the culprit, nothing
# written, and destinations checked before the model is even loaded.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory, model, plan):
    d = tmp_path_factory.mktemp("bad_cli")
    model.save(d / "model.keras")
    rng = np.random.default_rng(0)
    np.savez(d / "data.npz", x=rng.normal(size=(4, 12, 12, 3)), y=np.arange(4) % 3)
    np.savez(d / "nolabels.npz", x=rng.normal(size=(4, 12, 12, 3)))
    (d / "plan.json").write_text(_plan_doc(plan, **{"groups.0.keep": [3, 1]}))
    (d / "garbage.keras").write_bytes(b"\x00garbage")
    return d


CLI = [
    (
        "ratio_range",
        ["prune", "{m}", "-o", "{t}/o.keras", "--ratio", "1.5"],
        2,
        "must be in",
    ),
    (
        "ratio_text",
        ["prune", "{m}", "-o", "{t}/o.keras", "--ratio", "half"],
        2,
        "not a number",
    ),
    (
        "round_to",
        ["prune", "{m}", "-o", "{t}/o.keras", "--round-to", "0"],
        2,
        "must be >= 1",
    ),
    (
        "target",
        ["prune", "{m}", "-o", "{t}/o.keras", "--target-macs", "abc"],
        2,
        "not a count",
    ),
    (
        "target_nan",
        ["prune", "{m}", "-o", "{t}/o.keras", "--target-macs", "nan"],
        2,
        "must be > 0",
    ),
    (
        "per_layer",
        ["prune", "{m}", "-o", "{t}/o.keras", "--per-layer", "c1"],
        2,
        "LAYER=RATIO",
    ),
    (
        "plan_and_ratio",
        [
            "prune",
            "{m}",
            "-o",
            "{t}/o.keras",
            "--plan",
            "{f}/plan.json",
            "--ratio",
            "0.3",
        ],
        2,
        "cannot be combined",
    ),
    ("suffix", ["prune", "{m}", "-o", "{t}/o.h5"], 1, "must end with .keras"),
    ("out_dir", ["prune", "{m}", "-o", "{t}/x/o.keras"], 1, "does not exist"),
    (
        "plan_out_dir",
        ["prune", "{m}", "-o", "{t}/o.keras", "--plan-out", "{t}/x/p.json"],
        1,
        "--plan-out",
    ),
    (
        "criterion",
        ["prune", "{m}", "-o", "{t}/o.keras", "--criterion", "nope"],
        1,
        "Unknown criterion: 'nope'",
    ),
    (
        "exclude",
        ["prune", "{m}", "-o", "{t}/o.keras", "--exclude", "nope"],
        1,
        "`exclude` names layer 'nope'",
    ),
    (
        "bad_plan",
        ["prune", "{m}", "-o", "{t}/o.keras", "--plan", "{f}/plan.json"],
        1,
        r"groups\[0\].keep",
    ),
    (
        "plan_is_model",
        ["prune", "{m}", "-o", "{t}/o.keras", "--plan", "{m}"],
        1,
        "Cannot read pruning plan",
    ),
    ("missing_model", ["profile", "{t}/none.keras"], 1, "does not exist"),
    ("garbage_model", ["profile", "{f}/garbage.keras"], 1, "cannot load model"),
    ("model_dir", ["profile", "{t}"], 1, "not a Keras model file"),
    (
        "score_no_labels",
        ["score", "{m}", "--criterion", "taylor", "--data", "{f}/nolabels.npz"],
        1,
        "no 'y' array",
    ),
    ("tflite_suffix", ["export", "{m}", "--tflite", "{t}/m.tfl"], 1, "'.tflite'"),
    ("tflite_dir", ["export", "{m}", "--tflite", "{t}/x/m.tflite"], 1, "--tflite"),
    (
        "int8_no_data",
        ["export", "{m}", "--tflite", "{t}/m.tflite", "--quantize", "int8"],
        1,
        "needs --representative",
    ),
    (
        "quantize",
        ["export", "{m}", "--tflite", "{t}/m.tflite", "--quantize", "int4"],
        2,
        "invalid choice",
    ),
    (
        "sens_plot_dir",
        ["sensitivity", "{m}", "--data", "{f}/data.npz", "--plot", "{t}/x/p.png"],
        1,
        "--plot",
    ),
    (
        "sens_json_dir",
        ["sensitivity", "{m}", "--data", "{f}/data.npz", "--json", "{t}/x/p.json"],
        1,
        "--json",
    ),
    (
        "sens_no_labels",
        ["sensitivity", "{m}", "--data", "{f}/nolabels.npz"],
        1,
        "no 'y' array",
    ),
    (
        "sens_ratios",
        ["sensitivity", "{m}", "--data", "{f}/data.npz", "--ratios", "0"],
        2,
        "must be in",
    ),
]


@pytest.mark.parametrize("case", CLI, ids=[c[0] for c in CLI])
def test_bad_command_line_is_one_clear_line(case, files, tmp_path, capsys):
    _, argv, code, match = case
    names = {"m": str(files / "model.keras"), "f": str(files), "t": str(tmp_path)}
    argv = [a.format(**names) for a in argv]
    before = _files(files)
    assert cli.main(argv) == code, capsys.readouterr().err
    err = capsys.readouterr().err.strip().splitlines()
    assert err and any(__import__("re").search(match, line) for line in err), err
    if code == 1:
        assert len(err) == 1, err
    assert _files(tmp_path) == set(), "nothing may be written"
    assert _files(files) == before


# ---------------------------------------------------------------------------
# Random documents and numbers
# ---------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 10**10)
    | st.floats()
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_fields = st.fixed_dictionaries(
    {},
    optional={
        "id": _json | st.integers(0, 3),
        "width": _json | st.integers(1, 6),
        "producers": _json | st.just({"c1": [0, 1, 2]}),
        "members": _json | st.just(["c1"]),
        "keep": _json | st.lists(st.integers(-1, 6), max_size=6),
        "scores": _json,
        "frozen": _json,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    groups=st.lists(_fields, max_size=3) | _json,
    name=_json,
    meta=_json,
)
def test_random_plan_documents_are_valid_or_a_value_error(groups, name, meta):
    doc = {"format": "keras_filterprune.PruningPlan/1", "groups": groups}
    if name is not None:
        doc["model_name"] = name
    if meta is not None:
        doc["meta"] = meta
    try:
        plan = kfp.PruningPlan.from_config(doc)
    except ValueError as e:
        assert str(e).startswith("Corrupt pruning plan: "), e
        return
    for g in plan.groups:  # what was accepted honours the contract
        assert isinstance(g.width, int) and g.width >= 1
        assert g.keep == sorted(set(g.keep)) and g.keep
        assert all(0 <= c < g.width for c in g.keep)
        assert all(0 <= c < g.width for cs in g.producers.values() for c in cs)
    assert kfp.PruningPlan.from_json(plan.to_json()).get_config() == plan.get_config()


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.floats(), st.integers(), st.booleans(), st.text(), st.none()))
def test_random_numbers_to_the_validators(value):
    for check in (
        lambda x: v.check_ratio(x, "ratio"),
        lambda x: v.check_number(x, "n", low=0.0, low_open=True, allow_inf=True),
    ):
        try:
            result = check(value)
        except (TypeError, ValueError):
            continue
        assert isinstance(result, float) and not math.isnan(result)
    try:
        ratio = v.check_ratio(value, "ratio")
        assert 0.0 <= ratio < 1.0
    except (TypeError, ValueError) as e:
        assert "`ratio`" in str(e)
    try:
        n = v.check_int(value, "n", 1)
        assert isinstance(n, int) and n >= 1 and not isinstance(value, bool)
    except (TypeError, ValueError) as e:
        assert "`n` must be an int >= 1" in str(e)


# ---------------------------------------------------------------------------
# Latency tables: untrusted files, validated like plans (the API and the CLI
# name the file and the field; anything accepted predicts finite latencies)
# ---------------------------------------------------------------------------


def _latency_table_doc() -> dict:
    """A valid latency table of `case_model("plain_chain")`, as `to_dict()`."""
    from keras_filterprune.graph import graph_of
    from keras_filterprune.latency.measure import sample_widths
    from keras_filterprune.latency.units import unit_specs

    graph = graph_of(case_model("plain_chain"))
    units = []
    for spec in unit_specs(graph):
        curves = {"in": None, "out": None}
        for axis in spec["axes"]:
            full = spec["widths"][axis]
            widths = sample_widths(full, 4, 4)
            curves[axis] = {
                "step": 4,
                "widths": widths,
                "ms": [w / full for w in widths],
            }
        units.append(
            {
                "path": spec["path"],
                "layer": spec["layer"],
                "kind": spec["kind"],
                "in": spec["in"],
                "out": spec["out"],
                "full_ms": 0.01 * spec["widths"]["out"],
                "curves": curves,
            }
        )
    table = kfp.latency.LatencyTable(
        model_name=graph.model_name,
        model_ms=1.0,
        settings={"runtime": "litert", "num_threads": 2, "quantization": None},
        steps={"conv": {"in": 4, "out": 4}},
        groups={g.id: g.width for g in graph.groups},
        units=units,
    )
    return json.loads(table.to_json())


_table_doc = __import__("functools").cache(_latency_table_doc)


def _table_with(path: str, value) -> str:
    doc = json.loads(json.dumps(_table_doc()))
    *parents, last = path.split(".")
    target = doc
    for key in parents:
        target = target[int(key) if isinstance(target, list) else key]
    target[int(last) if isinstance(target, list) else last] = value
    return json.dumps(doc)


@pytest.fixture(scope="module")
def latency_files(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("bad_tables")
    model.save(d / "model.keras")
    (d / "random.json").write_bytes(np.random.default_rng(1).bytes(512))
    (d / "half.json").write_text(json.dumps(_table_doc())[:200])
    (d / "inf.json").write_text(_table_with("model_ms", math.inf))
    (d / "width.json").write_text(_table_with("groups.0", -8))
    (d / "threads.json").write_text(_table_with("settings.num_threads", "four"))
    (d / "group.json").write_text(_table_with("units.0.out.groups", {"7": 1.0}))
    (d / "no_units.json").write_text(_table_with("units", []))
    return d


LATENCY_FILES = [
    ("random.json", "Cannot read latency table .*: not UTF-8 text"),
    ("half.json", "Cannot read latency table .*: not valid JSON"),
    ("inf.json", "model_ms: must be a finite positive number"),
    ("width.json", r"groups\[0\]: must be an int >= 1"),
    ("threads.json", r"settings\.num_threads: must be an int >= 1"),
    ("group.json", r"units\[0\]\.out\.groups: channel group 7 is not one"),
    ("no_units.json", "units: must list at least one timed layer"),
]


@pytest.mark.parametrize(
    "name, match", LATENCY_FILES, ids=[c[0] for c in LATENCY_FILES]
)
def test_bad_latency_table_files_name_the_file(
    name, match, model, latency_files, tmp_path, capsys
):
    import re

    path = latency_files / name
    with pytest.raises(ValueError, match=f"(?i){match}") as info:
        kfp.plan_pruning(model, target_latency="50%", latency_table=path)
    assert type(info.value) is ValueError and f"'{path}'" in str(info.value)
    argv = [
        "prune",
        str(latency_files / "model.keras"),
        "-o",
        str(tmp_path / "o.keras"),
    ]
    argv += ["--target-latency", "50%", "--latency-table", str(path)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0], err
    assert re.search(f"(?i){match}", err[0]), err
    assert _files(tmp_path) == set(), "nothing may be written"


def _doc_nodes(doc, path=()):
    yield path
    if isinstance(doc, dict):
        children = doc.items()
    elif isinstance(doc, list):
        children = enumerate(doc)
    else:
        children = ()
    for key, child in children:
        yield from _doc_nodes(child, (*path, key))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    value=_json | st.sampled_from([math.inf, -1.0, 0, 1e300, 5e-324, "2", 65]),
    delete=st.booleans(),
)
def test_random_latency_tables_are_valid_or_a_value_error(data, value, delete):
    """One node of a valid table replaced by random JSON (or deleted)."""
    doc = json.loads(json.dumps(_table_doc()))
    *parents, last = data.draw(st.sampled_from(list(_doc_nodes(doc))[1:]))
    target = doc
    for key in parents:
        target = target[key]
    if delete and isinstance(target, dict):
        del target[last]
    else:
        target[last] = value
    try:
        table = kfp.latency.LatencyTable.from_dict(doc)
    except ValueError as e:
        known = ("Corrupt latency table: ", "Not a keras-filterprune latency table")
        assert str(e).startswith((*known, "Latency table has format version")), e
        return
    # What was accepted honours the contract: finite positive predictions.
    assert table.predict({}) == pytest.approx(table.model_ms)
    lowest = table.min_latency_ms()
    assert 0 < lowest <= table.model_ms * (1 + 1e-9)
    for keep in (1, 3, 6):
        counts = {g: min(keep, w) for g, w in table.groups.items()}
        predicted = table.predict(counts)
        assert math.isfinite(predicted) and predicted >= lowest * (1 - 1e-9)
    again = kfp.latency.LatencyTable.from_json(table.to_json())
    assert again.to_dict() == table.to_dict()


@pytest.mark.parametrize("options", [{"round_to": 64}, {"min_filters": 64}])
def test_options_that_keep_every_channel_are_said(model, options):
    """`round_to`/`min_filters` above every group would silently remove nothing."""
    ((name, value),) = options.items()
    with pytest.warns(kfp.FilterPruneWarning, match=f"`{name}={value}`"):
        plan = kfp.plan_pruning(model, 0.5, **options)
    assert plan.num_removed == 0


# ---------------------------------------------------------------------------
# Issue #28: the newer surface (recovery, callback arguments, audio, model
# builders, datasets, SavedModel destinations, the command line's data files).
# Same contract as above: a builtin exception from the boundary naming the
# culprit, the model untouched, nothing written.
# ---------------------------------------------------------------------------


def _copy(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _two_inputs():
    a, b = keras.Input((6, 6, 2), name="a"), keras.Input((6, 6, 2), name="b")
    x = L.Add()([L.Conv2D(4, 3, name="ca")(a), L.Conv2D(4, 3, name="cb")(b)])
    x = L.GlobalAveragePooling2D()(L.BatchNormalization(name="bn")(x))
    return keras.Model({"a": a, "b": b}, L.Dense(2)(x))


def _dense_net(shape=(12, 12, 3), inputs=1):
    ins = [keras.Input(shape) for _ in range(inputs)]
    x = ins[0] if inputs == 1 else L.Concatenate()(ins)
    out = L.Dense(3)(L.Flatten()(x))
    return keras.Model(ins if inputs > 1 else ins[0], out)


def _nan_weights(model):
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    return model


def _recalibrate_twice_wider(t):
    """An unbuilt Sequential (inputs unknown until called): the first batch
    builds it, the second batch's width no longer fits its inputs."""
    model = keras.Sequential([L.Dense(3), L.BatchNormalization()])
    data = (np.ones((4, n), "float32") for n in (5, 6))  # a generator of batches
    kfp.recalibrate_batchnorm(model, data)


def _corrupt_digits(t):
    directory = t / "digits"
    directory.mkdir()
    (directory / "spoken_digits.json").write_text("{broken")
    return directory


def _other_weights(t):
    path = t / "w.weights.h5"
    kfp.models.dcase21_net().save_weights(path)
    path.rename(t / "w.weights.h5")
    return path


def _export_saved_model(model, path):
    from keras_filterprune.export import export_saved_model

    return export_saved_model(model, path)


def _foreign_directory(t):
    directory = t / "sm"
    directory.mkdir()
    (directory / "notes.txt").write_text("mine")
    return directory


_TONE = (0.1 * np.sin(np.arange(1600) / 5.0)).astype("float32")
_VOICES = {"voices": ["en-us+m1", "en-gb+f3"], "speeds": [160], "pitches": [50]}


def _tone_wav(t):
    import soundfile as sf

    path = t / "tone.wav"
    sf.write(path, _TONE, 16000)
    return str(path)


# (kind, id, call(model, tmp) -> None, exception, regex naming the culprit)
NEWER = [
    # recalibrate_batchnorm: batches that cannot feed the model
    (
        "recovery",
        "recal_shape",
        lambda m, t: kfp.recalibrate_batchnorm(_copy(m), _x(m)[:, :5, :5]),
        ValueError,
        r"`data` batch 0 .*\(4, 5, 5, 3\).*\(None, 12, 12, 3\)",
    ),
    (
        "recovery",
        "recal_rank",
        lambda m, t: kfp.recalibrate_batchnorm(_copy(m), _x(m)[..., 0]),
        ValueError,
        r"batch 0 .*has shape \(4, 12, 12\)",
    ),
    (
        "recovery",
        "recal_strings",
        lambda m, t: kfp.recalibrate_batchnorm(_copy(m), np.array([["a"]] * 4)),
        ValueError,
        "calibration `data`.*dtype <U1",
    ),
    (
        "recovery",
        "recal_dict_missing_key",
        lambda m, t: kfp.recalibrate_batchnorm(
            _two_inputs(), {"a": np.ones((2, 6, 6, 2)), "c": np.ones((2, 6, 6, 2))}
        ),
        ValueError,
        r"keys \['a', 'c'\].*missing: \['b'\]",
    ),
    (
        "recovery",
        "recal_dict_lengths",
        lambda m, t: kfp.recalibrate_batchnorm(
            _two_inputs(), {"a": np.ones((2, 6, 6, 2)), "b": np.ones((3, 6, 6, 2))}
        ),
        ValueError,
        r"different lengths \[2, 3\]",
    ),
    (
        "recovery",
        "recal_unknown_inputs",
        lambda m, t: _recalibrate_twice_wider(t),
        ValueError,
        r"calibration `data` batch 1 \(0-based\) has shape \(4, 6\) but model "
        r"'.*' takes its input of shape \(4, 5\)",
    ),
    (
        "recovery",
        "prune_calibration_nan",
        lambda m, t: kfp.prune_keras_model(
            m, 0.5, "l1_norm", calibration_data=np.full((4, 12, 12, 3), np.nan)
        ),
        ValueError,
        "calibration `data` batch 0 .*NaN",
    ),
    (
        "recovery",
        "distill_inputs_differ",
        lambda m, t: kfp.Distiller(_dense_net(), _dense_net((10, 10, 3))),
        ValueError,
        r"same inputs.*\(None, 12, 12, 3\).*\(None, 10, 10, 3\)",
    ),
    (
        "recovery",
        "distill_input_count",
        lambda m, t: kfp.Distiller(_dense_net(), _dense_net(inputs=2)),
        ValueError,
        "`student` and `teacher` must take the same inputs",
    ),
    (
        "recovery",
        "distill_nan_teacher",
        lambda m, t: kfp.Distiller(_dense_net(), _nan_weights(_dense_net())),
        ValueError,
        "`teacher` has NaN or Inf weights",
    ),
    (
        "recovery",
        "distill_config_missing",
        lambda m, t: kfp.Distiller.from_config({"student": None}),
        ValueError,
        r"\['student', 'teacher'\] missing",
    ),
    (
        "recovery",
        "distill_config_list",
        lambda m, t: kfp.Distiller.from_config([]),
        TypeError,
        "`config` must be a dict",
    ),
    # PruningCallback: arguments checked in the constructor
    (
        "callback",
        "cb_verbose_negative",
        lambda m, t: kfp.PruningCallback(verbose=-1),
        ValueError,
        r"`verbose` must be an int >= 0",
    ),
    (
        "callback",
        "cb_verbose_three",
        lambda m, t: kfp.PruningCallback(verbose=3),
        ValueError,
        r"`verbose` must be 0 .*Received: verbose=3",
    ),
    (
        "callback",
        "cb_calibration_empty",
        lambda m, t: kfp.PruningCallback(calibration_data=np.zeros((0, 12, 12, 3))),
        ValueError,
        "`calibration_data` holds no example",
    ),
    (
        "callback",
        "cb_calibration_nan",
        lambda m, t: kfp.PruningCallback(
            calibration_data=(np.full((4, 12, 12, 3), np.inf), np.zeros(4))
        ),
        ValueError,
        "`calibration_data` holds NaN or Inf",
    ),
    (
        "callback",
        "cb_calibration_strings",
        lambda m, t: kfp.PruningCallback(calibration_data={"x": np.array(["a", "b"])}),
        ValueError,
        "`calibration_data` must hold numbers",
    ),
    (
        "callback",
        "cb_from_config_none",
        lambda m, t: kfp.PruningCallback.from_config(None),
        TypeError,
        "`config` must be a dict",
    ),
    (
        "callback",
        "cb_from_config_schedule",
        lambda m, t: kfp.PruningCallback.from_config(
            {"schedule": {"class_name": "Nope", "config": {}}}
        ),
        TypeError,
        "`schedule` in the config is not a schedule",
    ),
    # audio: files, arrays and front-ends
    (
        "audio",
        "load_path_int",
        lambda m, t: kfp.audio.load_audio(3),
        TypeError,
        "`path` must be the path of an audio file",
    ),
    (
        "audio",
        "load_directory",
        lambda m, t: kfp.audio.load_audio(t),
        IsADirectoryError,
        "is a directory",
    ),
    (
        "audio",
        "resample_rate",
        lambda m, t: kfp.audio.resample(_TONE, 0, 8000),
        ValueError,
        "`orig_rate` must be a positive int",
    ),
    (
        "audio",
        "resample_nan",
        lambda m, t: kfp.audio.resample(_TONE * np.nan, 16000, 8000),
        ValueError,
        "`audio` holds NaN or Inf",
    ),
    (
        "audio",
        "resample_3d",
        lambda m, t: kfp.audio.resample(np.zeros((2, 2, 2)), 8000, 4000),
        ValueError,
        r"\(samples,\) or \(samples, channels\)",
    ),
    (
        "audio",
        "dataset_path_int",
        lambda m, t: kfp.audio.audio_dataset(7, sample_rate=16000, clip_seconds=0.1),
        TypeError,
        "`paths_or_dir` must be a directory",
    ),
    (
        "audio",
        "dataset_path_none",
        lambda m, t: kfp.audio.audio_dataset(
            [_tone_wav(t), None], sample_rate=16000, clip_seconds=0.1
        ),
        TypeError,
        r"`paths_or_dir` must list .* \[None\]",
    ),
    (
        "audio",
        "dataset_clip_inf",
        lambda m, t: kfp.audio.audio_dataset(
            _tone_wav(t), sample_rate=16000, clip_seconds=float("inf")
        ),
        ValueError,
        "`clip_seconds` must be a positive number \\(finite\\)",
    ),
    (
        "audio",
        "dataset_clip_no_sample",
        lambda m, t: kfp.audio.audio_dataset(
            _tone_wav(t), sample_rate=16000, clip_seconds=1e-6
        ),
        ValueError,
        "`clip_seconds` must hold at least one sample",
    ),
    (
        "audio",
        "dataset_seed",
        lambda m, t: kfp.audio.audio_dataset(
            _tone_wav(t), sample_rate=16000, clip_seconds=0.1, seed="abc"
        ),
        ValueError,
        "`seed` must be None or an int",
    ),
    (
        "audio",
        "dataset_class_names_str",
        lambda m, t: kfp.audio.audio_dataset(
            t, sample_rate=16000, clip_seconds=0.1, class_names="dog"
        ),
        TypeError,
        "`class_names` must be a list",
    ),
    (
        "audio",
        "dataset_class_names_twice",
        lambda m, t: kfp.audio.audio_dataset(
            _tone_wav(t), sample_rate=16000, clip_seconds=0.1, class_names=["a", "a"]
        ),
        ValueError,
        r"`class_names` names \['a'\] more than once",
    ),
    (
        "audio",
        "dataset_cache_empty",
        lambda m, t: kfp.audio.audio_dataset(
            _tone_wav(t), sample_rate=16000, clip_seconds=0.1, cache=""
        ),
        ValueError,
        "`cache` must be None, 'memory' \\(lower case\\)",
    ),
    (
        "audio",
        "dataset_cache_memory_case",
        lambda m, t: kfp.audio.audio_dataset(
            _tone_wav(t), sample_rate=16000, clip_seconds=0.1, cache="Memory"
        ),
        ValueError,
        "'Memory' would write cache files",
    ),
    (
        "audio",
        "dataset_labels_dict",
        lambda m, t: kfp.audio.audio_dataset(
            [_tone_wav(t)], {0: 1}, sample_rate=16000, clip_seconds=0.1
        ),
        TypeError,
        "`labels` must be a list",
    ),
    (
        "audio",
        "dataset_features_empty",
        lambda m, t: kfp.audio.audio_dataset(
            _tone_wav(t),
            sample_rate=16000,
            clip_seconds=0.1,
            features=kfp.audio.VGGishLogMel(),
        ),
        ValueError,
        r"`features` turns every clip .* shape \(0, 96, 64, 1\)",
    ),
    (
        "audio",
        "frontend_int16",
        lambda m, t: kfp.audio.PANNsLogMel()(np.zeros((1, 32000), "int16")),
        TypeError,
        "takes float waveforms.*int16",
    ),
    (
        "audio",
        "mel_nyquist",
        lambda m, t: kfp.audio.slaney_mel_matrix(upper_edge_hertz=30000.0),
        ValueError,
        "`upper_edge_hertz` must be at most the Nyquist",
    ),
    (
        "audio",
        "mel_edges",
        lambda m, t: kfp.audio.vggish_mel_matrix(
            lower_edge_hertz=8000.0, upper_edge_hertz=100.0
        ),
        ValueError,
        "`lower_edge_hertz` must be below",
    ),
    (
        "audio",
        "mel_rate",
        lambda m, t: kfp.audio.slaney_mel_matrix(sample_rate=0),
        ValueError,
        "`sample_rate` must be a positive number",
    ),
    (
        "audio",
        "mel_bins_str",
        lambda m, t: kfp.audio.vggish_mel_matrix(num_mel_bins="64"),
        ValueError,
        "`num_mel_bins` must be a positive int",
    ),
    (
        "audio",
        "mel_empty_bands",
        lambda m, t: kfp.audio.slaney_mel_matrix(fft_length=64, num_mel_bins=128),
        ValueError,
        r"`num_mel_bins`=128 is too many for `fft_length`=64",
    ),
    # model builders
    (
        "models",
        "activation_name",
        lambda m, t: kfp.models.dcase21_net(classifier_activation="nope"),
        ValueError,
        "`classifier_activation` must be None",
    ),
    (
        "models",
        "activation_int",
        lambda m, t: kfp.models.resnet_cifar(8, classifier_activation=3),
        ValueError,
        "`classifier_activation` must be None",
    ),
    (
        "models",
        "name_int",
        lambda m, t: kfp.models.vgg16_cifar(name=5),
        ValueError,
        "`name` must be a non-empty string",
    ),
    (
        "models",
        "dcase_too_small",
        lambda m, t: kfp.models.dcase21_net(input_shape=(8, 8, 1)),
        ValueError,
        r"`input_shape` must be at least \(20, 500\)",
    ),
    (
        "models",
        "vgg_unknown_size",
        lambda m, t: kfp.models.vgg16_cifar(input_shape=(None, None, 3)),
        ValueError,
        "`input_shape` must be fully known",
    ),
    (
        "models",
        "weights_other_model",
        lambda m, t: kfp.models.vggish(include_top=False, weights=_other_weights(t)),
        ValueError,
        "`weights`: '.*w.weights.h5' does not fit the 'vggish'",
    ),
    # datasets
    (
        "datasets",
        "fashion_normalize",
        lambda m, t: kfp.datasets.fashion_mnist(t, normalize="yes"),
        TypeError,
        "`normalize` must be a bool",
    ),
    (
        "datasets",
        "fashion_path_int",
        lambda m, t: kfp.datasets.fashion_mnist(5),
        TypeError,
        "`path` must be None or the directory",
    ),
    (
        "datasets",
        "fashion_path_file",
        lambda m, t: kfp.datasets.fashion_mnist(_write(t / "f.gz", b"x")),
        NotADirectoryError,
        "f.gz' is a file, not a directory",
    ),
    (
        "datasets",
        "digits_directory_int",
        lambda m, t: kfp.datasets.spoken_digits(7, **_VOICES),
        ValueError,
        "`directory` must be a path",
    ),
    (
        "datasets",
        "digits_directory_file",
        lambda m, t: kfp.datasets.spoken_digits(_write(t / "f", b"x"), **_VOICES),
        ValueError,
        "`directory` '.*f' is a file",
    ),
    (
        "datasets",
        "digits_flags",
        lambda m, t: kfp.datasets.spoken_digits(
            t, overwrite="no", verbose="yes", **_VOICES
        ),
        ValueError,
        "`overwrite` must be a bool(.|\n)*`verbose` must be 0 or 1",
    ),
    # SavedModel destinations
    (
        "files",
        "saved_model_over_other_files",
        lambda m, t: _export_saved_model(m, _foreign_directory(t)),
        FileExistsError,
        "holding files that are not a SavedModel",
    ),
]
NEWER_NEEDS_ESPEAK = {"digits_corrupt_record"}
NEWER.append(
    (
        "datasets",
        "digits_corrupt_record",
        lambda m, t: kfp.datasets.spoken_digits(_corrupt_digits(t), **_VOICES),
        ValueError,
        "spoken_digits.json' .* is not valid JSON",
    )
)


def _tflite_bytes(model) -> bytes:
    from keras_filterprune.runtime.convert import convert_tflite

    return convert_tflite(model, None, None, False)


def _nan_weights(model):
    clone = _copy(model)
    weights = clone.get_weights()
    weights[0] = np.full_like(weights[0], np.nan)
    clone.set_weights(weights)
    return clone


def _labels(model, top: int):
    return np.arange(4) % top


_needs_litert = __import__("importlib").util.find_spec("ai_edge_litert") is None
# Feeds of exported models (export, runtime): checked against the model's inputs.
NEWER_FEEDS = [
    (
        "runtime",
        "run_tflite_wrong_channels",
        lambda m, t: kfp.runtime.run_tflite(_tflite_bytes(m), _x(m)[..., :2]),
        ValueError,
        r"`inputs` for .* has shape \(4, 12, 12, 2\)",
    ),
    (
        "runtime",
        "run_tflite_string",
        lambda m, t: kfp.runtime.run_tflite(_tflite_bytes(m), "abc"),
        TypeError,
        "`inputs` must be an array",
    ),
    (
        "runtime",
        "run_tflite_garbage",
        lambda m, t: kfp.runtime.run_tflite(b"not a flatbuffer" * 8, _x(m)),
        ValueError,
        "not a TFLite model LiteRT can load",
    ),
    (
        "export",
        "representative_nan",
        lambda m, t: kfp.export_tflite(
            m, t / "m.tflite", "int8", np.full((8, 12, 12, 3), np.nan), verbose=0
        ),
        ValueError,
        "`representative_data` .* holds NaN or Inf",
    ),
    (
        "export",
        "representative_shape",
        lambda m, t: kfp.export_tflite(
            m, t / "m.tflite", "int8", np.ones((8, 6, 6, 3)), verbose=0
        ),
        ValueError,
        r"`representative_data` .* has shape \(8, 6, 6, 3\)",
    ),
    (
        "export",
        "representative_path",
        lambda m, t: kfp.export_tflite(m, t / "m.tflite", "int8", "x.npy", verbose=0),
        TypeError,
        "not a path",
    ),
    (
        "export",
        "keras_representative_shape",
        lambda m, t: kfp.export.save_keras(
            m, t / "m.keras", representative_data=np.zeros((2, 3, 3))
        ),
        ValueError,
        "`representative_data` .* has shape",
    ),
    (
        "export",
        "verify_int",
        lambda m, t: kfp.export_tflite(m, t / "m.tflite", verify=1, verbose=0),
        TypeError,
        "`verify`",
    ),
    (
        "export",
        "nan_weights",
        lambda m, t: kfp.export_tflite(_nan_weights(m), t / "m.tflite", verbose=0),
        ValueError,
        "NaN or Inf in weight",
    ),
    (
        "runtime",
        "eval_data_nan",
        lambda m, t: kfp.runtime.compare_models(
            m, m, eval_data=(np.full((4, 12, 12, 3), np.nan), _labels(m, 2)), verbose=0
        ),
        ValueError,
        "`eval_data` .* holds NaN or Inf",
    ),
    (
        "runtime",
        "eval_data_shape",
        lambda m, t: kfp.runtime.compare_models(
            m, m, eval_data=(np.ones((4, 5, 5, 3)), _labels(m, 2)), verbose=0
        ),
        ValueError,
        r"`eval_data` .* has shape \(4, 5, 5, 3\)",
    ),
    (
        "runtime",
        "eval_labels_out_of_range",
        lambda m, t: kfp.runtime.compare_models(
            m, m, eval_data=(_x(m), np.array([0, 1, 70, 9])), verbose=0
        ),
        ValueError,
        "labels of `eval_data` go up to 70",
    ),
    (
        "runtime",
        "compare_other_inputs",
        lambda m, t: kfp.runtime.compare_models(
            m, keras.Sequential([keras.Input((6, 6, 3)), L.Flatten(), L.Dense(2)])
        ),
        ValueError,
        "take different inputs",
    ),
]
# The third battery (#28): the checks it found missing, by kind.
_SMALL_RESULT = dict(
    baseline=0.9,
    curves={"c1": [(0.0, 0.9), (0.5, 0.8)]},
    groups={"c1": ["c1"]},
    widths={"c1": 8},
)


def _sensitivity_result():
    from keras_filterprune.sensitivity import SensitivityResult

    return SensitivityResult(**_SMALL_RESULT)


def _sequential_teacher(shape):
    """Never called: its `input` is unknown to Keras, its `inputs` are not."""
    return keras.Sequential([keras.Input(shape), L.Flatten(), L.Dense(3)])


def _dense_twin(filters):
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(filters, 3, name="c1")(inputs)
    return keras.Model(inputs, L.Dense(3, name="head")(L.GlobalAveragePooling2D()(x)))


def _compiled(model):
    clone = _copy(model)
    clone.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return clone


def _distill_fit(x, y, loss="sparse_categorical_crossentropy"):
    """Distiller.fit on a student whose weights must not change when it fails."""
    student, teacher = _dense_net(), _dense_net()
    before = [w.copy() for w in student.get_weights()]
    distiller = kfp.Distiller(student, teacher)
    distiller.compile("sgd", loss)
    try:
        distiller.fit(x, y, epochs=1, verbose=0)
    finally:
        after = student.get_weights()
        assert all(np.array_equal(a, b) for a, b in zip(before, after))


_XD = np.random.default_rng(0).normal(size=(8, 12, 12, 3)).astype("float32")
_YD = np.arange(8) % 3


def _with_nan(x):
    x = x.copy()
    x[5, 0, 0, 0] = np.nan
    return x


BATTERY3 = [
    (
        "recovery",
        "distill_fit_nan_x",
        lambda m, t: _distill_fit(_with_nan(_XD), _YD),
        ValueError,
        r"`x` of Distiller.fit holds NaN or Inf \(example 5\)",
    ),
    (
        "recovery",
        "distill_fit_string_x",
        lambda m, t: _distill_fit(np.full((8, 12, 12, 3), "a"), _YD),
        TypeError,
        "`x` of Distiller.fit must hold numbers",
    ),
    (
        "recovery",
        "distill_fit_labels_out_of_range",
        lambda m, t: _distill_fit(_XD, np.full(8, 7)),
        ValueError,
        "`y` of Distiller.fit holds class 7, but the student has 3 classes",
    ),
    (
        "recovery",
        "distill_fit_one_hot_sparse_loss",
        lambda m, t: _distill_fit(_XD, np.eye(3)[_YD]),
        ValueError,
        r"one-hot rows .* takes class indices",
    ),
    (
        "validation",
        "temperature_inf",
        lambda m, t: kfp.Distiller(_dense_net(), _dense_net(), temperature=math.inf),
        ValueError,
        r"`temperature` must be a finite number in \(0, inf\)",
    ),
    (
        "recovery",
        "distill_sequential_teacher_inputs",
        lambda m, t: kfp.Distiller(_dense_net(), _sequential_teacher((10, 10, 3))),
        ValueError,
        r"same inputs.*\(None, 12, 12, 3\).*\(None, 10, 10, 3\)",
    ),
    (
        "sensitivity",
        "markdown_digits",
        lambda m, t: _sensitivity_result().to_markdown(digits=-1),
        ValueError,
        "`digits` must be an int >= 0",
    ),
    (
        "plots",
        "plot_sensitivity_dict",
        lambda m, t: kfp.plots.plot_sensitivity(_SMALL_RESULT["curves"]),
        TypeError,
        "`result` must be the SensitivityResult",
    ),
    (
        "plots",
        "plot_sensitivity_negative_drop",
        lambda m, t: kfp.plots.plot_sensitivity(_sensitivity_result(), max_drop=-1),
        ValueError,
        "`max_drop`",
    ),
    (
        "plots",
        "plot_widths_other_model",
        lambda m, t: kfp.plots.plot_widths(_dense_twin(8), _dense_twin(16)),
        ValueError,
        "not a pruned copy of `original`: layer 'c1' has 16 filters",
    ),
    (
        "plots",
        "plot_widths_plan_of_other_model",
        lambda m, t: kfp.plots.plot_widths(
            _dense_twin(8), kfp.plan_pruning(_dense_twin(16), 0.5)
        ),
        ValueError,
        "The plan does not match the model",
    ),
    (
        "scoring",
        "score_unknown_kwarg",
        lambda m, t: kfp.score_filters(m, "l1_norm", bogus_kw=3),
        TypeError,
        r"Unexpected keyword arguments \['bogus_kw'\].*passive",
    ),
    (
        "scoring",
        "taylor_labels_out_of_range",
        lambda m, t: kfp.score_filters(_compiled(m), "taylor", (_x(m), np.full(4, 9))),
        ValueError,
        r"labels of `data` \(batch 0\) hold class 9.*3 classes",
    ),
]
NEWER.extend(BATTERY3)
NEWER_FEEDS += [
    (
        "runtime",
        "run_tflite_dequantize_string",
        lambda m, t: kfp.runtime.run_tflite(_tflite_bytes(m), _x(m), dequantize="no"),
        TypeError,
        "`dequantize` must be a bool",
    ),
    (
        "runtime",
        "eval_labels_strings",
        lambda m, t: kfp.runtime.compare_models(
            m, m, eval_data=(_x(m), np.array(list("abcd"))), verbose=0
        ),
        TypeError,
        "labels of `eval_data` must be numbers",
    ),
    (
        "runtime",
        "eval_one_hot_width",
        lambda m, t: kfp.runtime.compare_models(
            m, m, eval_data=(_x(m), np.eye(5)[:4]), verbose=0
        ),
        ValueError,
        "one-hot labels of `eval_data` have 5 columns.*3 classes",
    ),
]
if not _needs_litert:
    NEWER.extend(NEWER_FEEDS)


@pytest.mark.parametrize("case", NEWER, ids=[f"{c[0]}-{c[1]}" for c in NEWER])
def test_newer_surface_bad_input_is_a_clear_error(case, model, tmp_path):
    _, name, call, error, match = case
    if name in NEWER_NEEDS_ESPEAK and not __import__("shutil").which("espeak-ng"):
        pytest.skip("espeak-ng is not installed")
    before = oracle.snapshot(model)
    files = _files(tmp_path)
    with pytest.raises(error, match=match) as info:
        call(model, tmp_path)
    assert type(info.value).__module__ == "builtins", type(info.value)
    oracle.assert_untouched(model, before)
    new = _files(tmp_path) - files
    inputs = {"tone.wav", "w.weights.h5", "f", "f.gz", "sm/notes.txt"}
    assert new <= inputs | {"digits/spoken_digits.json"}, f"left: {sorted(new)}"
    if name == "saved_model_over_other_files":
        assert (tmp_path / "sm" / "notes.txt").read_text() == "mine"


# Valid inputs of the same functions, refused or mishandled before #28.
NEWER_OK = [
    (
        "numpy_ints_to_builders",
        lambda t: kfp.models.resnet_cifar(
            np.int64(8), num_classes=np.int64(4), input_shape=(np.int64(16), 16, 3)
        ),
    ),
    (
        "numpy_clip_seconds",
        lambda t: kfp.audio.audio_dataset(
            _tone_wav(t), sample_rate=np.int64(16000), clip_seconds=np.float32(0.1)
        ),
    ),
    (
        "dict_with_extra_key_recalibrates",  # Keras warns and ignores the extra key
        lambda t: kfp.recalibrate_batchnorm(
            _two_inputs(),
            {
                "a": np.ones((2, 6, 6, 2)),
                "b": np.ones((2, 6, 6, 2)),
                "c": np.ones((2, 1)),
            },
        ),
    ),
    (
        "saved_model_replaces_a_saved_model",
        lambda t: [_export_saved_model(_dense_net(), t / "sm") for _ in range(2)],
    ),
]


@pytest.mark.parametrize("case", NEWER_OK, ids=[c[0] for c in NEWER_OK])
def test_newer_surface_valid_input_works(case, tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Keras: the unused dict key
        case[1](tmp_path)


@pytest.fixture(scope="module")
def files28(tmp_path_factory, model):
    d = tmp_path_factory.mktemp("bad_cli_28")
    model.save(d / "model.keras")
    x = np.random.default_rng(0).normal(size=(4, 12, 12, 3)).astype("float32")
    np.savez(d / "nan.npz", x=np.full_like(x, np.nan))
    np.savez(d / "small.npz", x=x[:, :5, :5])
    np.savez(d / "empty.npz", x=x[:0])
    np.savez(d / "strings.npz", x=np.array([["a"]] * 4))
    np.savez(d / "half_labels.npz", x=x, y=np.full(4, 0.5))
    np.savez(d / "label_7.npz", x=x, y=np.full(4, 7))
    np.save(d / "rep_nan.npy", np.full_like(x, np.inf))
    np.save(d / "rep_small.npy", x[:, :4, :4])
    (d / "junk.keras").write_bytes(b"\x00junk")
    (d / "file").write_text("x")
    return d


# `prune` to a latency budget, ending with `--importance` (its value follows).
_CURVES_PRUNE = ["prune", "{m}", "-o", "{t}/o.keras", "--target-latency", "50%"]
_CURVES_PRUNE += ["--latency-table", "{f}/table.json", "--importance"]

CLI28 = [
    (
        "macs_percent_range",
        ["prune", "{m}", "-o", "{t}/o.keras", "--target-macs", "150%"],
        2,
        r"--target-macs: must be a percentage .* \(0%, 100%\]",
    ),
    (
        "macs_percent_text",
        ["prune", "{m}", "-o", "{t}/o.keras", "--target-macs", "abc%"],
        2,
        "--target-macs: not a percentage",
    ),
    (
        "latency_text",
        [
            "prune",
            "{m}",
            "-o",
            "{t}/o.keras",
            "--target-latency",
            "fast",
            "--latency-table",
            "{f}/table.json",
        ],
        2,
        "--target-latency: not a latency",
    ),
    (
        "latency_zero",
        [
            "prune",
            "{m}",
            "-o",
            "{t}/o.keras",
            "--target-latency",
            "0ms",
            "--latency-table",
            "{f}/table.json",
        ],
        2,
        "--target-latency: must be > 0",
    ),
    (
        "latency_no_table",
        ["prune", "{m}", "-o", "{t}/o.keras", "--target-latency", "50%"],
        2,
        "--target-latency needs --latency-table",
    ),
    (
        "importance_unknown",
        [*_CURVES_PRUNE, "fisher"],
        2,
        "--importance: expected 'taylor', or the .json",
    ),
    (
        "importance_missing_file",
        [*_CURVES_PRUNE, "{t}/none.json"],
        1,
        "--importance curves file '.*none.json' does not exist",
    ),
    (
        "importance_not_curves",  # a latency table given as the curves
        [*_CURVES_PRUNE, "{f}/table.json"],
        1,
        "--importance: Cannot read sensitivity curves '.*table.json': .*to_dict",
    ),
    (
        "importance_without_budget",
        ["prune", "{m}", "-o", "{t}/o.keras", "--importance", "taylor"],
        2,
        "--importance decides .* add --target-latency",
    ),
    (
        "sensitivity_json_suffix",
        ["sensitivity", "{m}", "--data", "{f}/label_7.npz", "--json", "{t}/c.txt"],
        1,
        "--json must end with .json",
    ),
    (
        "round_auto_no_table",
        ["prune", "{m}", "-o", "{t}/o.keras", "--round-to", "auto"],
        2,
        "--round-to auto .* add --latency-table",
    ),
    (
        "sensitivity_round_auto",
        ["sensitivity", "{m}", "--data", "{f}/label_7.npz", "--round-to", "auto"],
        2,
        "--round-to auto .* sensitivity does not read",
    ),
    (
        "calibration_nan",
        ["prune", "{m}", "-o", "{t}/o.keras", "--calibration-data", "{f}/nan.npz"],
        1,
        "nan.npz': x holds NaN or Inf",
    ),
    (
        "calibration_shape",
        ["prune", "{m}", "-o", "{t}/o.keras", "--calibration-data", "{f}/small.npz"],
        1,
        r"--calibration-data '.*small.npz': x has shape \(4, 5, 5, 3\)",
    ),
    (
        "calibration_empty",
        ["prune", "{m}", "-o", "{t}/o.keras", "--calibration-data", "{f}/empty.npz"],
        1,
        "empty.npz': x holds no example",
    ),
    (
        "data_strings",
        [
            "prune",
            "{m}",
            "-o",
            "{t}/o.keras",
            "--criterion",
            "apoz",
            "--data",
            "{f}/strings.npz",
        ],
        1,
        "strings.npz': x must hold numbers",
    ),
    (
        "labels_not_indices",
        ["sensitivity", "{m}", "--data", "{f}/half_labels.npz"],
        1,
        "half_labels.npz': y must hold class indices .* 0.5",
    ),
    (
        "labels_out_of_range",
        ["sensitivity", "{m}", "--data", "{f}/label_7.npz"],
        1,
        "label_7.npz': y holds label 7 but the model has 3 classes",
    ),
    (
        "taylor_labels",
        ["score", "{m}", "--criterion", "taylor", "--data", "{f}/label_7.npz"],
        1,
        "y holds label 7",
    ),
    (
        "plot_format",
        ["sensitivity", "{m}", "--data", "{f}/label_7.npz", "--plot", "{t}/p.txt"],
        1,
        "--plot '.*p.txt': the image format",
    ),
    (
        "representative_inf",
        [
            "export",
            "{m}",
            "--tflite",
            "{t}/m.tflite",
            "--quantize",
            "int8",
            "--representative",
            "{f}/rep_nan.npy",
        ],
        1,
        "'.*rep_nan.npy': x holds NaN or Inf",
    ),
    (
        "representative_shape",
        [
            "export",
            "{m}",
            "--tflite",
            "{t}/m.tflite",
            "--quantize",
            "int8",
            "--representative",
            "{f}/rep_small.npy",
        ],
        1,
        r"representative data '.*rep_small.npy': x has shape \(4, 4, 4, 3\)",
    ),
    (
        "model_not_zip",
        ["profile", "{f}/junk.keras"],
        1,
        "junk.keras': it is not a zip archive",
    ),
    (
        "demo_data_dir",
        ["demo", "--quick", "--data-dir", "{t}/none", "--output-dir", "{t}/demo"],
        1,
        "--data-dir '.*none' is not a directory",
    ),
    (
        "demo_output_file",
        ["demo", "--quick", "--output-dir", "{f}/file"],
        1,
        "--output-dir '.*file' is a file",
    ),
]


@pytest.mark.parametrize("case", CLI28, ids=[c[0] for c in CLI28])
def test_bad_data_files_on_the_command_line(case, files28, tmp_path, capsys):
    import re

    _, argv, code, match = case
    if not (files28 / "table.json").exists():
        (files28 / "table.json").write_text(json.dumps(_table_doc()))
    names = {"m": str(files28 / "model.keras"), "f": str(files28), "t": str(tmp_path)}
    argv = [a.format(**names) for a in argv]
    before = _files(files28)
    assert cli.main(argv) == code, capsys.readouterr().err
    err = capsys.readouterr().err.strip().splitlines()
    assert any(re.search(match, line) for line in err), err
    if code == 1:
        assert len(err) == 1 and "Error:" not in err[0], err
    assert _files(tmp_path) == set(), "nothing may be written"
    assert _files(files28) == before
