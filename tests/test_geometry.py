"""Tests of tracer.geometry: the BVH against brute force, watertightness, edge cases."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from tracer.geometry import (
    LANES,
    STACK_SHAPE,
    WIDTH,
    Geometry,
    _children_scalar,
    _inv,
    _tri4_scalar,
    build_geometry,
    children_entry,
    intersect_sphere,
    intersect_triangle,
    nearest_in_block,
    ray_shear,
    trace,
    tri4_entry,
)

ROOT = Path(__file__).resolve().parents[1]
NO_SPHERES = (np.zeros((0, 3)), np.zeros(0))
NO_TRIANGLES = np.zeros((0, 3, 3))


def unit(v: np.ndarray) -> np.ndarray:
    """Rows of ``v`` scaled to unit length."""
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def cast(
    g: Geometry, o: np.ndarray, d: np.ndarray, tmax: float = math.inf, any_hit: bool = False
) -> tuple[float, int]:
    """(t, prim) of one ray through the BVH."""
    stack = np.empty(STACK_SHAPE)
    t, p, _, _ = trace(g, *map(float, o), *map(float, d), tmax, any_hit, stack)
    return t, p


# ---------------------------------------------------------------- independent reference


def ref_sphere_t(c: np.ndarray, r: np.ndarray, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(N, S) smallest positive root of |o + t d - c| = r per ray and sphere, inf if none."""
    f = o[:, None, :] - c[None, :, :]
    b = np.einsum("nsk,nk->ns", f, d)
    cc = np.einsum("nsk,nsk->ns", f, f) - r[None, :] ** 2
    disc = b * b - cc
    sq = np.sqrt(np.maximum(disc, 0.0))
    t0, t1 = -b - sq, -b + sq
    t = np.where(t0 > 0, t0, np.where(t1 > 0, t1, np.inf))
    return np.where(disc >= 0, t, np.inf)


def ref_triangle_t(tv: np.ndarray, o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(N, T) Moller-Trumbore hit distance per ray and triangle, inf if none."""
    e1 = tv[:, 1] - tv[:, 0]
    e2 = tv[:, 2] - tv[:, 0]
    pv = np.cross(d[:, None, :], e2[None])
    det = np.einsum("tk,ntk->nt", e1, pv)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / det
        s = o[:, None, :] - tv[None, :, 0]
        u = np.einsum("ntk,ntk->nt", s, pv) * inv
        q = np.cross(s, e1[None])
        v = np.einsum("nk,ntk->nt", d, q) * inv
        t = np.einsum("tk,ntk->nt", e2, q) * inv
    ok = (det != 0) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    return np.where(ok, t, np.inf)


def ref_all_t(
    sc: np.ndarray, sr: np.ndarray, tv: np.ndarray, o: np.ndarray, d: np.ndarray
) -> np.ndarray:
    """(N, S + T) hit distance of every ray on every primitive, in primitive-id order."""
    return np.concatenate([ref_sphere_t(sc, sr, o, d), ref_triangle_t(tv, o, d)], axis=1)


def lib_brute(
    sc: np.ndarray, sr: np.ndarray, tv: np.ndarray, o: np.ndarray, d: np.ndarray
) -> tuple[float, int]:
    """Closest hit over every primitive with the library's own primitive tests (no BVH)."""
    best_t, best_p = math.inf, -1
    ox, oy, oz = map(float, o)
    dx, dy, dz = map(float, d)
    for i in range(len(sr)):
        t = intersect_sphere(*map(float, sc[i]), float(sr[i]), ox, oy, oz, dx, dy, dz, 0.0, best_t)
        if 0.0 < t < best_t:
            best_t, best_p = t, i
    for k in range(len(tv)):
        t, _, _ = intersect_triangle(tv[k], ox, oy, oz, dx, dy, dz, best_t)
        if 0.0 < t < best_t:
            best_t, best_p = t, len(sr) + k
    return best_t, best_p


# ---------------------------------------------------------------- scenes


def random_scene(
    seed: int, n_sph: int = 40, n_tri: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sc = rng.uniform(-5, 5, (n_sph, 3))
    sr = rng.uniform(0.2, 1.0, n_sph)
    cen = rng.uniform(-5, 5, (n_tri, 1, 3))
    tv = cen + rng.normal(0, 0.7, (n_tri, 3, 3))
    return sc, sr, tv


def random_rays(
    seed: int, sc: np.ndarray, tv: np.ndarray, n: int = 400
) -> tuple[np.ndarray, np.ndarray]:
    """Half the rays aimed at primitives (many hits), half in random directions."""
    rng = np.random.default_rng(seed)
    o = rng.uniform(-8, 8, (n, 3))
    targets = np.concatenate([sc, tv.mean(axis=1)])
    aim = targets[rng.integers(0, len(targets), n // 2)] - o[: n // 2]
    d = unit(np.concatenate([aim, rng.normal(size=(n - n // 2, 3))]))
    return o, d


def icosphere(levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) on the unit sphere and faces (F, 3), outward winding, shared vertices."""
    p = (1 + 5**0.5) / 2
    verts = [
        (-1, p, 0), (1, p, 0), (-1, -p, 0), (1, -p, 0),
        (0, -1, p), (0, 1, p), (0, -1, -p), (0, 1, -p),
        (p, 0, -1), (p, 0, 1), (-p, 0, -1), (-p, 0, 1),
    ]  # fmt: skip
    faces = [
        (0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11),
        (1, 5, 9), (5, 11, 4), (11, 10, 2), (10, 7, 6), (7, 1, 8),
        (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8), (3, 8, 9),
        (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1),
    ]  # fmt: skip
    v = [np.array(x, np.float64) / np.linalg.norm(x) for x in verts]
    for _ in range(levels):
        mid: dict[tuple[int, int], int] = {}

        def midpoint(a: int, b: int, v=v, mid=mid) -> int:
            key = (min(a, b), max(a, b))
            if key not in mid:
                m = v[a] + v[b]
                v.append(m / np.linalg.norm(m))
                mid[key] = len(v) - 1
            return mid[key]

        new = []
        for a, b, c in faces:
            ab, bc, ca = midpoint(a, b), midpoint(b, c), midpoint(c, a)
            new += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        faces = new
    return np.array(v), np.array(faces, np.int64)


def edge_points(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Every vertex, and points at several fractions along every shared edge."""
    edges = {tuple(sorted((int(f[i]), int(f[(i + 1) % 3])))) for f in faces for i in range(3)}
    e = np.array(sorted(edges))
    a, b = verts[e[:, 0]], verts[e[:, 1]]
    fr = np.array([0.5, 0.25, 1 / 3, 0.1, 0.9])
    on_edges = (a[:, None, :] + fr[None, :, None] * (b - a)[:, None, :]).reshape(-1, 3)
    return np.concatenate([verts, on_edges])


# ---------------------------------------------------------------- BVH vs brute force


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closest_hit_matches_brute_force(seed: int) -> None:
    sc, sr, tv = random_scene(seed)
    g = build_geometry(sc, sr, tv)
    o, d = random_rays(seed + 100, sc, tv)
    ref = ref_all_t(sc, sr, tv, o, d)
    ref_p = np.where(np.isfinite(ref.min(axis=1)), ref.argmin(axis=1), -1)
    ref_t = ref.min(axis=1)
    n_hits = 0
    for k in range(len(o)):
        t, p = cast(g, o[k], d[k])
        lt, lp = lib_brute(sc, sr, tv, o[k], d[k])
        # the BVH finds exactly what the same primitive tests find over all primitives ...
        assert (p, t) == (lp, lt), k
        # ... which is what an independent Moller-Trumbore / quadratic reference finds
        assert p == ref_p[k], (k, t, ref_t[k])
        if p >= 0:
            n_hits += 1
            assert t > 0.0
            assert t == pytest.approx(ref_t[k], rel=1e-9, abs=1e-12)
        else:
            assert t == math.inf
    assert n_hits > len(o) // 3  # the test exercises hits, not just misses
    assert (ref_p < len(sr)).sum() > 20 and (ref_p >= len(sr)).sum() > 20  # both kinds


@pytest.mark.parametrize("seed", [3, 4])
def test_any_hit_agrees_with_brute_force(seed: int) -> None:
    sc, sr, tv = random_scene(seed)
    g = build_geometry(sc, sr, tv)
    o, d = random_rays(seed + 100, sc, tv)
    ref = ref_all_t(sc, sr, tv, o, d)
    ref_t = ref.min(axis=1)
    for k in range(len(o)):
        tmaxes = (
            [math.inf] if not np.isfinite(ref_t[k]) else [math.inf, 1.5 * ref_t[k], 0.5 * ref_t[k]]
        )
        for tmax in tmaxes:
            t, p = cast(g, o[k], d[k], tmax, any_hit=True)
            assert (p >= 0) == (ref_t[k] < tmax), (k, tmax)
            if p >= 0:
                # a genuine hit of that primitive, inside (0, tmax)
                assert 0.0 < t < tmax
                assert t == pytest.approx(ref[k, p], rel=1e-9)
            else:
                assert t == tmax


def test_closest_hit_respects_tmax() -> None:
    sc, sr, tv = random_scene(5)
    g = build_geometry(sc, sr, tv)
    o, d = random_rays(105, sc, tv, n=200)
    ref_t = ref_all_t(sc, sr, tv, o, d).min(axis=1)
    for k in np.flatnonzero(np.isfinite(ref_t)):
        assert cast(g, o[k], d[k], 0.5 * ref_t[k])[1] == -1
        assert cast(g, o[k], d[k], 2.0 * ref_t[k])[0] == pytest.approx(ref_t[k], rel=1e-9)


# ---------------------------------------------------------------- watertightness


@pytest.mark.parametrize("offset,scale", [((0.0, 0.0, 0.0), 1.0), ((123.4, -56.7, 89.1), 10.0)])
def test_closed_mesh_is_watertight(offset: tuple[float, float, float], scale: float) -> None:
    verts, faces = icosphere(3)  # 1280 triangles, every edge shared by two
    targets = edge_points(verts, faces)  # on the unit sphere's polyhedron, before transform
    off = np.array(offset)
    tv = verts[faces] * scale + off
    g = build_geometry(*NO_SPHERES, tv)
    rng = np.random.default_rng(7)
    misses = 0
    wrong_t = 0
    n = 0
    for p_unit in targets:
        p = p_unit * scale + off
        origins = [
            off,  # from the centre
            off + scale * np.array([0.1, -0.2, 0.05]),  # from elsewhere inside
            # from outside, through the target point and on into the solid
            p + scale * ((1.0 + rng.uniform()) * p_unit + 0.3 * unit(rng.normal(size=3))),
        ]
        for o in origins:
            d = unit(p - o)
            t, prim = cast(g, o, d)
            n += 1
            if prim < 0:
                misses += 1
            elif abs(t - np.linalg.norm(p - o)) > 1e-9 * scale:
                wrong_t += 1
    assert n > 20000
    assert misses == 0
    assert wrong_t == 0


def test_triangle_grid_is_watertight() -> None:
    # a jittered height field: quads split into two triangles sharing their diagonal and edges
    rng = np.random.default_rng(11)
    nx = 12
    xs, ys = np.meshgrid(
        np.arange(nx + 1, dtype=float), np.arange(nx + 1, dtype=float), indexing="ij"
    )
    zs = rng.uniform(-0.3, 0.3, xs.shape)
    verts = np.stack([xs, ys, zs], -1).reshape(-1, 3)
    idx = np.arange((nx + 1) ** 2).reshape(nx + 1, nx + 1)
    faces = []
    for i in range(nx):
        for j in range(nx):
            a, b, c, e = idx[i, j], idx[i + 1, j], idx[i + 1, j + 1], idx[i, j + 1]
            faces += [(a, b, c), (a, c, e)]
    faces = np.array(faces)
    g = build_geometry(*NO_SPHERES, verts[faces])
    pts = edge_points(verts, faces)
    inner = pts[(pts[:, 0] > 0) & (pts[:, 0] < nx) & (pts[:, 1] > 0) & (pts[:, 1] < nx)]
    misses = 0
    for p in inner:
        for side in (1.0, -1.0):
            dirs = unit(np.concatenate([rng.normal(0, 0.6, (3, 2)), np.ones((3, 1))], 1))
            dirs = np.concatenate([dirs, [[0.0, 0.0, 1.0]]])  # and one straight along z
            for w in dirs:
                o = p + side * 3.0 * w
                _, prim = cast(g, o, -side * w)
                misses += prim < 0
    assert len(inner) > 1000
    assert misses == 0


# ---------------------------------------------------------------- special rays


AXES = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1), (1, 1, 0), (0, -1, 1)]


@pytest.mark.parametrize("axis", AXES)
def test_axis_parallel_rays_match_brute_force(axis: tuple[int, int, int]) -> None:
    sc, sr, tv = random_scene(6)
    g = build_geometry(sc, sr, tv)
    rng = np.random.default_rng(8)
    d = unit(np.array([axis], float))[0]
    assert np.count_nonzero(d == 0.0) >= 1
    o = rng.uniform(-8, 8, (300, 3))
    o = o - 14.0 * d  # start well back, looking into the scene
    ref = ref_all_t(sc, sr, tv, o, np.broadcast_to(d, o.shape))
    ref_t = ref.min(axis=1)
    hits = 0
    for k in range(len(o)):
        t, p = cast(g, o[k], d)
        assert (p >= 0) == np.isfinite(ref_t[k]), k
        if p >= 0:
            hits += 1
            assert p == ref.argmin(axis=1)[k]
            assert t == pytest.approx(ref_t[k], rel=1e-9)
    assert hits > 30


def test_axis_parallel_rays_through_a_closed_mesh() -> None:
    verts, faces = icosphere(2)
    g = build_geometry(*NO_SPHERES, verts[faces])
    grid = np.linspace(-0.85, 0.85, 23)
    for a in range(3):
        for sign in (1.0, -1.0):
            for u in grid:
                for v in grid:
                    if u * u + v * v > 0.85**2:
                        continue
                    o = np.zeros(3)
                    o[a] = -5.0 * sign
                    o[(a + 1) % 3], o[(a + 2) % 3] = u, v
                    d = np.zeros(3)
                    d[a] = sign
                    t, p = cast(g, o, d)
                    assert p >= 0, (a, sign, u, v)
                    assert 3.9 < t < 5.0


def test_axis_parallel_ray_on_the_boundary_of_a_box() -> None:
    # a flat 4 x 4 grid of unit squares in z = 0; straight-down rays at its border vertices
    tris = []
    for i in range(4):
        for j in range(4):
            a, b, c, e = (i, j, 0), (i + 1, j, 0), (i + 1, j + 1, 0), (i, j + 1, 0)
            tris += [(a, b, c), (a, c, e)]
    tv = np.array(tris, float)
    g = build_geometry(*NO_SPHERES, tv)
    down = np.array([0.0, 0.0, -1.0])
    missed = []
    for x, y in [(0, 0), (0, 2), (2, 0), (4, 2), (2, 4), (4, 4), (0, 4), (4, 0)]:
        o = np.array([x, y, 5.0])
        assert lib_brute(*NO_SPHERES, tv, o, down)[0] == 5.0  # the triangle test is inclusive
        if cast(g, o, down)[1] < 0:
            missed.append((x, y))
    assert missed == []  # got [(4, 2), (2, 4), (4, 4), (0, 4), (4, 0)]: every max-side point


# ---------------------------------------------------------------- spheres, t > 0


def test_sphere_from_inside_returns_the_far_root() -> None:
    rng = np.random.default_rng(9)
    c = np.array([[1.0, -2.0, 0.5]])
    r = np.array([2.0])
    g = build_geometry(c, r, NO_TRIANGLES)
    for _ in range(200):
        o = c[0] + unit(rng.normal(size=3)) * rng.uniform(0, 1.9)
        d = unit(rng.normal(size=3))
        t, p = cast(g, o, d)
        assert p == 0
        assert np.linalg.norm(o + t * d - c[0]) == pytest.approx(2.0, rel=1e-12)
        assert float(np.dot(o + t * d - c[0], d)) > 0  # leaving the sphere: the far root
        b = float(np.dot(o - c[0], d))
        far = -b + math.sqrt(b * b - (float(np.dot(o - c[0], o - c[0])) - 4.0))
        assert t == pytest.approx(far, rel=1e-12)
    # from the centre exactly
    assert cast(g, c[0], np.array([0.0, 1.0, 0.0])) == (pytest.approx(2.0), 0)


def test_hits_are_never_at_t_le_zero() -> None:
    sc, sr, tv = random_scene(10, n_sph=30, n_tri=100)
    g = build_geometry(sc, sr, tv)
    rng = np.random.default_rng(12)
    # origins exactly on primitives (vertices, triangle interiors, sphere surfaces) and behind
    starts = [tv[:, 0], tv.mean(axis=1), sc + sr[:, None] * unit(rng.normal(size=(len(sc), 3)))]
    for o_all in starts:
        for o in o_all:
            for d in unit(rng.normal(size=(4, 3))):
                for any_hit in (False, True):
                    t, p = cast(g, o, d, any_hit=any_hit)
                    assert (p < 0 and t == math.inf) or t > 0.0
    # rays pointing away from everything (all primitives lie behind the origin)
    for d in unit(rng.normal(size=(50, 3))):
        t, p = cast(g, d * 100.0, d)
        assert p == -1 and t == math.inf


def test_triangle_behind_the_origin_is_not_hit() -> None:
    tv = np.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    g = build_geometry(*NO_SPHERES, tv)
    assert cast(g, (0.2, 0.2, 1.0), (0.0, 0.0, -1.0)) == (1.0, 0)
    assert cast(g, (0.2, 0.2, 1.0), (0.0, 0.0, 1.0))[1] == -1
    assert cast(g, (0.2, 0.2, 0.0), (0.0, 0.0, 1.0))[1] == -1  # origin on the triangle
    assert cast(g, (0.2, 0.2, 1.0), (0.0, 0.0, -1.0), tmax=0.5)[1] == -1


# ---------------------------------------------------------------- empty scene

_EMPTY_SCENE_SCRIPT = textwrap.dedent(
    """
    import math, sys
    import numpy as np
    from tracer.geometry import STACK_SHAPE, build_geometry, trace
    g = build_geometry(np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3, 3)))
    stack = np.empty(STACK_SHAPE)
    rng = np.random.default_rng(0)
    d = rng.normal(size=(100, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d = np.concatenate([d, np.eye(3), -np.eye(3)])
    print("ready", flush=True)
    bad = 0
    for k in range(len(d)):
        for any_hit in (False, True):
            t, p, _, _ = trace(g, 0.0, 0.0, 0.0, d[k, 0], d[k, 1], d[k, 2], 10.0, any_hit, stack)
            bad += p != -1 or t != 10.0
    print("bad", bad, flush=True)
    """
)


def test_empty_scene_misses_everything() -> None:
    # run in a child process: the bug makes trace() spin forever (holding the GIL)
    proc = subprocess.Popen(
        [sys.executable, "-c", _EMPTY_SCENE_SCRIPT],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"  # imports and compile done
        out, err = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("trace() on an empty scene did not return within 5 s")
    assert proc.returncode == 0, err
    assert out.strip() == "bad 0"


# ---------------------------------------------------------------- the CPU's vector slab test


@njit
def _both_slab_tests(
    box: np.ndarray, node: np.ndarray, o: np.ndarray, d: np.ndarray, tmax: np.ndarray,
    vec: np.ndarray, scalar: np.ndarray,
) -> None:
    """Entry t of each ray into its node's four children, by the CPU's vector test and the scalar one."""
    for k in range(o.shape[0]):
        ix, iy, iz = _inv(d[k, 0]), _inv(d[k, 1]), _inv(d[k, 2])
        ox, oy, oz, n, t = o[k, 0], o[k, 1], o[k, 2], node[k], tmax[k]
        # the CPU's children_entry is tracer.simd.slab4
        vec[k, 0], vec[k, 1], vec[k, 2], vec[k, 3] = children_entry(box, n, ox, oy, oz, ix, iy, iz, t)
        sc = _children_scalar(box, n, ox, oy, oz, ix, iy, iz, t)
        scalar[k, 0], scalar[k, 1], scalar[k, 2], scalar[k, 3] = sc


def test_vector_slab_test_equals_the_scalar_one_bit_for_bit() -> None:
    # every node of a real tree (empty slots included), rays from inside, outside and on
    # the boxes' faces, directions with zero components (inverse BIG), finite and infinite tmax
    rng = np.random.default_rng(11)
    tv = rng.normal(size=(300, 1, 3)) * 3 + rng.normal(size=(300, 3, 3)) * 0.3
    g = build_geometry(*NO_SPHERES, tv)
    m = g.node_box.shape[0]
    n = 20000
    node = rng.integers(0, m, n)
    j = rng.integers(0, WIDTH, n)
    lo = g.node_box[node, np.arange(3)[:, None] * WIDTH + j].T
    hi = g.node_box[node, (3 + np.arange(3))[:, None] * WIDTH + j].T
    o = rng.normal(size=(n, 3)) * 4
    real = g.node_child[node, WIDTH + j] >= 0  # slot j holds a child (not an empty slot)
    inside = (rng.random(n) < 0.3) & real
    o[inside] = (lo + (hi - lo) * rng.random((n, 3)))[inside]
    face = (rng.random(n) < 0.2) & real  # the origin on a face of the box
    axis = rng.integers(0, 3, n)
    on_face = np.where(rng.random((n, 1)) < 0.5, lo, hi)
    o[face, axis[face]] = on_face[face, axis[face]]
    d = unit(rng.normal(size=(n, 3)))
    aim = (rng.random(n) < 0.4) & real & ~inside  # toward a point of slot j's box
    d[aim] = unit((lo + (hi - lo) * rng.random((n, 3)) - o)[aim])
    zero = rng.random((n, 3)) < 0.15
    d[zero] = 0.0
    d[np.all(d == 0.0, axis=1), 0] = 1.0
    tmax = np.where(rng.random(n) < 0.5, np.inf, rng.random(n) * 8)
    vec, scalar = np.empty((n, 4)), np.empty((n, 4))
    _both_slab_tests(g.node_box, node, o, d, tmax, vec, scalar)
    assert np.array_equal(vec, scalar)
    entered = np.isfinite(scalar)
    assert 0.05 < entered.mean() < 0.95  # both outcomes well represented
    assert np.array_equal(np.signbit(vec), np.signbit(scalar))
    empty = g.node_child[node, WIDTH:2 * WIDTH] < 0
    assert empty.any() and not entered[empty].any()  # empty slots are never entered


# ---------------------------------------------------------------- triangle blocks


def test_leaves_hold_every_primitive_once_with_their_triangles_in_blocks() -> None:
    sc, sr, tv = random_scene(5, n_sph=30, n_tri=500)
    g = build_geometry(sc, sr, tv)
    S, W = len(sr), WIDTH
    ch = g.node_child
    leaf = ch[:, W:2 * W] > 0
    assert leaf.any() and (ch[:, W:2 * W] == 0).any()  # leaves and interior children
    first, n_blk = ch[:, :W][leaf], ch[:, 2 * W:3 * W][leaf]
    sph0, n_s = ch[:, 3 * W:4 * W][leaf], ch[:, 4 * W:][leaf]
    # the leaves' block ranges tile the blocks, their sphere ranges hold spheres only
    spans = sorted(zip(first, first + n_blk, strict=True))
    assert spans[0][0] == 0 and spans[-1][1] == len(g.tri4_v)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    for a, n in zip(sph0, n_s, strict=True):
        assert (g.prim_order[a:a + n] < S).all()
    # every lane in use holds one triangle, with that triangle's vertices
    ids = g.tri4_id.ravel()
    used = ids >= 0
    assert np.array_equal(np.sort(ids[used]), np.arange(S, S + len(tv)))
    lanes = g.tri4_v.reshape(-1, 3, 3, LANES).transpose(0, 3, 1, 2).reshape(-1, 3, 3)
    assert np.array_equal(lanes[used], tv[ids[used] - S])
    # unused lanes: NaN coordinates (t is NaN, never a hit, even where a GPU fuses the edge
    # functions' products into multiply-adds, which would hit a degenerate triangle)
    assert np.isnan(lanes[~used]).all()
    # a leaf's count is its spheres plus the triangles of its blocks
    tris = [(g.tri4_id[f:f + n] >= 0).sum() for f, n in zip(first, n_blk, strict=True)]
    assert np.array_equal(ch[:, W:2 * W][leaf], n_s + np.array(tris))
    # only the last block of a leaf has unused lanes
    for f, n in zip(first, n_blk, strict=True):
        assert (g.tri4_id[f:f + n - 1] >= 0).all()
    assert np.array_equal(np.sort(g.prim_order), np.arange(S + len(tv)))


@njit
def _both_block_tests(v4, blk, o, d, tmax, vec, scalar):
    """The twelve outputs of each ray's block test, by the CPU's vector test and the scalar one."""
    for k in range(o.shape[0]):
        r = ray_shear(o[k, 0], o[k, 1], o[k, 2], d[k, 0], d[k, 1], d[k, 2])
        vec[k] = tri4_entry(v4, blk[k], r, tmax[k])  # the CPU's tri4_entry is tracer.simd.tri4
        scalar[k] = _tri4_scalar(v4, blk[k], r, tmax[k])


def test_vector_triangle_test_equals_the_scalar_one_bit_for_bit() -> None:
    # the blocks of a real tree (unused lanes included); rays aimed at a lane's vertices,
    # edges and inside, from both sides; rays along the axes; finite and infinite tmax
    rng = np.random.default_rng(12)
    _, _, tv = random_scene(6, n_sph=0, n_tri=300)
    g = build_geometry(*NO_SPHERES, tv)
    v = g.tri4_v.reshape(-1, 3, 3, LANES)  # (block, vertex, axis, lane)
    n = 30000
    blk = rng.integers(0, len(v), n)
    lane = rng.integers(0, LANES, n)
    tri = v[blk, :, :, lane]  # (n, 3, 3)
    w = rng.dirichlet(np.ones(3), n)
    kind = rng.integers(0, 3, n)
    w[kind == 1, rng.integers(0, 3, n)[kind == 1]] = 0.0  # on an edge
    w[kind == 2] = np.eye(3)[rng.integers(0, 3, (kind == 2).sum())]  # at a vertex
    w /= w.sum(axis=1, keepdims=True)
    target = np.einsum("nv,nva->na", w, tri)
    o = target + rng.normal(size=(n, 3)) * 3
    d = unit(target - o)
    axial = rng.random(n) < 0.1
    d[axial] = np.eye(3)[rng.integers(0, 3, axial.sum())] * rng.choice([-1, 1], (axial.sum(), 1))
    miss = rng.random(n) < 0.2
    d[miss] = -d[miss]  # the triangle behind the origin
    tmax = np.where(rng.random(n) < 0.5, np.inf, rng.random(n) * 6)
    vec, scalar = np.empty((n, 12)), np.empty((n, 12))
    _both_block_tests(g.tri4_v, blk, o, d, tmax, vec, scalar)
    assert np.array_equal(vec, scalar)
    assert np.array_equal(np.signbit(vec), np.signbit(scalar))
    hit = np.isfinite(vec[:, :4])
    assert 0.1 < hit[np.arange(n), lane].mean() < 0.9  # both outcomes well represented
    assert not hit[g.tri4_id[blk] < 0].any()  # unused lanes are never hit
    assert (vec[:, :4][hit] > 0).all() and (vec[:, :4] < tmax[:, None])[hit].all()


@njit
def _nearest(v4, o, d):
    r = ray_shear(o[0], o[1], o[2], d[0], d[1], d[2])
    return nearest_in_block(v4, 0, r, math.inf)


def test_nearest_in_block_takes_the_nearest_lane_and_the_first_of_a_tie() -> None:
    near = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    far = near + [0.0, 0.0, 1.0]
    o, d = np.array([0.2, 0.3, 0.0]), np.array([0.0, 0.0, 1.0])
    for lanes, lane in (((far, near, far, near), 1), ((far, far, far, near), 3),
                        ((near, far, near, far), 0), ((far, far, near, near), 2)):
        v4 = np.stack(lanes, axis=-1).reshape(1, 36)
        t, k, b1, b2 = _nearest(v4, o, d)
        assert (t, k) == (1.0, lane)
        assert b1 == pytest.approx(0.2) and b2 == pytest.approx(0.3)  # vertex 1's, vertex 2's
    t, k, _, _ = _nearest(np.full((1, 36), np.nan), o, d)  # four unused lanes
    assert t == math.inf


def test_children_are_stored_by_surface_area_the_largest_last() -> None:
    # the any-hit traversal visits the last entered slot first: the largest box
    _, _, tv = random_scene(7, n_sph=0, n_tri=800)
    g = build_geometry(*NO_SPHERES, tv)
    lo = g.node_box[:, :3 * WIDTH].reshape(-1, 3, WIDTH)
    hi = g.node_box[:, 3 * WIDTH:].reshape(-1, 3, WIDTH)
    e = hi - lo
    area = 2 * (e[:, 0] * e[:, 1] + e[:, 1] * e[:, 2] + e[:, 2] * e[:, 0])
    real = g.node_child[:, WIDTH:2 * WIDTH] >= 0
    assert real.sum() > 3 * len(area)  # mostly full nodes
    for a, r in zip(area, real, strict=True):
        # (the stored boxes are one ulp wider than the ones sorted: ties may come out either way)
        assert np.all(np.diff(a[r]) >= -1e-12 * a[r][1:])


def test_a_leaf_larger_than_max_leaf_is_tested_in_all_its_blocks() -> None:
    # 13 triangles with one bounding box, (-1, -1) - (1, 1): the builder cannot split equal
    # centroids, so they make one leaf of 13 (four blocks). Triangle k has its apex at
    # (x_k, 1), and the point (0.975 x_k, 0.95) lies in it alone
    n = 13
    x = np.linspace(-1.0, 1.0, n)
    tv = np.zeros((n, 3, 3))
    tv[:, 0, :2] = -1.0, -1.0
    tv[:, 1, :2] = 1.0, -1.0
    tv[:, 2, 0], tv[:, 2, 1] = x, 1.0
    g = build_geometry(*NO_SPHERES, tv)
    assert (g.node_child[:, WIDTH:2 * WIDTH] == n).sum() == 1 and len(g.tri4_v) == 4
    for k in range(n):
        o = np.array([0.975 * x[k], 0.95, 1.0])
        for any_hit in (False, True):
            t, p = cast(g, o, np.array([0.0, 0.0, -1.0]), any_hit=any_hit)
            assert (p, t) == (k, pytest.approx(1.0))
