"""Tests of `keras_filterprune.criteria`: passive, active and the registry.

Every criterion is checked against an independent reference written straight from
its definition (per-filter / per-channel Python loops; `np.linalg.svd` for the
operator norm), not against a second copy of the vectorised code.
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import keras_filterprune
from keras_filterprune import criteria

PASSIVE = ["l1_norm", "l2_norm", "operator_norm", "geometric_median", "random"]
ACTIVE = ["apoz", "hrank", "mean_activation", "taylor"]
# JAX computes float64 models in float32 unless x64 is enabled; Keras' PyTorch
# losses lose float64 precision (finite differences below 1e-4 are noise there).
X64 = keras.backend.backend() == "tensorflow" or (
    keras.backend.backend() == "jax" and __import__("jax").config.jax_enable_x64
)
# Homogeneity degree: s(c·W) = c**p · s(W) for c > 0.
DEGREE = {"l1_norm": 1, "l2_norm": 1, "operator_norm": 2, "geometric_median": 1}
SHAPES = {
    "conv2d_1x1": (1, 1, 8, 6),
    "conv2d_3x3": (3, 3, 5, 7),
    "conv2d_7x7": (7, 7, 3, 16),
    "conv1d": (5, 4, 6),
    "conv3d": (3, 3, 3, 2, 5),
    "dense": (10, 6),
    "wide": (3, 3, 2, 40),
}


# ----------------------------------------------------------------- references


def as_w(kernel):
    kernel = np.asarray(kernel).astype(np.float64)
    return kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1])


def ref_l1(kernel):
    w = as_w(kernel)
    return np.array([np.sum(np.abs(w[:, :, j])) for j in range(w.shape[2])])


def ref_l2(kernel):
    w = as_w(kernel)
    return np.array([np.sqrt(np.sum(w[:, :, j] ** 2)) for j in range(w.shape[2])])


def ref_geometric_median(kernel):
    w = as_w(kernel)
    n = w.shape[2]
    filters = [w[:, :, j].ravel() for j in range(n)]
    return np.array(
        [
            sum(np.linalg.norm(filters[j] - filters[m]) for m in range(n))
            for j in range(n)
        ]
    )


def ref_operator_norm(kernel, sign_rule="numpy"):
    """Singh & Plumbley: one SVD per input channel, as in the authors' code.

    `sign_rule="numpy"` is the literal `np.sign(U[0, 0])`; `"first_clear"` uses the
    first filter with `|U[j, 0]| > sqrt(eps)`, the documented convention when
    `U[0, 0]` vanishes.
    """
    w = as_w(kernel)
    _, c_in, n = w.shape
    total = np.zeros(n)
    for i in range(c_in):
        a = w[:, i, :].T  # N x k, one row per filter
        m = a.mean(axis=0)
        u, _, vt = np.linalg.svd(a - m, full_matrices=False)
        if sign_rule == "numpy":
            sign = np.sign(u[0, 0])
        else:
            clear = np.flatnonzero(np.abs(u[:, 0]) > np.sqrt(np.finfo(float).eps))
            sign = np.sign(u[clear[0], 0]) if clear.size else 0.0
        c = sign * vt[0]
        for j in range(n):
            total[j] += np.dot(w[:, i, j] - m, c)
    return total**2


REFERENCES = {
    "l1_norm": ref_l1,
    "l2_norm": ref_l2,
    "operator_norm": ref_operator_norm,
    "geometric_median": ref_geometric_median,
}


def assert_scores_close(actual, expected, rtol=1e-9):
    """Close relative to the largest score (scores near 0 have no relative scale)."""
    assert actual.shape == expected.shape
    assert actual.dtype == np.float64
    scale = max(np.max(np.abs(expected)), 1e-300)
    np.testing.assert_allclose(actual / scale, expected / scale, rtol=0, atol=rtol)


# ------------------------------------------------------------ passive: values


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_passive_matches_reference(name, shape, rng):
    kernel = rng.standard_normal(shape).astype(np.float32)
    expected = REFERENCES[name](kernel)
    assert_scores_close(criteria.get(name)(kernel), expected)


def test_operator_norm_matches_reference_on_vgg_sized_layer(rng):
    kernel = rng.standard_normal((3, 3, 64, 128)).astype(np.float32)
    assert_scores_close(criteria.operator_norm(kernel), ref_operator_norm(kernel))


def test_operator_norm_agrees_with_authors_normalisation(rng):
    # The authors divide by the maximum: same scores up to that factor.
    kernel = rng.standard_normal((3, 3, 6, 9))
    scores = criteria.operator_norm(kernel)
    expected = ref_operator_norm(kernel)
    np.testing.assert_allclose(scores / scores.max(), expected / expected.max())


def test_known_values():
    kernel = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -0.5]])
    np.testing.assert_array_equal(criteria.l1_norm(kernel), [4.0, 2.0, 1.0])
    np.testing.assert_allclose(criteria.l2_norm(kernel), np.sqrt([10.0, 4.0, 0.5]))
    points = np.array([[0.0, 1.0, 3.0]])
    np.testing.assert_allclose(criteria.geometric_median(points), [4.0, 3.0, 5.0])
    # One channel, k = 1: ((w_j - mean) * sign)², the sign set by filter 0.
    np.testing.assert_allclose(
        criteria.operator_norm(np.array([[1.0, 2.0, 4.0]])), [16 / 9, 1 / 9, 25 / 9]
    )


def test_accepts_keras_variables_and_tensors(rng):
    kernel = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    expected = criteria.operator_norm(kernel)
    variable = keras.Variable(kernel)
    np.testing.assert_array_equal(criteria.operator_norm(variable), expected)
    np.testing.assert_array_equal(criteria.operator_norm(tf.constant(kernel)), expected)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_low_precision_kernels_computed_in_float64(name, rng):
    import ml_dtypes

    for dtype in (np.float16, ml_dtypes.bfloat16):
        kernel = rng.standard_normal((3, 3, 4, 6)).astype(dtype)
        scores = criteria.get(name)(kernel)
        assert scores.dtype == np.float64
        assert_scores_close(scores, REFERENCES[name](kernel.astype(np.float64)))


# -------------------------------------------------------- passive: degenerate


def degenerate_kernels(rng):
    filt = rng.standard_normal((3, 3, 4, 1))
    return {
        "single_filter": rng.standard_normal((3, 3, 4, 1)),
        "single_filter_dense": rng.standard_normal((7, 1)),
        "zeros": np.zeros((3, 3, 4, 5)),
        "zeros_dense": np.zeros((3, 5)),
        "identical_filters": np.repeat(filt, 6, axis=-1),
        "identical_float16": np.repeat(filt, 6, axis=-1).astype(np.float16),
        "constant": np.full((3, 3, 4, 5), 0.1),
        "single_weight": np.array([[2.5]]),
        "k1_single_channel": rng.standard_normal((1, 1, 1, 4)),
        "tiny": rng.standard_normal((3, 3, 4, 5)) * 1e-200,
        "huge": rng.standard_normal((3, 3, 4, 5)) * 1e150,
    }


@pytest.mark.parametrize("name", PASSIVE)
def test_degenerate_kernels_give_finite_scores_without_warnings(name, rng):
    for case, kernel in degenerate_kernels(rng).items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with np.errstate(divide="raise", invalid="raise"):
                scores = criteria.get(name)(kernel)
        assert scores.shape == (kernel.shape[-1],), case
        assert scores.dtype == np.float64, case
        assert np.isfinite(scores).all(), case
        assert (scores >= 0).all(), case


@pytest.mark.parametrize("name", ["l1_norm", "l2_norm", "operator_norm"])
def test_zero_kernel_scores_zero(name):
    np.testing.assert_array_equal(
        criteria.get(name)(np.zeros((3, 3, 2, 4))), np.zeros(4)
    )


@pytest.mark.parametrize("name", ["operator_norm", "geometric_median"])
def test_identical_filters_are_tied(name, rng):
    kernel = np.repeat(rng.standard_normal((3, 3, 4, 1)), 5, axis=-1)
    scores = criteria.get(name)(kernel)
    np.testing.assert_allclose(scores, scores[0], rtol=0, atol=1e-12)


def test_geometric_median_identical_filters_exactly_zero(rng):
    kernel = np.repeat(rng.standard_normal((3, 3, 4, 1)), 5, axis=-1)
    np.testing.assert_array_equal(criteria.geometric_median(kernel), np.zeros(5))


def test_operator_norm_rescales_tiny_and_huge_kernels(rng):
    # Tiny weights: the Gram matrices would be subnormal; huge ones (N >> C_in·k):
    # they would overflow although the scores themselves are representable.
    kernel = rng.standard_normal((3, 3, 4, 5))
    np.testing.assert_allclose(
        criteria.operator_norm(kernel * 2.0**-500) * 2.0**1000,
        ref_operator_norm(kernel),
        rtol=1e-9,
    )
    wide = rng.standard_normal((1, 1000))
    scores = criteria.operator_norm(wide * 2.0**510)
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(scores * 2.0**-1020, ref_operator_norm(wide), rtol=1e-9)


def test_operator_norm_sign_falls_back_when_first_filter_is_on_the_mean(rng):
    # Channel 0: filter 0 equals the channel's mean row, so U[0, 0] = 0 and the
    # literal sign(U[0, 0]) is 0 (the authors' code divides 0 by 0 there).
    kernel = rng.standard_normal((2, 2, 3))
    kernel[:, 0, :] = np.array([[0.0, 1.0, -1.0], [0.0, 2.0, -2.0]]) + 0.5
    scores = criteria.operator_norm(kernel)
    assert np.isfinite(scores).all()
    assert_scores_close(scores, ref_operator_norm(kernel, sign_rule="first_clear"))
    # The literal rule would drop channel 0 altogether: a real difference.
    assert not np.allclose(scores, ref_operator_norm(kernel, sign_rule="numpy"))


def test_operator_norm_repeated_singular_value_is_finite_and_deterministic():
    # Every channel's centred rows are ±e1, ±e2: σ1 = σ2, v1 not unique.
    rows = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # N x k
    kernel = np.stack([rows.T, rows.T], axis=1)  # (k=2, C_in=2, N=4)
    first = criteria.operator_norm(kernel)
    assert np.isfinite(first).all()
    np.testing.assert_array_equal(criteria.operator_norm(kernel), first)


def test_operator_norm_sign_is_anchored_on_filter_zero(rng):
    """The definition's sign(U[0, 0]) ties c_i to filter 0, per channel."""
    kernel = rng.standard_normal((3, 3, 6, 8))
    scores = criteria.operator_norm(kernel)
    keeps_zero = np.array([0, 3, 1, 7, 2, 6, 4, 5])
    np.testing.assert_allclose(
        criteria.operator_norm(kernel[..., keeps_zero]), scores[keeps_zero]
    )
    moves_zero = np.array([5, 1, 2, 3, 4, 0, 6, 7])
    assert not np.allclose(
        criteria.operator_norm(kernel[..., moves_zero]), scores[moves_zero]
    )


def test_geometric_median_blocks_rows(rng, monkeypatch):
    from keras_filterprune.criteria import passive

    kernel = rng.standard_normal((2, 3, 37))
    expected = criteria.geometric_median(kernel)
    monkeypatch.setattr(passive, "_GM_BLOCK_ENTRIES", 37 * 5)  # blocks of 5 rows
    np.testing.assert_allclose(criteria.geometric_median(kernel), expected)
    assert_scores_close(expected, ref_geometric_median(kernel))


# ------------------------------------------------------------ passive: errors


@pytest.mark.parametrize("name", PASSIVE)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_kernel_raises(name, bad, rng):
    kernel = rng.standard_normal((3, 3, 2, 4))
    kernel[1, 2, 1, 3] = bad
    with pytest.raises(ValueError, match="contains NaN or Inf"):
        criteria.get(name)(kernel)


@pytest.mark.parametrize("name", PASSIVE)
def test_bad_rank_or_type_raises(name):
    fn = criteria.get(name)
    with pytest.raises(ValueError, match="rank >= 2"):
        fn(np.ones(5))
    with pytest.raises(ValueError, match="rank >= 2"):
        fn(np.float32(1.0))
    with pytest.raises(ValueError, match="empty"):
        fn(np.ones((3, 3, 0, 4)))
    with pytest.raises(TypeError, match="real numeric"):
        fn(np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="real numeric"):
        fn(np.ones((2, 2), dtype=complex))


# ----------------------------------------------------------------- random


def test_random_is_seeded_and_reproducible(rng):
    kernel = rng.standard_normal((3, 3, 4, 16))
    a = criteria.random(kernel, seed=3)
    np.testing.assert_array_equal(a, criteria.random(kernel, seed=3))
    assert not np.array_equal(a, criteria.random(kernel, seed=4))
    assert a.dtype == np.float64 and a.shape == (16,)
    assert ((a >= 0) & (a < 1)).all()
    np.testing.assert_array_equal(a, np.random.default_rng(3).random(16))


def test_random_default_seed_depends_on_kernel(rng):
    kernel = rng.standard_normal((3, 3, 4, 16))
    other = rng.standard_normal((3, 3, 4, 16))
    default = criteria.random(kernel)
    np.testing.assert_array_equal(default, criteria.random(kernel.copy()))
    assert not np.array_equal(default, criteria.random(other))


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_random_rejects_bad_seed(seed):
    with pytest.raises((TypeError, ValueError), match="seed"):
        criteria.random(np.ones((2, 3)), seed=seed)


# ------------------------------------------------------- passive: properties


@st.composite
def kernel_shapes(draw):
    spatial = draw(st.lists(st.integers(1, 3), min_size=0, max_size=3))
    return (*spatial, draw(st.integers(1, 4)), draw(st.integers(1, 7)))


@st.composite
def array_kernels(draw):
    """Arbitrary finite kernels, ties and zeros included."""
    shape = draw(kernel_shapes())
    elements = st.floats(-100, 100, allow_nan=False, allow_subnormal=False, width=64)
    return draw(hnp.arrays(np.float64, shape, elements=elements))


@st.composite
def generic_kernels(draw):
    """Gaussian kernels: almost surely distinct singular values and U[0, 0] != 0."""
    shape = draw(kernel_shapes())
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).standard_normal(shape)


def channels_well_posed(kernel):
    """No repeated top singular value and a clear sign(U[0, 0]) in any channel."""
    w = as_w(kernel)
    for i in range(w.shape[1]):
        a = w[:, i, :].T
        u, s, _ = np.linalg.svd(a - a.mean(axis=0))
        if s[0] <= 1e-9 * max(np.abs(a).max(), 1e-300):
            continue  # σ1 = 0: the channel contributes nothing
        if len(s) > 1 and s[0] - s[1] <= 1e-6 * s[0]:
            return False
        if abs(u[0, 0]) <= 1e-6:
            return False
    return True


def assert_same_ranking(before, after, degree, scale):
    top = max(np.max(before), 1e-300)
    np.testing.assert_allclose(
        after, before * scale**degree, rtol=1e-9, atol=1e-12 * top * scale**degree
    )
    # Every clearly ordered pair keeps its order.
    for a in range(len(before)):
        for b in range(len(before)):
            if before[a] > before[b] + 1e-8 * top:
                assert after[a] > after[b]


def draw_scale(draw):
    return draw(st.floats(1e-3, 1e3, allow_nan=False))


@pytest.mark.parametrize("name", ["l1_norm", "l2_norm", "geometric_median"])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_property_scaling_keeps_ranking(name, data):
    kernel = data.draw(array_kernels())
    scale = draw_scale(data.draw)
    fn = criteria.get(name)
    assert_same_ranking(fn(kernel), fn(kernel * scale), DEGREE[name], scale)


@settings(max_examples=30, deadline=None)
@given(kernel=generic_kernels(), scale=st.floats(1e-3, 1e3))
def test_property_operator_norm_scaling_keeps_ranking(kernel, scale):
    before = criteria.operator_norm(kernel)
    after = criteria.operator_norm(kernel * scale)
    assert_same_ranking(before, after, 2, scale)


@settings(max_examples=30, deadline=None)
@given(kernel=array_kernels(), scale=st.floats(1e-3, 1e3))
def test_property_operator_norm_scaling_structured_kernels(kernel, scale):
    assume(channels_well_posed(kernel))
    before = criteria.operator_norm(kernel)
    after = criteria.operator_norm(kernel * scale)
    assert_same_ranking(before, after, 2, scale)


@pytest.mark.parametrize("name", ["l1_norm", "l2_norm", "geometric_median"])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_property_permuting_filters_permutes_scores(name, data):
    kernel = data.draw(array_kernels())
    perm = np.array(data.draw(st.permutations(range(kernel.shape[-1]))), dtype=int)
    fn = criteria.get(name)
    scores = fn(kernel)
    np.testing.assert_allclose(
        fn(kernel[..., perm]), scores[perm], rtol=1e-9, atol=1e-9 * scores.max()
    )


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_property_operator_norm_permutation_fixing_filter_zero(data):
    kernel = data.draw(st.one_of(generic_kernels(), array_kernels()))
    assume(channels_well_posed(kernel))
    rest = data.draw(st.permutations(range(1, kernel.shape[-1])))
    perm = np.array([0, *rest], dtype=int)
    scores = criteria.operator_norm(kernel)
    np.testing.assert_allclose(
        criteria.operator_norm(kernel[..., perm]),
        scores[perm],
        rtol=1e-7,
        atol=1e-9 * scores.max(),
    )


# ----------------------------------------------------------------- registry


@pytest.fixture
def registry(monkeypatch):
    """Restores the registry after a test that registers criteria."""
    monkeypatch.setattr(
        criteria._registry, "REGISTRY", dict(criteria._registry.REGISTRY)
    )
    return criteria


def test_names_and_flags():
    assert criteria.names() == sorted(PASSIVE + ACTIVE)
    assert criteria.names(active=True) == ACTIVE
    assert criteria.names(active=False) == sorted(PASSIVE)
    for name in PASSIVE:
        assert not criteria.is_active(name)
        assert criteria.get(name) is getattr(criteria, name)
    for name in ACTIVE:
        assert criteria.is_active(name)
        assert criteria.needs_gradients(name) == (name == "taylor")
    assert keras_filterprune.criteria is criteria
    assert "criteria" in keras_filterprune.__all__


def test_get_unknown_name_lists_sorted_names():
    with pytest.raises(ValueError) as info:
        criteria.get("l3_norm")
    message = str(info.value)
    assert "'l3_norm'" in message
    assert str(sorted(PASSIVE + ACTIVE)) in message


def test_get_callable_and_bad_types():
    def custom(kernel):
        return np.ones(np.shape(kernel)[-1])

    assert criteria.get(custom) is custom
    assert not criteria.is_active(custom)
    assert criteria.is_active(criteria.apoz)
    with pytest.raises(TypeError, match="registered name"):
        criteria.get(3)


def test_register_custom_criteria(registry):
    def max_abs(kernel):
        w = np.asarray(kernel, dtype=np.float64)
        return np.abs(w.reshape(-1, w.shape[-1])).max(axis=0)

    assert registry.register("max_abs", max_abs) is max_abs
    assert registry.get("max_abs") is max_abs
    assert "max_abs" in registry.names(active=False)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("max_abs", max_abs)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("l1_norm", max_abs)
    registry.register("l1_norm", max_abs, overwrite=True)
    assert registry.get("l1_norm") is max_abs
    registry.register("act", criteria.mean_activation, active=True)
    assert registry.is_active("act") and not registry.needs_gradients("act")
    registry.unregister("max_abs")
    assert "max_abs" not in registry.names()
    with pytest.raises(ValueError, match="Unknown criterion"):
        registry.unregister("max_abs")


def test_register_validates_arguments(registry):
    with pytest.raises(TypeError, match="callable"):
        registry.register("x", 3)
    with pytest.raises(TypeError, match="str"):
        registry.register(1, np.abs)
    with pytest.raises(ValueError, match="empty"):
        registry.register("", np.abs)
    with pytest.raises(ValueError, match="active=True"):
        registry.register("x", np.abs, needs_gradients=True)
    assert "x" not in registry.names()


# ------------------------------------------------------ active: statistics


def test_statistics_known_values():
    a = np.array([[[1.0, -2.0], [3.0, 0.0], [-1.0, 0.5], [2.0, 0.0]]])
    np.testing.assert_allclose(criteria.mean_activation(a), [7 / 4, 2.5 / 4])
    np.testing.assert_allclose(criteria.apoz(a), [0.75, 0.25])
    g = np.array([[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [-1.0, 1.0]]])
    np.testing.assert_allclose(criteria.taylor(a, g), [1 / 4, 1.5 / 4])
    for fn in (criteria.mean_activation, criteria.apoz, criteria.hrank):
        assert fn(a).dtype == np.float64


def test_taylor_is_per_example_absolute():
    # Example 0 has +1 and example 1 has -1 per channel: |.| before the mean.
    a = np.ones((2, 3, 1))
    g = np.array([[[1.0], [1.0], [1.0]], [[-1.0], [-1.0], [-1.0]]])
    np.testing.assert_allclose(criteria.taylor(a, g), [1.0])


def test_hrank_2d_maps_against_matrix_rank(rng):
    u = rng.integers(-3, 4, size=(4, 2, 6)).astype(np.float32)
    v = rng.integers(-3, 4, size=(4, 2, 5)).astype(np.float32)
    a = np.zeros((4, 6, 5, 3), np.float32)
    a[..., 0] = np.einsum("bh,bw->bhw", u[:, 0], v[:, 0])  # rank <= 1
    a[..., 1] = a[..., 0] + np.einsum("bh,bw->bhw", u[:, 1], v[:, 1])  # rank <= 2
    a[3, ..., 2] = rng.standard_normal((6, 5))  # one full-rank map, others zero
    expected = [
        np.mean([np.linalg.matrix_rank(a[b, :, :, c]) for b in range(4)])
        for c in range(3)
    ]
    np.testing.assert_allclose(criteria.hrank(a), expected)
    assert expected[2] == 5 / 4


def test_hrank_other_ranks():
    dense = np.array([[0.0, 1.0, -2.0], [0.0, 0.0, 3.0]])
    np.testing.assert_allclose(criteria.hrank(dense), [0.0, 0.5, 1.0])
    conv1d = np.zeros((2, 4, 2))
    conv1d[0, 2, 0] = 1.0
    conv1d[:, :, 1] = 5.0
    np.testing.assert_allclose(criteria.hrank(conv1d), [0.5, 1.0])
    conv3d = np.zeros((1, 2, 3, 3, 1))  # slices of rank 3 and 1
    conv3d[0, 0, :, :, 0] = np.eye(3)
    conv3d[0, 1, :, :, 0] = 1.0
    np.testing.assert_allclose(criteria.hrank(conv3d), [2.0])


def test_hrank_uses_the_activation_dtype_precision(rng):
    # A rank-1 map rounded to float32: rank 1 to float32 precision, while its
    # float64 copy has rounding noise far above float64's tolerance.
    rank1 = np.outer(rng.standard_normal(6), rng.standard_normal(5)).astype(np.float32)
    assert np.linalg.matrix_rank(rank1.astype(np.float64)) > 1
    assert criteria.hrank(rank1[None, :, :, None])[0] == 1
    assert criteria.hrank(rank1.astype(np.float64)[None, :, :, None])[0] > 1


def test_statistics_errors():
    a = np.ones((2, 3, 3, 2))
    for fn in (criteria.mean_activation, criteria.apoz, criteria.hrank):
        bad = a.copy()
        bad[0, 0, 0, 1] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            fn(bad)
        with pytest.raises(ValueError, match="shape"):
            fn(np.ones(3))
    with pytest.raises(ValueError, match="gradients"):
        criteria.taylor(a)
    with pytest.raises(ValueError, match="same shape"):
        criteria.taylor(a, np.ones((2, 3, 3, 3)))


# --------------------------------------------------------- active: gathering


def small_conv_model():
    inputs = keras.Input((6, 6, 2), name="x")
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    h = keras.layers.ReLU(name="relu1")(h)
    h = keras.layers.Conv2D(3, 3, name="conv2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    outputs = keras.layers.Dense(3, name="logits")(h)
    return keras.Model(inputs, outputs, name="small")


def layer_activations(model, name, x):
    sub = keras.Model(model.inputs[0], model.get_layer(name).output)
    return np.asarray(sub.predict(x, verbose=0))


def ref_statistic(name, a):
    c = a.shape[-1]
    if name == "mean_activation":
        return np.array([np.mean(np.abs(a[..., j])) for j in range(c)])
    if name == "apoz":
        return np.array([1 - np.mean(np.maximum(a[..., j], 0) == 0) for j in range(c)])
    if name == "hrank":
        return np.array(
            [np.mean([np.linalg.matrix_rank(m) for m in a[..., j]]) for j in range(c)]
        )
    raise AssertionError(name)


@pytest.fixture(scope="module")
def conv_setup():
    keras.utils.set_random_seed(7)
    model = small_conv_model()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 6, 6, 2)).astype(np.float32)
    # Rank-deficient inputs make HRank's per-map ranks vary between channels.
    x[:5] = np.einsum("bh,bwc->bhwc", rng.standard_normal((5, 6)), x[:5, 0])
    y = rng.integers(0, 3, size=10)
    return model, x, y


@pytest.mark.parametrize("name", ["mean_activation", "apoz", "hrank"])
def test_gather_matches_numpy_reference(name, conv_setup):
    model, x, _ = conv_setup
    layers = ["conv1", "relu1", "conv2"]
    # batch_size 3: batches of 3, 3, 3, 1 check the weighted combination.
    scores = criteria.gather_active_scores(model, layers, x, name, batch_size=3)
    assert list(scores) == layers
    for layer in layers:
        expected = ref_statistic(name, layer_activations(model, layer, x))
        assert scores[layer].dtype == np.float64
        np.testing.assert_allclose(scores[layer], expected, rtol=1e-5, atol=1e-6)


def test_gather_data_forms_agree(conv_setup):
    model, x, y = conv_setup
    expected = criteria.gather_active_scores(model, "conv1", x, "mean_activation")
    forms = {
        "dataset_x": tf.data.Dataset.from_tensor_slices(x).batch(4),
        "dataset_xy": tf.data.Dataset.from_tensor_slices((x, y)).batch(3),
        "tuple": (x, y),
        "generator": ((x[i : i + 4], y[i : i + 4]) for i in range(0, 10, 4)),
    }
    for form, data in forms.items():
        scores = criteria.gather_active_scores(
            model, ["conv1"], data, "mean_activation"
        )
        np.testing.assert_allclose(
            scores["conv1"], expected["conv1"], rtol=1e-6, err_msg=form
        )


def test_gather_max_batches_and_progbar(conv_setup, capsys):
    model, x, _ = conv_setup
    scores = criteria.gather_active_scores(
        model, ["conv1"], x, "apoz", batch_size=4, max_batches=1, verbose=1
    )
    expected = ref_statistic("apoz", layer_activations(model, "conv1", x[:4]))
    np.testing.assert_allclose(scores["conv1"], expected)
    assert "1/1" in capsys.readouterr().out


def test_gather_sequential_and_multi_input_models(rng):
    model = keras.Sequential(
        [
            keras.Input((5, 5, 1)),
            keras.layers.Conv2D(2, 3, name="c"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, name="d"),
        ]
    )
    x = rng.standard_normal((6, 5, 5, 1)).astype(np.float32)
    scores = criteria.gather_active_scores(model, ["c", "d"], x, "mean_activation")
    for layer in ("c", "d"):
        expected = ref_statistic("mean_activation", layer_activations(model, layer, x))
        np.testing.assert_allclose(scores[layer], expected, rtol=1e-5)

    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    added = keras.layers.Add(name="add")([a, b])
    two = keras.Model({"a": a, "b": b}, keras.layers.Dense(2, name="d")(added))
    xa, xb = np.ones((4, 3), "float32"), -np.ones((4, 3), "float32") * 2
    scores = criteria.gather_active_scores(two, "add", {"a": xa, "b": xb}, "apoz")
    np.testing.assert_array_equal(scores["add"], np.zeros(3))


def test_gather_custom_statistics(registry, conv_setup):
    model, x, y = conv_setup
    seen = {}

    def max_abs(activations, gradients=None):
        seen["gradients"] = gradients
        return np.abs(activations.reshape(-1, activations.shape[-1])).mean(axis=0)

    scores = criteria.gather_active_scores(model, ["conv1"], x, max_abs)
    expected = ref_statistic("mean_activation", layer_activations(model, "conv1", x))
    np.testing.assert_allclose(scores["conv1"], expected, rtol=1e-5)
    assert seen["gradients"] is None

    registry.register("with_grads", max_abs, active=True, needs_gradients=True)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    criteria.gather_active_scores(model, "conv1", (x, y), "with_grads", loss=loss)
    assert seen["gradients"].shape == (10, 6, 6, 4)

    def wrong_length(activations, gradients=None):
        return np.ones(2)

    with pytest.raises(ValueError, match="4 finite values"):
        criteria.gather_active_scores(model, ["conv1"], x, wrong_length)


# ------------------------------------------------------- active: Taylor


def test_taylor_hand_derived_dense():
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(2, name="h")
    out = keras.layers.Dense(1, name="out")
    model = keras.Model(inputs, out(hidden(inputs)))
    w1 = np.array([[1.0, -1.0], [0.5, 2.0], [-1.0, 0.0]], "float32")
    b1 = np.array([0.1, -0.2], "float32")
    w2 = np.array([[2.0], [-3.0]], "float32")
    b2 = np.array([0.5], "float32")
    hidden.set_weights([w1, b1])
    out.set_weights([w2, b2])
    x = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0], [2.0, 0.0, -1.0]], "float32")
    t = np.array([[1.0], [-2.0], [0.0]], "float32")
    h = x @ w1 + b1
    y = h @ w2 + b2
    grad_h = 2 * (y - t) @ w2.T  # ∂(y - t)²/∂h, per example
    expected = np.mean(np.abs(h * grad_h), axis=0)
    scores = criteria.gather_active_scores(model, ["h"], (x, t), "taylor", loss="mse")
    np.testing.assert_allclose(scores["h"], expected, rtol=1e-5)
    # The compiled loss is used when `loss` is not given; batch size is irrelevant.
    model.compile(loss="mse")
    for batch_size in (1, 2, 3):
        scores = criteria.gather_active_scores(
            model, ["h"], (x, t), "taylor", batch_size=batch_size
        )
        np.testing.assert_allclose(scores["h"], expected, rtol=1e-5)


def float64_conv_model():
    keras.utils.set_random_seed(3)
    kw = {"dtype": "float64"}
    inputs = keras.Input((5, 5, 2), dtype="float64")
    layers = [
        keras.layers.Conv2D(3, 3, padding="same", name="c1", **kw),
        keras.layers.Activation("tanh", name="act", **kw),
        keras.layers.Conv2D(2, 3, name="c2", **kw),
        keras.layers.GlobalAveragePooling2D(name="gap", **kw),
        keras.layers.Dense(3, name="logits", **kw),
    ]
    h = inputs
    for layer in layers:
        h = layer(h)
    return keras.Model(inputs, h), layers


def test_taylor_gradients_match_finite_differences(rng):
    """∂L/∂activation from the tape equals a finite difference through the tail."""
    model, layers = float64_conv_model()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = rng.standard_normal((4, 5, 5, 2))
    y = rng.integers(0, 3, size=4)
    scores = criteria.gather_active_scores(
        model, ["c1", "c2"], (x, y), "taylor", loss=loss, batch_size=3
    )
    for index, name in ((0, "c1"), (2, "c2")):
        a = keras.ops.convert_to_numpy(
            keras.Model(model.input, layers[index].output)(x)
        )
        tail_in = keras.Input(a.shape[1:], dtype="float64")
        h = tail_in
        for layer in layers[index + 1 :]:
            h = layer(h)
        tail = keras.Model(tail_in, h)

        def per_example_loss(acts):
            return keras.ops.convert_to_numpy(loss.call(y, tail(acts)))  # noqa: B023

        eps = 1e-6 if X64 else 1e-3
        positions = np.prod(a.shape[1:-1])
        expected = np.zeros(a.shape[-1])
        for c in range(a.shape[-1]):
            gate = np.zeros(a.shape[-1])
            gate[c] = eps
            # d/dt ℓ(a · (1 + t e_c)) at 0 = Σ_positions a_c ∂ℓ/∂a_c (per example)
            diff = per_example_loss(a * (1 + gate)) - per_example_loss(a * (1 - gate))
            expected[c] = np.mean(np.abs(diff / (2 * eps) / positions))
        np.testing.assert_allclose(scores[name], expected, rtol=1e-6 if X64 else 2e-3)


def test_taylor_with_frozen_model_and_scalar_loss(rng):
    model, _ = float64_conv_model()
    x = rng.standard_normal((4, 5, 5, 2))
    y = rng.integers(0, 3, size=4)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    expected = criteria.gather_active_scores(model, "c1", (x, y), "taylor", loss=loss)
    model.trainable = False

    def mean_loss(y_true, y_pred):  # reduced to a scalar: taken as a batch mean
        return keras.ops.mean(loss.call(y_true, y_pred))

    scores = criteria.gather_active_scores(
        model, "c1", (x, y), "taylor", loss=mean_loss, batch_size=3
    )
    np.testing.assert_allclose(scores["c1"], expected["c1"], rtol=1e-9 if X64 else 1e-6)


# ----------------------------------------------------------- active: errors


def test_gather_errors(conv_setup):
    model, x, y = conv_setup
    with pytest.raises(
        ValueError, match="`criterion='apoz'` is an active criterion and needs `data`"
    ):
        criteria.gather_active_scores(model, ["conv1"], None, "apoz")
    with pytest.raises(ValueError, match="No layer named 'nope'.*conv1"):
        criteria.gather_active_scores(model, ["conv1", "nope"], x, "apoz")
    with pytest.raises(ValueError, match=r"Registered criteria: \['apoz', "):
        criteria.gather_active_scores(model, ["conv1"], x, "apoz2")
    with pytest.raises(ValueError, match="passive criterion"):
        criteria.gather_active_scores(model, ["conv1"], x, "l1_norm")
    with pytest.raises(ValueError, match="needs labels"):
        criteria.gather_active_scores(
            model, ["conv1"], x, "taylor", loss="sparse_categorical_crossentropy"
        )
    with pytest.raises(ValueError, match="Pass `loss=`"):
        criteria.gather_active_scores(model, ["conv1"], (x, y), "taylor")
    with pytest.raises(ValueError, match="batch_size"):
        criteria.gather_active_scores(model, ["conv1"], x, "apoz", batch_size=0)
    with pytest.raises(ValueError, match="max_batches"):
        criteria.gather_active_scores(model, ["conv1"], x, "apoz", max_batches=0)
    with pytest.raises(ValueError, match="no examples"):
        criteria.gather_active_scores(model, ["conv1"], x[:0], "apoz")
    with pytest.raises(ValueError, match="at least one layer"):
        criteria.gather_active_scores(model, [], x, "apoz")
    with pytest.raises(ValueError, match="same number of examples"):
        criteria.gather_active_scores(model, ["conv1"], (x, y[:3]), "apoz")
    with pytest.raises(TypeError, match="keras.Model"):
        criteria.gather_active_scores("model", ["conv1"], x, "apoz")
    with pytest.raises(TypeError, match="`data` must be"):
        criteria.gather_active_scores(model, ["conv1"], 3.0, "apoz")


def test_gather_nan_activations_raise(conv_setup):
    model, x, _ = conv_setup
    bad = x.copy()
    bad[7, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match="'conv1' contain NaN"):
        criteria.gather_active_scores(model, ["conv1"], bad, "mean_activation")


def test_taylor_with_integer_inputs_and_several_outputs(rng):
    """Token ids (no float input to watch) and a model with two heads: the
    gradient comes from the probes, not from the inputs."""
    ids = keras.Input((6,), dtype="int32", name="ids")
    h = keras.layers.Embedding(10, 4, name="emb")(ids)
    h = keras.layers.Conv1D(3, 3, name="conv", padding="same")(h)
    pooled = keras.layers.GlobalAveragePooling1D(name="gap")(h)
    heads = [
        keras.layers.Dense(2, name="a")(pooled),
        keras.layers.Dense(1, name="b")(pooled),
    ]
    model = keras.Model(ids, heads)
    x = rng.integers(0, 10, size=(5, 6)).astype("int32")
    y = rng.integers(0, 2, size=5)

    def first_head_loss(y_true, y_pred):
        return keras.losses.sparse_categorical_crossentropy(
            y_true, y_pred[0], from_logits=True
        )

    scores = criteria.gather_active_scores(
        model, "conv", (x, y), "taylor", loss=first_head_loss
    )
    assert scores["conv"].shape == (3,) and np.all(scores["conv"] > 0)
    assert len(model.get_layer("conv")._inbound_nodes) == 1  # the model is untouched
