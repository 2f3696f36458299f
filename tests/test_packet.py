"""The packet traversal (:mod:`tracer.packet`, the kernel ``intersect_coherent`` that the
integrator runs on the camera rays) finds each ray's closest hit: the one-ray traversal's,
bit for bit, on scattered and on coherent rays, in scenes of every shape the tree takes
(empty, one leaf, spheres and triangles), for queues whose length is no multiple of a
packet; and through a closed mesh no ray of a packet slips between two triangles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.test_geometry import (
    NO_SPHERES,
    NO_TRIANGLES,
    edge_points,
    icosphere,
    lib_brute,
    random_rays,
    random_scene,
    unit,
)
from tracer import kernels as K
from tracer.geometry import Geometry, build_geometry, intersect_triangle
from tracer.packet import PACKET


def hits(kernel, g: Geometry, idx: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, ...]:
    """(t, prim, b) of the queued rays ``idx`` of (o, d) through ``kernel``."""
    n = idx.shape[0]
    t, prim, b = np.full(n, np.nan), np.full(n, -7, np.int64), np.full((n, 2), np.nan)
    kernel(g, idx, np.ascontiguousarray(o), np.ascontiguousarray(d), t, prim, b)
    return t, prim, b


def both(
    g: Geometry, idx: np.ndarray, o: np.ndarray, d: np.ndarray, ties: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """The packets' hits, asserted equal (bit for bit) to the one-ray traversal's. With the
    triangles ``ties`` (a mesh, rays aimed at its edges), two triangles hit at exactly the
    same t may each be the one kept (the leaves come in another order): then the t must
    be equal and each triangle hit at that t."""
    t, prim, b = hits(K.intersect_coherent, g, idx, o, d)
    t1, prim1, b1 = hits(K.intersect_closest, g, idx, o, d)
    np.testing.assert_array_equal(t, t1)
    same = prim == prim1
    if ties is not None:
        for k in np.flatnonzero(~same):
            ray = (*map(float, o[idx[k]]), *map(float, d[idx[k]]), math.inf)
            for q in (prim[k], prim1[k]):
                assert intersect_triangle(ties[q], *ray)[0] == t[k], (k, q)
        assert same.mean() > 0.98
    else:
        np.testing.assert_array_equal(prim, prim1)
    np.testing.assert_array_equal(b[same], b1[same])
    return t, prim, b


def bundles(seed: int, targets: np.ndarray, n_bundles: int, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """Coherent rays: bundles of PACKET rays, each from one origin towards one target, their
    directions jittered by ``spread`` (a camera's neighbouring pixels)."""
    rng = np.random.default_rng(seed)
    o = np.repeat(rng.uniform(-9, 9, (n_bundles, 3)), PACKET, axis=0)
    aim = np.repeat(targets[rng.integers(0, len(targets), n_bundles)], PACKET, axis=0)
    d = unit(aim - o + spread * rng.normal(size=o.shape))
    return o, d


@pytest.mark.parametrize("seed", [0, 1])
def test_packets_find_the_one_ray_traversals_hits(seed: int) -> None:
    sc, sr, tv = random_scene(seed)
    g = build_geometry(sc, sr, tv)
    # scattered rays and coherent bundles (tight and loose), 403 = no multiple of a packet
    # (the queue's tail is traced one by one) nor of the kernel's chunks
    o1, d1 = random_rays(seed + 200, sc, tv, n=403)
    targets = np.concatenate([sc, tv.mean(axis=1)])
    o2, d2 = bundles(seed + 300, targets, 40, 0.02)
    o3, d3 = bundles(seed + 400, targets, 40, 0.3)
    o, d = np.concatenate([o1, o2, o3]), np.concatenate([d1, d2, d3])
    # the queue in order (neighbours coherent), and a shuffled subset of it
    rng = np.random.default_rng(seed)
    for idx in (np.arange(len(o)), rng.permutation(len(o))[: len(o) - 37]):
        t, prim, _ = both(g, idx, o, d)
        assert (prim >= 0).mean() > 0.4  # the test exercises hits, not only misses
        assert ((prim >= 0) & (prim < len(sr))).sum() > 20 and (prim >= len(sr)).sum() > 20
    # and each is the closest over all primitives (the library's own tests, no tree)
    for k in range(0, len(idx), 7):
        lt, lp = lib_brute(sc, sr, tv, o[idx[k]], d[idx[k]])
        assert (prim[k], t[k]) == (lp, lt), k


@pytest.mark.parametrize("scene", ["empty", "one sphere", "one triangle", "four spheres"])
def test_packets_in_the_smallest_scenes(scene: str) -> None:
    """An empty scene, a root of one leaf (its box tested alone), a root of single spheres."""
    sc, sr = NO_SPHERES
    tv = NO_TRIANGLES
    if scene == "one sphere":
        sc, sr = np.array([[0.0, 0.0, 0.0]]), np.array([1.0])
    elif scene == "one triangle":
        tv = np.array([[[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 1.0, 0.0]]])
    elif scene == "four spheres":
        sc, sr = np.array([[0.0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5]]), np.full(4, 1.0)
    g = build_geometry(sc, sr, tv)
    rng = np.random.default_rng(5)
    o = np.repeat(rng.uniform(-6, 6, (30, 3)) + [0, 0, 8], PACKET, axis=0)
    d = unit(rng.normal(0, 0.6, o.shape) - o)
    t, prim, b = both(g, np.arange(len(o) - 3), o, d)
    for k in range(len(t)):
        lt, lp = lib_brute(sc, sr, tv, o[k], d[k])
        assert (prim[k], t[k]) == (lp, lt), k
    if scene == "empty":
        assert (prim == -1).all() and (t == math.inf).all() and (b == 0.0).all()
    else:
        assert 0 < (prim >= 0).sum() < len(prim)


def test_packets_do_not_slip_through_a_closed_mesh() -> None:
    """Packets aimed from outside at points along a mesh's shared edges (neighbouring targets
    in one packet, one origin a packet): every target its origin sees is hit, at its
    distance, and ties between the two triangles of an edge are the only differences from
    the one-ray traversal."""
    verts, faces = icosphere(3)
    tv = verts[faces]
    g = build_geometry(*NO_SPHERES, tv)
    p = edge_points(verts, faces)[len(verts):]  # points along edges, an edge's points in a row
    n = len(p) // PACKET * PACKET
    p = p[:n]
    # one origin a packet: outside the mesh, above the packet's targets
    o = np.repeat(3.0 * unit(p.reshape(-1, PACKET, 3).mean(axis=1)), PACKET, axis=0)
    t, prim, _ = both(g, np.arange(n), o, unit(p - o), ties=tv)
    assert n > 9000
    # a target the origin sees (the unit sphere's cap seen from 3 is where p.o > 1/3; the
    # polyhedron lies inside the sphere) is hit, and is the first surface on its ray
    seen = np.einsum("ij,ij->i", p, unit(o)) > 0.5
    assert seen.mean() > 0.9
    assert (prim[seen] >= 0).all()
    dist = np.linalg.norm(p - o, axis=1)
    np.testing.assert_allclose(t[seen], dist[seen], rtol=1e-12)
