"""Tests of keras_filterprune.schedules."""

import json

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keras_filterprune.schedules import ConstantRatio, PolynomialRatio, RatioSchedule


def test_constant_ratio_steps():
    schedule = ConstantRatio(0.3, begin_step=2, end_step=6, frequency=2)
    got = [schedule(step) for step in range(9)]
    assert [step for step in range(9) if got[step][0]] == [2, 4, 6]
    assert {r for _, r in got} == {0.3}
    forever = ConstantRatio(0.5, frequency=3)
    assert forever(3000) == (True, 0.5)
    assert forever(3001) == (False, 0.5)


def test_polynomial_ratio_values():
    schedule = PolynomialRatio(0.1, 0.5, begin_step=10, end_step=20, frequency=5)
    should, ratio = schedule(15)
    assert should is True
    assert ratio == pytest.approx(0.5 + (0.1 - 0.5) * 0.5**3)
    assert schedule(5) == (False, pytest.approx(0.1))
    assert schedule(20) == (True, pytest.approx(0.5))
    assert schedule(25) == (False, pytest.approx(0.5))
    # begin == end: the final ratio at once
    assert PolynomialRatio(0.0, 0.4, 3, 3, frequency=1)(3) == (True, 0.4)


def test_steps_as_numpy_and_tensors():
    import tensorflow as tf

    schedule = PolynomialRatio(0.0, 0.5, 0, 4, power=1, frequency=2)
    for step in (np.int64(2), tf.constant(2), tf.constant(2, dtype=tf.int64)):
        should, ratio = schedule(step)
        assert should is True and ratio == pytest.approx(0.25)
        assert isinstance(ratio, float)


@pytest.mark.parametrize(
    "schedule",
    [
        ConstantRatio(0.25, begin_step=1, end_step=9, frequency=4),
        PolynomialRatio(0.1, 0.7, begin_step=2, end_step=12, power=2, frequency=3),
    ],
)
def test_config_round_trip(schedule):
    config = schedule.get_config()
    assert type(schedule).from_config(config) == schedule
    serialized = keras.saving.serialize_keras_object(schedule)
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(restored) is type(schedule)
    assert restored.get_config() == config
    assert [restored(s) for s in range(15)] == [schedule(s) for s in range(15)]
    assert type(schedule).__name__ in repr(schedule)


def test_matches_tfmot():
    tfmot = pytest.importorskip("tensorflow_model_optimization")
    pairs = [
        (
            PolynomialRatio(0.1, 0.6, 5, 45, power=3, frequency=10),
            tfmot.sparsity.keras.PolynomialDecay(
                0.1, 0.6, 5, 45, power=3, frequency=10
            ),
        ),
        (
            PolynomialRatio(0.0, 0.8, 0, 30, power=1, frequency=7),
            tfmot.sparsity.keras.PolynomialDecay(0.0, 0.8, 0, 30, power=1, frequency=7),
        ),
        (
            ConstantRatio(0.4, 3, 20, frequency=5),
            tfmot.sparsity.keras.ConstantSparsity(0.4, 3, 20, frequency=5),
        ),
        (
            ConstantRatio(0.4, 3, frequency=5),
            tfmot.sparsity.keras.ConstantSparsity(0.4, 3, frequency=5),
        ),
    ]
    for ours, theirs in pairs:
        for step in range(0, 60):
            should, ratio = ours(step)
            t_should, t_ratio = theirs(step)
            assert should == bool(t_should.numpy()), (ours, step)
            assert ratio == pytest.approx(float(t_ratio.numpy()), abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    initial=st.floats(0.0, 0.95),
    final=st.floats(0.0, 0.95),
    begin=st.integers(0, 50),
    span=st.integers(0, 50),
    power=st.floats(0.1, 5.0),
    frequency=st.integers(1, 10),
)
def test_polynomial_ratio_properties(initial, final, begin, span, power, frequency):
    schedule = PolynomialRatio(initial, final, begin, begin + span, power, frequency)
    ratios = [schedule(step)[1] for step in range(begin + span + 5)]
    assert all(0.0 <= r < 1.0 for r in ratios)
    assert ratios[-1] == pytest.approx(final)
    if span:
        assert ratios[0] == pytest.approx(initial)
    diffs = np.diff(ratios)
    if initial <= final:
        assert np.all(diffs >= -1e-12)  # grows monotonically to the final ratio
    else:
        assert np.all(diffs <= 1e-12)
    steps = [s for s in range(begin + span + 5) if schedule(s)[0]]
    assert steps == list(range(begin, begin + span + 1, frequency))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: ConstantRatio(1.5), ValueError, r"Received: ratio=1.5"),
        (lambda: ConstantRatio(-0.1), ValueError, "ratio=-0.1"),
        (lambda: ConstantRatio("0.5"), TypeError, "must be a number"),
        (lambda: ConstantRatio(0.5, begin_step=-1), ValueError, "begin_step"),
        (lambda: ConstantRatio(0.5, end_step=-2), ValueError, "end_step"),
        (lambda: ConstantRatio(0.5, 5, 3), ValueError, "end_step"),
        (lambda: ConstantRatio(0.5, frequency=0), ValueError, "frequency"),
        (lambda: ConstantRatio(0.5, frequency=1.5), TypeError, "frequency"),
        (lambda: PolynomialRatio(0.1, 1.0, 0, 10), ValueError, "final_ratio"),
        (lambda: PolynomialRatio(0.1, 0.5, 0, -1), ValueError, "end_step"),
        (lambda: PolynomialRatio(0.1, 0.5, 10, 5), ValueError, "end_step"),
        (lambda: PolynomialRatio(0.1, 0.5, 0, 5, power=0), ValueError, "power"),
        (lambda: PolynomialRatio(0.1, 0.5, 0, 5, power=True), ValueError, "power"),
    ],
)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_error_message_is_keras_style():
    with pytest.raises(ValueError) as info:
        ConstantRatio(1.5)
    assert str(info.value) == "`ratio` must be in [0, 1). Received: ratio=1.5"


def test_base_class_contract():
    class Half(RatioSchedule):
        def __call__(self, step):
            return step % 2 == 0, 0.5

        def get_config(self):
            return {}

    assert Half()(4) == (True, 0.5)
    assert Half.from_config({}) == Half()
    with pytest.raises(NotImplementedError):
        RatioSchedule()(0)
