"""Russian roulette in ``shade_and_scatter``: throughput times the eta^2 of refractions, capped."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracer import kernels as K
from tracer.bsdf import DIELECTRIC, DIFFUSE
from tracer.integrator import RR_CAP, RR_DEPTH
from tracer.rng import INDEPENDENT

N = 40_000


def scatter(kind: int, prm: np.ndarray, beta0: float, depth: int, eta0: float = 1.0,
            up: bool = False) -> dict:
    """N paths hitting the plane z = 0 (outward normal +z), shaded once at ``depth``: going
    straight down from outside (wo = +z), or with ``up`` straight up from inside (wo = -z)."""
    idx = np.arange(N)
    z3 = np.zeros((N, 3))
    normal = np.tile([0.0, 0.0, 1.0], (N, 1))
    rd = np.tile([0.0, 0.0, 1.0 if up else -1.0], (N, 1))
    beta = np.full((N, 3), beta0)
    eta_scale = np.full(N, eta0)
    alive = np.ones(N, np.bool_)
    K.shade_and_scatter(
        idx, depth, 11, INDEPENDENT, idx.copy(), np.zeros(N, np.int64), K.BSDF_ONLY, 2.0,
        RR_DEPTH, RR_CAP, z3.copy(), normal, normal.copy(), np.zeros(N, np.int64),
        np.array([kind], np.int64), prm[None, :], z3.copy(), np.zeros(N), z3.copy(),
        np.zeros(N, np.bool_), z3.copy(), rd, beta, z3.copy(), alive, np.zeros(N),
        np.zeros(N, np.bool_), eta_scale)
    return {"alive": alive, "beta": beta[:, 0], "eta_scale": eta_scale, "rd_z": rd[:, 2]}


def within(frac: float, p: float, n: int) -> bool:
    """|frac - p| within 5 binomial standard errors of n trials."""
    return abs(frac - p) <= 5 * math.sqrt(p * (1 - p) / n)


def test_refraction_into_glass_is_not_dimming() -> None:
    """Entering glass divides the throughput by eta^2 = 2.25 and multiplies eta_scale by
    it, so roulette sees 1 and continues with the cap 0.95 (not with 1 / 2.25 = 0.44)."""
    prm = np.array([1.0, 1.0, 1.0, 0.0, 1.5, 0.0, 0.0, 0.0])
    r = scatter(DIELECTRIC, prm, 1.0, RR_DEPTH)
    # reflected (4%, throughput 1) and refracted paths alike go on with probability 0.95;
    # read as dim, the refracted ones would go on with 0.44 (0.46 overall)
    assert within(r["alive"].mean(), RR_CAP, N), r["alive"].mean()
    refr = r["rd_z"] < 0  # refracted straight through (a killed path keeps its old, downward rd)
    kept = r["alive"] & refr
    np.testing.assert_allclose(r["eta_scale"][kept], 2.25, rtol=1e-12)
    np.testing.assert_allclose(r["beta"][kept], 1 / 2.25 / RR_CAP, rtol=1e-12)


def test_leaving_glass_divides_eta_scale_back() -> None:
    """A path inside glass (eta_scale 2.25, throughput 1/2.25) that leaves has eta_scale 1."""
    prm = np.array([1.0, 1.0, 1.0, 0.0, 1.5, 0.0, 0.0, 0.0])
    # leaving: the ray comes from below the surface (wo = -z against the outward normal +z)
    r = scatter(DIELECTRIC, prm, 1 / 2.25, RR_DEPTH, eta0=2.25, up=True)
    out = r["alive"] & (r["rd_z"] > 0)
    assert out.sum() > N / 2
    np.testing.assert_allclose(r["eta_scale"][out], 1.0, rtol=1e-12)
    np.testing.assert_allclose(r["beta"][out], 1.0 / RR_CAP, rtol=1e-12)


@pytest.mark.parametrize("beta0,want", [(0.3, 0.3), (2.0, RR_CAP), (1.0, RR_CAP)])
def test_continuation_probability_is_capped_throughput(beta0: float, want: float) -> None:
    """Diffuse (albedo 1, so the weight is 1): continue with min(beta, cap), reweighted."""
    prm = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    r = scatter(DIFFUSE, prm, beta0, RR_DEPTH)
    assert within(r["alive"].mean(), want, N), r["alive"].mean()
    np.testing.assert_allclose(r["beta"][r["alive"]], beta0 / want, rtol=1e-12)


def test_no_roulette_before_rr_depth() -> None:
    prm = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    r = scatter(DIFFUSE, prm, 0.3, RR_DEPTH - 1)
    assert r["alive"].all()
    np.testing.assert_allclose(r["beta"], 0.3, rtol=1e-12)
