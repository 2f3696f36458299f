r"""Uniform directions on the sphere: :math:`p(\omega) = 1 / 4\pi`.

:math:`z = 1 - 2 u_0,\ \phi = 2 \pi u_1` (Archimedes' hat-box theorem), mapped to the
renderer's +y-up frame.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from tracer.envmap import EnvMap, env_lookup, world_dir_to_map_uv
from tracer.light_dispatch import register_light
from tracer.samplers.base import TabulatedSampler
from tracer.trig import sincos_pi

INV_4PI = 1.0 / (4.0 * math.pi)


class UniformTables(NamedTuple):
    """The uniform sampler needs no table; a placeholder array keeps the tuple non-empty."""

    unused: np.ndarray


@njit(cache=True, inline="always")
def uniform_sphere_dir(u0: float, u1: float) -> tuple[float, float, float]:
    """A uniform direction on the sphere from two uniforms."""
    y = 1.0 - 2.0 * u0
    r = math.sqrt(max(0.0, 1.0 - y * y))
    sin_phi, cos_phi = sincos_pi(2.0 * u1)
    return r * cos_phi, y, r * sin_phi


@njit(cache=True, inline="always")
def sample_at(
    k: int, tables: Any, rgb: np.ndarray, rot_u: float, u: np.ndarray,
    wi: np.ndarray, pdf: np.ndarray, le: np.ndarray,
) -> None:
    """Entry k: a uniform direction, its density 1/4pi and the radiance it sees."""
    x, y, z = uniform_sphere_dir(u[k, 0], u[k, 1])
    wi[k, 0], wi[k, 1], wi[k, 2] = x, y, z
    pdf[k] = INV_4PI
    mu, mv = world_dir_to_map_uv(x, y, z, rot_u)
    le[k, 0], le[k, 1], le[k, 2] = env_lookup(rgb, mu, mv)


@njit(cache=True, inline="always")
def pdf_at(k: int, tables: Any, rot_u: float, wi: np.ndarray, out: np.ndarray) -> None:
    """Entry k: 1/4pi for every direction."""
    out[k] = INV_4PI


register_light(UniformTables, sample_at, pdf_at)


class UniformSampler(TabulatedSampler):
    """Uniform sphere sampling of an environment map."""

    name = "uniform"

    def __init__(self, env: EnvMap) -> None:
        self.env = env
        self.tables = UniformTables(np.zeros(1))
