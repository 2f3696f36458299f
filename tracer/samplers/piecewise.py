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

import numpy as np
from numba import njit, prange

from tracer.distribution import build_distribution_2d, invert_2d_batch, pdf_2d, sample_2d
from tracer.envmap import EnvMap, square_sample_to_light, world_dir_to_map_uv
from tracer.samplers.base import LightSamples
from tracer.sphere_map import uv_to_solid_angle_pdf


@njit(cache=True, parallel=True)
def _sample(cond_cdf, cond_guide, marg_cdf, rgb, rot_u, u):
    n = u.shape[0]
    wi = np.empty((n, 3))
    pdf = np.empty(n)
    le = np.empty((n, 3))
    for k in prange(n):
        su, sv, p_uv = sample_2d(cond_cdf, cond_guide, marg_cdf, u[k, 0], u[k, 1])
        (wi[k, 0], wi[k, 1], wi[k, 2], pdf[k],
         le[k, 0], le[k, 1], le[k, 2]) = square_sample_to_light(rgb, rot_u, su, sv, p_uv)
    return wi, pdf, le


@njit(cache=True, parallel=True)
def _pdf(func, integral, rot_u, wi):
    out = np.empty(wi.shape[0])
    for k in prange(wi.shape[0]):
        u, v = world_dir_to_map_uv(wi[k, 0], wi[k, 1], wi[k, 2], rot_u)
        out[k] = uv_to_solid_angle_pdf(pdf_2d(func, integral, u, v), v)
    return out


class PiecewiseSampler:
    """2D piecewise-constant sampling of the map's luminance (optionally MIS-compensated)."""

    def __init__(self, env: EnvMap, compensate: bool = False) -> None:
        self.env = env
        self.compensate = compensate
        self.name = "piecewise-compensated" if compensate else "piecewise"
        self.dist = build_distribution_2d(env.sampling_density(compensate))

    def sample(self, u: np.ndarray) -> LightSamples:
        d = self.dist
        wi, pdf, le = _sample(
            d.cond_cdf, d.cond_guide, d.marg_cdf, self.env.rgb, self.env.rot_u,
            np.ascontiguousarray(u, np.float64),
        )
        return LightSamples(wi, pdf, le)

    def pdf(self, wi: np.ndarray) -> np.ndarray:
        return _pdf(self.dist.func, self.dist.integral, self.env.rot_u, np.ascontiguousarray(wi, np.float64))

    def invert(self, uv: np.ndarray) -> np.ndarray:
        """Uniforms that sample the given points of the map's square (pbrt's ``Invert``)."""
        return invert_2d_batch(self.dist.cond_cdf, self.dist.marg_cdf, np.ascontiguousarray(uv, np.float64))
