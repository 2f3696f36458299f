"""Counter-based random numbers: the same stream on any backend, in any order.

Each number is a hash of (seed, path, sample, dimension), so a stage can draw the numbers it
needs without carrying generator state through the queues, renders are reproducible from
the seed alone, and a CUDA twin of a kernel draws exactly the same numbers as the CPU one.
The mixing function is Chris Wellons' ``lowbias32`` (hash-prospector); 32-bit products are
masked back to 32 bits, so the int64 arithmetic that Numba does is exact.
"""

from __future__ import annotations

from numba import njit

MASK32 = 0xFFFFFFFF
#: Random dimensions a path uses per bounce (light 2, BSDF 3, Russian roulette 1, spare 2).
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
def uniform(seed: int, path: int, sample: int, dim: int) -> float:
    """A uniform number in [0, 1) for (seed, path, sample, dimension)."""
    h = lowbias32(seed * 0x9E3779B9 + 0x632BE5AB)
    h = lowbias32(h ^ (path & MASK32))
    h = lowbias32(h ^ ((path >> 32) & MASK32) ^ (sample * 0x85EBCA6B))
    h = lowbias32(h + dim * 0xC2B2AE35)
    return (h >> 8) * (1.0 / 16777216.0)


@njit(cache=True, inline="always")
def bounce_dim(depth: int, k: int) -> int:
    """The dimension of the k-th number of a bounce at ``depth``."""
    return CAMERA_DIMS + depth * DIMS_PER_BOUNCE + k
