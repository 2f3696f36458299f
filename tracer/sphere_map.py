r"""The one mapping between directions and the unit square, and its Jacobian.

Convention (the same as Mitsuba 3's ``envmap`` plugin): **+y is up**; the polar angle
:math:`\theta \in [0, \pi]` is measured from +y and the azimuth :math:`\phi \in [0, 2\pi)`
from -z towards +x:

.. math::
    d(\theta, \phi) = (\sin\phi \sin\theta,\; \cos\theta,\; -\cos\phi \sin\theta),
    \qquad u = \phi / 2\pi, \quad v = \theta / \pi .

An equirectangular (lat-long) image of height H and width W puts pixel ``[i, j]`` (row 0
at the top) over ``v in [i/H, (i+1)/H]``, ``u in [j/W, (j+1)/W]``: the top row is the zenith,
the middle column (u = 1/2) looks along +z, and seen from inside the sphere the image is not
mirrored.

Densities: a density :math:`p_{uv}` on the square becomes the solid-angle density

.. math::
    p_\omega(d) = \frac{p_{uv}(u, v)}{2 \pi^2 \sin\theta}

because :math:`d\omega = \sin\theta\, d\theta\, d\phi = 2\pi^2 \sin\theta\, du\, dv`.
Every sampler that works on the square (``piecewise``, ``flow``) goes through
:func:`uv_to_solid_angle_pdf`, so the Jacobian lives here only.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from tracer.trig import atan2_pi, sincos_pi

TWO_PI_SQ = 2.0 * math.pi * math.pi
#: sin(theta) below this counts as a pole: the Jacobian is singular there and the pdf is 0.
SIN_THETA_MIN = 1e-12


@njit(cache=True, inline="always")
def uv_to_dir(u: float, v: float) -> tuple[float, float, float]:
    """Direction for a point of the unit square (see the module docstring)."""
    sin_phi, cos_phi = sincos_pi(2.0 * u)
    sin_theta, cos_theta = sincos_pi(v)
    return sin_phi * sin_theta, cos_theta, -cos_phi * sin_theta


@njit(cache=True, inline="always")
def dir_to_uv(x: float, y: float, z: float) -> tuple[float, float]:
    """Point of the unit square for a unit direction; u in [0, 1), v in [0, 1].

    Both angles by atan2 (theta of (sin, cos) keeps its digits at the poles, where acos of y
    loses half of them). At a pole (x = z = 0) the azimuth is undefined; u is then 0.
    """
    v = atan2_pi(math.sqrt(x * x + z * z), y)
    u = 0.5 * atan2_pi(x, -z)
    if u < 0.0:
        u += 1.0
    if u >= 1.0:
        u = 0.0
    return u, v


@njit(cache=True, inline="always")
def uv_to_solid_angle_pdf(p_uv: float, v: float) -> float:
    """Solid-angle density from a density on the square: p_uv / (2 pi^2 sin theta)."""
    return solid_angle_pdf_sin(p_uv, sincos_pi(v)[0])


@njit(cache=True, inline="always")
def solid_angle_pdf_sin(p_uv: float, st: float) -> float:
    """:func:`uv_to_solid_angle_pdf` given sin theta = ``st`` (0 at the poles, where
    st <= :data:`SIN_THETA_MIN`)."""
    if st <= SIN_THETA_MIN:
        return 0.0
    return p_uv / (TWO_PI_SQ * st)


@njit(cache=True, parallel=True)
def dirs_to_uv(d: np.ndarray) -> np.ndarray:
    """Batched :func:`dir_to_uv`: (N, 3) -> (N, 2)."""
    out = np.empty((d.shape[0], 2))
    for i in prange(d.shape[0]):
        out[i, 0], out[i, 1] = dir_to_uv(d[i, 0], d[i, 1], d[i, 2])
    return out


@njit(cache=True, parallel=True)
def uvs_to_dir(uv: np.ndarray) -> np.ndarray:
    """Batched :func:`uv_to_dir`: (N, 2) -> (N, 3)."""
    out = np.empty((uv.shape[0], 3))
    for i in prange(uv.shape[0]):
        out[i, 0], out[i, 1], out[i, 2] = uv_to_dir(uv[i, 0], uv[i, 1])
    return out


@njit(cache=True, parallel=True)
def uv_pdfs_to_solid_angle(p_uv: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Batched :func:`uv_to_solid_angle_pdf`."""
    out = np.empty(p_uv.shape[0])
    for i in prange(p_uv.shape[0]):
        out[i] = uv_to_solid_angle_pdf(p_uv[i], v[i])
    return out
