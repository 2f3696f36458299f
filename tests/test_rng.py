"""The sample sequences: hashed independent numbers and padded Owen-scrambled Sobol."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit
from scipy.stats import chisquare

from tracer.rng import (
    INDEPENDENT,
    SOBOL,
    draw2,
    owen_scramble,
    path_key,
    path_keys,
    reverse_bits32,
    sobol_2d,
    sobol_pair,
    sobol_uniform,
    uniform,
)


@njit(cache=True)
def pixel_points(seed: int, pixel: int, n: int, dim0: int) -> np.ndarray:
    """Samples 0 .. n - 1 of one pixel in the dimensions (dim0, dim0 + 1)."""
    out = np.empty((n, 2))
    for s in range(n):
        out[s, 0] = sobol_uniform(seed, pixel, s, dim0)
        out[s, 1] = sobol_uniform(seed, pixel, s, dim0 + 1)
    return out


def is_net(p: np.ndarray, m: int) -> bool:
    """Is every elementary interval of area 2^-m (2^a x 2^(m-a) boxes) hit exactly once?"""
    for a in range(m + 1):
        bx, by = 1 << a, 1 << (m - a)
        cells = np.floor(p[:, 0] * bx).astype(np.int64) * by + np.floor(p[:, 1] * by).astype(np.int64)
        if np.unique(cells).size != p.shape[0]:
            return False
    return True


def test_sobol_first_points() -> None:
    """Dimension 0 is the radical inverse, dimension 1 the Pascal-matrix Sobol dimension."""
    d0 = [sobol_2d(i, 0) / 2**32 for i in range(8)]
    d1 = [sobol_2d(i, 1) / 2**32 for i in range(8)]
    assert d0 == [0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]
    assert d1 == [0, 0.5, 0.75, 0.25, 0.625, 0.125, 0.375, 0.875]
    assert reverse_bits32(1) == 1 << 31 and reverse_bits32(reverse_bits32(0x12345678)) == 0x12345678


def test_owen_scramble_is_a_nested_permutation() -> None:
    """On 2^k-aligned blocks the scramble permutes the top k bits and maps every block of
    values sharing their top bits onto one such block (what keeps the nets)."""
    for seed in (0, 1, 0xDEADBEEF):
        top = [owen_scramble(v << 24, seed) >> 24 for v in range(256)]
        assert sorted(top) == list(range(256))
        # values that agree in their top 4 bits still agree after scrambling
        for hi in range(16):
            outs = {owen_scramble((hi << 28) | (lo << 8), seed) >> 28 for lo in range(0, 1 << 20, 4099)}
            assert len(outs) == 1


@pytest.mark.parametrize("m", [2, 4, 6])
def test_every_pixel_and_pair_is_a_net(m: int) -> None:
    """The first 2^m samples of any pixel, in any pair of dimensions, form a (0, m, 2)-net."""
    for seed in (0, 7):
        for pixel in range(0, 4000, 397):
            for dim0 in (0, 2, 4, 10, 44):
                assert is_net(pixel_points(seed, pixel, 1 << m, dim0), m), (seed, pixel, dim0)


def test_independent_numbers_are_not_nets() -> None:
    """The check above can fail: white noise is a 16-point net in almost no pixel."""
    @njit
    def white(pixel: int) -> np.ndarray:
        out = np.empty((16, 2))
        for s in range(16):
            out[s, 0] = uniform(0, pixel, s, 2)
            out[s, 1] = uniform(0, pixel, s, 3)
        return out

    assert sum(is_net(white(p), 4) for p in range(200)) < 3


@njit(cache=True)
def across_pixels(seed: int, n_pix: int, sample: int, dims: np.ndarray) -> np.ndarray:
    out = np.empty((n_pix, dims.size))
    for p in range(n_pix):
        for j in range(dims.size):
            out[p, j] = sobol_uniform(seed, p, sample, dims[j])
    return out


def test_sobol_is_uniform_and_decorrelated_across_pixels_and_pairs() -> None:
    """Across pixels each dimension is uniform (chi-square) and different pairs, and the two
    coordinates of one pair at one sample, are uncorrelated (|r| within 5 standard errors)."""
    n = 200_000
    dims = np.array([0, 1, 2, 3, 10, 11, 26])
    x = across_pixels(3, n, 5, dims)
    for j in range(dims.size):
        counts = np.bincount(np.floor(x[:, j] * 64).astype(np.int64), minlength=64)
        assert chisquare(counts).pvalue > 1e-4 / dims.size, dims[j]
    r = np.corrcoef(x.T)
    off = r[~np.eye(dims.size, dtype=bool)]
    assert np.abs(off).max() < 5 / math.sqrt(n), np.abs(off).max()


def lowbias32_py(x: int) -> int:
    """Wellons' lowbias32 in Python integers (the reference below)."""
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


def uniform_py(seed: int, pixel: int, sample: int, dim: int) -> float:
    """The independent numbers as first defined, four rounds of hashing a number, in Python
    integers: what the renders drew before the queues kept one key a path."""
    h = lowbias32_py(seed * 0x9E3779B9 + 0x632BE5AB)
    h = lowbias32_py(h ^ (pixel & 0xFFFFFFFF))
    h = lowbias32_py(h ^ ((pixel >> 32) & 0xFFFFFFFF) ^ ((sample * 0x85EBCA6B) & 0xFFFFFFFF))
    h = lowbias32_py(h + dim * 0xC2B2AE35)
    return (h >> 8) / 16777216.0


@njit(cache=True)
def keyed_pairs(sampling: int, seed: int, pixel: np.ndarray, sample: np.ndarray,
                dim: int) -> np.ndarray:
    out = np.empty((pixel.shape[0], 2))
    for i in range(pixel.shape[0]):
        key = path_key(sampling, seed, pixel[i], sample[i])
        out[i, 0], out[i, 1] = draw2(sampling, seed, key, dim)
    return out


@njit(cache=True)
def sobol_pairs(seed: int, pixel: np.ndarray, sample: np.ndarray, dim: int) -> np.ndarray:
    out = np.empty((pixel.shape[0], 2))
    for i in range(pixel.shape[0]):
        out[i, 0], out[i, 1] = sobol_pair(seed, pixel[i], sample[i], dim)
    return out


@pytest.mark.parametrize("seed", [0, 7, 123456789])
def test_a_path_key_draws_the_numbers_of_its_pixel_and_sample(seed: int) -> None:
    """Drawing from a path's key (what the stages do) gives the numbers of its pixel and
    sample exactly: the independent numbers of the four-round definition (in Python
    integers), the Sobol pair of :func:`sobol_pair`. Pixels up to 2^32 - 1, samples past
    2^31 and 2^32 (where only the low 32 bits count, in both definitions), several
    dimensions. And the keys differ: neighbouring pixels and samples get other numbers."""
    rng = np.random.default_rng(seed)
    n = 400
    pixel = np.concatenate([rng.integers(0, 1 << 20, n), rng.integers(0, 1 << 32, n),
                            [0, (1 << 32) - 1]])
    sample = np.concatenate([rng.integers(0, 4096, n), rng.integers(0, 1 << 34, n),
                             [(1 << 31) + 5, (1 << 32) + 5]])
    for dim in (0, 2, 10, 36):
        got = keyed_pairs(INDEPENDENT, seed, pixel, sample, dim)
        want = [[uniform_py(seed, int(p), int(s), dim), uniform_py(seed, int(p), int(s), dim + 1)]
                for p, s in zip(pixel, sample, strict=True)]
        assert np.array_equal(got, np.array(want)), dim
        assert np.array_equal(keyed_pairs(SOBOL, seed, pixel, sample, dim),
                              sobol_pairs(seed, pixel, sample, dim)), dim
    for sampling in (INDEPENDENT, SOBOL):
        keys = path_keys(sampling, seed, np.repeat(np.arange(64), 64), np.tile(np.arange(64), 64))
        assert np.unique(keys).size == keys.size
