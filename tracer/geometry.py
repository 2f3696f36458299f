r"""Ray-primitive intersection and the BVH over spheres and triangles (Numba).

Primitives are numbered ``0 .. S-1`` for spheres and ``S .. S+T-1`` for triangles. The BVH
is built by binned SAH (Wald 2007, "On fast Construction of SAH-based Bounding Volume
Hierarchies"; pbrt-v4 ``aggregates.cpp``), collapsed into a 4-wide tree
(:func:`collapse_bvh4`) stored as flat arrays, and traversed front-to-back with an explicit
stack. The ray-triangle test is the watertight one of Woop, Benthin and Wald (JCGT 2(1),
2013) as in pbrt: no ray slips between two triangles that share an edge.
All geometry is float64. On the CPU a node's four slab tests run as one vector computation
(:mod:`tracer.simd`, Embree's single-ray node test), and a leaf's triangles are stored and
tested four at a time (Embree's ``Triangle4``), both with the scalar code's results.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit
from numba.extending import overload

from tracer.fsqrt import fsqrt
from tracer.simd import FAR_SCALE, TRI_ROW, slab4, tri4

#: deepest level of the binary build; the 4-wide tree is no deeper
MAX_DEPTH = 62
#: traversal stack entries: a 4-wide node pushes at most 3 of its children, so 3 per level
#: (and two to spare) never overflow
STACK_SIZE = 3 * MAX_DEPTH + 2
#: the traversal stack's shape and type, one row (child code, entry t) per entry; a code
#: (see _code: an integer of magnitude below 2^53) is held exactly in a float64
STACK_SHAPE = (STACK_SIZE, 2)
#: children of a node of the traversed tree
WIDTH = 4
#: triangles a leaf tests at once (:func:`tracer.simd.tri4`): a leaf's triangles are stored
#: in blocks of four, one per vector lane (Embree's ``Triangle4``)
LANES = 4
#: the largest leaf the binary build makes (primitives), when the SAH finds it no dearer
#: than a split. On the knot (bench_micro.py, closest / any hit, two threads, ns a ray):
#: 4: 129 / 51, 8: 117 / 48, 12: 119 / 49, 16: 121 / 48
MAX_LEAF = 8
#: columns of ``Geometry.node_child``: five groups of ``WIDTH``, per child slot
CHILD_COLS = 5 * WIDTH
BIG = 1e30
#: SAH cost of a node step of the binary build in units of one leaf test (a block of four
#: triangles since the eighth round). pbrt takes 1/8; with our scalar traversal a node step
#: costs about a watertight triangle test. With blocks (bench_micro.py, closest / any hit,
#: two threads, ns a ray): 0.5: 124 / 49, 1: 117 / 48, 2: 118 / 48. Before the blocks:
#: Measured on the knot (closest hit, ns per ray, benchmarks/bench_micro.py's rays): binary
#: tree 1/8: 270, 0.5: 260, 1: 255, 2: 248; after the 4-wide collapse 0.5: 229, 1: 219,
#: 2: 217-220, 4: 219. A scene of at most four primitives (the spheres scene) is split to
#: single ones whatever the cost: its shadow rays 25.7 -> 20.4 ns, closest hits 20.7 ->
#: 19.6 (benchmarks/profile_stages.py, three runs each; one leaf of four before).
TRAVERSAL_COST = 1.0


class Geometry(NamedTuple):
    """Scene geometry and its 4-wide BVH, as the arrays the kernels take (a Numba tuple).

    Node ``n`` holds its (up to) four children: their boxes in ``node_box[n]`` as six rows of
    four (min x, min y, min z, max x, max y, max z of children 0..3, laid out so the four slab
    tests read contiguous values) and in ``node_child[n]`` five groups of four, one column a
    child slot ``j``:

    - ``[j]``: an interior child's row; a leaf's first triangle block;
    - ``[4 + j]``: 0 for an interior child, -1 for an empty slot, > 0 for a leaf (its number
      of primitives);
    - ``[8 + j]``: a leaf's number of triangle blocks (rows of ``tri4_v``);
    - ``[12 + j]``: a leaf's first sphere in ``prim_order``;
    - ``[16 + j]``: a leaf's number of spheres.

    A leaf's triangles are copied into blocks of four (``tri4_v``: coordinate ``a`` of vertex
    ``v`` of lane ``l`` at ``(3 v + a) 4 + l``; ``tri4_id``: each lane's primitive number, -1
    for an unused lane, whose coordinates are NaN: its t is NaN, which fails the test's
    0 < t, fused multiply-adds or not), tested four at once
    (:func:`tri4_entry`). Node 0 is the root; a leaf costs no row of its own.
    """

    sphere_c: np.ndarray  # (S, 3)
    sphere_r: np.ndarray  # (S,)
    tri_v: np.ndarray  # (T, 3, 3)
    node_box: np.ndarray  # (M, 24) the children's boxes, coordinate-major
    node_child: np.ndarray  # (M, 20) the children's references and counts (above)
    prim_order: np.ndarray  # (P,) primitive ids in leaf order, each leaf's spheres first
    tri4_v: np.ndarray  # (B, 36) the leaves' triangles, four a row
    tri4_id: np.ndarray  # (B, 4) their primitive numbers


@njit(cache=True, inline="always")
def intersect_sphere(
    cx: float, cy: float, cz: float, r: float,
    ox: float, oy: float, oz: float, dx: float, dy: float, dz: float, tmin: float, tmax: float,
) -> float:
    """Nearest t in (tmin, tmax) where the ray meets the sphere, or -1 (d is unit length).

    The discriminant is computed as r^2 - |f|^2 with f the offset from the centre to the
    ray's closest point (pbrt-v4), which keeps precision for small spheres far away.
    """
    fx = ox - cx
    fy = oy - cy
    fz = oz - cz
    b = fx * dx + fy * dy + fz * dz
    px = fx - b * dx
    py = fy - b * dy
    pz = fz - b * dz
    disc = r * r - (px * px + py * py + pz * pz)
    if disc < 0.0:
        return -1.0
    sq = math.sqrt(disc)
    c = fx * fx + fy * fy + fz * fz - r * r
    q = -b - sq if b > 0.0 else -b + sq
    t0 = c / q if q != 0.0 else 0.0
    t1 = q
    if t0 > t1:
        t0, t1 = t1, t0
    if tmin < t0 < tmax:
        return t0
    if tmin < t1 < tmax:
        return t1
    return -1.0


class Shear(NamedTuple):
    """A ray in the frame of the watertight triangle test: axes permuted so that the
    direction's largest component is the third, the origin in that order, and the shear
    that turns the direction into +z (Woop, Benthin and Wald 2013; pbrt-v4 ``Triangle``).
    Computed once per ray: its three divisions used to be paid at every triangle."""

    kx: int
    ky: int
    kz: int
    ox: float
    oy: float
    oz: float
    sx: float
    sy: float
    sz: float


@njit(cache=True, inline="always")
def ray_shear(ox: float, oy: float, oz: float, dx: float, dy: float, dz: float) -> Shear:
    """The per-ray part of the watertight ray-triangle test, the axes permuted case by case
    (kz the axis of the direction's largest component, kx and ky the next two cyclically)."""
    ox, oy, oz, dx, dy, dz = float(ox), float(oy), float(oz), float(dx), float(dy), float(dz)
    adx, ady, adz = abs(dx), abs(dy), abs(dz)
    if adx > ady and adx > adz:  # kz = 0: (kx, ky, kz) = (1, 2, 0)
        return Shear(1, 2, 0, oy, oz, ox, -dy / dx, -dz / dx, 1.0 / dx)
    if ady > adz:  # kz = 1: (2, 0, 1)
        return Shear(2, 0, 1, oz, ox, oy, -dz / dy, -dx / dy, 1.0 / dy)
    return Shear(0, 1, 2, ox, oy, oz, -dx / dz, -dy / dz, 1.0 / dz)  # kz = 2


def rounded_product(a: float, b: float) -> float:
    """a x b, rounded on its own: never fused with the subtraction that follows it into a
    multiply-add. The watertight test needs this of its edge functions (x1 y2 - y1 x2 of
    the two triangles that share an edge must be exact negatives of each other, which a
    fused multiply-add does not give). The CPU kernels compile without contraction; a GPU
    contracts by default (numba-cuda and ptxas), so there it is libdevice's ``dmul_rn``,
    whose PTX ``mul.rn.f64`` is never fused (``benchmarks/cuda_ptx_check.py`` counts them)."""
    return a * b


@overload(rounded_product, target="cpu", inline="always")
def _rounded_product_cpu(a, b):
    def impl(a, b):
        return a * b

    return impl


@overload(rounded_product, target="cuda")
def _rounded_product_cuda(a, b):
    from numba.cuda import libdevice

    def impl(a, b):
        return libdevice.dmul_rn(a, b)

    return impl


@njit(cache=True, inline="always")
def watertight(
    p0x: float, p0y: float, p0z: float, p1x: float, p1y: float, p1z: float,
    p2x: float, p2y: float, p2z: float, r: Shear, tmax: float,
) -> tuple[float, float, float]:
    """Watertight ray-triangle test of the triangle whose vertices have the coordinates
    ``p0 .. p2`` in the ray's permuted axes (``kx, ky, kz`` of :func:`ray_shear`), for a ray
    prepared by :func:`ray_shear`: (t, b1, b2) or t = -1 for a miss. :func:`tracer.simd.tri4`
    is the same operations on four triangles."""
    # translate to the ray origin
    p0x -= r.ox
    p0y -= r.oy
    p0z -= r.oz
    p1x -= r.ox
    p1y -= r.oy
    p1z -= r.oz
    p2x -= r.ox
    p2y -= r.oy
    p2z -= r.oz
    # shear so that the ray points along +z
    p0x += r.sx * p0z
    p0y += r.sy * p0z
    p1x += r.sx * p1z
    p1y += r.sy * p1z
    p2x += r.sx * p2z
    p2y += r.sy * p2z
    # edge functions (each product rounded on its own: see rounded_product)
    e0 = rounded_product(p1x, p2y) - rounded_product(p1y, p2x)
    e1 = rounded_product(p2x, p0y) - rounded_product(p2y, p0x)
    e2 = rounded_product(p0x, p1y) - rounded_product(p0y, p1x)
    if (e0 < 0.0 or e1 < 0.0 or e2 < 0.0) and (e0 > 0.0 or e1 > 0.0 or e2 > 0.0):
        return -1.0, 0.0, 0.0
    det = e0 + e1 + e2
    if det == 0.0:
        return -1.0, 0.0, 0.0
    p0z *= r.sz
    p1z *= r.sz
    p2z *= r.sz
    t_scaled = e0 * p0z + e1 * p1z + e2 * p2z
    if det < 0.0 and (t_scaled >= 0.0 or t_scaled < tmax * det):
        return -1.0, 0.0, 0.0
    if det > 0.0 and (t_scaled <= 0.0 or t_scaled > tmax * det):
        return -1.0, 0.0, 0.0
    inv = 1.0 / det
    return t_scaled * inv, e1 * inv, e2 * inv


@njit(cache=True, inline="always")
def triangle_normal(v: np.ndarray) -> tuple[float, float, float]:
    """The unit geometric normal of the triangle whose vertices are the rows of ``v``:
    (v1 - v0) x (v2 - v0), normalised."""
    e1x, e1y, e1z = v[1, 0] - v[0, 0], v[1, 1] - v[0, 1], v[1, 2] - v[0, 2]
    e2x, e2y, e2z = v[2, 0] - v[0, 0], v[2, 1] - v[0, 1], v[2, 2] - v[0, 2]
    gx = e1y * e2z - e1z * e2y
    gy = e1z * e2x - e1x * e2z
    gz = e1x * e2y - e1y * e2x
    gl = fsqrt(gx * gx + gy * gy + gz * gz)
    return gx / gl, gy / gl, gz / gl


@njit(cache=True, inline="always")
def intersect_triangle(
    tri: np.ndarray, ox: float, oy: float, oz: float, dx: float, dy: float, dz: float, tmax: float
) -> tuple[float, float, float]:
    """Watertight ray-triangle test of ``tri`` (3 vertices x 3 coordinates): (t, b1, b2) or
    t = -1 for a miss. The traversal tests a leaf's blocks instead (:func:`nearest_in_block`)."""
    r = ray_shear(ox, oy, oz, dx, dy, dz)
    kx, ky, kz = r.kx, r.ky, r.kz
    return watertight(tri[0, kx], tri[0, ky], tri[0, kz], tri[1, kx], tri[1, ky], tri[1, kz],
                      tri[2, kx], tri[2, ky], tri[2, kz], r, tmax)


@njit(cache=True, inline="always")
def _area(mn: np.ndarray, mx: np.ndarray) -> float:
    ex = max(0.0, mx[0] - mn[0])
    ey = max(0.0, mx[1] - mn[1])
    ez = max(0.0, mx[2] - mn[2])
    return 2.0 * (ex * ey + ey * ez + ez * ex)


@njit(cache=True, inline="always")
def _blocks(n: int, block: int) -> int:
    """Tests of a leaf of ``n`` primitives taken ``block`` at a time: ceil(n / block)."""
    return (n + block - 1) // block


@njit(cache=True, inline="always")
def _leaf_cost(n: int, n_s: int, block: int) -> int:
    """Tests of a leaf of ``n`` primitives of which ``n_s`` are spheres: the spheres one by
    one, the triangles ``block`` at a time."""
    return n_s + _blocks(n - n_s, block)


@njit(cache=True)
def build_bvh(
    bmin: np.ndarray, bmax: np.ndarray, max_leaf: int = MAX_LEAF, n_bins: int = 16,
    block: int = LANES, n_sph: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Binned-SAH BVH over primitive bounds (P, 3); returns the node arrays and the count.

    Primitives below ``n_sph`` are spheres, tested one at a time; the triangles of a leaf
    cost ceil(n / block) tests, as Embree's builders count a leaf of ``Triangle4`` blocks."""
    n_prims = bmin.shape[0]
    cap = max(1, 2 * n_prims)
    node_min = np.zeros((cap, 3))
    node_max = np.zeros((cap, 3))
    node_left = np.zeros(cap, np.int64)
    node_right = np.zeros(cap, np.int64)
    node_count = np.zeros(cap, np.int64)
    order = np.arange(n_prims)
    cent = 0.5 * (bmin + bmax)
    # (node, start, end, depth); a depth-first build holds at most one entry per level + 1
    stack = np.empty((MAX_DEPTH + 2, 4), np.int64)
    stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = 0, 0, n_prims, 0
    sp = 1
    n_nodes = 1
    bin_cnt = np.zeros(n_bins, np.int64)
    bin_sph = np.zeros(n_bins, np.int64)
    left_sph = np.zeros(n_bins, np.int64)
    bin_min = np.zeros((n_bins, 3))
    bin_max = np.zeros((n_bins, 3))
    left_area = np.zeros(n_bins)
    left_cnt = np.zeros(n_bins, np.int64)
    while sp > 0:
        sp -= 1
        node, s, e, depth = stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3]
        mn = np.full(3, BIG)
        mx = np.full(3, -BIG)
        cmn = np.full(3, BIG)
        cmx = np.full(3, -BIG)
        n_s = 0  # spheres among them
        for k in range(s, e):
            p = order[k]
            n_s += p < n_sph
            for a in range(3):
                mn[a] = min(mn[a], bmin[p, a])
                mx[a] = max(mx[a], bmax[p, a])
                cmn[a] = min(cmn[a], cent[p, a])
                cmx[a] = max(cmx[a], cent[p, a])
        node_min[node] = mn
        node_max[node] = mx
        n = e - s
        axis = 0
        ext = cmx - cmn
        if ext[1] > ext[axis]:
            axis = 1
        if ext[2] > ext[axis]:
            axis = 2
        # a leaf: one primitive, coincident centroids, or the depth that traversal's stack allows
        if n <= 1 or ext[axis] <= 0.0 or depth >= MAX_DEPTH:
            node_left[node] = s
            node_count[node] = n
            continue
        # bin centroids along the widest axis and sweep the SAH cost of each split
        bin_cnt[:] = 0
        bin_sph[:] = 0
        bin_min[:] = BIG
        bin_max[:] = -BIG
        scale = n_bins / ext[axis]
        for k in range(s, e):
            p = order[k]
            b = min(int((cent[p, axis] - cmn[axis]) * scale), n_bins - 1)
            bin_cnt[b] += 1
            bin_sph[b] += p < n_sph
            for a in range(3):
                bin_min[b, a] = min(bin_min[b, a], bmin[p, a])
                bin_max[b, a] = max(bin_max[b, a], bmax[p, a])
        amn = np.full(3, BIG)
        amx = np.full(3, -BIG)
        c = 0
        cs = 0
        for b in range(n_bins - 1):
            c += bin_cnt[b]
            cs += bin_sph[b]
            for a in range(3):
                amn[a] = min(amn[a], bin_min[b, a])
                amx[a] = max(amx[a], bin_max[b, a])
            left_cnt[b] = c
            left_sph[b] = cs
            left_area[b] = _area(amn, amx) if c > 0 else 0.0
        amn[:] = BIG
        amx[:] = -BIG
        c = 0
        cs = 0
        best = -1
        best_cost = BIG
        inv_area = 1.0 / max(_area(mn, mx), 1e-300)
        for b in range(n_bins - 1, 0, -1):
            c += bin_cnt[b]
            cs += bin_sph[b]
            for a in range(3):
                amn[a] = min(amn[a], bin_min[b, a])
                amx[a] = max(amx[a], bin_max[b, a])
            lc = left_cnt[b - 1]
            if lc == 0 or c == 0:
                continue
            cost = TRAVERSAL_COST + (_leaf_cost(lc, left_sph[b - 1], block) * left_area[b - 1]
                                     + _leaf_cost(c, cs, block) * _area(amn, amx)) * inv_area
            if cost < best_cost:
                best_cost = cost
                best = b - 1
        # (a scene of at most WIDTH primitives is split to single ones: one vector test of
        # the root's four boxes then stands for up to four primitive tests)
        if best < 0 or (n <= max_leaf and best_cost >= _leaf_cost(n, n_s, block) and n_prims > WIDTH):
            node_left[node] = s
            node_count[node] = n
            continue
        # partition: primitives in bins <= best go left
        i = s
        j = e - 1
        while i <= j:
            p = order[i]
            b = min(int((cent[p, axis] - cmn[axis]) * scale), n_bins - 1)
            if b <= best:
                i += 1
            else:
                order[i], order[j] = order[j], order[i]
                j -= 1
        mid = i
        if mid == s or mid == e:
            mid = (s + e) // 2
        left = n_nodes
        right = n_nodes + 1
        n_nodes += 2
        node_left[node] = left
        node_right[node] = right
        node_count[node] = 0
        stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = right, mid, e, depth + 1
        sp += 1
        stack[sp, 0], stack[sp, 1], stack[sp, 2], stack[sp, 3] = left, s, mid, depth + 1
        sp += 1
    return node_min, node_max, node_left, node_right, node_count, order, n_nodes


@njit(cache=True)
def collapse_bvh4(
    nmin: np.ndarray, nmax: np.ndarray, nl: np.ndarray, nr: np.ndarray, nc: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The 4-wide tree of a binary one (Wald et al. 2008, "Getting rid of packets"; Embree's
    BVH4 builders): each node takes its binary node's two children and keeps replacing the
    interior child of largest surface area by its two children until it has four."""
    box = np.zeros((max(n, 1), 6 * WIDTH))
    child = np.zeros((max(n, 1), 2 * WIDTH), np.int64)
    kids = np.empty(WIDTH, np.int64)
    todo = np.empty(max(n, 1), np.int64)  # (binary node) whose 4-wide node is row todo_row
    todo_row = np.empty(max(n, 1), np.int64)
    todo[0] = 0
    todo_row[0] = 0
    n_todo = 1
    n_rows = 1
    while n_todo > 0:
        n_todo -= 1
        b = todo[n_todo]
        row = todo_row[n_todo]
        if nc[b] > 0:  # a binary leaf at the top (a tiny scene): the root's one child
            kids[0] = b
            k = 1
        else:
            kids[0] = nl[b]
            kids[1] = nr[b]
            k = 2
        while k < WIDTH:
            best = -1
            best_area = -1.0
            for j in range(k):
                if nc[kids[j]] == 0:
                    a = _area(nmin[kids[j]], nmax[kids[j]])
                    if a > best_area:
                        best_area = a
                        best = j
            if best < 0:
                break
            c = kids[best]
            kids[best] = nl[c]
            kids[k] = nr[c]
            k += 1
        # the children by surface area, the largest last: an any-hit ray visits the last
        # entered slot first, and a large box is the likeliest to hold an occluder
        for a in range(1, k):
            x = kids[a]
            xa = _area(nmin[x], nmax[x])
            b = a - 1
            while b >= 0 and _area(nmin[kids[b]], nmax[kids[b]]) > xa:
                kids[b + 1] = kids[b]
                b -= 1
            kids[b + 1] = x
        for j in range(WIDTH):
            if j >= k:  # an empty slot: count -1, reference 0, a box far outside any scene
                child[row, WIDTH + j] = -1
                for a in range(6):
                    box[row, a * WIDTH + j] = BIG
                continue
            c = kids[j]
            for a in range(3):
                box[row, a * WIDTH + j] = nmin[c, a]
                box[row, (3 + a) * WIDTH + j] = nmax[c, a]
            child[row, WIDTH + j] = nc[c]
            if nc[c] > 0:
                child[row, j] = nl[c]
            else:
                child[row, j] = n_rows
                todo[n_todo] = c
                todo_row[n_todo] = n_rows
                n_todo += 1
                n_rows += 1
    return box[:n_rows].copy(), child[:n_rows].copy()


@njit(cache=True)
def pack_leaves(
    child4: np.ndarray, order: np.ndarray, n_sph: int, tri_v: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The traversed tree's child table (:class:`Geometry`'s ``node_child``) and triangle
    blocks from :func:`collapse_bvh4`'s table (a leaf's first slot in ``order`` and its
    count): each leaf's spheres are moved to the front of its range of ``order`` (in place,
    in their order) and its triangles copied, in their order, four to a block."""
    m = child4.shape[0]
    n_blk = 0
    for r in range(m):
        for j in range(WIDTH):
            cnt = child4[r, WIDTH + j]
            if cnt > 0:
                n_tri = 0
                for k in range(child4[r, j], child4[r, j] + cnt):
                    n_tri += order[k] >= n_sph
                n_blk += _blocks(n_tri, LANES)
    child = np.zeros((m, CHILD_COLS), np.int64)
    # an unused lane: NaN coordinates, whose t is NaN and never a hit. (Not a degenerate
    # triangle: its edge functions x y - y x are exactly 0 only if the products are rounded
    # apart, and a GPU fuses them into multiply-adds, which leave the products' rounding
    # errors; then the lane is "hit" at the plane through the origin.)
    v4 = np.full((n_blk, TRI_ROW), np.nan)
    ids = np.full((n_blk, LANES), -1, np.int64)
    blk = 0
    for r in range(m):
        for j in range(WIDTH):
            ref, cnt = child4[r, j], child4[r, WIDTH + j]
            child[r, j] = ref
            child[r, WIDTH + j] = cnt
            if cnt <= 0:
                continue
            prims = order[ref:ref + cnt].copy()
            n_s = 0
            for p in prims:  # the spheres first
                if p < n_sph:
                    order[ref + n_s] = p
                    n_s += 1
            n_t = 0
            for p in prims:  # then the triangles, four a block
                if p >= n_sph:
                    order[ref + n_s + n_t] = p
                    b, lane = blk + n_t // LANES, n_t % LANES
                    ids[b, lane] = p
                    for v in range(3):
                        for a in range(3):
                            v4[b, (3 * v + a) * LANES + lane] = tri_v[p - n_sph, v, a]
                    n_t += 1
            child[r, j] = blk
            child[r, 2 * WIDTH + j] = _blocks(n_t, LANES)
            child[r, 3 * WIDTH + j] = ref
            child[r, 4 * WIDTH + j] = n_s
            blk += _blocks(n_t, LANES)
    return child, v4, ids


def build_geometry(sphere_c: np.ndarray, sphere_r: np.ndarray, tri_v: np.ndarray) -> Geometry:
    """Bounds every primitive and builds the BVH over them."""
    sc = np.ascontiguousarray(sphere_c, np.float64).reshape(-1, 3)
    sr = np.ascontiguousarray(sphere_r, np.float64).reshape(-1)
    tv = np.ascontiguousarray(tri_v, np.float64).reshape(-1, 3, 3)
    bmin = np.concatenate([sc - sr[:, None], tv.min(axis=1)]) if len(sc) + len(tv) else np.zeros((0, 3))
    bmax = np.concatenate([sc + sr[:, None], tv.max(axis=1)]) if len(sc) + len(tv) else np.zeros((0, 3))
    if len(bmin) == 0:
        # an empty scene: a root with four empty slots
        box = np.zeros((1, 6 * WIDTH))
        child = np.zeros((1, CHILD_COLS), np.int64)
        child[0, WIDTH:2 * WIDTH] = -1
        return Geometry(sc, sr, tv, box, child, np.zeros(0, np.int64), np.zeros((0, TRI_ROW)),
                        np.zeros((0, LANES), np.int64))
    nmin, nmax, nl, nr, nc, order, n = build_bvh(bmin, bmax, n_sph=len(sc))
    box, child4 = collapse_bvh4(nmin, nmax, nl, nr, nc, n)
    child, v4, ids = pack_leaves(child4, order, len(sc), tv)
    # one ulp wider on every side, so that the branch-free slab test keeps a ray that lies
    # in a box's face and parallel to it (see _slab); the first 12 columns are minima
    box[:, : 3 * WIDTH] = np.nextafter(box[:, : 3 * WIDTH], -np.inf)
    box[:, 3 * WIDTH:] = np.nextafter(box[:, 3 * WIDTH:], np.inf)
    return Geometry(sc, sr, tv, box, child, order, v4, ids)


@njit(cache=True, inline="always")
def _slab(
    box: np.ndarray, node: int, j: int, ox: float, oy: float, oz: float,
    ix: float, iy: float, iz: float, tmax: float,
) -> float:
    """Where the ray enters the box of child ``j`` of ``node`` (slab test, Kay and Kajiya
    1986): the entry t, or infinity if it misses the box before tmax. No branch but the last.

    A direction component of 0 has the inverse BIG (:func:`_inv`): an origin strictly inside
    that slab gets an interval around all t, one outside gets an interval beyond 1e30 x its
    distance (never entered unless within 1e-30 of the face: a wasted visit at worst). The
    origin on the face itself would give 0 x BIG = 0 and lose the box, so the stored boxes
    are widened by one ulp on every side (:func:`build_geometry`): a ray that can touch the
    geometry is then strictly inside.
    """
    w = WIDTH
    ax, bx = _slab_axis(box[node, j], box[node, 3 * w + j], ox, ix)
    ay, by = _slab_axis(box[node, w + j], box[node, 4 * w + j], oy, iy)
    az, bz = _slab_axis(box[node, 2 * w + j], box[node, 5 * w + j], oz, iz)
    tn = max(max(ax, ay), max(az, 0.0))
    tf = min(min(bx, by), min(bz, tmax))
    # the factor is pbrt's conservative rounding: never miss a box that the ray grazes
    return tn if tn <= tf * FAR_SCALE else math.inf


def children_entry(
    box: np.ndarray, node: int, ox: float, oy: float, oz: float,
    ix: float, iy: float, iz: float, tmax: float,
) -> tuple[float, float, float, float]:
    """Entry t of the ray into each of the four children of ``node``, infinity where it
    misses one before ``tmax``. An empty slot's box is a point at (1e30, 1e30, 1e30): only a
    ray aimed exactly at it enters, and then finds no primitive (its count is -1).

    On the CPU the four slab tests are one vector computation (:func:`tracer.simd.slab4`,
    the scalar test's values bit for bit); on the GPU and in Python (the CUDA simulator),
    four calls of :func:`_slab`. (numba-cuda's float min and max are ``fmin``/``fmax``,
    which differ from the CPU's only for NaN and the sign of a zero: the same entries for
    the finite rays the renderer traces.)"""
    return _children_scalar(box, node, ox, oy, oz, ix, iy, iz, tmax)


@njit(cache=True, inline="always")
def _children_scalar(
    box: np.ndarray, node: int, ox: float, oy: float, oz: float,
    ix: float, iy: float, iz: float, tmax: float,
) -> tuple[float, float, float, float]:
    return (_slab(box, node, 0, ox, oy, oz, ix, iy, iz, tmax),
            _slab(box, node, 1, ox, oy, oz, ix, iy, iz, tmax),
            _slab(box, node, 2, ox, oy, oz, ix, iy, iz, tmax),
            _slab(box, node, 3, ox, oy, oz, ix, iy, iz, tmax))


@overload(children_entry, target="cpu", inline="always")
def _children_entry_cpu(box, node, ox, oy, oz, ix, iy, iz, tmax):
    def impl(box, node, ox, oy, oz, ix, iy, iz, tmax):
        return slab4(box, node, ox, oy, oz, ix, iy, iz, tmax)

    return impl


@overload(children_entry, target="cuda")
def _children_entry_cuda(box, node, ox, oy, oz, ix, iy, iz, tmax):
    def impl(box, node, ox, oy, oz, ix, iy, iz, tmax):
        return _children_scalar(box, node, ox, oy, oz, ix, iy, iz, tmax)

    return impl


def tri4_entry(v4: np.ndarray, b: int, r: Shear, tmax: float) -> tuple[float, ...]:
    """The watertight test of the four triangles of block ``b`` (:class:`Geometry`'s
    ``tri4_v``): each lane's t (infinity unless 0 < t < tmax), then its b1, then its b2 (0
    where missed), twelve values. On the CPU one vector computation
    (:func:`tracer.simd.tri4`, the scalar test's values bit for bit); on the GPU and in
    Python (the CUDA simulator), four calls of :func:`watertight`."""
    return _tri4_scalar(v4, b, r, tmax)


@njit(cache=True, inline="always")
def _tri_lane(v4: np.ndarray, b: int, lane: int, r: Shear, tmax: float) -> tuple[float, float, float]:
    """Lane ``lane`` of block ``b``: (t, b1, b2), t infinity unless 0 < t < tmax."""
    kx, ky, kz = r.kx * LANES + lane, r.ky * LANES + lane, r.kz * LANES + lane
    t, b1, b2 = watertight(v4[b, kx], v4[b, ky], v4[b, kz],
                           v4[b, 3 * LANES + kx], v4[b, 3 * LANES + ky], v4[b, 3 * LANES + kz],
                           v4[b, 6 * LANES + kx], v4[b, 6 * LANES + ky], v4[b, 6 * LANES + kz],
                           r, tmax)
    if t > 0.0 and t < tmax:
        return t, b1, b2
    return math.inf, 0.0, 0.0


@njit(cache=True, inline="always")
def _tri4_scalar(v4: np.ndarray, b: int, r: Shear, tmax: float) -> tuple[float, ...]:
    t0, u0, w0 = _tri_lane(v4, b, 0, r, tmax)
    t1, u1, w1 = _tri_lane(v4, b, 1, r, tmax)
    t2, u2, w2 = _tri_lane(v4, b, 2, r, tmax)
    t3, u3, w3 = _tri_lane(v4, b, 3, r, tmax)
    return t0, t1, t2, t3, u0, u1, u2, u3, w0, w1, w2, w3


@overload(tri4_entry, target="cpu", inline="always")
def _tri4_entry_cpu(v4, b, r, tmax):
    def impl(v4, b, r, tmax):
        return tri4(v4, b, r.kx, r.ky, r.kz, r.ox, r.oy, r.oz, r.sx, r.sy, r.sz, tmax)

    return impl


@overload(tri4_entry, target="cuda")
def _tri4_entry_cuda(v4, b, r, tmax):
    def impl(v4, b, r, tmax):
        return _tri4_scalar(v4, b, r, tmax)

    return impl


@njit(cache=True, inline="always")
def nearest_in_block(v4: np.ndarray, b: int, r: Shear, tmax: float) -> tuple[float, int, float, float]:
    """The nearest hit among block ``b``'s four triangles: (t, lane, b1, b2), t infinity if
    none is hit before ``tmax``; of equal t the first lane (the scalar loop's choice)."""
    t0, t1, t2, t3, u0, u1, u2, u3, w0, w1, w2, w3 = tri4_entry(v4, b, r, tmax)
    # a tournament of selects: which lane is nearest is unpredictable
    n01 = t1 < t0
    ta, la, ua, wa = (t1, 1, u1, w1) if n01 else (t0, 0, u0, w0)
    n23 = t3 < t2
    tb, lb, ub, wb = (t3, 3, u3, w3) if n23 else (t2, 2, u2, w2)
    if tb < ta:
        return tb, lb, ub, wb
    return ta, la, ua, wa


@njit(cache=True, inline="always")
def _order(ta: float, ca: int, tb: float, cb: int) -> tuple[float, int, float, int]:
    """A compare-exchange of the sorting network: the nearer (t, code) first, without a
    branch (min/max and selects: which pair is nearer is unpredictable)."""
    swap = tb < ta
    return min(ta, tb), (cb if swap else ca), max(ta, tb), (ca if swap else cb)


@njit(cache=True, inline="always")
def _slab_axis(mn: float, mx: float, o: float, inv: float) -> tuple[float, float]:
    """The t interval of one slab."""
    t0 = (mn - o) * inv
    t1 = (mx - o) * inv
    return min(t0, t1), max(t0, t1)


@njit(cache=True, inline="always")
def _inv(d: float) -> float:
    if d == 0.0:
        return BIG
    return 1.0 / d


#: no child to visit next (see :func:`_code`)
NONE = -(1 << 62)


@njit(cache=True, inline="always")
def _code(child: np.ndarray, node: int, j: int) -> int:
    """What the traversal pushes for child ``j`` of ``node``: an interior child's row (>= 0),
    so that popping it leads straight to its boxes (Embree's node references), or for a leaf
    -1 - its slot ``WIDTH node + j``, where its counts are read."""
    return child[node, j] if child[node, WIDTH + j] == 0 else -1 - (WIDTH * node + j)


@njit(cache=True, inline="always")
def trace(
    g: Geometry, ox: float, oy: float, oz: float, dx: float, dy: float, dz: float,
    tmax: float, any_hit: bool, stack: np.ndarray,
) -> tuple[float, int, float, float]:
    """Closest (or, with ``any_hit``, any) intersection: (t, prim, b1, b2); prim = -1 on a miss.

    Ordered traversal of the 4-wide tree: at an interior node the four children's boxes are
    tested (:func:`children_entry`), sorted by entry t (a five-exchange sorting network), the
    nearest entered child is visited next and the other entered ones pushed farthest first,
    each as its code (:func:`_code`) with its entry t (``stack``: rows of
    :data:`STACK_SHAPE`); a child the ray misses is never pushed. A popped child is skipped
    if its entry t lies beyond the closest hit found since (closest hit only): the slab test
    against the shorter ray, without testing the box again. An any-hit ray skips the
    sorting: any order finds an occluder, and the network's unpredictable exchanges cost
    more than the order saves (shadow rays on the knot 145 -> 106 ns). A leaf tests its
    spheres one by one, then its triangles a block of four at a time
    (:func:`nearest_in_block`).
    """
    best_t = tmax
    best_p = -1
    best_b1 = 0.0
    best_b2 = 0.0
    if g.prim_order.shape[0] == 0:  # an empty scene
        return best_t, best_p, best_b1, best_b2
    ix, iy, iz = _inv(dx), _inv(dy), _inv(dz)
    shear = ray_shear(ox, oy, oz, dx, dy, dz)
    child = g.node_child
    sp = 0
    # the root's own children first: the root is visited like any interior node, unless it
    # holds a single child (a scene small enough to be one leaf): then that child's box alone
    node = 0
    cur = NONE
    if child[0, WIDTH + 1] < 0:
        node = -1
        if _slab(g.node_box, 0, 0, ox, oy, oz, ix, iy, iz, best_t) < math.inf:
            cur = _code(child, 0, 0)
    while True:
        if node >= 0:
            t0, t1, t2, t3 = children_entry(g.node_box, node, ox, oy, oz, ix, iy, iz, best_t)
            # what each child is (read beside the boxes, off the path from one visit to the next)
            c0, c1, c2, c3 = (_code(child, node, 0), _code(child, node, 1),
                              _code(child, node, 2), _code(child, node, 3))
            if any_hit:
                # any order finds an occluder: push every entered child, visit the last
                for cj, tj in ((c0, t0), (c1, t1), (c2, t2), (c3, t3)):
                    stack[sp, 0] = cj
                    sp += tj < math.inf
                # the last one pushed is visited next: taken back by selects, not reloaded
                # from the stack
                last = c3 if t3 < math.inf else (c2 if t2 < math.inf else (c1 if t1 < math.inf else c0))
                any_in = t0 < math.inf or t1 < math.inf or t2 < math.inf or t3 < math.inf
                cur = last if any_in else NONE
                sp -= any_in
            else:
                t0, c0, t1, c1 = _order(t0, c0, t1, c1)
                t2, c2, t3, c3 = _order(t2, c2, t3, c3)
                t0, c0, t2, c2 = _order(t0, c0, t2, c2)
                t1, c1, t3, c3 = _order(t1, c1, t3, c3)
                t1, c1, t2, c2 = _order(t1, c1, t2, c2)
                # push the entered ones but the nearest, farthest first
                stack[sp, 0], stack[sp, 1] = c3, t3
                sp += t3 < math.inf
                stack[sp, 0], stack[sp, 1] = c2, t2
                sp += t2 < math.inf
                stack[sp, 0], stack[sp, 1] = c1, t1
                sp += t1 < math.inf
                cur = c0 if t0 < math.inf else NONE
            node = -1
        # nothing entered here: the next pushed child that is still in front of the best hit
        # (its slab test against the shortened ray: entry t <= best_t, rounded as _slab does)
        while cur == NONE and sp > 0:
            sp -= 1
            if any_hit or stack[sp, 1] <= best_t * FAR_SCALE:
                cur = int(stack[sp, 0])
        if cur == NONE:
            break
        if cur >= 0:  # an interior node: visit it
            node = cur
            cur = NONE
            continue
        slot = -1 - cur
        cur = NONE
        parent = slot // WIDTH
        j = slot % WIDTH
        ref = child[parent, j]
        # a leaf: its spheres one by one, then its triangles four at a time
        s0 = child[parent, 3 * WIDTH + j]
        for k in range(s0, s0 + child[parent, 4 * WIDTH + j]):
            p = g.prim_order[k]
            t = intersect_sphere(g.sphere_c[p, 0], g.sphere_c[p, 1], g.sphere_c[p, 2],
                                 g.sphere_r[p], ox, oy, oz, dx, dy, dz, 0.0, best_t)
            if t > 0.0 and t < best_t:
                best_t = t
                best_p = p
                best_b1 = 0.0
                best_b2 = 0.0
                if any_hit:
                    return best_t, best_p, best_b1, best_b2
        for b in range(ref, ref + child[parent, 2 * WIDTH + j]):
            t, lane, b1, b2 = nearest_in_block(g.tri4_v, b, shear, best_t)
            if t < best_t:
                best_t = t
                best_p = g.tri4_id[b, lane]
                best_b1 = b1
                best_b2 = b2
                if any_hit:
                    return best_t, best_p, best_b1, best_b2
    return best_t, best_p, best_b1, best_b2
