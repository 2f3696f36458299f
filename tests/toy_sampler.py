"""A sampler written only here, to show that a new sampler runs on both back-ends unchanged.

Cosine-weighted directions about +y (the upper hemisphere), :math:`p(\\omega) = \\cos\\theta / \\pi`:
its module defines a tables ``NamedTuple`` and two per-entry functions and registers them,
exactly as ``tracer/samplers/uniform.py`` does; neither back-end is edited.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from tracer.envmap import EnvMap, env_lookup, world_dir_to_map_uv
from tracer.light_dispatch import register_light
from tracer.samplers.base import TabulatedSampler


class CosineTables(NamedTuple):
    scale: np.ndarray  # (1,) a factor on the density, 1 for the true one (tests plant others)


@njit(cache=True, inline="always")
def sample_at(
    k: int, t: Any, rgb: np.ndarray, rot_u: float, u: np.ndarray,
    wi: np.ndarray, pdf: np.ndarray, le: np.ndarray,
) -> None:
    r = math.sqrt(u[k, 0])
    phi = 2.0 * math.pi * u[k, 1]
    y = math.sqrt(max(0.0, 1.0 - u[k, 0]))
    x, z = r * math.cos(phi), r * math.sin(phi)
    wi[k, 0], wi[k, 1], wi[k, 2] = x, y, z
    pdf[k] = t.scale[0] * y / math.pi
    mu, mv = world_dir_to_map_uv(x, y, z, rot_u)
    le[k, 0], le[k, 1], le[k, 2] = env_lookup(rgb, mu, mv)


@njit(cache=True, inline="always")
def pdf_at(k: int, t: Any, rot_u: float, wi: np.ndarray, out: np.ndarray) -> None:
    out[k] = t.scale[0] * max(0.0, wi[k, 1]) / math.pi


register_light(CosineTables, sample_at, pdf_at)


class CosineSampler(TabulatedSampler):
    name = "cosine"

    def __init__(self, env: EnvMap, scale: float = 1.0) -> None:
        self.env = env
        self.tables = CosineTables(np.array([scale]))


if __name__ == "__main__":  # python -m tests.toy_sampler OUT.npz: the CUDA back-end's samples
    import sys

    from tracer.backend import make_backend
    from tracer.envmap import one_hot_map

    be = make_backend("cuda")
    s = CosineSampler(EnvMap(one_hot_map(4, 8, 1, 3, 5.0), rot_u=0.2))
    u = np.random.default_rng(1).random((256, 2))
    from numba import cuda

    ls = s.sample(cuda.to_device(u), be)
    p = s.pdf(ls.wi, be)
    np.savez(sys.argv[1], wi=ls.wi.copy_to_host(), pdf=ls.pdf.copy_to_host(), le=ls.le.copy_to_host(),
             p=p.copy_to_host())
