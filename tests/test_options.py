"""The planning options are declared once (`keras_filterprune._options`): every
entry point takes the same names with the same defaults and documents them."""

import dataclasses
import inspect

import pytest

from keras_filterprune import PruningCallback, plan_pruning, sensitivity_analysis
from keras_filterprune._cli_parser import build_parser
from keras_filterprune._options import PlanOptions, option_names

DEFAULTS = {f.name: f.default for f in dataclasses.fields(PlanOptions)}


def _parameters(fn) -> dict:
    return dict(inspect.signature(fn).parameters)


def _cli_flags(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {a.dest for a in sub.choices[command]._actions}


@pytest.mark.parametrize("entry", [plan_pruning, PruningCallback.__init__])
def test_every_option_is_taken_with_its_declared_default(entry):
    params = _parameters(entry)
    missing = set(option_names()) - set(params)
    assert not missing, f"{entry.__qualname__} lacks {sorted(missing)}"
    for name in option_names():
        assert params[name].default == DEFAULTS[name], name


def test_the_option_sets_are_the_same_everywhere():
    plan_args = set(_parameters(plan_pruning)) & set(DEFAULTS)
    callback_args = set(_parameters(PruningCallback.__init__)) & set(DEFAULTS)
    cli_flags = _cli_flags("prune") & set(DEFAULTS)
    assert callback_args == cli_flags == set(option_names())
    assert plan_args == set(option_names())
    sensitivity = set(_parameters(sensitivity_analysis)) | _cli_flags("sensitivity")
    assert sensitivity & set(DEFAULTS) == set(option_names("sensitivity"))


@pytest.mark.parametrize("entry", [plan_pruning, PruningCallback])
def test_every_option_is_documented(entry):
    doc = entry.__doc__
    assert "{planning_options}" not in doc
    for name in option_names():
        assert f"\n        {name}: " in doc, name


def test_the_same_message_wherever_an_option_comes_from(tmp_path):
    from keras_filterprune import cli

    model_args = dict(round_to=0)
    with pytest.raises(ValueError, match="round_to") as from_plan:
        PlanOptions.from_kwargs(**model_args)
    with pytest.raises(ValueError) as from_callback:
        PruningCallback(**model_args)
    assert str(from_plan.value) == str(from_callback.value)
    with pytest.raises(TypeError, match="Unknown planning options"):
        PlanOptions.from_kwargs(target_flops="50%")
    assert cli.main(["prune", "m.keras", "-o", str(tmp_path / "o.keras"),
                     "--round-to", "0"]) == 2  # fmt: skip


def test_importance_is_an_option_like_the_others():
    """`importance` (#30) is declared once like the others: `plan_pruning`, the
    callback and the `prune` command take and document it."""
    assert "importance" in option_names()
    assert "\n        importance: " in PruningCallback.__doc__
    with pytest.raises(ValueError, match="importance"):
        PruningCallback(importance="bogus")
    with pytest.raises(ValueError, match="importance"):
        PlanOptions.from_kwargs(importance="taylor")  # needs target_latency


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (
            dict(per_layer={"c1": 0.5}, exclude=["c1"]),
            ValueError,
            r"Layer 'c1' is both in `per_layer` .* and in `exclude`",
        ),
        (
            dict(per_layer={"c2": 0.5, "c1": 0.2}, exclude="c1"),
            ValueError,
            r"Layer 'c1' is both in `per_layer`",
        ),
        (
            dict(target_latency="150%"),
            ValueError,
            r"`target_latency` as a percentage .* in \(0%, 100%\].* Received: "
            r"target_latency='150%'",
        ),
        (dict(target_latency=b"5ms"), TypeError, "`target_latency` must be a number"),
        (dict(target_latency=True), TypeError, "`target_latency` must be a number"),
    ],
)
def test_what_needs_no_model_is_refused_with_the_options(kwargs, error, match):
    """A contradiction or a bad budget is refused where the options are checked,
    with one message: by `plan_pruning` and the callback's constructor alike."""
    with pytest.raises(error, match=match) as from_options:
        PlanOptions.from_kwargs(**kwargs)
    with pytest.raises(error) as from_callback:
        PruningCallback(**kwargs)
    assert str(from_options.value) == str(from_callback.value)
