r"""The map's piecewise-constant density sampled in O(1) by alias tables (Walker 1977, Vose 1991).

The density on the square is exactly ``piecewise``'s,
:math:`p_{uv} = f_{ij} / \bar f` with :math:`f_{ij} = Y_{ij} \sin\theta_i`
(:meth:`tracer.envmap.EnvMap.sampling_density`), and :func:`pdf_at` is ``piecewise``'s own
(:func:`tracer.samplers.piecewise.pdf_at` on the same ``func`` and ``integral``). Only the
way a pixel is drawn differs: instead of two binary searches through the marginal and
conditional CDFs, a row and then a column are drawn from Walker's alias tables, each in one
table read. A table of n cells has n slots; slot s keeps its own cell with probability
:math:`q_s` and otherwise gives its *alias* :math:`a_s`; Vose's construction pairs each cell
below the mean with one above it, so that
:math:`P(\text{cell } c) = (q_c + \sum_{s: a_s = c} (1 - q_s)) / n = f_c / \sum f`.

One uniform per dimension does both jobs: :math:`x = u n`, slot :math:`s = \lfloor x \rfloor`,
:math:`r = x - s`; the slot keeps its cell when :math:`r < q_s` and the rescaled remainder
(:math:`r / q_s` or :math:`(r - q_s)/(1 - q_s)`) is uniform on [0, 1) given the cell drawn,
so it places the point inside the pixel. The map is not a continuous warp of the square (a
neighbouring uniform may land on any pixel), which does not matter to independent or
scrambled samples.

``piecewise`` keeps its binary search: it is the named pbrt baseline, and its warp is
continuous and invertible (``invert``), which the flow's fit uses.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit

from tracer.distribution import build_distribution_2d
from tracer.envmap import EnvMap, square_sample_to_light
from tracer.light_dispatch import register_light
from tracer.samplers.base import TabulatedSampler
from tracer.samplers.piecewise import pdf_at as piecewise_pdf_at
from tracer.samplers.piecewise import square_pdf as piecewise_square_pdf
from tracer.samplers.piecewise import square_pdf_group as piecewise_square_pdf_group


class AliasTables(NamedTuple):
    """Walker alias tables of the rows and of each row's pixels, and the density itself."""

    marg: np.ndarray  # (H, 2): per slot the keep probability q and the alias row
    cond: np.ndarray  # (H, W, 2): per row and slot, q and the alias column
    func: np.ndarray  # (H, W) the tabulated function (``piecewise``'s pdf reads it)
    integral: np.ndarray  # (1,) its integral over the square


@njit(cache=True)
def build_alias(w: np.ndarray, out: np.ndarray) -> None:
    """Vose's alias table of the non-negative weights ``w`` into ``out`` (n, 2): q, alias.

    All-zero weights give a uniform table (such a row is never drawn by the marginal).
    """
    n = w.shape[0]
    total = 0.0
    for i in range(n):
        total += w[i]
    small = np.empty(n, np.int64)
    large = np.empty(n, np.int64)
    scaled = np.empty(n)
    ns = 0
    nl = 0
    for i in range(n):
        scaled[i] = w[i] * n / total if total > 0.0 else 1.0
        if scaled[i] < 1.0:
            small[ns] = i
            ns += 1
        else:
            large[nl] = i
            nl += 1
    while ns > 0 and nl > 0:
        ns -= 1
        s = small[ns]
        g = large[nl - 1]
        out[s, 0] = scaled[s]
        out[s, 1] = g
        # the large cell gives 1 - q_s of its mass to slot s
        scaled[g] = (scaled[g] + scaled[s]) - 1.0
        if scaled[g] < 1.0:
            nl -= 1
            small[ns] = g
            ns += 1
    # what is left is 1 up to rounding: keep the cell itself
    for k in range(nl):
        out[large[k], 0] = 1.0
        out[large[k], 1] = large[k]
    for k in range(ns):
        out[small[k], 0] = 1.0
        out[small[k], 1] = small[k]


@njit(cache=True)
def build_alias_2d(func: np.ndarray, marg: np.ndarray, cond: np.ndarray) -> None:
    """Row table from the row sums, one table per row from its pixels."""
    h, w = func.shape
    rows = np.zeros(h)
    for i in range(h):
        for j in range(w):  # a plain loop: the same sum compiled or not (NumPy's is pairwise)
            rows[i] += func[i, j]
        build_alias(func[i], cond[i])
    build_alias(rows, marg)


@njit(cache=True, inline="always")
def alias_draw(table: np.ndarray, x: float) -> tuple[int, float]:
    """A cell of the alias table and a uniform in [0, 1) for inside it, from one uniform."""
    n = table.shape[0]
    x *= n
    s = min(int(x), n - 1)
    r = x - s
    q = table[s, 0]
    if r < q:
        return s, r / q
    return int(table[s, 1]), min((r - q) / (1.0 - q), 1.0 - 1e-12)


@njit(cache=True, inline="always")
def square_sample(t: Any, u0: float, u1: float) -> tuple[float, float, float]:
    """A row, then a pixel of that row, each by one alias-table read: (u, v, p_uv)."""
    h, w = t.func.shape
    i, dv = alias_draw(t.marg, u1)
    j, du = alias_draw(t.cond[i], u0)
    su = min((j + du) / w, 1.0 - 1e-12)
    sv = min((i + dv) / h, 1.0)
    return su, sv, t.func[i, j] / t.integral[0]


@njit(cache=True, inline="always")
def square_at(k: int, t: Any, u: np.ndarray, sq: np.ndarray) -> None:
    """Entry k: the point of the map's square and its density (the CPU runs it in groups)."""
    sq[k, 0], sq[k, 1], sq[k, 2] = square_sample(t, u[k, 0], u[k, 1])


@njit(cache=True, inline="always")
def sample_at(
    k: int, t: Any, rgb: np.ndarray, rot_u: float, u: np.ndarray,
    wi: np.ndarray, pdf: np.ndarray, le: np.ndarray,
) -> None:
    """Entry k: the square sample, then its direction, pdf and radiance (in one kernel)."""
    su, sv, p_uv = square_sample(t, u[k, 0], u[k, 1])
    (wi[k, 0], wi[k, 1], wi[k, 2], pdf[k],
     le[k, 0], le[k, 1], le[k, 2]) = square_sample_to_light(rgb, rot_u, su, sv, p_uv)


register_light(AliasTables, sample_at, piecewise_pdf_at, square_at, square_pdf=piecewise_square_pdf,
               square_pdf_group=piecewise_square_pdf_group)


class AliasSampler(TabulatedSampler):
    """``piecewise``'s density, drawn by alias tables in O(1) per sample."""

    name = "alias"

    def __init__(self, env: EnvMap, compensate: bool = False) -> None:
        self.env = env
        self.compensate = compensate
        self.name = "alias-compensated" if compensate else "alias"
        # the same func and integral as piecewise (validated there), so the same pdf_at
        d = build_distribution_2d(env.sampling_density(compensate))
        h, w = d.func.shape
        marg = np.empty((h, 2))
        cond = np.empty((h, w, 2))
        build_alias_2d(d.func, marg, cond)
        self.tables = AliasTables(marg, cond, d.func, np.array([d.integral]))
