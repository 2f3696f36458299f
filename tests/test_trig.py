"""tracer.trig against extended-precision references on dense grids and at the awkward points."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

from tracer.sphere_map import dir_to_uv, uv_to_dir
from tracer.trig import atan2_pi, sincos_pi

# a few units in the last place of values of size <= 1
TOL = 4e-16
#: pi to long-double precision (np.pi in long double would put 1e-16 of phase error in the reference)
PI_LD = np.longdouble("3.14159265358979323846264338327950288")


@njit(cache=True)
def _sincos_pi_batch(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.empty_like(x)
    c = np.empty_like(x)
    for i in range(x.shape[0]):
        s[i], c[i] = sincos_pi(x[i])
    return s, c


@njit(cache=True)
def _atan2_pi_batch(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = atan2_pi(y[i], x[i])
    return out


def test_sincos_pi_matches_long_double_on_the_renderer_range() -> None:
    rng = np.random.default_rng(0)
    # [-2, 2] densely, every eighth of a turn and its neighbours, and tiny arguments
    quarters = np.arange(-8, 9) / 4.0
    x = np.concatenate([rng.uniform(-2.0, 2.0, 400_000), quarters, np.nextafter(quarters, 3.0),
                        np.nextafter(quarters, -3.0), [1e-300, -1e-300, 1e-9, 0.0]])
    s, c = _sincos_pi_batch(x)
    xl = x.astype(np.longdouble) * PI_LD
    assert np.max(np.abs(s - np.sin(xl))) < TOL
    assert np.max(np.abs(c - np.cos(xl))) < TOL
    # exact (0 and +-1) at the quarter turns pi x = k pi / 2, as a direction's axes should be
    halves = np.arange(-4, 5) / 2.0
    sq, cq = _sincos_pi_batch(halves)
    assert np.array_equal(np.abs(sq), np.abs(np.round(np.sin(np.pi * halves))))
    assert np.array_equal(np.abs(cq), np.abs(np.round(np.cos(np.pi * halves))))


def test_sincos_pi_fails_loudly_on_a_wrong_coefficient() -> None:
    # the check above can fail: one coefficient perturbed by 1e-12 is seen at this tolerance
    rng = np.random.default_rng(1)
    t = np.pi * rng.uniform(-0.25, 0.25, 10_000)
    good = np.sin(t.astype(np.longdouble))
    z = t * t
    bad = t + t * z * (-1.66666666666666324348e-01 + 1e-12 + z * 8.33333333332248946124e-03)
    assert np.max(np.abs(bad - good)) > TOL


@pytest.mark.parametrize("scale", [1.0, 1e-12, 1e12])
def test_atan2_pi_matches_long_double_in_every_octant(scale: float) -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=400_000) * scale
    x = rng.normal(size=400_000) * scale
    # the octant boundaries and the axes
    diag = np.array([1.0, -1.0, 1.0, -1.0, 0.0, 0.0, 1.0, -1.0, math.tan(math.pi / 8)])
    other = np.array([1.0, 1.0, -1.0, -1.0, 1.0, -1.0, 0.0, 0.0, 1.0])
    y = np.concatenate([y, diag * scale, other * scale])
    x = np.concatenate([x, other * scale, diag * scale])
    got = _atan2_pi_batch(y, x)
    ref = np.arctan2(y.astype(np.longdouble), x.astype(np.longdouble)) / PI_LD
    assert np.max(np.abs(got - ref)) < TOL


def test_atan2_pi_of_the_origin_is_zero_and_of_subnormals_exact() -> None:
    assert _atan2_pi_batch(np.zeros(1), np.zeros(1))[0] == 0.0
    y = np.array([1e-310, 3e-301, -2e-320])
    x = np.array([2e-310, 1e-301, 5e-321])
    ref = np.arctan2(y.astype(np.longdouble), x.astype(np.longdouble)) / PI_LD
    assert np.max(np.abs(_atan2_pi_batch(y, x) - ref)) < TOL


@njit(cache=True)
def _round_trip(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u2 = np.empty_like(u)
    v2 = np.empty_like(v)
    norm = np.empty_like(u)
    for i in range(u.shape[0]):
        x, y, z = uv_to_dir(u[i], v[i])
        norm[i] = math.sqrt(x * x + y * y + z * z)
        u2[i], v2[i] = dir_to_uv(x, y, z)
    return u2, v2, norm


def test_square_to_direction_round_trip_keeps_every_digit() -> None:
    rng = np.random.default_rng(3)
    u = rng.random(200_000)
    # near the poles too, where an acos of y would lose half of the digits of theta
    v = np.concatenate([rng.random(100_000), rng.random(50_000) * 1e-6, 1.0 - rng.random(50_000) * 1e-6])
    u2, v2, norm = _round_trip(u, v)
    assert np.max(np.abs(norm - 1.0)) < 4e-16
    assert np.max(np.abs(v2 - v)) < 1e-15
    # u is defined up to a turn; away from the poles it comes back to 1e-15
    du = np.abs(u2 - u)
    du = np.minimum(du, 1.0 - du)
    sin_theta = np.sin(np.pi * v)
    assert np.max(du * sin_theta) < 1e-15
    assert np.all((u2 >= 0.0) & (u2 < 1.0))
