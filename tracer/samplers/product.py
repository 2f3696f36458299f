r"""``product``: a conditional sampler of environment x BSDF lobe x cosine at each shading point.

At a shading point with condition :math:`c` (shading normal, outgoing direction, material)
the integrand of direct lighting is :math:`L(\omega) f(\omega_o, \omega, c) |\cos\theta|`.
``piecewise`` samples :math:`L` alone (half its samples can fall below the surface); BSDF
sampling samples :math:`f \cos` alone. This sampler draws from an approximation of their
product, built as a *head* composed with a *tail* (the structure of Litalien et al., "Neural
Product Importance Sampling via Warp Composition", SIGGRAPH Asia 2024, with the head baked
into histograms per condition as in their "baked" variant):

* **tail**: the map's own piecewise-constant density :math:`f_{ij} = Y_{ij} \sin\theta_i`
  restricted to each of a grid of coarse cells of the map's square (e.g. 32 x 64 cells of
  16 x 16 pixels), so the sample lands on a pixel exactly as ``piecewise`` would inside the
  cell (suns and small bright pixels stay resolved);
* **head**: a distribution over the cells given the condition, tabulated on a grid of
  conditions (:mod:`tracer.product_model` builds it): for diffuse surfaces, per shading normal
  :math:`n_b` on a 16 x 32 grid, :math:`P_b(\text{cell}) \propto \sum_{ij \in \text{cell}}
  f_{ij} \max(0, n_b \cdot \omega_{ij})`; for rough conductors, per mirror direction
  :math:`r_b = 2(\omega_o \cdot n)n - \omega_o` and roughness :math:`\alpha_a`, the GGX lobe
  as a spherical Gaussian :math:`\exp(\lambda(r_b \cdot \omega - 1))` with
  :math:`\lambda = 1 / (2\alpha^2)` (Wang et al. 2009, "All-frequency rendering of dynamic,
  spatially-varying reflectance": the half-vector lobe :math:`D(h)` seen through the
  reflection, whose angle doubles).

A condition between grid points is a mixture of the neighbouring rows (bilinear in the
normal's or mirror direction's map coordinates, linear in :math:`\log\alpha`), and a
defensive fraction :math:`\epsilon` of samples comes from ``piecewise`` (Hesterberg 1995,
"Weighted average importance sampling and defensive mixture distributions")::

    p(omega | c) = eps p_map(omega) + (1 - eps) sum_q w_q(c) P_q(cell(omega)) p_tail(omega | cell)

The pdf reported is this mixture, evaluated exactly, so the estimator is unbiased whatever
the tables: the defensive term keeps the density positive wherever the map is, and a
condition the grid approximates poorly costs variance, never bias. Dielectric (delta) lobes
fall back to the defensive term (the integrator takes no light samples there).

The condition reaches the sampler per queue entry through :class:`tracer.samplers.base.Condition`
(path-indexed arrays the integrator records at every surface hit), so the density is
evaluated for a BSDF-sampled direction at the vertex it left (the MIS weight of an escaped ray).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numba import njit

from tracer.bsdf import CONDUCTOR, DIFFUSE
from tracer.distribution import (
    GUIDE,
    find_interval,
    find_interval_guided,
    narrow,
    pdf_2d,
    sample_2d,
)
from tracer.envmap import GROUP_F, GROUP_I, EnvMap, square_sample_to_light, world_dir_to_map_uv
from tracer.light_dispatch import register_light
from tracer.samplers.base import Condition, LightSamples, cpu_if_none
from tracer.sphere_map import uv_to_solid_angle_pdf

if TYPE_CHECKING:
    from tracer.backend import Backend
    from tracer.product_model import ProductModel


class ProductStatic(NamedTuple):
    """The tables of a product model (the same for every queue), see the module docstring."""

    map_cond_cdf: np.ndarray  # (H, W + 1) the map's piecewise tables (the defensive term)
    map_cond_guide: np.ndarray
    map_marg_cdf: np.ndarray  # (H + 1,)
    map_func: np.ndarray  # (H, W)
    map_integral: np.ndarray  # (1,)
    cell_of_row: np.ndarray  # (H,) int64 cell row of each pixel row
    cell_of_col: np.ndarray  # (W,) int64 cell column of each pixel column
    row0: np.ndarray  # (CH + 1,) int64 first pixel row of each cell row, then H
    col0: np.ndarray  # (CW + 1,) int64 first pixel column of each cell column, then W
    tail_row_cdf: np.ndarray  # (CH, CW, R + 1) CDF over a cell's pixel rows (padded with 1)
    tail_col_cdf: np.ndarray  # (H, CW, C + 1) CDF over a pixel row's columns inside each cell
    head_cdf: np.ndarray  # (rows, CH * CW + 1) float32 CDF over cells per condition row
    head_guide: np.ndarray  # (rows, ceil(CH * CW / GUIDE) + 1) every GUIDE-th CDF entry, then 1
    head_p: np.ndarray  # (CH * CW, rows) cell probabilities (head_cdf's differences), cell-major: the rows one
    #                     condition mixes are neighbours, so a pdf reads one or two cache lines
    grid: np.ndarray  # (2,) int64 condition grid (NV, NU): nodes of the lat-long grid of n or r
    #                   (row i at v = i / (NV - 1), so rows 0 and NV - 1 are the poles; column
    #                   j at u = (j + 1/2) / NU)
    alphas: np.ndarray  # (A,) float64 the conductor tables' roughness values, increasing; with
    #                     fewer than 2 there are no conductor tables (the cosine's serve)
    eps: np.ndarray  # (1,) defensive fraction


class MaterialBlend(NamedTuple):
    """The scene's :func:`material_blend` (a tables tuple, so a back-end copies it once)."""

    blend: np.ndarray


class ProductTables(NamedTuple):
    """:class:`ProductStatic` fields, one queue's condition (:class:`Condition`) and the
    scene's material blend."""

    map_cond_cdf: Any
    map_cond_guide: Any
    map_marg_cdf: Any
    map_func: Any
    map_integral: Any
    cell_of_row: Any
    cell_of_col: Any
    row0: Any
    col0: Any
    tail_row_cdf: Any
    tail_col_cdf: Any
    head_cdf: Any
    head_guide: Any
    head_p: Any
    grid: Any
    alphas: Any
    eps: Any
    idx: Any  # (M,) path id of each queue entry
    normal: Any  # (N, 3) shading normal per path
    wo: Any  # (N, 3) outgoing direction per path
    mat: Any  # (N,) material per path
    mat_kind: Any  # (K,) the scene's material kinds
    mat_prm: Any  # (K, 8) the scene's material parameters
    blend: Any  # (K, 3) per material: the head rows' offsets of its two roughness blocks and
    #             the weight of the second (material_blend)


# ------------------------------------------------------------------ per-entry device code


@njit(cache=True, inline="always")
def condition_inputs(t: Any, k: int) -> tuple[int, float, float, float, float, float, float, int]:
    """Entry k's condition as the path state holds it: the table its material uses (0 =
    diffuse, 1 = conductor, -1 = none: the map term alone; a model without conductor tables
    gives conductors the cosine's), the shading normal, the outgoing direction, the material."""
    p = t.idx[k]
    m = t.mat[p]
    kind = t.mat_kind[m]
    table = -1
    if kind == DIFFUSE or (kind == CONDUCTOR and t.alphas.shape[0] < 2):
        table = 0
    elif kind == CONDUCTOR:
        table = 1
    return (table, t.normal[p, 0], t.normal[p, 1], t.normal[p, 2],
            t.wo[p, 0], t.wo[p, 1], t.wo[p, 2], m)


@njit(cache=True, inline="always")
def condition_uv(
    table: int, nx: float, ny: float, nz: float, ox: float, oy: float, oz: float, rot_u: float,
) -> tuple[int, float, float]:
    """(table, u, v): the map coordinates of the direction the head's grid is indexed by, the
    normal on wo's side (two-sided diffuse) or the mirror direction of wo (conductors; a
    degenerate one, of zero length, leaves the map term alone: table -1, coordinates 0).
    Branch-free (both directions computed, one selected), so a group's conditions vectorise."""
    d = nx * ox + ny * oy + nz * oz
    s = -1.0 if d < 0.0 else 1.0  # the lit side is wo's (s * n is -n bit for bit)
    rx, ry, rz = 2.0 * d * nx - ox, 2.0 * d * ny - oy, 2.0 * d * nz - oz
    rl = math.sqrt(rx * rx + ry * ry + rz * rz)
    rl1 = rl if rl != 0.0 else 1.0
    diffuse = table == 0
    mirror = table == 1 and rl != 0.0
    x = s * nx if diffuse else (rx / rl1 if mirror else 0.0)
    y = s * ny if diffuse else (ry / rl1 if mirror else 0.0)
    z = s * nz if diffuse else (rz / rl1 if mirror else 0.0)
    u, v = world_dir_to_map_uv(x, y, z, rot_u)
    lit = diffuse or mirror
    return (table if lit else -1), (u if lit else 0.0), (v if lit else 0.0)


@njit(cache=True, inline="always")
def condition_at(t: Any, k: int, rot_u: float) -> tuple[int, float, float, int]:
    """(table, u, v, material) of entry k (:func:`condition_inputs`, :func:`condition_uv`)."""
    table, nx, ny, nz, ox, oy, oz, m = condition_inputs(t, k)
    table, u, v = condition_uv(table, nx, ny, nz, ox, oy, oz, rot_u)
    return table, u, v, m


def material_blend(mat_kind: np.ndarray, mat_prm: np.ndarray, alphas: np.ndarray,
                   grid: np.ndarray) -> np.ndarray:
    """(K, 3) per material: row offsets of the two roughness blocks its lobe mixes and the
    weight of the second, linear in log alpha between the tabulated roughnesses (clamped at
    the ends); zeros for materials that use the diffuse tables or none. Computed once per
    scene on the host, so the per-entry code reads three numbers instead of searching the
    roughness table and taking logarithms."""
    out = np.zeros((len(mat_kind), 3))
    block = int(grid[0]) * int(grid[1])
    if len(alphas) < 2:
        return out
    la = np.log(alphas)
    for m, kind in enumerate(np.asarray(mat_kind)):
        if kind != CONDUCTOR:
            continue
        x = math.log(max(float(mat_prm[m, 3]), 1e-6))
        ai = int(np.clip(np.searchsorted(la, x, side="right") - 1, 0, len(la) - 2))
        c = min(max((x - la[ai]) / (la[ai + 1] - la[ai]), 0.0), 1.0)
        out[m] = (block * (1 + ai), block * (2 + ai), c)
    return out


@njit(cache=True, inline="always")
def grid_position(grid: np.ndarray, u: float, v: float) -> tuple[int, int, int, int, float, float]:
    """Where a condition's (u, v) falls in the head's grid: the four neighbouring nodes' rows
    (r00, r01, r10, r11) and the bilinear weights (a along u, b along v)."""
    nv = grid[0]
    nu = grid[1]
    fu = u * nu - 0.5
    fj = math.floor(fu)
    a = fu - fj
    j0 = int(fj) + nu if fj < 0.0 else int(fj)
    j1 = j0 + 1 if j0 + 1 < nu else 0
    fv = min(max(v * (nv - 1), 0.0), nv - 1.0)
    i0 = min(int(fv), nv - 1)
    b = fv - i0
    i1 = min(i0 + 1, nv - 1)
    return i0 * nu + j0, i0 * nu + j1, i1 * nu + j0, i1 * nu + j1, a, b


@njit(cache=True, inline="always")
def material_mix(t: Any, m: int) -> tuple[int, int, float]:
    """The row offsets of the two roughness blocks material m mixes (off0, off1) and the
    weight c of the second, its :func:`material_blend` row (diffuse: the first block alone,
    c = 0)."""
    return int(t.blend[m, 0]), int(t.blend[m, 1]), t.blend[m, 2]


@njit(cache=True, inline="always")
def grid_weights(t: Any, m: int, u: float, v: float) -> tuple[int, int, int, int, float, float, int, int, float]:
    """:func:`grid_position`, then material m's :func:`material_mix`."""
    r00, r01, r10, r11, a, b = grid_position(t.grid, u, v)
    off0, off1, c = material_mix(t, m)
    return r00, r01, r10, r11, a, b, off0, off1, c


@njit(cache=True, inline="always")
def lerp4(x00: float, x01: float, x10: float, x11: float, a: float, b: float) -> float:
    """The bilinear mixture of four grid rows' values (a along u, b along v)."""
    return (1.0 - b) * ((1.0 - a) * x00 + a * x01) + b * ((1.0 - a) * x10 + a * x11)


@njit(cache=True, inline="always")
def bilinear(hp: Any, cell: int, r00: int, r01: int, r10: int, r11: int, a: float, b: float, off: int) -> float:
    """A cell's probability under the bilinear mixture of four grid rows of one block."""
    return lerp4(hp[cell, r00 + off], hp[cell, r01 + off], hp[cell, r10 + off], hp[cell, r11 + off], a, b)


@njit(cache=True, inline="always")
def mixture(t: Any, table: int, p_map: float, p_cell: float, r0: float, r1: float, c0: float, c1: float) -> float:
    """The mixture's density from what it reads (:func:`pdf_uv_at`): the map's ``p_map``, the
    head's ``p_cell`` and the tail's CDF values at the pixel's row (``r0``, ``r1``) and
    column (``c0``, ``c1``) inside the cell."""
    if table < 0:
        return p_map
    if p_cell <= 0.0:
        return t.eps[0] * p_map
    h, w = t.map_func.shape
    p_tail = (r1 - r0) * (c1 - c0) * h * w
    return t.eps[0] * p_map + (1.0 - t.eps[0]) * p_cell * p_tail


@njit(cache=True, inline="always")
def pixel_place(t: Any, su: float, sv: float) -> tuple[int, int, int, int, int, int, int]:
    """The map's pixel (i, j) at (su, sv), its cell's row, column and number (ci, cj, cell)
    and the pixel's row and column inside the cell (r, cc)."""
    h, w = t.map_func.shape
    i = min(int(sv * h), h - 1)
    j = min(int(su * w), w - 1)
    ci = t.cell_of_row[i]
    cj = t.cell_of_col[j]
    return i, j, ci, cj, ci * (t.col0.shape[0] - 1) + cj, i - t.row0[ci], j - t.col0[cj]


@njit(cache=True, inline="always")
def pdf_uv_at(
    t: Any, table: int, g: tuple[int, int, int, int, float, float, int, int, float], su: float, sv: float,
) -> float:
    """Density on the map's square at (su, sv) for a condition (the mixture of the module
    docstring); ``g`` is the condition's :func:`grid_weights`."""
    p_map = pdf_2d(t.map_func, t.map_integral[0], su, sv)
    if table < 0:
        return p_map
    r00, r01, r10, r11, a, b, off0, off1, c = g
    i, _, ci, cj, cell, r, cc = pixel_place(t, su, sv)
    p_cell = bilinear(t.head_p, cell, r00, r01, r10, r11, a, b, off0)
    if c > 0.0:
        p_cell = (1.0 - c) * p_cell + c * bilinear(t.head_p, cell, r00, r01, r10, r11, a, b, off1)
    if p_cell <= 0.0:
        return t.eps[0] * p_map
    return mixture(t, table, p_map, p_cell, t.tail_row_cdf[ci, cj, r], t.tail_row_cdf[ci, cj, r + 1],
                   t.tail_col_cdf[i, cj, cc], t.tail_col_cdf[i, cj, cc + 1])


@njit(cache=True, inline="always")
def pick(x: float, w1: float) -> tuple[bool, float]:
    """Choose the second of two options with probability w1 from a uniform x, and return x
    stretched back to [0, 1) for the next choice."""
    if w1 > 0.0 and x >= 1.0 - w1:
        return True, min((x - (1.0 - w1)) / w1, 1.0 - 1e-16)
    return False, min(x / (1.0 - w1), 1.0 - 1e-16)


@njit(cache=True, inline="always")
def component(table: int, g: tuple[int, int, int, int, float, float, int, int, float], u0: float,
              eps: float) -> tuple[int, float]:
    """The mixture component a uniform u0 picks: (-1, x) for the defensive term, else (the
    head row: a roughness block's grid row, x), x being u0 stretched back to [0, 1) for the
    next choice."""
    if table < 0 or u0 < eps:
        return -1, (u0 / eps if table >= 0 else u0)
    r00, r01, r10, r11, a, b, off0, off1, c = g
    x = (u0 - eps) / (1.0 - eps)
    # a roughness block, then a grid row, then a grid column
    second, x = pick(x, c)
    lower, x = pick(x, b)
    right, x = pick(x, a)
    row = (r11 if right else r10) if lower else (r01 if right else r00)
    return row + (off1 if second else off0), x


@njit(cache=True, inline="always")
def tail_cell(t: Any, row: int, cell: int, x: float) -> tuple[int, int, float]:
    """The cell's row and column (ci, cj) of ``cell`` (found by head row ``row`` at x), and x
    stretched back to [0, 1) inside it, for the tail's searches. The cell's probability is
    the difference of its two float32 CDF entries taken in double precision (exact, and the
    cell probability the density reads): Numba's ``float()`` of a float32 stays float32, and
    a float32 difference would round."""
    c0 = np.float64(t.head_cdf[row, cell])
    pc = np.float64(t.head_cdf[row, cell + 1]) - c0
    x = min(max((x - c0) / pc, 0.0), 1.0 - 1e-16) if pc > 0.0 else 0.5
    cw = t.col0.shape[0] - 1
    return min(cell // cw, t.row0.shape[0] - 2), cell % cw, x


@njit(cache=True, inline="always")
def tail_row_place(t: Any, ci: int, cj: int, r: int, x: float) -> tuple[int, float]:
    """The map's pixel row i of the cell's row r (found at x) and the offset dv in [0, 1) inside it."""
    pr = t.tail_row_cdf[ci, cj, r + 1] - t.tail_row_cdf[ci, cj, r]
    dv = min(max((x - t.tail_row_cdf[ci, cj, r]) / pr, 0.0), 1.0 - 1e-12) if pr > 0.0 else 0.5
    return t.row0[ci] + r, dv


@njit(cache=True, inline="always")
def tail_col_place(t: Any, i: int, cj: int, cc: int, dv: float, u1: float) -> tuple[float, float]:
    """The point (su, sv) of the map's square in pixel row i, column cc of cell column cj
    (found at u1), dv inside the row."""
    h, w = t.map_func.shape
    pcol = t.tail_col_cdf[i, cj, cc + 1] - t.tail_col_cdf[i, cj, cc]
    du = min(max((u1 - t.tail_col_cdf[i, cj, cc]) / pcol, 0.0), 1.0 - 1e-12) if pcol > 0.0 else 0.5
    return (t.col0[cj] + cc + du) / w, (i + dv) / h


@njit(cache=True, inline="always")
def tail_at(t: Any, row: int, cell: int, x: float, u1: float) -> tuple[float, float]:
    """The tail: the point (su, sv) of the map's square inside ``cell`` (found by head row
    ``row`` at x), the map's own distribution there: a pixel row of the cell by x, then a
    column of that row by u1."""
    ci, cj, x = tail_cell(t, row, cell, x)
    r = find_interval(t.tail_row_cdf[ci, cj], x, 0, t.row0[ci + 1] - t.row0[ci])
    i, dv = tail_row_place(t, ci, cj, r, x)
    cc = find_interval(t.tail_col_cdf[i, cj], u1, 0, t.col0[cj + 1] - t.col0[cj])
    return tail_col_place(t, i, cj, cc, dv, u1)


@njit(cache=True, inline="always")
def defensive_at(t: Any, x: float, u1: float) -> tuple[float, float]:
    """The defensive term's point (su, sv): the map's own piecewise distribution at (x, u1)."""
    su, sv, _ = sample_2d(t.map_cond_cdf, t.map_cond_guide, t.map_marg_cdf, min(x, 1.0 - 1e-16), u1)
    return su, sv


@njit(cache=True, inline="always")
def sample_uv_at(t: Any, k: int, rot_u: float, u0: float, u1: float) -> tuple[float, float, float]:
    """Entry k: a point (su, sv) of the map's square and its density under the mixture."""
    table, cu, cv, m = condition_at(t, k, rot_u)
    g = grid_weights(t, m, cu, cv)
    row, x = component(table, g, u0, t.eps[0])
    # the cell (the head row's guided search), then the pixel inside it
    if row < 0:
        su, sv = defensive_at(t, x, u1)
    else:
        su, sv = tail_at(t, row, find_interval_guided(t.head_cdf[row], t.head_guide[row], x), x, u1)
    return su, sv, pdf_uv_at(t, table, g, su, sv)


@njit(cache=True, inline="always")
def sample_at(
    k: int, t: Any, rgb: np.ndarray, rot_u: float, u: np.ndarray,
    wi: np.ndarray, pdf: np.ndarray, le: np.ndarray,
) -> None:
    """Entry k: a direction from the product mixture, its solid-angle pdf and radiance."""
    su, sv, p_uv = sample_uv_at(t, k, rot_u, u[k, 0], u[k, 1])
    (wi[k, 0], wi[k, 1], wi[k, 2], pdf[k],
     le[k, 0], le[k, 1], le[k, 2]) = square_sample_to_light(rgb, rot_u, su, sv, p_uv)


@njit(cache=True, inline="always")
def pdf_at(k: int, t: Any, rot_u: float, wi: np.ndarray, out: np.ndarray) -> None:
    """Entry k: the mixture's solid-angle density of wi[k] under entry k's condition."""
    su, sv = world_dir_to_map_uv(wi[k, 0], wi[k, 1], wi[k, 2], rot_u)
    table, cu, cv, m = condition_at(t, k, rot_u)
    g = grid_weights(t, m, cu, cv)
    out[k] = uv_to_solid_angle_pdf(pdf_uv_at(t, table, g, su, sv), sv)


# ------------------------------------------------------------------ group schedules (the CPU)
# A group's conditions first (their gathers, then their arithmetic, which the compiler
# vectorises), then each step of the draw for the whole group, then the density's table reads:
# the reads of different entries are independent and in flight together. The same per-entry
# functions as sample_at / pdf_at, so the same numbers bit for bit (tests/test_product.py).
# Scratch (tracer.light_dispatch): the integer rows js hold (table, r00, r01, r10, r11, off0,
# off1, material, head row, the row a search reads, its base and answer, the cell's row and
# column, the pixel row), the float rows f (a, b, c, x, then the normal and wo, then dv, u1).
_IROW, _ITAB, _IB, _ICI, _ICJ, _II = 8, 9, 10, 11, 12, 13
_FX, _FDV, _FU1 = 3, 10, 11
# the density's schedule (pdf_uv_group), after the draw: the pixel, its cell and place in
# the cell (integer rows from 14), and the values read (float rows from 12: the map's, the
# head's four rows of each roughness block, the tail's two CDF pairs)
_PI, _PJ, _PCI, _PCJ, _PCELL, _PR, _PCC = 14, 15, 16, 17, 18, 19, 20
_PMAP, _PH0, _PH1, _PT = 12, 13, 17, 21
assert _PCC < GROUP_I and _PT + 3 < GROUP_F, "the product's group scratch outgrew tracer.envmap's"


@njit(cache=True, inline="always")
def condition_group(t: Any, k0: int, n: int, rot_u: float, f: np.ndarray, js: np.ndarray) -> None:
    """:func:`condition_at` and :func:`grid_weights` of entries k0 .. k0 + n - 1 into the scratch."""
    for e in range(n):  # the gathers from the path state
        table, nx, ny, nz, ox, oy, oz, m = condition_inputs(t, k0 + e)
        js[e, 0] = table
        js[e, 7] = m
        f[e, 4], f[e, 5], f[e, 6] = nx, ny, nz
        f[e, 7], f[e, 8], f[e, 9] = ox, oy, oz
    for e in range(n):  # the arithmetic
        table, u, v = condition_uv(js[e, 0], f[e, 4], f[e, 5], f[e, 6], f[e, 7], f[e, 8], f[e, 9], rot_u)
        js[e, 0] = table
        js[e, 1], js[e, 2], js[e, 3], js[e, 4], f[e, 0], f[e, 1] = grid_position(t.grid, u, v)
    for e in range(n):  # the material's roughness blocks
        js[e, 5], js[e, 6], f[e, 2] = material_mix(t, js[e, 7])


@njit(cache=True, inline="always")
def group_weights(f: np.ndarray, js: np.ndarray, e: int) -> tuple[int, int, int, int, float, float, int, int, float]:
    """Row e's :func:`grid_weights`, from the scratch :func:`condition_group` filled."""
    return js[e, 1], js[e, 2], js[e, 3], js[e, 4], f[e, 0], f[e, 1], js[e, 5], js[e, 6], f[e, 2]


@njit(cache=True, inline="always")
def search_group(cdf: np.ndarray, n: int, js: np.ndarray, f: np.ndarray, fx: int, width: int) -> None:
    """:func:`tracer.distribution.find_interval` for each of a group's n entries, a level at a
    time across the group (as :func:`tracer.distribution.sample_2d_group`): entry e searches
    row ``js[e, _ITAB]`` of ``cdf`` for ``f[e, fx]``, over ``width`` intervals from
    ``js[e, _IB]``, where the answer is left. A level's reads of different entries are
    independent, in flight together. Probes past the row's last interval count as above x: a
    search shortened to the intervals that exist never makes them, and gives the same answer."""
    last = cdf.shape[1] - 2
    while width > 1:
        half = width >> 1
        for e in range(n):
            b = js[e, _IB]
            j = min(b + half, last)
            c = cdf[js[e, _ITAB], j] if j == b + half else 2.0
            js[e, _IB] = narrow(b, half, c, f[e, fx])
        width -= half


@njit(cache=True, inline="always")
def square_group(t: Any, k0: int, rot_u: float, u: np.ndarray, sq: np.ndarray, ij: np.ndarray,
                 f: np.ndarray, js: np.ndarray) -> None:
    """:func:`sample_uv_at` of entries k0 .. k0 + len(u) - 1 into sq's rows (u, v, p_uv)."""
    n = u.shape[0]
    condition_group(t, k0, n, rot_u, f, js)
    eps = t.eps[0]
    for e in range(n):
        js[e, _IROW], f[e, _FX] = component(js[e, 0], group_weights(f, js, e), u[e, 0], eps)
    # the cell: the head row's guided search (find_interval_guided), the guide's levels then
    # the block's; defensive entries search row 0 and keep their own point
    for e in range(n):
        js[e, _ITAB] = max(js[e, _IROW], 0)
        js[e, _IB] = 0
    search_group(t.head_guide, n, js, f, _FX, t.head_guide.shape[1] - 1)
    for e in range(n):
        js[e, _IB] *= GUIDE
    search_group(t.head_cdf, n, js, f, _FX, GUIDE)
    # the tail (tail_at): the cell's pixel row, then the row's column, over the tables' padded
    # width (past a cell's last row or column the CDF is padded with 1 > x, so the answer is
    # tail_at's: x < 1 as the uniforms are); defensive entries search cell (0, 0) and keep
    # their own point
    cw = t.col0.shape[0] - 1
    for e in range(n):
        ci, cj = 0, 0
        if js[e, _IROW] >= 0:
            ci, cj, f[e, _FX] = tail_cell(t, js[e, _IROW], js[e, _IB], f[e, _FX])
        js[e, _ICI], js[e, _ICJ] = ci, cj
        js[e, _ITAB] = ci * cw + cj
        js[e, _IB] = 0
    rows = t.tail_row_cdf.reshape(-1, t.tail_row_cdf.shape[2])
    search_group(rows, n, js, f, _FX, rows.shape[1] - 1)
    for e in range(n):
        i, f[e, _FDV] = tail_row_place(t, js[e, _ICI], js[e, _ICJ], js[e, _IB], f[e, _FX])
        js[e, _II] = i
        js[e, _ITAB] = i * cw + js[e, _ICJ]
        js[e, _IB] = 0
        f[e, _FU1] = u[e, 1]
    cols = t.tail_col_cdf.reshape(-1, t.tail_col_cdf.shape[2])
    search_group(cols, n, js, f, _FU1, cols.shape[1] - 1)
    for e in range(n):
        if js[e, _IROW] >= 0:
            sq[e, 0], sq[e, 1] = tail_col_place(t, js[e, _II], js[e, _ICJ], js[e, _IB], f[e, _FDV], u[e, 1])
        else:
            sq[e, 0], sq[e, 1] = defensive_at(t, f[e, _FX], u[e, 1])
    pdf_uv_group(t, n, sq, f, js)
    for e in range(n):
        sq[e, 2] = f[e, _PMAP]


@njit(cache=True, inline="always")
def pdf_uv_group(t: Any, n: int, pts: np.ndarray, f: np.ndarray, js: np.ndarray) -> None:
    """:func:`pdf_uv_at` at the points (u, v) of rows e < n of ``pts``, under the conditions
    :func:`condition_group` left in the scratch, into ``f[e, _PMAP]``: first every entry's
    pixel and cell (arithmetic, and reads of the small tables), then the group's reads of
    the large ones (the map's density, the head's rows, the tail's CDFs), independent of
    each other and so in flight together, then the mixture's arithmetic
    (:func:`lerp4`, :func:`mixture`): :func:`pdf_uv_at`'s operations, bit for bit. Entry
    by entry, an entry's dozen reads waited on its own arithmetic."""
    hp = t.head_p
    for e in range(n):
        (js[e, _PI], js[e, _PJ], js[e, _PCI], js[e, _PCJ], js[e, _PCELL], js[e, _PR],
         js[e, _PCC]) = pixel_place(t, pts[e, 0], pts[e, 1])
    for e in range(n):
        i, ci, cj, r, cc = js[e, _PI], js[e, _PCI], js[e, _PCJ], js[e, _PR], js[e, _PCC]
        f[e, _PMAP] = t.map_func[i, js[e, _PJ]]
        if js[e, 0] >= 0:
            cell, r00, r01, r10, r11, off0, off1 = (js[e, _PCELL], js[e, 1], js[e, 2], js[e, 3],
                                                    js[e, 4], js[e, 5], js[e, 6])
            f[e, _PH0], f[e, _PH0 + 1] = hp[cell, r00 + off0], hp[cell, r01 + off0]
            f[e, _PH0 + 2], f[e, _PH0 + 3] = hp[cell, r10 + off0], hp[cell, r11 + off0]
            if f[e, 2] > 0.0:
                f[e, _PH1], f[e, _PH1 + 1] = hp[cell, r00 + off1], hp[cell, r01 + off1]
                f[e, _PH1 + 2], f[e, _PH1 + 3] = hp[cell, r10 + off1], hp[cell, r11 + off1]
            f[e, _PT], f[e, _PT + 1] = t.tail_row_cdf[ci, cj, r], t.tail_row_cdf[ci, cj, r + 1]
            f[e, _PT + 2], f[e, _PT + 3] = t.tail_col_cdf[i, cj, cc], t.tail_col_cdf[i, cj, cc + 1]
    integral = t.map_integral[0]
    for e in range(n):
        p_map = f[e, _PMAP] / integral
        p_cell = 0.0
        if js[e, 0] >= 0:
            a, b, c = f[e, 0], f[e, 1], f[e, 2]
            p_cell = lerp4(f[e, _PH0], f[e, _PH0 + 1], f[e, _PH0 + 2], f[e, _PH0 + 3], a, b)
            if c > 0.0:
                p_cell = (1.0 - c) * p_cell + c * lerp4(f[e, _PH1], f[e, _PH1 + 1], f[e, _PH1 + 2],
                                                        f[e, _PH1 + 3], a, b)
        f[e, _PMAP] = mixture(t, js[e, 0], p_map, p_cell, f[e, _PT], f[e, _PT + 1], f[e, _PT + 2],
                              f[e, _PT + 3])


@njit(cache=True, inline="always")
def square_pdf_group(t: Any, k0: int, n: int, rot_u: float, uv: np.ndarray, out: np.ndarray,
                     f: np.ndarray, js: np.ndarray) -> None:
    """:func:`pdf_at` of entries k0 .. k0 + n - 1, whose map coordinates are uv's rows."""
    condition_group(t, k0, n, rot_u, f, js)
    pdf_uv_group(t, n, uv, f, js)
    for e in range(n):
        out[k0 + e] = uv_to_solid_angle_pdf(f[e, _PMAP], uv[e, 1])


register_light(ProductTables, sample_at, pdf_at, square_group=square_group, square_pdf_group=square_pdf_group)


# ------------------------------------------------------------------ the sampler


class ProductSampler:
    """The ``product`` light sampler: ``sample(u, cond)`` and ``pdf(wi, cond)`` per queue.

    ``model`` is a :class:`tracer.product_model.ProductModel` fitted to ``env``'s pixels.
    """

    name = "product"
    conditional = True

    def __init__(self, env: EnvMap, model: ProductModel) -> None:
        self.env = env
        self.model = model
        #: the static tables (what the density depends on, besides the condition)
        self.tables = model.static()
        self._blends: dict[int, tuple[Any, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_blends"} | {"_blends": {}}

    def _blend(self, cond: Condition, be: Backend) -> Any:
        """:func:`material_blend` of the scene's materials, on ``be``'s device (once per scene)."""
        key = id(cond.mat_prm)
        if key not in self._blends:
            host = [a.copy_to_host() if hasattr(a, "copy_to_host") else np.asarray(a)
                    for a in (cond.mat_kind, cond.mat_prm)]
            blend = MaterialBlend(material_blend(*host, self.tables.alphas, self.tables.grid))
            self._blends[key] = (cond.mat_prm, be.tables(blend).blend)  # keeps mat_prm's id alive
        return self._blends[key][1]

    def queue_tables(self, cond: Condition, be: Backend) -> ProductTables:
        """The static tables (on ``be``'s device) joined with one queue's condition (arrays
        of the back-end: the integrator's queues; host arrays are copied, not cached)."""
        if be.name != "cpu" and any(isinstance(a, np.ndarray) for a in cond):
            from numba import cuda

            cond = Condition(*(cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
                               for a in cond))
        return ProductTables(*be.tables(self.tables), *cond, self._blend(cond, be))

    def pdf_tables(self, cond: Condition, be: Backend) -> ProductTables | None:
        """The queue's tables (:meth:`queue_tables`), whose registered density is :meth:`pdf`
        (a back-end may compute it inside a kernel of its own, as the CPU's fused escaped-ray
        stage does), or None where a subclass overrides :meth:`pdf`."""
        return self.queue_tables(cond, be) if type(self).pdf is ProductSampler.pdf else None

    def sample(self, u: Any, cond: Condition, be: Backend | None = None) -> LightSamples:
        be = cpu_if_none(be)
        return LightSamples(*be.light_sample(self.queue_tables(cond, be), self.env, u))

    def pdf(self, wi: Any, cond: Condition, be: Backend | None = None) -> Any:
        be = cpu_if_none(be)
        return be.light_pdf(self.queue_tables(cond, be), self.env, wi)
