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
        base = base + half if cdf[base + half] <= x else base
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
    """Sample (u, v) from two uniforms; returns (u, v, p_uv).

    The density is the product of the marginal and conditional cell probabilities times the
    cell count, (c_{j+1} - c_j) W (m_{i+1} - m_i) H, which equals f_ij / integral and reads
    only cache lines the search has already touched.
    """
    h = marg_cdf.shape[0] - 1
    w = cond_cdf.shape[1] - 1
    i = find_interval(marg_cdf, u1)
    pm = marg_cdf[i + 1] - marg_cdf[i]
    dv = (u1 - marg_cdf[i]) / pm
    j = find_interval_guided(cond_cdf[i], cond_guide[i], u0)
    pc = cond_cdf[i, j + 1] - cond_cdf[i, j]
    du = (u0 - cond_cdf[i, j]) / pc
    u = min((j + du) / w, 1.0 - 1e-12)
    v = min((i + dv) / h, 1.0)
    return u, v, pc * w * pm * h


@njit(cache=True, inline="always")
def pdf_2d(func: np.ndarray, integral: float, u: float, v: float) -> float:
    """Density p(u, v) on the square."""
    h, w = func.shape
    i = min(int(v * h), h - 1)
    j = min(int(u * w), w - 1)
    return func[i, j] / integral


@njit(cache=True, inline="always")
def invert_2d(
    cond_cdf: np.ndarray, marg_cdf: np.ndarray, u: float, v: float
) -> tuple[float, float]:
    """The uniforms (u0, u1) that :func:`sample_2d` maps to (u, v): the inverse of sampling."""
    h = marg_cdf.shape[0] - 1
    w = cond_cdf.shape[1] - 1
    i = min(int(v * h), h - 1)
    j = min(int(u * w), w - 1)
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
