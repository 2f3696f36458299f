"""BSDF sampling against its own pdf (chi-square) and eval/sample consistency.

The harness works in world directions; the BSDF's local frame is taken as (x, z, y) ->
(t, b, n), i.e. the shading normal is +y, so the harness's equal-area cells follow
cos(theta) about the normal.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.chi2 import chi2_test
from tests.conftest import directional_albedo
from tracer.bsdf import CONDUCTOR, DIELECTRIC, DIFFUSE, eval_batch, fresnel_dielectric, sample_batch

N_SAMPLES = 400_000


def params(kind: int, rgb: tuple[float, float, float] = (0.8, 0.6, 0.4), alpha: float = 0.3,
           ior: float = 1.5) -> np.ndarray:
    p = np.zeros(8)
    p[:3] = rgb
    p[3] = alpha
    p[4] = ior
    return p


def to_world(local: np.ndarray) -> np.ndarray:
    """Local (t, b, n) -> world with n = +y."""
    return np.stack([local[:, 0], local[:, 2], local[:, 1]], axis=1)


def to_local(world: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.stack([world[:, 0], world[:, 2], world[:, 1]], axis=1))


def wo_at(theta_deg: float, below: bool = False) -> np.ndarray:
    t = math.radians(theta_deg)
    wo = np.array([math.sin(t), 0.0, math.cos(t)])
    if below:
        wo[2] = -wo[2]
    return wo


CASES = [
    ("diffuse-normal", DIFFUSE, 1e-3, 0.0, False),
    ("diffuse-grazing", DIFFUSE, 1e-3, 80.0, False),
    ("diffuse-backside", DIFFUSE, 1e-3, 30.0, True),
    ("ggx-rough-0.6", CONDUCTOR, 0.6, 40.0, False),
    ("ggx-0.3", CONDUCTOR, 0.3, 10.0, False),
    ("ggx-0.3-grazing", CONDUCTOR, 0.3, 75.0, False),
    ("ggx-0.1-backside", CONDUCTOR, 0.1, 50.0, True),
    ("ggx-0.05", CONDUCTOR, 0.05, 30.0, False),
]
#: chi-square tests in this file (one per case of test_bsdf_sampling_chi2), for the Sidak correction
N_TESTS = len(CASES)


@pytest.mark.parametrize("name,kind,alpha,theta,below", CASES, ids=[c[0] for c in CASES])
def test_bsdf_sampling_chi2(name: str, kind: int, alpha: float, theta: float, below: bool) -> None:
    prm = params(kind, alpha=alpha)
    wo = wo_at(theta, below)
    rng = np.random.default_rng(11)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        s = sample_batch(kind, prm, wo, rng.random((n, 3)))
        return to_world(s[:, :3]), s[:, 8] > 0

    def pdf(d: np.ndarray) -> np.ndarray:
        return eval_batch(kind, prm, wo, to_local(d))[:, 3]

    # low roughness concentrates the lobe: use more cells so it is resolved
    n_theta, n_phi = (64, 128) if alpha < 0.1 else (32, 64)
    res = chi2_test(sample, pdf, n_samples=N_SAMPLES, n_theta=n_theta, n_phi=n_phi, sub=4,
                    quad_order=3, n_tests=N_TESTS)
    assert res.passed, res.message


@pytest.mark.parametrize("kind,alpha", [(DIFFUSE, 1e-3), (CONDUCTOR, 0.05), (CONDUCTOR, 0.4)])
def test_sample_weight_is_eval_over_pdf(kind: int, alpha: float) -> None:
    prm = params(kind, alpha=alpha)
    for theta in (0.0, 35.0, 70.0, 89.0):
        wo = wo_at(theta)
        s = sample_batch(kind, prm, wo, np.random.default_rng(12).random((20_000, 3)))
        ok = s[:, 8] > 0
        e = eval_batch(kind, prm, wo, np.ascontiguousarray(s[ok, :3]))
        np.testing.assert_allclose(e[:, 3], s[ok, 6], rtol=1e-6)
        np.testing.assert_allclose(e[:, :3] / e[:, 3:4], s[ok, 3:6], rtol=1e-6)
        assert np.all(s[ok, 7] == 0)  # not delta


def unit_vectors(n: int, seed: int, upper: bool = True) -> np.ndarray:
    """n random local unit vectors (in the upper hemisphere, z > 0, if ``upper``)."""
    v = np.random.default_rng(seed).normal(size=(n, 3))
    if upper:
        v[:, 2] = np.abs(v[:, 2])
    return np.ascontiguousarray(v / np.linalg.norm(v, axis=1)[:, None])


def test_diffuse_eval_sample_and_albedo() -> None:
    """Lambert: eval, pdf and the sample weight from the closed forms, not from each other."""
    rgb = np.array([0.5, 0.3, 0.9])
    prm = params(DIFFUSE, rgb=tuple(rgb))
    wo = wo_at(20.0)
    wi = unit_vectors(1000, 2)
    e = eval_batch(DIFFUSE, prm, wo, wi)
    np.testing.assert_allclose(e[:, :3], rgb[None, :] * wi[:, 2:3] / math.pi, rtol=1e-12)
    np.testing.assert_allclose(e[:, 3], wi[:, 2] / math.pi, rtol=1e-12)
    # The albedo, the integral of f |cos| over the sphere of wi, is rgb (the integrand is
    # linear in cos theta_i, so Gauss-Legendre is exact to rounding).
    albedo, quad_err = directional_albedo(DIFFUSE, prm, wo)
    np.testing.assert_allclose(albedo, rgb, rtol=0, atol=1e-12 + quad_err)
    # Every sample's weight is eval / pdf at the sampled direction, and its pdf is cos / pi.
    s = sample_batch(DIFFUSE, prm, wo, np.random.default_rng(13).random((20_000, 3)))
    ok = s[:, 8] > 0
    assert ok.mean() > 0.999
    wi_s = np.ascontiguousarray(s[ok, :3])
    e = eval_batch(DIFFUSE, prm, wo, wi_s)
    np.testing.assert_allclose(s[ok, 3:6], e[:, :3] / e[:, 3:4], rtol=1e-12)
    np.testing.assert_allclose(s[ok, 6], wi_s[:, 2] / math.pi, rtol=1e-12)


def ggx_reference(
    wo: np.ndarray, wi: np.ndarray, alpha: float, f0: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rough conductor (f |cos theta_i|, VNDF pdf) from the textbook formulas, in numpy:
    Trowbridge-Reitz D, height-correlated Smith G2 = 1 / (1 + Lambda_o + Lambda_i),
    G1 = 1 / (1 + Lambda_o), Schlick's F; f = D G2 F / (4 cos_o cos_i), p = D G1 / (4 cos_o)."""
    h = wo[None, :] + wi
    h /= np.linalg.norm(h, axis=1)[:, None]
    a2 = alpha * alpha
    d = a2 / (math.pi * (h[:, 2] ** 2 * (a2 - 1.0) + 1.0) ** 2)

    def lam(c: np.ndarray) -> np.ndarray:
        return 0.5 * (np.sqrt(1.0 + a2 * (1.0 - c * c) / (c * c)) - 1.0)

    lo, li = lam(np.full(1, wo[2])), lam(wi[:, 2])
    f = f0 + (1.0 - f0) * (1.0 - np.sum(wi * h, axis=1)) ** 5
    f_cos = d / (1.0 + lo + li) * f / (4.0 * wo[2] * wi[:, 2]) * wi[:, 2]
    return f_cos, d / (1.0 + lo) / (4.0 * wo[2])


@pytest.mark.parametrize("alpha", [0.05, 0.3, 0.8])
def test_conductor_eval_matches_closed_form(alpha: float) -> None:
    """A conductor whose eval loses (or gains) energy shows here; the furnace tests then check
    that sampling and rendering agree with eval."""
    rgb = (0.9, 0.5, 0.2)
    prm = params(CONDUCTOR, rgb=rgb, alpha=alpha)
    wi = unit_vectors(2000, 3)
    mirror = np.array([1.0, 1.0, -1.0])
    for theta in (0.0, 30.0, 70.0, 88.0):
        wo = wo_at(theta)
        e = eval_batch(CONDUCTOR, prm, wo, wi)
        for c in range(3):
            f_cos, pdf = ggx_reference(wo, wi, alpha, rgb[c])
            np.testing.assert_allclose(e[:, c], f_cos, rtol=1e-9, atol=1e-300)
        np.testing.assert_allclose(e[:, 3], pdf, rtol=1e-9, atol=1e-300)
        # two-sided: below the surface the frame is mirrored
        e_below = eval_batch(CONDUCTOR, prm, wo * mirror, np.ascontiguousarray(wi * mirror))
        np.testing.assert_allclose(e_below, e, rtol=1e-12, atol=0)
        # nothing leaks through the surface
        assert np.all(eval_batch(CONDUCTOR, prm, wo, np.ascontiguousarray(wi * mirror)) == 0.0)


def test_conductor_reciprocity() -> None:
    a = unit_vectors(100, 1)
    b = np.array([0.3, 0.1, 0.9]) / np.linalg.norm([0.3, 0.1, 0.9])
    f_ab = eval_batch(CONDUCTOR, params(CONDUCTOR), b, a)[:, 0] / a[:, 2]
    f_ba = np.array(
        [eval_batch(CONDUCTOR, params(CONDUCTOR), ai, b[None, :])[0, 0] / b[2] for ai in a]
    )
    np.testing.assert_allclose(f_ab, f_ba, rtol=1e-9)


@pytest.mark.parametrize("theta", [0.0, 45.0, 80.0])
def test_conductor_white_furnace_matches_albedo(theta: float) -> None:
    """F0 = 1: the mean sample weight estimates the directional albedo, which quadrature of
    eval gives independently; single-scattering GGX loses energy (albedo < 1), never gains.

    Tolerance: 5 standard errors of the mean weight (from the weights' own spread) plus the
    quadrature's error estimate. At alpha 0.8 the albedo is 0.43 to 0.72 over these angles.
    """
    prm = params(CONDUCTOR, rgb=(1.0, 1.0, 1.0), alpha=0.8)
    wo = wo_at(theta)
    albedo, quad_err = directional_albedo(CONDUCTOR, prm, wo)
    assert quad_err < 1e-8
    assert np.all(albedo < 1.0)
    n = 200_000
    s = sample_batch(CONDUCTOR, prm, wo, np.random.default_rng(14).random((n, 3)))
    weight = np.where(s[:, 8:9] > 0, s[:, 3:6], 0.0)  # a failed sample carries nothing
    se = weight.std(axis=0) / math.sqrt(n)
    mean = weight.mean(axis=0)
    assert np.all(np.abs(mean - albedo) <= 5 * se + quad_err), (mean, albedo, se)


@pytest.mark.parametrize("theta,below", [(0.0, False), (45.0, False), (70.0, False), (30.0, True), (50.0, True)])
def test_dielectric_lobe_probabilities(theta: float, below: bool) -> None:
    """Reflection is chosen with probability F (binomial z-test) and both lobes are exact."""
    ior = 1.5
    prm = params(DIELECTRIC, ior=ior)
    wo = wo_at(theta, below)
    n = 200_000
    s = sample_batch(DIELECTRIC, prm, wo, np.random.default_rng(15).random((n, 3)))
    eta = 1 / ior if below else ior
    f = fresnel_dielectric(abs(wo[2]), eta)
    refl = np.sign(s[:, 2]) == np.sign(wo[2])
    if f < 1.0:
        z = (refl.sum() - n * f) / math.sqrt(n * f * (1 - f))
        assert abs(z) < 4.5
    assert np.all(s[:, 7] == 1)
    np.testing.assert_allclose(s[refl, :3], np.array([-wo[0], -wo[1], wo[2]])[None, :].repeat(refl.sum(), 0))
    np.testing.assert_allclose(s[refl, 6], f)
    if (~refl).any():
        t = s[~refl, :3][0]
        # Snell's law: n_i sin_i = n_t sin_t, and unit length
        sin_i = math.hypot(wo[0], wo[1])
        sin_t = math.hypot(t[0], t[1])
        assert sin_i == pytest.approx(eta * sin_t, rel=1e-9)
        assert np.linalg.norm(t) == pytest.approx(1.0)
        np.testing.assert_allclose(s[~refl, 3], 1 / eta**2)
        np.testing.assert_allclose(s[~refl, 6], 1 - f)


def test_fresnel_closed_forms() -> None:
    assert fresnel_dielectric(1.0, 1.5) == pytest.approx(0.04)  # ((n-1)/(n+1))^2
    assert fresnel_dielectric(0.2, 1 / 1.5) == 1.0  # total internal reflection
    assert fresnel_dielectric(1.0, 1.0) == pytest.approx(0.0)
