"""Passive importance criteria: functions of a layer's kernel only.

Every criterion takes a kernel in Keras' channels-last layout, `(*spatial, C_in, N)`
(Conv1D `(k, C_in, N)`, Conv2D `(kh, kw, C_in, N)`, Conv3D `(kd, kh, kw, C_in, N)`,
Dense `(C_in, N)`), and returns one float64 score per output filter, shape `(N,)`;
a higher score means a more important filter. Internally the kernel is viewed as
`W` of shape `(k, C_in, N)` with `k` the product of the spatial dimensions (`k = 1`
for Dense). Criteria never look at layer types: callers hand them the kernel in this
layout (transposed for Conv2DTranspose, the pointwise kernel for SeparableConv2D).

All arithmetic is done in float64, whatever the kernel's dtype (float16, bfloat16,
float32, ...).
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["l1_norm", "l2_norm", "operator_norm", "geometric_median", "random"]

# `|U[0, 0]|` (the first filter's share of the first left singular vector) below this
# is treated as zero by `operator_norm`'s sign convention; see its docstring.
_SIGN_TOL = float(np.sqrt(np.finfo(np.float64).eps))
# A channel whose σ₁ is below this fraction of ‖A_i‖_F has all filters equal up to
# rounding (its centred rows are the mean's rounding error): it contributes 0.
_NOISE_FLOOR = 64 * float(np.finfo(np.float64).eps)
# Channels whose mean row carries this many times more energy than their spread get
# their Gram matrix recomputed from explicitly centred rows (cancellation guard).
_CANCELLATION_RATIO = 1e4
# Squarings `_top_eigenvectors` tries before falling back to `np.linalg.eigh`: enough
# for a relative eigenvalue gap down to ~1e-10.
_POWER_STEPS = 40
# `geometric_median` recomputes pairs whose squared distance is below this fraction
# of `‖a‖² + ‖b‖²` from their difference (the Gram identity loses digits there).
_GM_NEAR = 1e-4
# Largest number of float64 entries of the pairwise block used by `geometric_median`
# (64 MiB).
_GM_BLOCK_ENTRIES = 1 << 23


def _as_kernel(kernel) -> np.ndarray:
    """Validates `kernel` and views it as `(k, C_in, N)` (finiteness unchecked).

    IEEE float16/32/64 kernels keep their dtype (criteria accumulate in float64
    without a full float64 copy where they can); any other real dtype (integers,
    bfloat16, ...) is converted to float64. The result may be a view of the
    caller's array: never write into it.
    """
    array = np.asarray(kernel)
    if array.dtype.kind in "cmMOSU":
        raise TypeError(
            "`kernel` must be a real numeric array. "
            f"Received: kernel with dtype={array.dtype}"
        )
    if array.ndim < 2:
        raise ValueError(
            "`kernel` must have rank >= 2, laid out as (*spatial, C_in, N). "
            f"Received: kernel with shape={array.shape}"
        )
    if array.size == 0:
        raise ValueError(
            f"`kernel` must not be empty. Received: kernel with shape={array.shape}"
        )
    if array.dtype not in (np.float16, np.float32, np.float64):
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise TypeError(
                "`kernel` must be a real numeric array. "
                f"Received: kernel with dtype={array.dtype}"
            ) from e
    return array.reshape(-1, array.shape[-2], array.shape[-1])


def _check_finite(w: np.ndarray) -> None:
    """Raises a ValueError if the kernel `w` holds NaN or Inf."""
    finite = np.isfinite(w)
    if not finite.all():
        raise ValueError(
            f"`kernel` contains NaN or Inf ({finite.size - np.count_nonzero(finite)} "
            f"of {finite.size} values); importance scores are undefined. "
            f"Received: kernel viewed as (k, C_in, N)={w.shape}"
        )


def _raise_if_not_finite(w: np.ndarray, result: np.ndarray) -> None:
    """Raises if `w` holds NaN/Inf; cheap when the (derived) `result` is finite.

    NaN and Inf propagate into every reduction the criteria compute, so a finite
    `result` proves a finite kernel; only otherwise is the kernel scanned (a
    non-finite result of a finite kernel is an overflow, not an input error).
    """
    if not np.isfinite(result).all():
        _check_finite(w)


def l1_norm(kernel: np.ndarray) -> np.ndarray:
    """Scores each filter by the sum of its absolute weights (L1 norm).

    `s_j = Σ |W[:, :, j]|` over all spatial positions and input channels.

    Args:
        kernel: Array of shape `(*spatial, C_in, N)` (Keras layout). Any real dtype.

    Returns:
        Float64 array of shape `(N,)`; higher means more important.

    Raises:
        ValueError: If `kernel` has rank < 2, is empty, or contains NaN or Inf.
        TypeError: If `kernel` is not a real numeric array.

    Example:

    >>> import numpy as np
    >>> from keras_filterprune import criteria
    >>> kernel = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -0.5]])  # Dense, 2 -> 3
    >>> criteria.l1_norm(kernel)
    array([4., 2., 1.])

    References:
        Li, Kadav, Durdanovic, Samet & Graf, "Pruning Filters for Efficient
        ConvNets", ICLR 2017.
    """
    w = _as_kernel(kernel)
    # |x| is exact in any float format; the sum accumulates in float64.
    scores = np.abs(w).reshape(-1, w.shape[-1]).sum(axis=0, dtype=np.float64)
    _raise_if_not_finite(w, scores)
    return scores


def l2_norm(kernel: np.ndarray) -> np.ndarray:
    """Scores each filter by the Euclidean (L2) norm of its weights.

    `s_j = ‖W[:, :, j]‖₂` over all spatial positions and input channels.

    Args:
        kernel: Array of shape `(*spatial, C_in, N)` (Keras layout). Any real dtype.

    Returns:
        Float64 array of shape `(N,)`; higher means more important.

    Raises:
        ValueError: If `kernel` has rank < 2, is empty, or contains NaN or Inf.
        TypeError: If `kernel` is not a real numeric array.

    Example:

    >>> import numpy as np
    >>> from keras_filterprune import criteria
    >>> kernel = np.array([[3.0, 0.0], [4.0, 1.0]])  # Dense, 2 -> 2
    >>> criteria.l2_norm(kernel)
    array([5., 1.])

    References:
        Li, Kadav, Durdanovic, Samet & Graf, "Pruning Filters for Efficient
        ConvNets", ICLR 2017 (which compares L1 with L2).
    """
    w = _as_kernel(kernel)
    flat = w.reshape(-1, w.shape[-1])
    sumsq = np.einsum("dn,dn->n", flat, flat, dtype=np.float64)
    _raise_if_not_finite(w, sumsq)
    scores = np.sqrt(sumsq)
    # Squares that overflow or sink into subnormals: rescale those filters.
    rescale = np.flatnonzero(~(sumsq >= 1e-290) | ~np.isfinite(sumsq))
    if rescale.size:
        sub = flat[:, rescale].astype(np.float64)
        peak = np.max(np.abs(sub), axis=0)
        peak[peak == 0.0] = 1.0
        scores[rescale] = peak * np.sqrt(np.sum(np.square(sub / peak), axis=0))
    return scores


def _top_eigenvectors(gram: np.ndarray) -> np.ndarray:
    """Unit top eigenvectors of a stack of PSD matrices `(C, k, k)` -> `(C, k)`.

    Repeated squaring: `M ← M² / tr(M²)` converges to the projector `v₁v₁ᵀ` (the
    weights of the other eigenvectors shrink as `(λ_a/λ₁)^(2^t)`), and a stack of
    tiny matrix products is several times faster than a batched `eigh`. A matrix is
    done once its purity `tr(M²) = ‖M‖_F²` is within 1e-10 of 1 plus one more
    squaring (the others' weights are then below 1e-20); a matrix still not done
    after `_POWER_STEPS` squarings has a (near-)repeated top eigenvalue and gets
    `np.linalg.eigh` instead. Zero matrices give zero vectors.
    """
    c, k, _ = gram.shape
    vectors = np.zeros((c, k))
    trace = np.trace(gram, axis1=1, axis2=2)
    index = np.flatnonzero(trace > 0.0)
    m = gram[index] / trace[index, None, None]
    finishing = np.zeros(index.size, dtype=bool)
    for _ in range(_POWER_STEPS):
        if not index.size:
            break
        m = m @ m
        m /= np.trace(m, axis1=1, axis2=2)[:, None, None]
        done = finishing
        finishing = 1.0 - np.einsum("iab,iab->i", m, m) < 1e-10
        if done.any():
            # M ≈ v₁v₁ᵀ: its largest column, normalised, is ±v₁.
            md = m[done]
            col = np.argmax(np.einsum("iaa->ia", md), axis=1)
            v = md[np.arange(md.shape[0]), :, col]
            vectors[index[done]] = v / np.linalg.norm(v, axis=1, keepdims=True)
            keep = ~done
            m, index, finishing = m[keep], index[keep], finishing[keep]
    if index.size:
        vectors[index] = np.linalg.eigh(gram[index])[1][:, :, -1]
    return vectors


def _projection_sums(w: np.ndarray) -> np.ndarray:
    """`Σ_i ⟨W[:, i, j] − m_i, c_i⟩` for every filter `j` (before squaring)."""
    k, c_in, n = w.shape
    # One float64 copy with each channel's k×N block contiguous: A_iᵀ = x[i].
    x = np.ascontiguousarray(w.transpose(1, 0, 2), dtype=np.float64)
    gram = x @ x.transpose(0, 2, 1)  # (C_in, k, k): uncentred A_iᵀA_i
    diag_max = np.max(np.einsum("iaa->ia", gram))
    _raise_if_not_finite(w, diag_max)
    scale = 1.0
    if not np.isfinite(diag_max) or (
        diag_max < 1e-280 and (diag_max > 0.0 or np.any(x))
    ):
        # Divide by a power of two (exact) so the Gram matrices neither overflow nor
        # sink into subnormals; the projections are linear, so multiply back.
        scale = float(np.ldexp(1.0, int(np.frexp(np.max(np.abs(x)))[1])))
        x = x / scale
        gram = x @ x.transpose(0, 2, 1)
    flat = x.reshape(c_in * k, n)
    # NumPy's own reductions, not BLAS gemv: a threaded gemv stalls badly when the
    # cores are busy (10-20x slower on a loaded 2-core machine).
    mean = flat.sum(axis=1).reshape(c_in, k) / n  # m_i, the mean row of A_i
    # Centre: ĀᵢᵀĀᵢ = AᵢᵀAᵢ − N m mᵀ, without materialising the centred kernel.
    norm_a = np.sqrt(np.trace(gram, axis1=1, axis2=2))  # ‖A_i‖_F
    outer = n * mean[:, :, None] * mean[:, None, :]
    gram -= outer
    # Where the mean dominates the spread the subtraction cancels: recompute those
    # channels from explicitly centred rows (rare: near-identical filters).
    spread = np.trace(gram, axis1=1, axis2=2)
    energy = np.trace(outer, axis1=1, axis2=2)
    bad = np.flatnonzero(energy > _CANCELLATION_RATIO * np.maximum(spread, 0.0))
    if bad.size:
        centred = x[bad] - mean[bad, :, None]
        gram[bad] = centred @ centred.transpose(0, 2, 1)
    # The top eigenvector of ĀᵢᵀĀᵢ = V Σ² Vᵀ is v₁, the first right singular vector.
    v1 = _top_eigenvectors(gram)  # (C_in, k)
    sigma1 = np.sqrt(np.maximum(np.einsum("ia,iab,ib->i", v1, gram, v1), 0.0))
    # U[:, 0] = Āᵢ v₁ / σ₁, so sign(U[0, 0]) = sign(⟨Āᵢ[0], v₁⟩): the first filter's
    # projection fixes the sign of cᵢ, which undoes the arbitrary sign of v₁.
    first = np.einsum("ia,ia->i", x[:, :, 0] - mean, v1)
    sign = np.where(first < 0.0, -1.0, 1.0)
    # All filters equal in this channel (up to the rounding of the mean): σ₁ is 0
    # or rounding noise, and the channel contributes 0.
    flat_channel = sigma1 <= _NOISE_FLOOR * norm_a
    sign[flat_channel] = 0.0
    # sign(U[0, 0]) is noise when U[0, 0] ≈ 0 (filter 0 sits on the channel's mean
    # or is orthogonal to v₁): use the first filter with a clear share instead.
    unclear = np.flatnonzero((np.abs(first) <= _SIGN_TOL * sigma1) & ~flat_channel)
    for i in unclear:
        proj = v1[i] @ (x[i] - mean[i, :, None])  # Āᵢ v₁ = σ₁ U[:, 0]
        clear = np.flatnonzero(np.abs(proj) > _SIGN_TOL * sigma1[i])
        sign[i] = np.sign(proj[clear[0]]) if clear.size else 0.0
    # Σ_i ⟨W[:, i, j] − m_i, c_i⟩ = Σ_ia x[i, a, j] c[i, a] − Σ_ia m[i, a] c[i, a]:
    # one matrix-vector product over the whole kernel.
    c = (v1 * sign[:, None]).reshape(-1)
    return (np.einsum("i,ij->j", c, flat) - np.dot(mean.reshape(-1), c)) * scale


def operator_norm(kernel: np.ndarray) -> np.ndarray:
    """Scores filters by their contribution to each channel's rank-1 approximation.

    For each input channel `i`, let `A_i = W[:, i, :]ᵀ` (`N × k`, one row per
    filter), `m_i` its mean row and `Ā_i = A_i − m_i`. With the SVD
    `Ā_i = U Σ Vᵀ`, `c_i = sign(U[0, 0]) · V[:, 0]` is the normalised first row of
    the rank-1 approximation `u₁ σ₁ v₁ᵀ`. The score is
    `s_j = (Σ_i ⟨W[:, i, j] − m_i, c_i⟩)²`. Filters that project little onto the
    dominant direction of every channel are the least important.

    The computation is vectorised over input channels: `v₁` is the top eigenvector
    of the `k × k` Gram matrix `Ā_iᵀ Ā_i`, found for all channels at once by
    repeated squaring (batched `np.linalg.eigh` where the top eigenvalue is
    (nearly) repeated), and `sign(U[0, 0]) = sign(⟨Ā_i[0], v₁⟩)` since
    `U[:, 0] = Ā_i v₁ / σ₁`, so the result does not depend on the sign found for
    `v₁`. Cost: one float64 copy of the kernel, `C_in` `k × k` Gram matrices, and a
    matrix-vector product.

    Conventions the definition leaves open:
    - The scores are not divided by their maximum as in the authors' code (the
      ranking is the same, and an all-zero layer stays finite).
    - The sign is anchored on filter 0, as in the definition: reordering filters so
      that another filter comes first can change the scores (not only permute them).
    - If `|U[0, 0]| <= sqrt(eps)` (filter 0 lies on the channel's mean, where the
      authors' code divides 0 by 0), the sign of the first filter with a larger
      `|U[j, 0]|` is used instead. A channel whose filters are all equal
      (`σ₁ = 0` up to rounding, e.g. `N == 1` or an all-zero kernel) contributes
      0.
    - If `σ₁` is repeated, `v₁` is any unit vector of that eigenspace: the scores
      are deterministic for a given input but not unique.

    Args:
        kernel: Array of shape `(*spatial, C_in, N)` (Keras layout). Any real dtype.

    Returns:
        Float64 array of shape `(N,)`; higher means more important.

    Raises:
        ValueError: If `kernel` has rank < 2, is empty, or contains NaN or Inf.
        TypeError: If `kernel` is not a real numeric array.

    Example:

    >>> import numpy as np
    >>> from keras_filterprune import criteria
    >>> rng = np.random.default_rng(0)
    >>> kernel = rng.normal(size=(3, 3, 4, 5))  # Conv2D, 4 -> 5 filters
    >>> scores = criteria.operator_norm(kernel)
    >>> scores.shape, scores.dtype
    ((5,), dtype('float64'))
    >>> # One input channel, k = 1: the squared distance of each weight to the mean.
    >>> np.round(criteria.operator_norm(np.array([[1.0, 2.0, 4.0]])), 3)
    array([1.778, 0.111, 2.778])

    References:
        Singh & Plumbley, "Efficient CNNs via Passive Filter Pruning", IEEE/ACM
        Transactions on Audio, Speech, and Language Processing, 2025
        (arXiv:2304.02319).
    """
    w = _as_kernel(kernel)
    with np.errstate(over="ignore"):
        return np.square(_projection_sums(w))


def geometric_median(kernel: np.ndarray) -> np.ndarray:
    """Scores each filter by its total distance to the other filters (FPGM).

    `s_j = Σ_l ‖w_j − w_l‖₂` over flattened filters `w_j = W[:, :, j]`. Filters
    close to the geometric median of the layer (small `s_j`) are the most
    replaceable by the others, hence the least important.

    Distances come from the Gram matrix of the filters after subtracting their mean
    filter, in row blocks so memory stays below ~64 MiB beyond the kernel itself,
    whatever `N`; pairs of (nearly) identical filters, where that identity cancels,
    are recomputed from their differences (identical filters are exactly 0 apart).

    Args:
        kernel: Array of shape `(*spatial, C_in, N)` (Keras layout). Any real dtype.

    Returns:
        Float64 array of shape `(N,)`; higher means more important.

    Raises:
        ValueError: If `kernel` has rank < 2, is empty, or contains NaN or Inf.
        TypeError: If `kernel` is not a real numeric array.

    Example:

    >>> import numpy as np
    >>> from keras_filterprune import criteria
    >>> kernel = np.array([[0.0, 1.0, 3.0]])  # Dense, 1 -> 3 (points 0, 1, 3)
    >>> criteria.geometric_median(kernel)
    array([4., 3., 5.])

    References:
        He, Liu, Wang, Hu & Yang, "Filter Pruning via Geometric Median for Deep
        Convolutional Neural Networks Acceleration" (FPGM), CVPR 2019.
    """
    w = _as_kernel(kernel)
    n = w.shape[-1]
    flat = w.reshape(-1, n)
    with np.errstate(invalid="ignore", over="ignore"):  # Inf input: raised below
        centre = flat.mean(axis=1, keepdims=True, dtype=np.float64)
        filters = (flat - centre).T  # (N, D) float64, centred on the mean filter
        sq = np.einsum("nd,nd->n", filters, filters)
    _raise_if_not_finite(w, sq)
    scale = 1.0
    peak = np.max(sq)
    if not np.isfinite(peak) or 0.0 < peak < 1e-280:
        # Squared distances would overflow or lose precision to subnormals: divide
        # by a power of two (exact) and multiply the distances back.
        scale = float(np.ldexp(1.0, int(np.frexp(np.max(np.abs(filters)))[1])))
        filters = filters / scale
        sq = np.einsum("nd,nd->n", filters, filters)
    scores = np.empty(n)
    block = max(1, _GM_BLOCK_ENTRIES // n)
    for start in range(0, n, block):
        stop = min(start + block, n)
        rows = filters[start:stop]
        norms = sq[start:stop, None] + sq[None, :]
        d2 = norms - 2.0 * (rows @ filters.T)
        d2[np.arange(stop - start), np.arange(start, stop)] = 0.0
        # ‖a‖² + ‖b‖² − 2⟨a, b⟩ cancels for (near-)duplicate filters: recompute
        # those pairs' distances from their differences.
        near_r, near_c = np.nonzero(d2 < _GM_NEAR * norms)
        off = near_r + start != near_c
        near_r, near_c = near_r[off], near_c[off]
        chunk = max(1, _GM_BLOCK_ENTRIES // filters.shape[1])
        for lo in range(0, near_r.size, chunk):
            r, c = near_r[lo : lo + chunk], near_c[lo : lo + chunk]
            diff = rows[r] - filters[c]
            d2[r, c] = np.einsum("pd,pd->p", diff, diff)
        np.maximum(d2, 0.0, out=d2)
        scores[start:stop] = np.sqrt(d2).sum(axis=1)
    return scores * scale


def random(kernel: np.ndarray, seed: int | None = None) -> np.ndarray:
    """Random scores: a baseline that any criterion should beat.

    Scores are uniform in `[0, 1)`, drawn with `numpy.random.default_rng`.

    Args:
        kernel: Array of shape `(*spatial, C_in, N)` (Keras layout). Only its shape
            and, when `seed` is `None`, its contents are used.
        seed: Int or `None`. Seed of the generator. With `None` (the default) the
            seed is derived from the kernel's shape and values (CRC-32 of its
            float64 bytes), so the same kernel always gets the same scores while
            different layers get independent ones. Defaults to `None`.

    Returns:
        Float64 array of shape `(N,)`.

    Raises:
        ValueError: If `kernel` has rank < 2, is empty, or contains NaN or Inf, or
            if `seed` is negative.
        TypeError: If `kernel` is not a real numeric array or `seed` not an int.

    Example:

    >>> import numpy as np
    >>> from keras_filterprune import criteria
    >>> kernel = np.ones((3, 3, 2, 4))
    >>> a = criteria.random(kernel, seed=7)
    >>> bool(np.array_equal(a, criteria.random(kernel, seed=7))), a.shape
    (True, (4,))

    References:
        A standard baseline, e.g. in Liu, Sun, Zhou, Huang & Darrell, "Rethinking
        the Value of Network Pruning", ICLR 2019.
    """
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int | np.integer)
    ):
        raise TypeError(f"`seed` must be an int or None. Received: seed={seed!r}")
    if seed is not None and seed < 0:
        raise ValueError(f"`seed` must be >= 0. Received: seed={seed}")
    w = _as_kernel(kernel)
    _check_finite(w)
    if seed is None:
        contents = np.ascontiguousarray(w, dtype=np.float64)
        shape = np.asarray(np.shape(kernel), dtype=np.int64).tobytes()
        seed = zlib.crc32(contents.data, zlib.crc32(shape))
    return np.random.default_rng(int(seed)).random(w.shape[-1])
