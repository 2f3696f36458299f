"""Closest hits of rays aimed at a closed mesh's shared edges, through the CUDA closest-hit
kernel (helper of tests/test_cuda.py).

    python -m tests.cuda_watertight OUT.npz

Writes the rays' distances to their targets and the kernel's hit distances and primitives.
Run with ``NUMBA_ENABLE_CUDASIM=1 NUMBA_DISABLE_JIT=1`` for the CUDA simulator. On a GPU
this is the check that the watertight test survives its compiler: a multiply-add fused into
an edge function lets rays slip between two triangles (tracer.geometry.rounded_product).
"""

from __future__ import annotations

import sys

import numpy as np


def edge_rays(offset: tuple[float, float, float] = (123.4, -56.7, 89.1),
              scale: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A closed mesh (an icosphere of 320 triangles, moved and scaled) and rays from inside
    it at its vertices and at points along every shared edge: (triangles, origins,
    directions, distances to the targets)."""
    from tests.test_geometry import edge_points, icosphere, unit

    verts, faces = icosphere(2)
    off = np.array(offset)
    tv = verts[faces] * scale + off
    targets = edge_points(verts, faces) * scale + off
    rng = np.random.default_rng(3)
    origins = off + scale * 0.3 * rng.uniform(-1.0, 1.0, targets.shape)
    d = unit(targets - origins)
    return tv, origins, d, np.linalg.norm(targets - origins, axis=1)


def main(out: str) -> None:
    from tracer import kernels_cuda as KC
    from tracer.geometry import build_geometry

    tv, ro, rd, dist = edge_rays()
    g = build_geometry(np.zeros((0, 3)), np.zeros(0), tv)
    n = ro.shape[0]
    hit_t, hit_prim, hit_b = np.zeros(n), np.zeros(n, np.int64), np.zeros((n, 2))
    KC.intersect_closest(g, np.arange(n), ro, rd, hit_t, hit_prim, hit_b)
    np.savez(out, dist=dist, hit_t=hit_t, hit_prim=hit_prim)


if __name__ == "__main__":
    main(sys.argv[1])
