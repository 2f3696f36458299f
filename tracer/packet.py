r"""Closest hits of coherent rays traced as packets through the 4-wide BVH (CPU).

A camera ray's neighbours in a queue are the rays of the next pixels of its row: they enter
the same nodes in the same order. Traced one by one, each ray pays its own chain of node
visits, and the branches of each visit (which children it entered, how they sort, when
the stack runs dry) are guessed afresh; traced as a packet (Wald, Slusallek, Benthin and
Wagner 2001, "Interactive Rendering with Coherent Ray Tracing"; Embree's ``BVH4`` packet
kernels), the packet's rays share one walk of the tree: at an interior node every ray of
the packet tests the four children's boxes (:func:`packet_entry`), a child is entered if
any ray enters it, the children are visited nearest first by the
smallest entry over the packet, and a leaf is tested by the rays that entered its box.
Each ray keeps its own nearest hit, so the result is each ray's closest hit, as
:func:`tracer.geometry.trace` finds it (of two hits at exactly the same t, which one is
kept can differ: the order of the leaves differs).

The walk is shared, so a packet visits the union of its rays' nodes: worth it for primary
rays (adjacent pixels), not for the scattered rays of later bounces. On the knot's camera
rays a packet of eight visits 4.2 nodes, where each ray alone visits 3.3: 0.53 visits a ray
instead of 3.3, for the same triangle tests (1.2 blocks of four a ray).

A packet is stored a column a ray, so that each of its rows (the rays' origin x, their
inverse direction y, their nearest hit, ...) is one vector of eight doubles: on the CPU a
node's four children are tested against the whole packet a child at a time, a ray a lane
(:func:`tracer.simd.slab_packet`), rather than each ray's four children a ray at a time
(the knot's camera rays, one thread: 49.1-51.4 -> 45.9-47.8 ns a ray; the same hits bit
for bit).
The leaves are still tested a ray at a time (:func:`_leaf`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numba.extending import overload

from tracer.geometry import (
    FAR_SCALE,
    NONE,
    STACK_SIZE,
    WIDTH,
    Geometry,
    Shear,
    _code,
    _inv,
    _slab,
    children_entry,
    intersect_sphere,
    nearest_in_block,
    ray_shear,
)
from tracer.simd import PACKET_LANES, slab_packet

#: rays in a packet: eight adjacent pixels of a row, the lanes of :func:`tracer.simd.slab_packet`
#: (set there). The knot's camera rays, one thread, when each ray tested its own boxes (ns a
#: ray; one by one 143): packets of 4: 88, of 8: 80, of 16: 78
PACKET = PACKET_LANES
#: rows of a packet, each with one column a ray (so that a row is one vector of the
#: packet's rays): origin, direction, inverse direction, the watertight test's shear
#: (:class:`tracer.geometry.Shear`: kx, ky, kz, permuted origin, sx, sy, sz), then the ray's
#: hit so far (t, prim, b1, b2)
RAY_ROWS = 22
#: the first hit row of a packet
HIT = 18
#: the packet's shape: a column a ray
PACKET_SHAPE = (RAY_ROWS, PACKET)
#: the packet traversal's stack: rows of (child code, least entry t, ray mask); the single
#: ray traversal reads the first two columns of the same array
PACKET_STACK_SHAPE = (STACK_SIZE, 3)


@njit(cache=True, inline="always")
def set_ray(ray: np.ndarray, i: int, ox: float, oy: float, oz: float, dx: float, dy: float, dz: float) -> None:
    """Column ``i`` of a packet: the ray's set-up, and no hit yet."""
    ray[0, i], ray[1, i], ray[2, i] = ox, oy, oz
    ray[3, i], ray[4, i], ray[5, i] = dx, dy, dz
    ray[6, i], ray[7, i], ray[8, i] = _inv(dx), _inv(dy), _inv(dz)
    s = ray_shear(ox, oy, oz, dx, dy, dz)
    ray[9, i], ray[10, i], ray[11, i] = s.kx, s.ky, s.kz
    ray[12, i], ray[13, i], ray[14, i] = s.ox, s.oy, s.oz
    ray[15, i], ray[16, i], ray[17, i] = s.sx, s.sy, s.sz
    ray[HIT, i] = math.inf
    ray[HIT + 1, i] = -1.0
    ray[HIT + 2, i] = 0.0
    ray[HIT + 3, i] = 0.0


def packet_entry(box: np.ndarray, node: int, ray: np.ndarray) -> tuple[float, float, float, float, int, int, int, int]:
    """The packet's rays against the four children of ``node``: for each child the least
    entry t over the rays (infinity if none enters it), then for each child the mask of the
    rays that enter it (bit i for ray i). Each ray's entries are
    :func:`tracer.geometry.children_entry`'s. On the CPU one vector computation a child, a
    ray a lane (:func:`tracer.simd.slab_packet`); in Python, a loop over the rays."""
    return _packet_entry_scalar(box, node, ray)


@njit(cache=True, inline="always")
def _packet_entry_scalar(box: np.ndarray, node: int, ray: np.ndarray) -> tuple[float, float, float, float, int, int, int, int]:
    e0 = e1 = e2 = e3 = math.inf
    m0 = m1 = m2 = m3 = 0
    for i in range(PACKET):
        t0, t1, t2, t3 = children_entry(box, node, ray[0, i], ray[1, i], ray[2, i],
                                        ray[6, i], ray[7, i], ray[8, i], ray[HIT, i])
        e0, e1, e2, e3 = min(e0, t0), min(e1, t1), min(e2, t2), min(e3, t3)
        m0 |= (t0 < math.inf) << i
        m1 |= (t1 < math.inf) << i
        m2 |= (t2 < math.inf) << i
        m3 |= (t3 < math.inf) << i
    return e0, e1, e2, e3, m0, m1, m2, m3


@overload(packet_entry, target="cpu", inline="always")
def _packet_entry_cpu(box, node, ray):
    def impl(box, node, ray):
        return slab_packet(box, node, ray, 0, 6, HIT)

    return impl


@njit(cache=True, inline="always")
def _order3(ta: float, ca: int, ma: int, tb: float, cb: int, mb: int) -> tuple[float, int, int, float, int, int]:
    """A compare-exchange of the sorting network on (entry t, code, ray mask), by selects."""
    swap = tb < ta
    return (min(ta, tb), (cb if swap else ca), (mb if swap else ma),
            max(ta, tb), (ca if swap else cb), (ma if swap else mb))


@njit(cache=True, inline="always")
def _leaf(g: Geometry, ray: np.ndarray, i: int, parent: int, j: int) -> None:
    """Ray ``i`` of the packet against the leaf in slot ``j`` of ``parent``: its spheres, then
    its triangles a block of four at a time; the ray's column keeps the nearer hit."""
    child = g.node_child
    ox, oy, oz = ray[0, i], ray[1, i], ray[2, i]
    best_t = ray[HIT, i]
    # (the leaf's box is not tested again against the ray as it now is, with its nearer
    # hit: that branch cost more than the triangle tests it saves, 80 against 132 ns a
    # camera ray on the knot, one thread)
    best_p = -1
    best_b1 = 0.0
    best_b2 = 0.0
    s0 = child[parent, 3 * WIDTH + j]
    for k in range(s0, s0 + child[parent, 4 * WIDTH + j]):
        p = g.prim_order[k]
        t = intersect_sphere(g.sphere_c[p, 0], g.sphere_c[p, 1], g.sphere_c[p, 2], g.sphere_r[p],
                             ox, oy, oz, ray[3, i], ray[4, i], ray[5, i], 0.0, best_t)
        if t > 0.0 and t < best_t:
            best_t = t
            best_p = p
    ref = child[parent, j]
    nb = child[parent, 2 * WIDTH + j]
    if nb > 0:
        shear = Shear(int(ray[9, i]), int(ray[10, i]), int(ray[11, i]), ray[12, i], ray[13, i],
                      ray[14, i], ray[15, i], ray[16, i], ray[17, i])
        for b in range(ref, ref + nb):
            t, lane, b1, b2 = nearest_in_block(g.tri4_v, b, shear, best_t)
            if t < best_t:
                best_t = t
                best_p = g.tri4_id[b, lane]
                best_b1 = b1
                best_b2 = b2
    if best_p >= 0:
        ray[HIT, i] = best_t
        ray[HIT + 1, i] = best_p
        ray[HIT + 2, i] = best_b1
        ray[HIT + 3, i] = best_b2


@njit(cache=True, inline="always")
def _reaches(ray: np.ndarray, mask: int, entry: float) -> bool:
    """Whether a popped child, entered at ``entry`` (the least over the rays of ``mask``),
    still lies in front of the nearest hit of one of those rays."""
    far = -math.inf
    for i in range(PACKET):
        far = max(far, ray[HIT, i] if (mask >> i) & 1 else -math.inf)
    return entry <= far * FAR_SCALE


@njit(cache=True, inline="always")
def trace_packet(g: Geometry, ray: np.ndarray, stack: np.ndarray) -> None:
    """Closest hits of the packet's rays (columns of ``ray``, set by :func:`set_ray`): each
    column's hit rows end as (t, prim, b1, b2), prim -1 and t infinity on a miss.

    ``stack`` rows hold (child code, least entry t over the rays, mask of the rays that
    entered it); a popped child is skipped if it lies beyond the nearest hit of every ray
    that entered it.
    """
    if g.prim_order.shape[0] == 0:  # an empty scene
        return
    child = g.node_child
    box = g.node_box
    full = (1 << PACKET) - 1
    sp = 0
    node = 0
    cur = NONE
    cur_mask = full
    if child[0, WIDTH + 1] < 0:  # a scene of one leaf: its box alone
        node = -1
        m = 0
        for i in range(PACKET):
            t = _slab(box, 0, 0, ray[0, i], ray[1, i], ray[2, i], ray[6, i], ray[7, i], ray[8, i],
                      ray[HIT, i])
            m |= (t < math.inf) << i
        if m:
            cur = _code(child, 0, 0)
            cur_mask = m
    while True:
        if node >= 0:
            e0, e1, e2, e3, m0, m1, m2, m3 = packet_entry(box, node, ray)
            c0, c1, c2, c3 = (_code(child, node, 0), _code(child, node, 1),
                              _code(child, node, 2), _code(child, node, 3))
            e0, c0, m0, e1, c1, m1 = _order3(e0, c0, m0, e1, c1, m1)
            e2, c2, m2, e3, c3, m3 = _order3(e2, c2, m2, e3, c3, m3)
            e0, c0, m0, e2, c2, m2 = _order3(e0, c0, m0, e2, c2, m2)
            e1, c1, m1, e3, c3, m3 = _order3(e1, c1, m1, e3, c3, m3)
            e1, c1, m1, e2, c2, m2 = _order3(e1, c1, m1, e2, c2, m2)
            # push the entered ones but the nearest, farthest first
            stack[sp, 0], stack[sp, 1], stack[sp, 2] = c3, e3, m3
            sp += e3 < math.inf
            stack[sp, 0], stack[sp, 1], stack[sp, 2] = c2, e2, m2
            sp += e2 < math.inf
            stack[sp, 0], stack[sp, 1], stack[sp, 2] = c1, e1, m1
            sp += e1 < math.inf
            cur = c0 if e0 < math.inf else NONE
            cur_mask = m0
            node = -1
        while cur == NONE and sp > 0:
            sp -= 1
            m = int(stack[sp, 2])
            if _reaches(ray, m, stack[sp, 1]):
                cur = int(stack[sp, 0])
                cur_mask = m
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
        for i in range(PACKET):
            if (cur_mask >> i) & 1:
                _leaf(g, ray, i, parent, j)
