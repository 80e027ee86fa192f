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
        "cannot read plan",
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
    ("random.json", "not a latency table JSON.*is not UTF-8 text"),
    ("half.json", "not a latency table JSON.*is not valid JSON"),
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
