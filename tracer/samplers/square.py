"""Light samples drawn on the map's square by a model outside Numba (a Torch flow).

A model on the unit square of the map (:mod:`tracer.sphere_map`'s parameterisation) hands
over its points and densities, or its densities at the points a batch of directions sees;
these per-entry functions turn them into directions, solid-angle densities and radiance on
either back-end, through the light dispatcher (:mod:`tracer.light_dispatch`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit

from tracer.envmap import square_sample_to_light, world_dir_to_map_uv
from tracer.light_dispatch import register_light
from tracer.sphere_map import uv_to_solid_angle_pdf


class SquareSamples(NamedTuple):
    """Points of the map's square and their densities, as a model on the square drew them."""

    uv: np.ndarray  # (N, 2)
    p_uv: np.ndarray  # (N,) density on the square


class SquareDensities(NamedTuple):
    """Densities on the map's square at the points that a batch of directions sees."""

    p_uv: np.ndarray  # (N,)


@njit(cache=True, inline="always")
def square_sample_at(
    k: int, t: Any, rgb: np.ndarray, rot_u: float, u: np.ndarray,
    wi: np.ndarray, pdf: np.ndarray, le: np.ndarray,
) -> None:
    """Entry k: the model's point of the square -> direction, solid-angle pdf, radiance."""
    (wi[k, 0], wi[k, 1], wi[k, 2], pdf[k],
     le[k, 0], le[k, 1], le[k, 2]) = square_sample_to_light(rgb, rot_u, t.uv[k, 0], t.uv[k, 1], t.p_uv[k])


@njit(cache=True, inline="always")
def square_pdf_at(k: int, t: Any, rot_u: float, wi: np.ndarray, out: np.ndarray) -> None:
    """Entry k: the model's density on the square -> solid angle (the Jacobian at wi's v)."""
    _, v = world_dir_to_map_uv(wi[k, 0], wi[k, 1], wi[k, 2], rot_u)
    out[k] = uv_to_solid_angle_pdf(t.p_uv[k], v)


register_light(SquareSamples, square_sample_at, None)
register_light(SquareDensities, None, square_pdf_at)
