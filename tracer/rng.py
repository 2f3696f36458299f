"""Counter-based random numbers: the same stream on any backend, in any order.

Each number is a hash of (seed, path, sample, dimension), so a stage can draw the numbers it
needs without carrying generator state through the queues, renders are reproducible from
the seed alone, and a CUDA twin of a kernel draws exactly the same numbers as the CPU one.
The mixing function is Chris Wellons' ``lowbias32`` (hash-prospector); 32-bit products are
masked back to 32 bits, so the int64 arithmetic that Numba does is exact.
"""

from __future__ import annotations

import numpy as np
from numba import njit

MASK32 = 0xFFFFFFFF
#: Random dimensions a path uses per bounce, in pairs: light sample (0, 1), BSDF direction
#: (2, 3), the dielectric's lobe choice and Russian roulette (4, 5), shadow-ray roulette (6;
#: its pair's 7 is spare).
DIMS_PER_BOUNCE = 8
#: Dimensions the camera uses before the first bounce (pixel jitter 2).
CAMERA_DIMS = 2


@njit(cache=True, inline="always")
def lowbias32(x: int) -> int:
    """A 32-bit integer hash with low bias (Wellons, hash-prospector)."""
    x = int(x) & MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & MASK32
    x ^= x >> 16
    return x


@njit(cache=True, inline="always")
def bounce_dim(depth: int, k: int) -> int:
    """The dimension of the k-th number of a bounce at ``depth``."""
    return CAMERA_DIMS + depth * DIMS_PER_BOUNCE + k


# ------------------------------------------------------------------ Owen-scrambled Sobol

#: the ``sampling`` argument of the stages: independent hashed numbers, or scrambled Sobol
INDEPENDENT = 0
SOBOL = 1
SAMPLINGS = {"independent": INDEPENDENT, "sobol": SOBOL}


@njit(cache=True, inline="always")
def path_key(sampling: int, seed: int, pixel: int, sample: int) -> int:
    """The one integer a path draws all its numbers from (``pixel`` < 2^32; only the low 32
    bits of ``sample`` count, under either sequence).

    Independent numbers: the hash of (seed, pixel, sample), the first three rounds of
    :func:`uniform`, which every dimension shares, so a stage draws each number with one
    round (:func:`uniform_keyed`) instead of four. Sobol: the pixel and the sample side by
    side, ``pixel | sample << 32`` (:func:`draw2` takes them apart). The queues keep this one
    int64 a path instead of the pixel and the sample."""
    if sampling == SOBOL:
        return (pixel & MASK32) | ((sample & MASK32) << 32)
    h = lowbias32(seed * 0x9E3779B9 + 0x632BE5AB)
    h = lowbias32(h ^ (pixel & MASK32))
    return lowbias32(h ^ ((pixel >> 32) & MASK32) ^ (sample * 0x85EBCA6B))


@njit(cache=True)
def path_keys(sampling: int, seed: int, pixel: np.ndarray, sample: np.ndarray) -> np.ndarray:
    """:func:`path_key` of each (pixel, sample) pair (int64 arrays of one length)."""
    out = np.empty(pixel.shape[0], np.int64)
    for i in range(pixel.shape[0]):
        out[i] = path_key(sampling, seed, pixel[i], sample[i])
    return out


@njit(cache=True, inline="always")
def uniform_keyed(key: int, dim: int) -> float:
    """Dimension ``dim`` of the independent numbers of the path whose key is ``key``."""
    return (lowbias32(key + dim * 0xC2B2AE35) >> 8) * (1.0 / 16777216.0)


@njit(cache=True, inline="always")
def uniform(seed: int, path: int, sample: int, dim: int) -> float:
    """A uniform number in [0, 1) for (seed, path, sample, dimension)."""
    return uniform_keyed(path_key(INDEPENDENT, seed, path, sample), dim)


@njit(cache=True, inline="always")
def reverse_bits32(x: int) -> int:
    """The 32 low bits of x in reverse order."""
    x &= MASK32
    x = ((x >> 1) & 0x55555555) | ((x & 0x55555555) << 1)
    x = ((x >> 2) & 0x33333333) | ((x & 0x33333333) << 2)
    x = ((x >> 4) & 0x0F0F0F0F) | ((x & 0x0F0F0F0F) << 4)
    x = ((x >> 8) & 0x00FF00FF) | ((x & 0x00FF00FF) << 8)
    return ((x >> 16) | (x << 16)) & MASK32


@njit(cache=True, inline="always")
def owen_scramble(v: int, seed: int) -> int:
    """Hash-based Owen scrambling of a 32-bit fraction (pbrt-v4 ``FastOwenScrambler``,
    after Burley 2020, "Practical Hash-based Owen Scrambling", with N. Vegdahl's constants).

    On the bit-reversed value every step (adding, multiplying by an odd number, xor with a
    multiple of itself) changes a bit only as a function of the bits below it, i.e. each
    bit of the fraction is flipped as a function of the bits above it and the seed: a
    nested (Owen) scramble, which keeps every base-2 stratification of a point set.
    """
    v = reverse_bits32(v)
    v ^= (v * 0x3D20ADEA) & MASK32
    v = (v + seed) & MASK32
    v = (v * ((seed >> 16) | 1)) & MASK32
    v ^= (v * 0x05526C56) & MASK32
    v ^= (v * 0x53A22864) & MASK32
    return reverse_bits32(v)


def _sobol_dim1_tables() -> np.ndarray:
    """(4, 256) tables: entry [b, x] is the xor of the direction numbers v_{8b+k} of Sobol
    dimension 1 over the bits k of x, so that a 32-bit index needs four lookups."""
    v = np.empty(32, np.int64)
    v[0] = 1 << 31
    for k in range(1, 32):
        v[k] = v[k - 1] ^ (v[k - 1] >> 1)
    t = np.zeros((4, 256), np.int64)
    for b in range(4):
        for x in range(256):
            for k in range(8):
                if x >> k & 1:
                    t[b, x] ^= v[8 * b + k]
    return t


#: Sobol dimension 1 by bytes of the index (a module constant: frozen into the kernels)
SOBOL_DIM1 = _sobol_dim1_tables()


@njit(cache=True, inline="always")
def sobol_2d(i: int, dim: int) -> int:
    """Dimension 0 or 1 of the Sobol sequence at index i, as a 32-bit fraction.

    Dimension 0 is van der Corput's radical inverse (the bits of i reversed); dimension 1
    has the direction numbers of the primitive polynomial x + 1, v_1 = 1/2 and
    v_{k+1} = v_k xor v_k / 2 (the Pascal matrix mod 2), applied a byte of i at a time
    (:data:`SOBOL_DIM1`). Together the first 2^m points (and every aligned block of 2^m)
    form a (0, m, 2)-net.
    """
    if dim == 0:
        return reverse_bits32(i)
    t = SOBOL_DIM1
    return (t[0, i & 0xFF] ^ t[1, (i >> 8) & 0xFF] ^ t[2, (i >> 16) & 0xFF]
            ^ t[3, (i >> 24) & 0xFF])


@njit(cache=True, inline="always")
def sobol_pair(seed: int, pixel: int, sample: int, dim: int) -> tuple[float, float]:
    """Dimensions (dim, dim + 1), dim even, of a pixel's sample: padded, shuffled,
    Owen-scrambled Sobol (pbrt-v4 ``PaddedSobolSampler``; Burley 2020).

    Dimensions are used in pairs (2j, 2j + 1); each pair of each pixel draws the 2-D Sobol
    point at a scrambled sample index (so pairs are decorrelated from each other), each
    coordinate Owen-scrambled by its own seed. The samples 0 .. 2^m - 1 of one pixel are then
    stratified in every pair as a (0, m, 2)-net, whatever the seed.
    """
    h = lowbias32(seed * 0x9E3779B9 + 0x2545F491)
    h = lowbias32(h ^ (pixel & MASK32))
    h = lowbias32(h ^ ((pixel >> 32) & MASK32) ^ ((dim >> 1) * 0x85EBCA6B))
    idx = owen_scramble(sample & MASK32, h)
    x = owen_scramble(sobol_2d(idx, 0), lowbias32(h + 0xC2B2AE35))
    y = owen_scramble(sobol_2d(idx, 1), lowbias32(h + 2 * 0xC2B2AE35))
    return (x >> 8) * (1.0 / 16777216.0), (y >> 8) * (1.0 / 16777216.0)


@njit(cache=True, inline="always")
def sobol_uniform(seed: int, pixel: int, sample: int, dim: int) -> float:
    """Dimension ``dim`` alone (:func:`sobol_pair` of its pair)."""
    x, y = sobol_pair(seed, pixel, sample, dim & ~1)
    return y if dim & 1 else x


@njit(cache=True, inline="always")
def draw2(sampling: int, seed: int, key: int, dim: int) -> tuple[float, float]:
    """Dimensions (dim, dim + 1), dim even, of the path whose :func:`path_key` is ``key`` by
    the chosen ``sampling``: independent hashes (:func:`uniform_keyed`) or a Sobol pair
    (:func:`sobol_pair` of the key's pixel and sample, whose hash and shuffled index serve
    both numbers)."""
    if sampling == SOBOL:
        return sobol_pair(seed, key & MASK32, (key >> 32) & MASK32, dim)
    return uniform_keyed(key, dim), uniform_keyed(key, dim + 1)
