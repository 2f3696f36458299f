r"""Piecewise-constant 1D and 2D distributions on [0, 1] and [0, 1]^2 (pbrt-v4's
``PiecewiseConstant1D/2D``, ``util/sampling.h``), as arrays plus Numba functions.

A 1D function :math:`f` tabulated on n equal cells has the normalised density
:math:`p(x) = f_i / \bar f` on cell i, where :math:`\bar f = \frac1n \sum f_i` is its integral,
and the CDF is piecewise linear through :math:`c_i = \frac1{n \bar f}\sum_{k<i} f_k`.
The 2D version samples a row from the marginal of the row integrals, then a column
from that row's conditional: :math:`p(u, v) = f_{ij} / \bar f`.

:func:`find_interval` is the one binary search. A function that is zero everywhere gets the
uniform distribution (as pbrt does), so sampling never divides by zero; callers that need
to refuse such input do so before building the table.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, prange

#: intervals per block of the guide tables of the conditional CDFs
GUIDE = 32


@njit(cache=True, inline="always")
def cell(n: int, x: float) -> int:
    """The cell of n equal cells of [0, 1] that x falls in (x = 1 in the last one)."""
    return min(int(x * n), n - 1)


@njit(cache=True, inline="always")
def narrow(base: int, half: int, c: float, x: float) -> int:
    """One halving of a binary search: move up by ``half`` when the probed CDF value
    ``c = cdf[base + half]`` is <= x (a conditional move, not a branch)."""
    return base + half if c <= x else base


@njit(cache=True, inline="always")
def find_interval(cdf: np.ndarray, x: float, lo: int = 0, n: int = -1) -> int:
    """Largest i in [lo, lo + n - 1] with cdf[i] <= x (binary search); n = -1: all intervals.

    For x in [0, 1) the chosen interval has cdf[i + 1] > x, so cells of zero probability are
    never returned. The loop is branch-free (a conditional move per halving; the invariant is
    that the answer lies in [base, base + n - 1]), which avoids a mispredicted branch per level.
    """
    if n < 0:
        n = cdf.shape[0] - 1 - lo
    base = lo
    while n > 1:
        half = n >> 1
        base = narrow(base, half, cdf[base + half], x)
        n -= half
    return base


@njit(cache=True, inline="always")
def find_interval_guided(cdf: np.ndarray, guide: np.ndarray, x: float) -> int:
    """:func:`find_interval` on a long CDF through a guide holding every GUIDE-th entry.

    The guide (a few hundred bytes per row, cache-resident) narrows the search to one block
    of GUIDE intervals, so a sample touches about two cache lines of the row's CDF instead of
    one per level of the search. The result is the same index as the plain search.
    """
    k = find_interval(guide, x)
    lo = k * GUIDE
    return find_interval(cdf, x, lo, min(GUIDE, cdf.shape[0] - 1 - lo))


@njit(cache=True)
def _build_cdf(func: np.ndarray, cdf: np.ndarray) -> float:
    """Fill ``cdf`` (n + 1) for ``func`` (n); return the integral (mean of func)."""
    n = func.shape[0]
    cdf[0] = 0.0
    for i in range(n):
        cdf[i + 1] = cdf[i] + func[i] / n
    integral = cdf[n]
    if integral <= 0.0:
        for i in range(n + 1):
            cdf[i] = i / n
    else:
        for i in range(1, n + 1):
            cdf[i] /= integral
    cdf[n] = 1.0
    return integral


class Distribution2D(NamedTuple):
    """Tables of a 2D piecewise-constant distribution over [0,1]^2 (row = v, column = u)."""

    func: np.ndarray  # (H, W) the (nonnegative) function, zeros replaced by uniform if all zero
    cond_cdf: np.ndarray  # (H, W + 1) conditional CDF over u, per row
    cond_guide: np.ndarray  # (H, ceil(W / GUIDE) + 1) every GUIDE-th entry of cond_cdf, then 1
    row_int: np.ndarray  # (H,) integral of each row over u
    marg_cdf: np.ndarray  # (H + 1,) marginal CDF over v
    integral: float  # integral of func over the square


@njit(cache=True)
def _build_2d(func: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    h, w = func.shape
    cond = np.empty((h, w + 1))
    row_int = np.empty(h)
    for i in range(h):
        row_int[i] = _build_cdf(func[i], cond[i])
    marg = np.empty(h + 1)
    integral = _build_cdf(row_int, marg)
    return cond, row_int, marg, integral


def build_distribution_2d(func: np.ndarray) -> Distribution2D:
    """Tables for ``func`` (H, W), nonnegative and finite (checked)."""
    f = np.ascontiguousarray(func, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 1 or f.shape[1] < 1:
        raise ValueError(f"a 2D distribution needs a nonempty (H, W) array, got {f.shape}")
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ValueError("a 2D distribution needs a finite nonnegative function")
    if not np.any(f > 0):
        f = np.ones_like(f)
    cond, row_int, marg, integral = _build_2d(f)
    w = f.shape[1]
    guide = np.concatenate([cond[:, 0:w:GUIDE], np.ones((f.shape[0], 1))], axis=1)
    return Distribution2D(f, cond, np.ascontiguousarray(guide), row_int, marg, float(integral))


@njit(cache=True, inline="always")
def sample_2d(
    cond_cdf: np.ndarray,
    cond_guide: np.ndarray,
    marg_cdf: np.ndarray,
    u0: float,
    u1: float,
) -> tuple[float, float, float]:
    """Sample (u, v) from two uniforms; returns (u, v, p_uv)."""
    i = find_interval(marg_cdf, u1)
    j = find_interval_guided(cond_cdf[i], cond_guide[i], u0)
    return place_2d(cond_cdf, marg_cdf, i, j, u0, u1)


@njit(cache=True, inline="always")
def place_2d(
    cond_cdf: np.ndarray, marg_cdf: np.ndarray, i: int, j: int, u0: float, u1: float
) -> tuple[float, float, float]:
    """The point of cell (row i, column j) that the uniforms (u0, u1) found it at, and p_uv.

    The density is the product of the marginal and conditional cell probabilities times the
    cell count, (c_{j+1} - c_j) W (m_{i+1} - m_i) H, which equals f_ij / integral and reads
    only cache lines the search has already touched.
    """
    h = marg_cdf.shape[0] - 1
    w = cond_cdf.shape[1] - 1
    pm = marg_cdf[i + 1] - marg_cdf[i]
    dv = (u1 - marg_cdf[i]) / pm
    pc = cond_cdf[i, j + 1] - cond_cdf[i, j]
    du = (u0 - cond_cdf[i, j]) / pc
    u = min((j + du) / w, 1.0 - 1e-12)
    v = min((i + dv) / h, 1.0)
    return u, v, pc * w * pm * h


@njit(cache=True, inline="always")
def sample_2d_group(
    cond_cdf: np.ndarray, cond_guide: np.ndarray, marg_cdf: np.ndarray, u: np.ndarray,
    sq: np.ndarray, ij: np.ndarray,
) -> None:
    """:func:`sample_2d` of every row of ``u`` (a small group) into ``sq``, level by level.

    The searches run one halving at a time across the group (the levels outer, the entries
    inner), so the group's table reads at each level are independent of each other and the
    processor keeps them in flight together; entry by entry, each search is a chain of
    dependent loads that mostly waits on the cache. A binary search's answer is unique (the
    largest i with cdf[i] <= x), so the result is :func:`sample_2d`'s, bit for bit.
    ``ij`` (at least len(u) rows of 2) holds the rows and columns found.
    """
    m = u.shape[0]
    h = marg_cdf.shape[0] - 1
    w = cond_cdf.shape[1] - 1
    for e in range(m):
        ij[e, 0] = 0
        ij[e, 1] = 0
    n = h  # the marginal: the row
    while n > 1:
        half = n >> 1
        for e in range(m):
            b = ij[e, 0]
            ij[e, 0] = narrow(b, half, marg_cdf[b + half], u[e, 1])
        n -= half
    n = cond_guide.shape[1] - 1  # the row's guide: the block of GUIDE columns
    while n > 1:
        half = n >> 1
        for e in range(m):
            b = ij[e, 1]
            ij[e, 1] = narrow(b, half, cond_guide[ij[e, 0], b + half], u[e, 0])
        n -= half
    for e in range(m):
        ij[e, 1] *= GUIDE
    n = GUIDE  # inside the block (the last block of a row may be shorter: probes past
    while n > 1:  # the row's last interval count as above x)
        half = n >> 1
        for e in range(m):
            b = ij[e, 1]
            j = min(b + half, w - 1)
            ij[e, 1] = narrow(b, half, cond_cdf[ij[e, 0], j] if j == b + half else 2.0, u[e, 0])
        n -= half
    for e in range(m):
        sq[e, 0], sq[e, 1], sq[e, 2] = place_2d(cond_cdf, marg_cdf, ij[e, 0], ij[e, 1], u[e, 0], u[e, 1])


@njit(cache=True, inline="always")
def pdf_2d(func: np.ndarray, integral: float, u: float, v: float) -> float:
    """Density p(u, v) on the square."""
    h, w = func.shape
    return func[cell(h, v), cell(w, u)] / integral


@njit(cache=True, inline="always")
def invert_2d(
    cond_cdf: np.ndarray, marg_cdf: np.ndarray, u: float, v: float
) -> tuple[float, float]:
    """The uniforms (u0, u1) that :func:`sample_2d` maps to (u, v): the inverse of sampling."""
    h = marg_cdf.shape[0] - 1
    w = cond_cdf.shape[1] - 1
    i = cell(h, v)
    j = cell(w, u)
    u1 = marg_cdf[i] + (v * h - i) * (marg_cdf[i + 1] - marg_cdf[i])
    u0 = cond_cdf[i, j] + (u * w - j) * (cond_cdf[i, j + 1] - cond_cdf[i, j])
    return u0, u1


@njit(cache=True, parallel=True)
def sample_2d_batch(
    cond_cdf: np.ndarray, cond_guide: np.ndarray, marg_cdf: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """(N, 2) uniforms -> (N, 3) rows of (u, v, p_uv)."""
    out = np.empty((u.shape[0], 3))
    for k in prange(u.shape[0]):
        out[k, 0], out[k, 1], out[k, 2] = sample_2d(cond_cdf, cond_guide, marg_cdf, u[k, 0], u[k, 1])
    return out


@njit(cache=True, parallel=True)
def invert_2d_batch(cond_cdf: np.ndarray, marg_cdf: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(N, 2) points (u, v) -> (N, 2) uniforms."""
    out = np.empty((uv.shape[0], 2))
    for k in prange(uv.shape[0]):
        out[k, 0], out[k, 1] = invert_2d(cond_cdf, marg_cdf, uv[k, 0], uv[k, 1])
    return out
