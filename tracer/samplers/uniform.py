r"""Uniform directions on the sphere: :math:`p(\omega) = 1 / 4\pi`.

:math:`z = 1 - 2 u_0,\ \phi = 2 \pi u_1` (Archimedes' hat-box theorem), mapped to the
renderer's +y-up frame.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from tracer.envmap import EnvMap
from tracer.samplers.base import LightSamples

INV_4PI = 1.0 / (4.0 * math.pi)


@njit(cache=True, inline="always")
def uniform_sphere_dir(u0: float, u1: float) -> tuple[float, float, float]:
    """A uniform direction on the sphere from two uniforms."""
    y = 1.0 - 2.0 * u0
    r = math.sqrt(max(0.0, 1.0 - y * y))
    phi = 2.0 * math.pi * u1
    return r * math.cos(phi), y, r * math.sin(phi)


@njit(cache=True, parallel=True)
def _sample_uniform_sphere(u: np.ndarray) -> np.ndarray:
    out = np.empty((u.shape[0], 3))
    for k in prange(u.shape[0]):
        out[k, 0], out[k, 1], out[k, 2] = uniform_sphere_dir(u[k, 0], u[k, 1])
    return out


class UniformSampler:
    """Uniform sphere sampling of an environment map."""

    name = "uniform"

    def __init__(self, env: EnvMap) -> None:
        self.env = env

    def sample(self, u: np.ndarray) -> LightSamples:
        wi = _sample_uniform_sphere(np.ascontiguousarray(u, np.float64))
        return LightSamples(wi, np.full(wi.shape[0], INV_4PI), self.env.eval(wi))

    def pdf(self, wi: np.ndarray) -> np.ndarray:
        return np.full(wi.shape[0], INV_4PI)
