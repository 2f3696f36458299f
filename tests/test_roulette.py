"""Russian roulette in ``shade_and_scatter``: on the path (throughput times the eta^2 of
refractions, capped) and on the shadow rays (next-event terms below a threshold kept with
probability term / threshold); and ``trace_shadow_rays`` adding the terms whose light is
visible."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracer import kernels as K
from tracer.bsdf import DIELECTRIC, DIFFUSE
from tracer.geometry import build_geometry
from tracer.integrator import RR_CAP, RR_DEPTH
from tracer.pool import INDEX, STATE
from tracer.rng import INDEPENDENT, path_keys

N = 40_000
#: the path state is stored in float32 (tracer.pool.STATE): an output is the exact value
#: rounded once, within half of float32's epsilon
STORED = float(np.finfo(STATE).eps)


def shade_on_plane(kind: int, prm: np.ndarray, beta0: np.ndarray | float, depth: int, seed: int,
                   mode: int = K.BSDF_ONLY, rr_shadow: float = 0.0, eta0: float = 1.0,
                   up: bool = False, wi: tuple[float, float, float] = (0.0, 0.0, 0.0),
                   lpdf: float = 0.0, le: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> dict:
    """N paths hitting the plane z = 0 (outward normal +z), shaded once at ``depth`` by
    ``shade_and_scatter``: going straight down from outside (wo = +z), or with ``up``
    straight up from inside (wo = -z); with the light sample ``wi`` of radiance ``le`` and
    density ``lpdf`` under ``mode``. Returns the path state and the next-event terms."""
    idx = np.arange(N, dtype=INDEX)  # the render's types (tracer.pool)
    z3 = np.zeros((N, 3))
    normal = np.tile(np.array([0.0, 0.0, 1.0], STATE), (N, 1))
    rd = np.tile(np.array([0.0, 0.0, 1.0 if up else -1.0], STATE), (N, 1))
    beta = np.zeros((N, 3), STATE) + np.asarray(beta0, STATE)
    eta_scale = np.full(N, eta0, STATE)
    alive = np.ones(N, np.bool_)
    nee = np.full((N, 3), -1.0, STATE)
    # pixel 0's samples 0 .. N - 1
    keys = path_keys(INDEPENDENT, seed, np.zeros(N, np.int64), np.arange(N))
    K.shade_and_scatter(
        idx, depth, seed, INDEPENDENT, keys, mode, 2.0, RR_DEPTH, RR_CAP, rr_shadow, z3.copy(),
        normal, normal.copy(), np.zeros(N, INDEX),
        np.array([kind], np.int64), prm[None, :], np.tile(wi, (N, 1)), np.full(N, lpdf),
        np.tile(le, (N, 1)), nee, z3.copy(), rd, beta, alive, np.zeros(N, STATE), np.zeros(N, np.bool_),
        eta_scale)
    return {"alive": alive, "beta": beta, "eta_scale": eta_scale, "rd": rd, "nee": nee}


def scatter(kind: int, prm: np.ndarray, beta0: float, depth: int, eta0: float = 1.0,
            up: bool = False) -> dict:
    """BSDF sampling alone on the plane (:func:`shade_on_plane`)."""
    r = shade_on_plane(kind, prm, beta0, depth, 11, eta0=eta0, up=up)
    return {"alive": r["alive"], "beta": r["beta"][:, 0], "eta_scale": r["eta_scale"],
            "rd_z": r["rd"][:, 2]}


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
    np.testing.assert_allclose(r["eta_scale"][kept], 2.25, rtol=STORED)
    np.testing.assert_allclose(r["beta"][kept], 1 / 2.25 / RR_CAP, rtol=STORED)


def test_leaving_glass_divides_eta_scale_back() -> None:
    """A path inside glass (eta_scale 2.25, throughput 1/2.25) that leaves has eta_scale 1."""
    prm = np.array([1.0, 1.0, 1.0, 0.0, 1.5, 0.0, 0.0, 0.0])
    # leaving: the ray comes from below the surface (wo = -z against the outward normal +z)
    r = scatter(DIELECTRIC, prm, 1 / 2.25, RR_DEPTH, eta0=2.25, up=True)
    out = r["alive"] & (r["rd_z"] > 0)
    assert out.sum() > N / 2
    np.testing.assert_allclose(r["eta_scale"][out], 1.0, rtol=STORED)
    np.testing.assert_allclose(r["beta"][out], 1.0 / RR_CAP, rtol=STORED)


@pytest.mark.parametrize("beta0,want", [(0.3, 0.3), (2.0, RR_CAP), (1.0, RR_CAP)])
def test_continuation_probability_is_capped_throughput(beta0: float, want: float) -> None:
    """Diffuse (albedo 1, so the weight is 1): continue with min(beta, cap), reweighted."""
    prm = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    r = scatter(DIFFUSE, prm, beta0, RR_DEPTH)
    assert within(r["alive"].mean(), want, N), r["alive"].mean()
    np.testing.assert_allclose(r["beta"][r["alive"]], beta0 / want, rtol=STORED)


def test_no_roulette_before_rr_depth() -> None:
    prm = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    r = scatter(DIFFUSE, prm, 0.3, RR_DEPTH - 1)
    assert r["alive"].all()
    np.testing.assert_allclose(r["beta"], 0.3, rtol=STORED)


def shade_nee(beta0: np.ndarray, rr_shadow: float, lpdf: float = 0.3, depth: int = 0,
              le: tuple[float, float, float] = (2.0, 1.0, 0.5)) -> np.ndarray:
    """The next-event terms on the plane (:func:`shade_on_plane`; a diffuse albedo
    (0.8, 0.5, 0.2)) with the light sample wi = (0.6, 0, 0.8) of radiance ``le`` and
    density ``lpdf``, under light sampling alone (no MIS weight)."""
    prm = np.array([0.8, 0.5, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0])
    return shade_on_plane(DIFFUSE, prm, beta0, depth, 5, mode=K.NEE_ONLY, rr_shadow=rr_shadow,
                          wi=(0.6, 0.0, 0.8), lpdf=lpdf, le=le)["nee"]


BETA = np.array([0.5, 1.0, 0.25])
#: the term of shade_nee: beta f Le cos / pdf, f = albedo / pi, cos = 0.8
EXACT = BETA * np.array([0.8, 0.5, 0.2]) / math.pi * np.array([2.0, 1.0, 0.5]) * 0.8 / 0.3


def test_next_event_term_without_shadow_roulette() -> None:
    nee = shade_nee(BETA, 0.0)
    np.testing.assert_allclose(nee, np.tile(EXACT, (N, 1)), rtol=STORED)
    assert np.all(shade_nee(BETA, 0.0, lpdf=0.0) == 0.0)  # no density: no term, no shadow ray


@pytest.mark.parametrize("depth", [0, RR_DEPTH + 1])
def test_shadow_roulette_keeps_the_expectation(depth: int) -> None:
    """tau = 4 c (c the term's largest component): a quarter of the terms kept, each times
    4, the rest zero (no shadow ray); the mean is the exact term."""
    c = EXACT.max()
    rr = 4.0 * c
    nee = shade_nee(BETA, rr, depth=depth)
    kept = np.any(nee != 0.0, axis=1)
    assert within(kept.mean(), 0.25, N), kept.mean()
    np.testing.assert_allclose(nee[kept], np.tile(EXACT * 4.0, (kept.sum(), 1)), rtol=STORED)
    assert np.all(nee[~kept] == 0.0)
    se = nee.std(axis=0) / math.sqrt(N)
    assert np.all(np.abs(nee.mean(axis=0) - EXACT) <= 5 * se), (nee.mean(axis=0), EXACT, se)


def test_terms_above_the_threshold_are_untouched() -> None:
    rr = 0.9 * EXACT.max()
    np.testing.assert_array_equal(shade_nee(BETA, rr), shade_nee(BETA, 0.0))


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_a_nan_term_is_kept_for_the_film_to_drop(channel: int) -> None:
    """A NaN in any channel of the light's radiance (the others' terms far below tau) makes
    a NaN term that the roulette never zeroes: the film drops and counts that sample."""
    le = [1e-3, 1e-3, 1e-3]
    le[channel] = math.nan
    nee = shade_nee(BETA, 10.0, le=tuple(le))
    assert np.all(np.isnan(nee[:, channel]))
    others = [c for c in range(3) if c != channel]
    np.testing.assert_array_equal(nee[:, others], shade_nee(BETA, 0.0, le=tuple(le))[:, others])


def test_shadow_rays_add_the_visible_terms() -> None:
    """From the origin (normal +z) under a sphere at (0, 0, 3) of radius 1 (it covers 19.5
    degrees about +z): the term along +z is occluded, the one at 45 degrees is added to its
    path's radiance, a zero term adds nothing, and a NaN one is added (the film drops it)."""
    g = build_geometry(np.array([[0.0, 0.0, 3.0]]), np.array([1.0]), np.zeros((0, 3, 3)))
    idx = np.array([3, 0, 2, 1], INDEX)
    s = math.sqrt(0.5)
    wi = np.array([[0.0, 0.0, 1.0], [s, 0.0, s], [s, 0.0, s], [0.0, s, s]])
    nee = np.array([[1.0, 2.0, 3.0], [0.5, 0.25, 0.125], [0.0, 0.0, 0.0], [math.nan, 0.0, 1.0]], STATE)
    radiance = np.arange(12.0, dtype=STATE).reshape(4, 3)
    want = radiance.copy()
    want[0] += nee[1]
    want[1] = [math.nan, 4.0, 6.0]
    K.trace_shadow_rays(g, idx, np.zeros((4, 3)), np.tile(np.array([0.0, 0.0, 1.0], STATE), (4, 1)), wi, nee,
                        radiance)
    np.testing.assert_array_equal(radiance, want)
