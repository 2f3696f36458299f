"""Self-tests of the chi-square harness (tests/chi2.py) with plain numpy samplers.

Every sampler draws from its own ``numpy.random.default_rng(seed)`` with a fixed seed, so
the outcomes (and p-values) are deterministic.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from tracer import sphere_map

try:
    from tests.chi2 import (
        Chi2Result,
        chi2_test,
        equal_area_theta_edges,
        pooled_chi2,
        sidak_threshold,
    )
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from chi2 import (  # type: ignore[no-redef]
        Chi2Result,
        chi2_test,
        equal_area_theta_edges,
        pooled_chi2,
        sidak_threshold,
    )

N = 1_000_000
ALPHA = 0.01


# --------------------------------------------------------------------------------------------
# Samplers and densities
# --------------------------------------------------------------------------------------------


def _dirs(cos_theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Directions from cos(theta) (about +y) and phi (from -z towards +x)."""
    s = np.sqrt(np.maximum(0.0, 1.0 - cos_theta * cos_theta))
    return np.stack([np.sin(phi) * s, cos_theta, -np.cos(phi) * s], axis=1)


def uniform_sphere_sampler(seed: int, valid_fraction: float = 1.0):
    rng = np.random.default_rng(seed)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        u = rng.random((n, 3))
        d = _dirs(1.0 - 2.0 * u[:, 0], 2.0 * math.pi * u[:, 1])
        valid = u[:, 2] < valid_fraction
        d[~valid] = 0.0  # garbage for invalid samples: the harness must ignore it
        return d, valid

    return sample


def cosine_power_sampler(seed: int, exponent: float = 1.0, sign: float = 1.0):
    """Density (n + 1) / (2 pi) cos^n(theta) on the hemisphere sign * y > 0."""
    rng = np.random.default_rng(seed)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        u = rng.random((n, 2))
        cos_theta = (1.0 - u[:, 0]) ** (1.0 / (exponent + 1.0))  # in (0, 1]
        return _dirs(sign * cos_theta, 2.0 * math.pi * u[:, 1]), np.ones(n, dtype=bool)

    return sample


def uniform_sphere_pdf(d: np.ndarray) -> np.ndarray:
    return np.full(d.shape[0], 1.0 / (4.0 * math.pi))


def cosine_pdf(d: np.ndarray) -> np.ndarray:
    return np.maximum(d[:, 1], 0.0) / math.pi


def uniform_hemisphere_pdf(d: np.ndarray) -> np.ndarray:
    return np.where(d[:, 1] > 0.0, 1.0 / (2.0 * math.pi), 0.0)


# Piecewise-constant lat-long distribution over a 4 x 8 equirectangular grid.
H, W = 4, 8


def latlong_weights() -> np.ndarray:
    w = np.random.default_rng(7).random((H, W)) ** 2 * 10.0 + 0.05
    w[0, 5] = 20.0  # a bright pixel at the zenith row
    w[1, 3] = 0.0  # a pixel with no mass: its cells have expected count 0 and no samples
    return w


def latlong_sampler(w: np.ndarray, seed: int):
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(w.ravel())
    cdf /= cdf[-1]

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        k = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), w.size - 1)
        i, j = np.divmod(k, W)
        uv = np.stack([(j + rng.random(n)) / W, (i + rng.random(n)) / H], axis=1)
        return sphere_map.uvs_to_dir(uv), np.ones(n, dtype=bool)

    return sample


def latlong_pdf(w: np.ndarray, jacobian: bool = True):
    p_pixel = w / (w.sum() / w.size)  # density on the unit square: w / (sum w * 1 / (H W))

    def pdf(d: np.ndarray) -> np.ndarray:
        uv = sphere_map.dirs_to_uv(np.ascontiguousarray(d))
        j = np.minimum((uv[:, 0] * W).astype(np.int64), W - 1)
        i = np.minimum((uv[:, 1] * H).astype(np.int64), H - 1)
        p_uv = p_pixel[i, j]
        if jacobian:
            return sphere_map.uv_pdfs_to_solid_angle(p_uv, uv[:, 1])
        return p_uv / (2.0 * math.pi**2)  # wrong: sin(theta) missing

    return pdf


def _aligned_edges(rows_per_pixel: int = 2) -> np.ndarray:
    return math.pi * np.arange(H * rows_per_pixel + 1) / (H * rows_per_pixel)


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------


def test_pooling_matches_hand_computation():
    # Sorted by E: 1.5 (O 1), 2 (O 3) accumulate to E 3.5 < 5 and no pool forms, so this
    # remainder merges with the smallest bin that stands alone (E 12 / O 10): E 15.5, O 14;
    # E 18 / O 20 stands alone; the E = O = 0 bin is dropped.
    r = pooled_chi2(np.array([10, 3, 1, 20, 0]), np.array([12.0, 2.0, 1.5, 18.0, 0.0]))
    assert r.n_pooled == 3 and r.n_bins == 2 and r.dof == 1
    np.testing.assert_allclose(r.pool_expected, [15.5])
    np.testing.assert_array_equal(r.pool_observed, [14])
    np.testing.assert_array_equal(r.pool_of, [0, 0, 0, -1, -1])
    assert r.statistic == pytest.approx(1.5**2 / 15.5 + 2.0**2 / 18.0)


def test_pooling_forms_several_pools():
    # Sorted by E: 0.5, 0.7, 1.2, 2.0 (running E 4.4) and 3.0 (7.4 >= 5) close pool A;
    # 4.0 and 4.5 (8.5) close pool B; 6 and 8 stand alone: 4 bins, 3 dof (one pool of all
    # seven dim bins would give 2).
    e = np.array([4.0, 0.7, 6.0, 2.0, 0.5, 8.0, 3.0, 4.5, 1.2])
    o = np.array([6, 0, 9, 1, 2, 5, 4, 3, 1])
    r = pooled_chi2(o, e)
    assert r.n_pooled == 7 and r.n_bins == 4 and r.dof == 3
    np.testing.assert_allclose(r.pool_expected, [7.4, 8.5])
    np.testing.assert_array_equal(r.pool_observed, [0 + 1 + 2 + 4 + 1, 6 + 3])
    np.testing.assert_array_equal(r.pool_of, [1, 0, -1, 0, 0, -1, 0, 1, 0])
    expected_stat = (
        (8 - 7.4) ** 2 / 7.4 + (9 - 8.5) ** 2 / 8.5 + (9 - 6.0) ** 2 / 6.0 + (5 - 8.0) ** 2 / 8.0
    )
    assert r.statistic == pytest.approx(expected_stat, rel=1e-12)
    np.testing.assert_allclose(r.contrib[[2, 5]], [9.0 / 6.0, 9.0 / 8.0])
    assert np.all(r.contrib[r.pool_of >= 0] == 0.0)


def test_pooling_remainder_joins_the_last_pool():
    # Twelve bins of E 1 form two pools of five (E reaches exactly 5) and a remainder of two
    # (E 2 < 5), which joins the second pool (E 7); E 9 stands alone.
    e = np.array([1.0] * 12 + [9.0])
    o = np.array([1, 0, 2, 1, 1, 0, 0, 3, 1, 2, 4, 0, 9])
    r = pooled_chi2(o, e)
    assert r.n_bins == 3 and r.dof == 2 and r.n_pooled == 12
    np.testing.assert_allclose(r.pool_expected, [5.0, 7.0])
    np.testing.assert_array_equal(r.pool_observed, [5, 10])
    np.testing.assert_array_equal(r.pool_of, [0] * 5 + [1] * 7 + [-1])
    assert r.statistic == pytest.approx(0.0 + 9.0 / 7.0 + 0.0, rel=1e-12)
    # Every input bin is accounted for: the pools and the bins standing alone hold all of it.
    assert r.pool_expected.sum() + e[r.pool_of < 0].sum() == pytest.approx(e.sum())
    assert r.pool_observed.sum() + o[r.pool_of < 0].sum() == o.sum()


def test_sidak_threshold():
    assert sidak_threshold(0.01, 1) == pytest.approx(0.01)
    assert sidak_threshold(0.01, 10) == pytest.approx(1.0 - 0.99**0.1)


def test_equal_area_cells_and_quadrature():
    r = chi2_test(uniform_sphere_sampler(0), uniform_sphere_pdf, n_samples=1000, n_theta=8)
    edges = equal_area_theta_edges(8)
    assert edges[0] == 0.0 and edges[-1] == math.pi and edges[4] == pytest.approx(math.pi / 2)
    assert r.expected.shape == (8, 64) and r.observed.shape == (8, 64)
    np.testing.assert_allclose(r.expected, 1000 / (8 * 64), rtol=1e-9)
    assert r.observed.sum() == 1000
    assert "pdf integral over the sphere = 1.000000" in r.message


def test_pdf_batches_agree(monkeypatch):
    harness = sys.modules[chi2_test.__module__]
    args = (cosine_pdf, equal_area_theta_edges(8), 16)
    whole, ok = harness.integrate_cells(*args)
    monkeypatch.setattr(harness, "MAX_BATCH", 1000)  # one row of cells (16 * 12 * 12) a batch
    batched, ok_batched = harness.integrate_cells(*args)
    assert ok and ok_batched
    np.testing.assert_allclose(batched, whole, rtol=1e-14, atol=0)
    assert whole.sum() == pytest.approx(1.0, abs=1e-8)  # smooth in each cell: ~5e-10 error


def test_bad_theta_edges_rejected():
    with pytest.raises(ValueError):
        chi2_test(uniform_sphere_sampler(0), uniform_sphere_pdf, theta_edges=np.array([0.0, 1.0]))


# --------------------------------------------------------------------------------------------
# Accept / reject
# --------------------------------------------------------------------------------------------


def test_uniform_sphere_passes():
    r = chi2_test(uniform_sphere_sampler(1), uniform_sphere_pdf, n_samples=N)
    assert isinstance(r, Chi2Result)
    assert r.passed, r.message
    assert r.p_value >= ALPHA
    assert r.dof == 32 * 64 - 1  # every cell expects ~488 samples: nothing is pooled


def test_cosine_hemisphere_passes():
    r = chi2_test(cosine_power_sampler(2), cosine_pdf, n_samples=N)
    assert r.passed, r.message
    assert r.p_value >= ALPHA
    assert r.expected[16:].sum() == 0.0 and r.observed[16:].sum() == 0  # lower hemisphere


def test_cosine_sampler_with_uniform_hemisphere_pdf_fails():
    r = chi2_test(cosine_power_sampler(3), uniform_hemisphere_pdf, n_samples=N)
    assert not r.passed
    assert r.p_value < 1e-12
    assert "REJECTED" in r.message


def test_slightly_wrong_exponent_fails():
    # Samples from (2.1 / 2 pi) cos^1.1 while the pdf says cos / pi.
    r = chi2_test(cosine_power_sampler(4, exponent=1.1), cosine_pdf, n_samples=N)
    assert not r.passed, r.message
    assert r.p_value < 1e-6


def test_invalid_samples_with_scaled_pdf_pass():
    def pdf(d: np.ndarray) -> np.ndarray:
        return 0.8 * uniform_sphere_pdf(d)

    r = chi2_test(uniform_sphere_sampler(5, valid_fraction=0.8), pdf, n_samples=N)
    assert r.passed, r.message
    assert r.p_value >= ALPHA
    assert r.dof == 32 * 64  # the cells plus the invalid bin, minus one
    assert r.observed.sum() == pytest.approx(0.8 * N, rel=0.01)
    assert "invalid bin: observed" in r.message


def test_invalid_samples_with_unscaled_pdf_fail():
    r = chi2_test(uniform_sphere_sampler(6, valid_fraction=0.8), uniform_sphere_pdf, n_samples=N)
    assert not r.passed
    assert r.p_value < 1e-12
    assert "invalid but the pdf integrates to" in r.message


def test_no_invalid_bin_without_invalid_samples():
    # A density 2e-5 short of 1 (what quadrature error can leave) and no invalid sample: the
    # deficit, N (1 - I) = 20 expected, must not become an "invalid" bin with O = 0.
    def pdf(d: np.ndarray) -> np.ndarray:
        return (1.0 - 2e-5) * uniform_sphere_pdf(d)

    r = chi2_test(uniform_sphere_sampler(12), pdf, n_samples=N)
    assert r.passed, r.message
    assert "invalid bin" not in r.message
    assert r.dof == 32 * 64 - 1  # the cells only
    # A single invalid sample brings the bin back (O = 1, E = 20, standing alone).
    inner = uniform_sphere_sampler(12)

    def one_invalid(n: int) -> tuple[np.ndarray, np.ndarray]:
        d, valid = inner(n)
        valid[0] = False
        return d, valid

    r = chi2_test(one_invalid, pdf, n_samples=N)
    assert "invalid bin: observed 1, expected 20.0" in r.message, r.message
    assert r.dof == 32 * 64  # the cells plus the invalid bin, minus one


def test_dim_region_shape_is_tested():
    """Dim cells form many pools of E >= 5, each a degree of freedom of its own.

    1% of the mass is spread uniformly over the lower hemisphere: its 1024 cells expect 1.95
    samples each and are pooled by threes. A sampler that puts that 1% into half of the lower
    hemisphere has the right total in the dim region, which one big pool could not see.
    """
    n, dim = 200_000, 0.01

    def pdf(d: np.ndarray) -> np.ndarray:
        return (1.0 - dim) * cosine_pdf(d) + dim * np.where(d[:, 1] < 0.0, 0.5 / math.pi, 0.0)

    def sampler(seed: int, half: bool):
        rng = np.random.default_rng(seed)

        def sample(m: int) -> tuple[np.ndarray, np.ndarray]:
            u = rng.random((m, 3))
            lower = u[:, 2] < dim
            cos_theta = np.where(lower, -u[:, 0], np.sqrt(1.0 - u[:, 0]))
            phi = (math.pi if half else 2.0 * math.pi) * u[:, 1]
            phi = np.where(lower, phi, 2.0 * math.pi * u[:, 1])
            return _dirs(cos_theta, phi), np.ones(m, dtype=bool)

        return sample

    good = chi2_test(sampler(13, half=False), pdf, n_samples=n)
    assert good.passed, good.message
    # 1024 upper cells (E >= 12) stand alone; 1024 lower cells of E = 1.95 make 341 pools
    # of three (the last one absorbs the remaining cell): 1024 + 341 - 1 dof.
    assert good.dof == 1024 + 341 - 1, good.message
    assert "pooled 1024 bins with expected < 5 into 341 bins" in good.message

    bad = chi2_test(sampler(13, half=True), pdf, n_samples=n)
    assert not bad.passed
    assert bad.p_value < 1e-12, bad.message


def test_latlong_piecewise_constant_passes():
    w = latlong_weights()
    r = chi2_test(
        latlong_sampler(w, 8),
        latlong_pdf(w),
        n_samples=N,
        theta_edges=_aligned_edges(),
        n_phi=2 * W,
        sub=2,
    )
    assert r.passed, r.message
    assert r.p_value >= ALPHA
    # Aligned cells: pdf * sin(theta) is constant in every cell, so the quadrature is exact.
    assert r.expected.sum() / N == pytest.approx(1.0, abs=1e-12)
    zero = r.expected == 0.0
    assert zero.sum() == 4 and r.observed[zero].sum() == 0  # the empty pixel's 2 x 2 cells


def test_latlong_without_sin_jacobian_fails():
    w = latlong_weights()
    r = chi2_test(
        latlong_sampler(w, 9),
        latlong_pdf(w, jacobian=False),
        n_samples=N,
        theta_edges=_aligned_edges(),
        n_phi=2 * W,
        sub=2,
    )
    assert not r.passed
    assert r.p_value < 1e-12


def test_samples_outside_support_fail():
    # Cosine lobe about -y, with a handful of samples leaked into the upper hemisphere where
    # the pdf is 0: the chi^2 statistic alone would hardly notice, the support check does.
    inner = cosine_power_sampler(10, sign=-1.0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        d, valid = inner(n)
        d[:5, 1] *= -1.0
        return d, valid

    def pdf(d: np.ndarray) -> np.ndarray:
        return np.maximum(-d[:, 1], 0.0) / math.pi

    r = chi2_test(sample, pdf, n_samples=100_000)
    assert not r.passed
    assert "5 samples fell outside the pdf's support" in r.message
    assert "cell (theta " in r.message  # the offending cells are named
    assert r.p_value == 0.0 and r.statistic == math.inf  # impossible under the pdf
    assert "over the bins with expected > 0 only" in r.message  # the rest still fits
    assert r.observed[:16].sum() == 5 and r.expected[:16].sum() == 0.0

    # A gross violation: uniform sphere samples against a lower-hemisphere-only density.
    def lower_uniform(d: np.ndarray) -> np.ndarray:
        return np.where(d[:, 1] < 0.0, 1.0 / (2.0 * math.pi), 0.0)

    r = chi2_test(uniform_sphere_sampler(11), lower_uniform, n_samples=100_000)
    assert not r.passed
    assert "outside the pdf's support" in r.message
    assert r.p_value < 1e-12
