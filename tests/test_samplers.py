"""Every light sampler against its own pdf: chi-square, pdf(sample) == pdf, bounded weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.chi2 import chi2_test, equal_area_theta_edges
from tests.conftest import real_envmaps
from tracer.envmap import EnvMap, constant_map, one_hot_map
from tracer.hdr_io import read_image
from tracer.samplers.alias import AliasSampler, build_alias
from tracer.samplers.base import LightSampler
from tracer.samplers.piecewise import PiecewiseSampler
from tracer.samplers.uniform import UniformSampler

N_SAMPLES = 500_000
#: the chi-square grid's budget: at most this many rows (theta) and columns (phi) of cells
MAX_ROWS, MAX_COLS = 64, 128


def three_by_two() -> np.ndarray:
    """Mitsuba's small test map: 2 rows x 3 columns of distinct colours."""
    return np.array(
        [[[1.0, 0.2, 0.1], [0.1, 2.0, 0.3], [0.3, 0.2, 5.0]],
         [[0.5, 0.5, 0.5], [4.0, 3.0, 1.0], [0.05, 0.02, 0.01]]],
        np.float32,
    )


def real_map() -> np.ndarray:
    return read_image(real_envmaps()[-1])


MAPS = {
    "one_hot": lambda: one_hot_map(8, 16, 2, 5, 10.0),
    "constant": lambda: constant_map((1.0, 1.0, 1.0), 8, 16),
    "3x2": three_by_two,
    "real": real_map,
}
COMPENSATE = [False, True]
#: the two samplers of the map's piecewise-constant density (binary search, alias tables)
TABULATED = {"piecewise": PiecewiseSampler, "alias": AliasSampler}
#: chi-square tests in this file, for the Sidak correction: test_uniform_chi2 (one),
#: test_tabulated_chi2 (every map in both modes, both samplers), test_tabulated_chi2_rotated
#: (both samplers) and test_piecewise_on_all_black_map_is_uniform_on_square (one)
N_TESTS = 1 + len(MAPS) * len(COMPENSATE) * len(TABULATED) + len(TABULATED) + 1


def pixel_grid(h: int, w: int) -> tuple[np.ndarray, int, int]:
    """Chi-square cells aligned with the pixel edges of an h x w map: (theta_edges, n_phi, sub).

    The sampler's solid-angle density is p_uv / (2 pi^2 sin theta): constant in phi but not in
    theta inside a pixel. A small map gets k x k cells per pixel, k as large as the
    MAX_ROWS x MAX_COLS budget allows, so the distribution *inside* each pixel (the sin theta
    Jacobian) is tested, not only the pixel masses. A large map gets cells of b x b pixels,
    integrated with one sub-cell per pixel (sub = b), so every quadrature sub-cell is a pixel.
    Either way p(omega) sin(theta) is constant on every sub-cell and the quadrature is exact.
    """
    k = min(MAX_ROWS // h, MAX_COLS // w)
    if k >= 1:
        return np.pi * np.arange(h * k + 1) / (h * k), w * k, 1
    b = max(-(-h // MAX_ROWS), -(-w // MAX_COLS))
    assert h % b == 0 and w % b == 0, (h, w, b)
    return np.pi * np.arange(h // b + 1) / (h // b), w // b, b


def run_chi2(sampler: LightSampler, theta_edges: np.ndarray, n_phi: int, sub: int = 1,
             seed: int = 0) -> None:
    """Chi-square of ``sampler`` against its own pdf on the given cells."""
    rng = np.random.default_rng(seed)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        s = sampler.sample(rng.random((n, 2)))
        return s.wi, s.pdf > 0

    res = chi2_test(sample, sampler.pdf, n_samples=N_SAMPLES, theta_edges=theta_edges,
                    n_phi=n_phi, sub=sub, quad_order=2, n_tests=N_TESTS)
    assert res.passed, res.message


def test_pixel_grid() -> None:
    edges, n_phi, sub = pixel_grid(2, 3)  # the 3x2 map: 32 x 32 cells per pixel
    assert (edges.size - 1, n_phi, sub) == (64, 96, 1)
    edges, n_phi, sub = pixel_grid(8, 16)
    assert (edges.size - 1, n_phi, sub) == (64, 128, 1)
    edges, n_phi, sub = pixel_grid(512, 1024)  # 8 x 8 pixels a cell, one sub-cell per pixel
    assert (edges.size - 1, n_phi, sub) == (64, 128, 8)
    assert edges[1] == pytest.approx(np.pi * 8 / 512)


def test_uniform_chi2() -> None:
    """The uniform sampler ignores the map: one test on equal-area cells."""
    sampler = UniformSampler(EnvMap(three_by_two()))
    run_chi2(sampler, equal_area_theta_edges(MAX_ROWS // 2), MAX_COLS // 2, sub=2)


@pytest.mark.parametrize("kind", list(TABULATED))
@pytest.mark.parametrize("compensate", COMPENSATE, ids=["plain", "compensated"])
@pytest.mark.parametrize("map_name", list(MAPS))
def test_tabulated_chi2(map_name: str, compensate: bool, kind: str) -> None:
    env = EnvMap(MAPS[map_name]())
    run_chi2(TABULATED[kind](env, compensate), *pixel_grid(*env.shape))


@pytest.mark.parametrize("kind", list(TABULATED))
def test_tabulated_chi2_rotated(kind: str) -> None:
    """A rotation shifts the pixel columns by rot_u: 0.3 * 120 = 36 and 120 / 3 = 40 are whole,
    so 120 phi cells still have the shifted pixel edges among their edges."""
    env = EnvMap(three_by_two(), rot_u=0.3)
    n_phi = 120
    assert (0.3 * n_phi).is_integer() and n_phi % env.shape[1] == 0
    run_chi2(TABULATED[kind](env), np.pi * np.arange(MAX_ROWS + 1) / MAX_ROWS, n_phi)


def alias_probabilities(table: np.ndarray) -> np.ndarray:
    """The probability of each cell that an alias table (n, 2) implies."""
    n = table.shape[0]
    p = table[:, 0].copy()
    np.add.at(p, table[:, 1].astype(np.int64), 1.0 - table[:, 0])
    return p / n


@pytest.mark.parametrize("weights", [
    np.array([1.0]), np.array([0.0, 3.0, 0.0, 1.0]), np.array([1e-30, 1.0, 1e30]),
    np.random.default_rng(7).random(1000) ** 8, np.zeros(5),
], ids=["one", "zeros-between", "huge-range", "random", "all-zero"])
def test_alias_table_reproduces_the_weights(weights: np.ndarray) -> None:
    """Vose's table gives every cell exactly its share (uniform when all weights are 0), and a
    cell of weight 0 is never kept by its own slot nor anybody's alias."""
    table = np.empty((weights.size, 2))
    build_alias(weights, table)
    want = weights / weights.sum() if weights.sum() > 0 else np.full(weights.size, 1 / weights.size)
    np.testing.assert_allclose(alias_probabilities(table), want, rtol=1e-9, atol=1e-15)
    assert np.all((table[:, 0] >= 0) & (table[:, 0] <= 1))
    if weights.sum() > 0:
        zero = weights == 0
        assert np.all(table[zero, 0] == 0)
        assert not np.any(zero[table[table[:, 0] < 1, 1].astype(np.int64)])


def test_alias_pdf_is_piecewise_pdf() -> None:
    """The two samplers of one map have the same density, bit for bit, and their samples
    fall on the pixels in the same proportions (counted, not only chi-squared)."""
    env = EnvMap(real_map(), rot_u=0.2)
    pw, al = PiecewiseSampler(env), AliasSampler(env)
    rng = np.random.default_rng(8)
    d = rng.normal(size=(100_000, 3))
    d /= np.linalg.norm(d, axis=1)[:, None]
    np.testing.assert_array_equal(al.pdf(d), pw.pdf(d))
    s = al.sample(rng.random((100_000, 2)))
    np.testing.assert_array_equal(al.pdf(s.wi), pw.pdf(s.wi))


@pytest.mark.parametrize("compensate", [False, True])
@pytest.mark.parametrize("map_name", list(MAPS))
def test_pdf_of_sample_is_sample_pdf(map_name: str, compensate: bool) -> None:
    env = EnvMap(MAPS[map_name](), rot_u=0.1)
    for sampler in (UniformSampler(env), PiecewiseSampler(env, compensate), AliasSampler(env, compensate)):
        s = sampler.sample(np.random.default_rng(3).random((50_000, 2)))
        ok = s.pdf > 0
        np.testing.assert_allclose(sampler.pdf(s.wi)[ok], s.pdf[ok], rtol=1e-6)
        np.testing.assert_allclose(env.eval(s.wi), s.le, rtol=0, atol=0)
        np.testing.assert_allclose(np.linalg.norm(s.wi, axis=1), 1.0, atol=1e-12)


def test_le_over_pdf_bounded_for_one_hot() -> None:
    """Le / p is bounded (and nearly constant) when the density follows the radiance."""
    h, w = 8, 16
    env = EnvMap(one_hot_map(h, w, 2, 5, 10.0))
    s = PiecewiseSampler(env).sample(np.random.default_rng(4).random((100_000, 2)))
    ratio = s.le[:, 0] / s.pdf
    # the map's power through that pixel: 10 * pixel solid angle (sin theta varies in the row)
    t0, t1 = math.pi * 2 / h, math.pi * 3 / h
    power = 10.0 * (2 * math.pi / w) * (math.cos(t0) - math.cos(t1))
    # Le / p = 10 * 2 pi^2 sin(theta) / (h w) on the pixel's rows (theta < pi/2: increasing)
    lo = 10.0 * 2 * math.pi**2 * math.sin(t0) / (h * w)
    hi = 10.0 * 2 * math.pi**2 * math.sin(t1) / (h * w)
    assert np.all(s.le[:, 0] == 10.0)
    assert ratio.min() >= lo * (1 - 1e-9) and ratio.max() <= hi * (1 + 1e-9)
    # the estimator of the map's power is unbiased
    assert ratio.mean() == pytest.approx(power, rel=1e-2)


def test_piecewise_invert_of_sample_is_identity() -> None:
    env = EnvMap(real_map())
    pw = PiecewiseSampler(env)
    u = np.random.default_rng(5).random((20_000, 2))
    d = pw.dist
    from tracer.distribution import sample_2d_batch

    s = sample_2d_batch(d.cond_cdf, d.cond_guide, d.marg_cdf, u)
    back = pw.invert(np.ascontiguousarray(s[:, :2]))
    np.testing.assert_allclose(back, u, atol=1e-7)


def test_piecewise_on_all_black_map_is_uniform_on_square() -> None:
    """An all-black map still gives a valid (uniform-on-square) distribution."""
    env = EnvMap(np.zeros((4, 8, 3), np.float32))
    pw = PiecewiseSampler(env)
    s = pw.sample(np.random.default_rng(6).random((1000, 2)))
    assert np.all(np.isfinite(s.pdf)) and np.all(s.pdf >= 0)
    assert np.all(s.le == 0)
    run_chi2(pw, *pixel_grid(4, 8))


def test_importance_sampling_reduces_variance_on_real_map() -> None:
    """Estimating the map's power: piecewise has far lower variance than uniform."""
    env = EnvMap(real_map())
    u = np.random.default_rng(7).random((200_000, 2))
    est = {}
    for sampler in (UniformSampler(env), PiecewiseSampler(env)):
        s = sampler.sample(u)
        y = s.le @ np.array([0.2126, 0.7152, 0.0722]) / np.where(s.pdf > 0, s.pdf, np.inf)
        est[sampler.name] = (y.mean(), y.var())
    assert est["piecewise"][0] == pytest.approx(env.power(), rel=2e-2)
    assert est["uniform"][0] == pytest.approx(env.power(), rel=0.2)
    assert est["piecewise"][1] < est["uniform"][1] / 10
