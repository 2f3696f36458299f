r"""pbrt-style piecewise-constant importance sampling of an environment map.

The density on the map's square is :math:`p_{uv} = f_{ij} / \bar f` with
:math:`f_{ij} = Y_{ij} \sin\theta_i` (:meth:`tracer.envmap.EnvMap.sampling_density`),
sampled by the marginal/conditional CDFs of :mod:`tracer.distribution` (two binary
searches), and converted to solid angle by :func:`tracer.sphere_map.uv_to_solid_angle_pdf`
(:math:`p_\omega = p_{uv} / 2\pi^2 \sin\theta`); see pbrt-v3 §14.2.4 (Pharr, Jakob,
Humphreys). ``compensate=True`` is pbrt-v4's MIS-compensated variant (Karlik et al. 2019,
"MIS compensation"), meant to be used only under MIS: it gives zero density to pixels
dimmer than the average.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit

from tracer.distribution import (
    build_distribution_2d,
    cell,
    invert_2d_batch,
    pdf_2d,
    sample_2d,
    sample_2d_group,
)
from tracer.envmap import EnvMap, square_sample_to_light, world_dir_to_map_uv
from tracer.light_dispatch import register_light
from tracer.samplers.base import TabulatedSampler
from tracer.sphere_map import solid_angle_pdf_sin, uv_to_solid_angle_pdf
from tracer.trig import sincos_pi


class PiecewiseTables(NamedTuple):
    """The 2D distribution's tables (:class:`tracer.distribution.Distribution2D`)."""

    cond_cdf: np.ndarray  # (H, W + 1) conditional CDFs of the rows
    cond_guide: np.ndarray  # (H, ceil(W / GUIDE) + 1) every GUIDE-th entry of each row CDF, then 1
    marg_cdf: np.ndarray  # (H + 1,) marginal CDF of the rows
    func: np.ndarray  # (H, W) the tabulated function
    integral: np.ndarray  # (1,) its integral over the square


@njit(cache=True, inline="always")
def square_at(k: int, t: Any, u: np.ndarray, sq: np.ndarray) -> None:
    """Entry k: two binary searches give the point (u, v) of the square and p_uv."""
    sq[k, 0], sq[k, 1], sq[k, 2] = sample_2d(t.cond_cdf, t.cond_guide, t.marg_cdf, u[k, 0], u[k, 1])


@njit(cache=True, inline="always")
def square_group(t: Any, k0: int, rot_u: float, u: np.ndarray, sq: np.ndarray, ij: np.ndarray,
                 f: np.ndarray, js: np.ndarray) -> None:
    """:func:`square_at` of a group, the searches a level at a time across it (the CPU)."""
    sample_2d_group(t.cond_cdf, t.cond_guide, t.marg_cdf, u, sq, ij)


@njit(cache=True, inline="always")
def sample_at(
    k: int, t: Any, rgb: np.ndarray, rot_u: float, u: np.ndarray,
    wi: np.ndarray, pdf: np.ndarray, le: np.ndarray,
) -> None:
    """Entry k: two binary searches give (u, v) and p_uv; then direction, pdf, radiance."""
    su, sv, p_uv = sample_2d(t.cond_cdf, t.cond_guide, t.marg_cdf, u[k, 0], u[k, 1])
    (wi[k, 0], wi[k, 1], wi[k, 2], pdf[k],
     le[k, 0], le[k, 1], le[k, 2]) = square_sample_to_light(rgb, rot_u, su, sv, p_uv)


@njit(cache=True, inline="always")
def square_pdf(t: Any, u: float, v: float) -> float:
    """The tabulated density p_uv of the pixel at map coordinates (u, v)."""
    return pdf_2d(t.func, t.integral[0], u, v)


@njit(cache=True, inline="always")
def pdf_at(k: int, t: Any, rot_u: float, wi: np.ndarray, out: np.ndarray) -> None:
    """Entry k: the tabulated density of the pixel wi sees, in solid angle."""
    u, v = world_dir_to_map_uv(wi[k, 0], wi[k, 1], wi[k, 2], rot_u)
    out[k] = uv_to_solid_angle_pdf(square_pdf(t, u, v), v)


@njit(cache=True, inline="always")
def square_pdf_group(t: Any, k0: int, m: int, rot_u: float, uv: np.ndarray, out: np.ndarray,
                     f: np.ndarray, js: np.ndarray) -> None:
    """:func:`pdf_at` of entries ``k0 .. k0 + m - 1``, whose map coordinates are ``uv``'s
    rows (the CPU's schedule, :mod:`tracer.light_dispatch`): first every entry's pixel and
    sin theta (arithmetic alone, which the compiler vectorises), then the group's reads of
    the table, independent of each other and so in flight together, then the divisions.
    The operations of :func:`square_pdf` and :func:`uv_to_solid_angle_pdf`, bit for bit;
    entry by entry, one entry's sine kept the next one's read from starting early."""
    h, w = t.func.shape
    for e in range(m):
        js[e, 0] = cell(h, uv[e, 1])
        js[e, 1] = cell(w, uv[e, 0])
        f[e, 0] = sincos_pi(uv[e, 1])[0]
    for e in range(m):
        f[e, 1] = t.func[js[e, 0], js[e, 1]]
    integral = t.integral[0]
    for e in range(m):
        out[k0 + e] = solid_angle_pdf_sin(f[e, 1] / integral, f[e, 0])


register_light(PiecewiseTables, sample_at, pdf_at, square_at, square_group, square_pdf,
               square_pdf_group)


class PiecewiseSampler(TabulatedSampler):
    """2D piecewise-constant sampling of the map's luminance (optionally MIS-compensated)."""

    def __init__(self, env: EnvMap, compensate: bool = False) -> None:
        self.env = env
        self.compensate = compensate
        self.name = "piecewise-compensated" if compensate else "piecewise"
        self.dist = d = build_distribution_2d(env.sampling_density(compensate))
        self.tables = PiecewiseTables(d.cond_cdf, d.cond_guide, d.marg_cdf, d.func,
                                      np.array([d.integral]))

    def invert(self, uv: np.ndarray) -> np.ndarray:
        """Uniforms that sample the given points of the map's square (pbrt's ``Invert``)."""
        return invert_2d_batch(self.dist.cond_cdf, self.dist.marg_cdf, np.ascontiguousarray(uv, np.float64))
