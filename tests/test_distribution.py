"""PiecewiseConstant2D against closed forms (after pbrt-v4's util/sampling_test.cpp)."""

from __future__ import annotations

import numpy as np
import pytest

from tracer.distribution import (
    build_distribution_2d,
    find_interval,
    invert_2d_batch,
    pdf_2d,
    sample_2d_batch,
)


def test_find_interval_picks_nonempty_cells() -> None:
    cdf = np.array([0.0, 0.25, 0.25, 0.25, 1.0])
    assert find_interval(cdf, 0.0) == 0
    assert find_interval(cdf, 0.1) == 0
    # 0.25 lies on the edge of two empty cells: the chosen cell must have mass
    assert find_interval(cdf, 0.25) == 3
    assert find_interval(cdf, 0.999) == 3


def test_pdf_matches_closed_form() -> None:
    f = np.array([[1.0, 3.0], [0.0, 4.0]])
    d = build_distribution_2d(f)
    assert d.integral == pytest.approx(2.0)  # mean of f over the unit square
    for (u, v), want in {(0.2, 0.2): 0.5, (0.7, 0.2): 1.5, (0.2, 0.7): 0.0, (0.9, 0.9): 2.0}.items():
        assert pdf_2d(d.func, d.integral, u, v) == pytest.approx(want)


def test_samples_follow_the_function() -> None:
    rng = np.random.default_rng(1)
    f = rng.random((5, 7)) ** 3
    f[2, 3] = 0.0
    d = build_distribution_2d(f)
    n = 400_000
    s = sample_2d_batch(d.cond_cdf, d.cond_guide, d.marg_cdf, rng.random((n, 2)))
    i = np.minimum((s[:, 1] * 5).astype(int), 4)
    j = np.minimum((s[:, 0] * 7).astype(int), 6)
    counts = np.bincount(i * 7 + j, minlength=35).reshape(5, 7)
    expected = n * f / f.sum()
    assert counts[2, 3] == 0
    z = (counts - expected) / np.sqrt(np.maximum(expected, 1.0))
    assert np.abs(z).max() < 5.0
    # returned pdf is the density at the returned point
    np.testing.assert_allclose(s[:, 2], f[i, j] / d.integral, rtol=1e-12)


def test_invert_of_sample_is_identity() -> None:
    rng = np.random.default_rng(2)
    f = rng.random((16, 32)) + 0.01
    d = build_distribution_2d(f)
    u = rng.random((10_000, 2))
    s = sample_2d_batch(d.cond_cdf, d.cond_guide, d.marg_cdf, u)
    back = invert_2d_batch(d.cond_cdf, d.marg_cdf, np.ascontiguousarray(s[:, :2]))
    np.testing.assert_allclose(back, u, atol=1e-9)


def test_all_zero_function_becomes_uniform() -> None:
    d = build_distribution_2d(np.zeros((4, 8)))
    assert d.integral == pytest.approx(1.0)
    s = sample_2d_batch(d.cond_cdf, d.cond_guide, d.marg_cdf, np.random.default_rng(0).random((1000, 2)))
    np.testing.assert_allclose(s[:, 2], 1.0)


@pytest.mark.parametrize("bad", [np.array([[1.0, np.nan]]), np.array([[1.0, -1.0]]), np.zeros((0, 3))])
def test_bad_functions_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        build_distribution_2d(bad)


def test_guided_search_equals_plain_search() -> None:
    from tracer.distribution import GUIDE, find_interval_guided

    rng = np.random.default_rng(9)
    for w in (1, 5, GUIDE, GUIDE + 1, 3 * GUIDE + 7, 1024):
        f = rng.random(w) * (rng.random(w) > 0.3)  # zero cells make empty intervals
        f[0] += 0.1
        d = build_distribution_2d(f[None, :])
        cdf, guide = d.cond_cdf[0], d.cond_guide[0]
        for x in np.concatenate([rng.random(500), cdf[:-1]]):
            assert find_interval_guided(cdf, guide, x) == find_interval(cdf, x)
