"""The packet traversal (:mod:`tracer.packet`, the kernel ``intersect_coherent`` that the
integrator runs on the camera rays) finds each ray's closest hit: the one-ray traversal's,
bit for bit, on scattered and on coherent rays, in scenes of every shape the tree takes
(empty, one leaf, spheres and triangles), for queues whose length is no multiple of a
packet; and through a closed mesh no ray of a packet slips between two triangles."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numba import njit

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
from tracer.geometry import WIDTH, Geometry, build_geometry, intersect_triangle
from tracer.packet import HIT, PACKET, PACKET_SHAPE, _packet_entry_scalar, packet_entry, set_ray
from tracer.pool import INDEX, STATE


def hits(kernel, g: Geometry, idx: np.ndarray, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, ...]:
    """(t, prim, b) of the queued rays ``idx`` of (o, d) through ``kernel`` (the primitive ids
    of idx's type, the barycentrics of d's)."""
    n = idx.shape[0]
    t, prim, b = np.full(n, np.nan), np.full(n, -7, idx.dtype), np.full((n, 2), np.nan, d.dtype)
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


@pytest.mark.parametrize("seed, render_types", [(0, False), (1, False), (0, True)])
def test_packets_find_the_one_ray_traversals_hits(seed: int, render_types: bool) -> None:
    """With ``render_types`` the queues are the render's: directions, barycentrics in float32
    (tracer.pool.STATE), path and primitive ids in int32; both traversals must widen the
    directions alike (Numba's ``float()`` of a float32 stays float32)."""
    sc, sr, tv = random_scene(seed)
    g = build_geometry(sc, sr, tv)
    # scattered rays and coherent bundles (tight and loose), 403 = no multiple of a packet
    # (the queue's tail is traced one by one) nor of the kernel's chunks
    o1, d1 = random_rays(seed + 200, sc, tv, n=403)
    targets = np.concatenate([sc, tv.mean(axis=1)])
    o2, d2 = bundles(seed + 300, targets, 40, 0.02)
    o3, d3 = bundles(seed + 400, targets, 40, 0.3)
    o, d = np.concatenate([o1, o2, o3]), np.concatenate([d1, d2, d3])
    if render_types:
        d = d.astype(STATE)
    # the queue in order (neighbours coherent), and a shuffled subset of it
    rng = np.random.default_rng(seed)
    for idx in (np.arange(len(o)), rng.permutation(len(o))[: len(o) - 37]):
        idx = idx.astype(INDEX if render_types else np.int64)
        t, prim, _ = both(g, idx, o, d)
        assert (prim >= 0).mean() > 0.4  # the test exercises hits, not only misses
        assert ((prim >= 0) & (prim < len(sr))).sum() > 20 and (prim >= len(sr)).sum() > 20
    # and each is the closest over all primitives (the library's own tests, no tree)
    for k in range(0, len(idx), 7):
        lt, lp = lib_brute(sc, sr, tv, o[idx[k]], d[idx[k]].astype(np.float64))
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


# ---------------------------------------------------------------- the CPU's packet node test


@njit
def _both_packet_tests(box: np.ndarray, node: np.ndarray, rays: np.ndarray, vec: np.ndarray,
                       scalar: np.ndarray) -> None:
    """Each packet (a (RAY_ROWS, PACKET) slice of ``rays``) against its node's children, by
    the CPU's vector test and by the loop of one-ray tests."""
    for k in range(node.shape[0]):
        ray = rays[k]
        # the CPU's packet_entry is tracer.simd.slab_packet
        (vec[k, 0], vec[k, 1], vec[k, 2], vec[k, 3],
         vec[k, 4], vec[k, 5], vec[k, 6], vec[k, 7]) = packet_entry(box, node[k], ray)
        (scalar[k, 0], scalar[k, 1], scalar[k, 2], scalar[k, 3],
         scalar[k, 4], scalar[k, 5], scalar[k, 6], scalar[k, 7]) = _packet_entry_scalar(box, node[k], ray)


@njit(error_model="numpy")  # IEEE division, as in the render's kernels
def _set_rays(rays: np.ndarray, o: np.ndarray, d: np.ndarray) -> None:
    for k in range(rays.shape[0]):
        for i in range(PACKET):
            set_ray(rays[k], i, o[k, i, 0], o[k, i, 1], o[k, i, 2], d[k, i, 0], d[k, i, 1], d[k, i, 2])


def test_vector_packet_test_equals_the_one_ray_tests() -> None:
    # every node of a real tree (empty slots included); packets of rays from one point (some
    # inside a child's box), others from scattered points, directions with zero components
    # (inverse BIG), finite and infinite nearest hits: the least entries and masks of the
    # vector test are those of the one-ray tests (tracer.simd.slab4) looped over the packet
    rng = np.random.default_rng(12)
    tv = rng.normal(size=(300, 1, 3)) * 3 + rng.normal(size=(300, 3, 3)) * 0.3
    g = build_geometry(*NO_SPHERES, tv)
    n = 4000
    node = rng.integers(0, g.node_box.shape[0], n)
    o = rng.normal(size=(n, PACKET, 3)) * 4
    shared = rng.random(n) < 0.5  # a camera's packet: one origin
    o[shared] = o[shared, :1]
    j = rng.integers(0, WIDTH, n)
    lo = g.node_box[node, np.arange(3)[:, None] * WIDTH + j].T
    hi = g.node_box[node, (3 + np.arange(3))[:, None] * WIDTH + j].T
    real = g.node_child[node, WIDTH + j] >= 0  # slot j holds a child (not an empty slot)
    inside = (rng.random(n) < 0.2) & real
    o[inside] = (lo + (hi - lo) * rng.random((n, 3)))[inside, None, :]
    d = unit(rng.normal(size=(n, PACKET, 3)))
    aim = (rng.random(n) < 0.5) & real  # toward points of slot j's box
    d[aim] = unit(lo[:, None, :] + (hi - lo)[:, None, :] * rng.random((n, PACKET, 3)) - o)[aim]
    d[rng.random((n, PACKET, 3)) < 0.1] = 0.0
    d[np.all(d == 0.0, axis=2), 0] = 1.0
    rays = np.empty((n, *PACKET_SHAPE))
    _set_rays(rays, o, d)
    rays[:, HIT] = np.where(rng.random((n, PACKET)) < 0.5, np.inf, rng.random((n, PACKET)) * 8)
    vec, scalar = np.empty((n, 8)), np.empty((n, 8))
    _both_packet_tests(g.node_box, node, rays, vec, scalar)
    assert np.array_equal(vec, scalar)
    masks = scalar[:, 4:].astype(np.int64)
    assert 0.1 < (masks != 0).mean() < 0.9  # children entered and children missed
    partial = (masks != 0) & (masks != (1 << PACKET) - 1)
    assert partial.mean() > 0.1  # packets that split at a child
