r"""Vector code for the CPU kernels, written as LLVM vector IR (Numba intrinsics).

Numba compiles the kernels' scalar code one value at a time and leaves LLVM's
superword-level vectoriser off, so four slab tests of a 4-wide BVH node stay four scalar
chains. :func:`slab4` states them as one ``<4 x double>`` computation (Embree's
``intersect_node`` in ``bvh/node_intersector1.h`` is the same slab test over its node's
four children in one SIMD register), in double precision: the entry distances are the
scalar code's, bit for bit (the same IEEE operations on the same values, only four at a
time).

:func:`tri4` does the same for a leaf's block of four triangles (Embree's ``Triangle4``):
the watertight ray-triangle test of each in one lane, the scalar test's values bit for bit.
:func:`slab_packet` turns the slab test the other way, for the camera rays' packets: one
child's box against :data:`PACKET_LANES` rays, a ray a lane (``<8 x double>``), with the
least entry over the rays and the mask of those that enter.

The intrinsics compile for the CPU only. Callers reach them through stubs with scalar twins
(:func:`tracer.geometry.children_entry`, :func:`tracer.geometry.tri4_entry`,
:func:`tracer.packet.packet_entry`), which the CUDA target and Python (the CUDA simulator)
run instead.
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

#: doubles in a node's row of child boxes: six coordinate rows of four children
ROW = 24
#: pbrt's conservative rounding of the slab interval's far end, 1 + 2^-51 (see geometry._slab)
FAR_SCALE = 1.0000000000000004


def _splat(builder: ir.IRBuilder, x: ir.Value, lanes: int) -> ir.Value:
    """A vector of ``lanes`` copies of the scalar ``x``."""
    v = ir.Constant(ir.VectorType(x.type, lanes), ir.Undefined)
    for lane in range(lanes):
        v = builder.insert_element(v, x, ir.Constant(ir.IntType(32), lane))
    return v


def _vmin(builder: ir.IRBuilder, a: ir.Value, b: ir.Value) -> ir.Value:
    """Numba's ``min`` of two floats, lane by lane: the first argument on a tie."""
    return builder.select(builder.fcmp_ordered("<", b, a), b, a)


def _vmax(builder: ir.IRBuilder, a: ir.Value, b: ir.Value) -> ir.Value:
    """Numba's ``max`` of two floats, lane by lane: the first argument on a tie."""
    return builder.select(builder.fcmp_ordered(">", b, a), b, a)


def _slab_entries(builder: ir.IRBuilder, lo: list, hi: list, o: list, inv: list, tmax: ir.Value) -> ir.Value:
    """The slab test lane by lane (vectors of one width): boxes ``lo`` .. ``hi`` (a vector
    per axis) against rays (o, 1/d) (a vector per axis) up to ``tmax``. Per axis a,
    t0 = (lo - o) / d, t1 = (hi - o) / d; the entry is tn = max(0, max_a min(t0, t1)), the
    exit tf = min(tmax, min_a max(t0, t1)), combined in the scalar ``_slab``'s order (so
    that even the sign of a zero entry is the same); a lane's result is tn if tn <= tf
    (1 + 2^-51), else infinity."""
    lanes = tmax.type.count
    dbl = ir.DoubleType()
    near, far = [], []
    for a in range(3):
        t0 = builder.fmul(builder.fsub(lo[a], o[a]), inv[a])
        t1 = builder.fmul(builder.fsub(hi[a], o[a]), inv[a])
        near.append(_vmin(builder, t0, t1))
        far.append(_vmax(builder, t0, t1))
    tn = _vmax(builder, _vmax(builder, near[0], near[1]),
               _vmax(builder, near[2], _splat(builder, ir.Constant(dbl, 0.0), lanes)))
    tf = _vmin(builder, _vmin(builder, far[0], far[1]), _vmin(builder, far[2], tmax))
    entered = builder.fcmp_ordered("<=", tn, builder.fmul(tf, _splat(builder, ir.Constant(dbl, FAR_SCALE), lanes)))
    return builder.select(entered, tn, _splat(builder, ir.Constant(dbl, math.inf), lanes))


@intrinsic
def slab4(typingctx, box, node, ox, oy, oz, ix, iy, iz, tmax):
    """Entry t of the ray (o, 1/d) into each of the four child boxes of ``node`` (row ``node``
    of a C-contiguous (M, 24) float64 array laid out as :class:`tracer.geometry.Geometry`'s
    ``node_box``), infinity where the ray misses a box before ``tmax``: a tuple of four.

    Per axis ``a`` and child ``j``, t0 = (min - o) / d, t1 = (max - o) / d; the entry is
    tn = max(0, max_a min(t0, t1)), the exit tf = min(tmax, min_a max(t0, t1)), and the box
    is entered if tn <= tf (1 + 2^-51), the exact operations of the scalar ``_slab``.
    """
    if not (isinstance(box, types.Array) and box.ndim == 2 and box.layout == "C"
            and box.dtype == types.float64 and isinstance(node, types.Integer)):
        return None
    sig = types.UniTuple(types.float64, 4)(box, node, types.float64, types.float64, types.float64,
                                           types.float64, types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        box_v, node_v, *scalars = args
        # the scalars arrive as float64 (the signature casts them)
        ox_v, oy_v, oz_v, ix_v, iy_v, iz_v, tmax_v = scalars
        ary = context.make_array(signature.args[0])(context, builder, box_v)
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        dbl = ir.DoubleType()
        vec = ir.VectorType(dbl, 4)
        node64 = builder.sext(node_v, i64) if node_v.type.width < 64 else node_v
        row = builder.gep(ary.data, [builder.mul(node64, ir.Constant(i64, ROW))])

        def load(k: int) -> ir.Value:
            # coordinate row k (min x, min y, min z, max x, max y, max z) of the four children
            p = builder.bitcast(builder.gep(row, [ir.Constant(i64, 4 * k)]), vec.as_pointer())
            return builder.load(p, align=8)

        o = [_splat(builder, x, 4) for x in (ox_v, oy_v, oz_v)]
        inv = [_splat(builder, x, 4) for x in (ix_v, iy_v, iz_v)]
        t = _slab_entries(builder, [load(a) for a in range(3)], [load(3 + a) for a in range(3)], o, inv,
                          _splat(builder, tmax_v, 4))
        lanes = [builder.extract_element(t, ir.Constant(i32, lane)) for lane in range(4)]
        return context.make_tuple(builder, signature.return_type, lanes)

    return sig, codegen


#: doubles in a row of four triangles: three vertices, three coordinates, four lanes
TRI_ROW = 36


@intrinsic
def tri4(typingctx, v4, b, kx, ky, kz, ox, oy, oz, sx, sy, sz, tmax):
    """The watertight ray-triangle test (:func:`tracer.geometry.watertight`) of four triangles
    at once: row ``b`` of a C-contiguous (B, 36) float64 array laid out as
    :class:`tracer.geometry.Geometry`'s ``tri4_v`` (coordinate ``a`` of vertex ``v`` of lane
    ``l`` at ``(3 v + a) 4 + l``), against a ray prepared by :func:`tracer.geometry.ray_shear`
    (its fields spelled out). Embree's ``Triangle4`` leaves are tested the same way, one
    triangle per SIMD lane.

    Returns a tuple of twelve: each lane's hit distance t (infinity unless the triangle is
    hit at 0 < t < tmax), then its barycentrics b1 and b2 (0 where missed). Every lane
    computes the scalar test's IEEE operations in its order (the edge functions, their sum,
    the scaled t, one reciprocal): a hit's (t, b1, b2) are the scalar test's bit for bit.
    """
    if not (isinstance(v4, types.Array) and v4.ndim == 2 and v4.layout == "C"
            and v4.dtype == types.float64 and isinstance(b, types.Integer)
            and all(isinstance(k, types.Integer) for k in (kx, ky, kz))):
        return None
    f64 = types.float64
    sig = types.UniTuple(f64, 12)(v4, b, kx, ky, kz, f64, f64, f64, f64, f64, f64, f64)

    def codegen(context, builder, signature, args):
        v4_v, b_v, kx_v, ky_v, kz_v, ox_v, oy_v, oz_v, sx_v, sy_v, sz_v, tmax_v = args
        ary = context.make_array(signature.args[0])(context, builder, v4_v)
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        dbl = ir.DoubleType()
        vec = ir.VectorType(dbl, 4)

        def to64(x: ir.Value) -> ir.Value:
            return builder.sext(x, i64) if x.type.width < 64 else x

        row = builder.gep(ary.data, [builder.mul(to64(b_v), ir.Constant(i64, TRI_ROW))])

        def splat(x: ir.Value) -> ir.Value:
            return _splat(builder, x, 4)

        def load(vertex: int, k: ir.Value) -> ir.Value:
            # coordinate k (a permuted axis) of one vertex of the four triangles
            at = builder.add(ir.Constant(i64, 12 * vertex), builder.mul(to64(k), ir.Constant(i64, 4)))
            p = builder.bitcast(builder.gep(row, [at]), vec.as_pointer())
            return builder.load(p, align=8)

        def lt(a, c):
            return builder.fcmp_ordered("<", a, c)

        def gt(a, c):
            return builder.fcmp_ordered(">", a, c)

        zero = splat(ir.Constant(dbl, 0.0))
        so = [splat(ox_v), splat(oy_v), splat(oz_v)]
        sxv, syv, szv = splat(sx_v), splat(sy_v), splat(sz_v)
        # translate to the ray origin in the permuted axes, then shear the ray onto +z
        p = []
        for vertex in range(3):
            px = builder.fsub(load(vertex, kx_v), so[0])
            py = builder.fsub(load(vertex, ky_v), so[1])
            pz = builder.fsub(load(vertex, kz_v), so[2])
            px = builder.fadd(px, builder.fmul(sxv, pz))
            py = builder.fadd(py, builder.fmul(syv, pz))
            p.append((px, py, pz))
        (p0x, p0y, p0z), (p1x, p1y, p1z), (p2x, p2y, p2z) = p
        # edge functions
        e0 = builder.fsub(builder.fmul(p1x, p2y), builder.fmul(p1y, p2x))
        e1 = builder.fsub(builder.fmul(p2x, p0y), builder.fmul(p2y, p0x))
        e2 = builder.fsub(builder.fmul(p0x, p1y), builder.fmul(p0y, p1x))
        some_neg = builder.or_(builder.or_(lt(e0, zero), lt(e1, zero)), lt(e2, zero))
        some_pos = builder.or_(builder.or_(gt(e0, zero), gt(e1, zero)), gt(e2, zero))
        miss = builder.and_(some_neg, some_pos)
        det = builder.fadd(builder.fadd(e0, e1), e2)
        miss = builder.or_(miss, builder.fcmp_ordered("==", det, zero))
        ts = builder.fadd(builder.fadd(builder.fmul(e0, builder.fmul(p0z, szv)),
                                       builder.fmul(e1, builder.fmul(p1z, szv))),
                          builder.fmul(e2, builder.fmul(p2z, szv)))
        bound = builder.fmul(splat(tmax_v), det)
        neg = builder.and_(lt(det, zero), builder.or_(builder.fcmp_ordered(">=", ts, zero), lt(ts, bound)))
        pos = builder.and_(gt(det, zero), builder.or_(builder.fcmp_ordered("<=", ts, zero), gt(ts, bound)))
        miss = builder.or_(miss, builder.or_(neg, pos))
        inv = builder.fdiv(splat(ir.Constant(dbl, 1.0)), det)
        t = builder.fmul(ts, inv)
        # a hit in front of the origin and before tmax (the traversal's own test of t)
        hit = builder.and_(builder.not_(miss), builder.and_(gt(t, zero), lt(t, splat(tmax_v))))
        out = [builder.select(hit, t, splat(ir.Constant(dbl, math.inf))),
               builder.select(hit, builder.fmul(e1, inv), zero),
               builder.select(hit, builder.fmul(e2, inv), zero)]
        lanes = [builder.extract_element(x, ir.Constant(i32, lane)) for x in out for lane in range(4)]
        return context.make_tuple(builder, signature.return_type, lanes)

    return sig, codegen


#: rays in a packet of :func:`slab_packet`: one ``<8 x double>`` (a 512-bit register, or two
#: 256-bit ones). A power of two (the least entry is found by halving the vector) of at most
#: 63 (the masks are int64)
PACKET_LANES = 8
assert PACKET_LANES & (PACKET_LANES - 1) == 0 and PACKET_LANES <= 63


@intrinsic
def slab_packet(typingctx, box, node, ray, o_row, i_row, t_row):
    """The slab test of :func:`slab4` across the rays of a packet: each of the four children
    of ``node`` against every ray at once, one ray a lane (Embree's packet node test, as
    :func:`slab4` is its single-ray one). ``ray`` is a C-contiguous (R, L) float64 array, one
    column a ray, L = :data:`PACKET_LANES` (:mod:`tracer.packet`'s layout; the width is not
    checked): its rows ``o_row .. o_row + 2`` the origins, ``i_row .. i_row + 2`` the inverse
    directions, ``t_row`` each ray's nearest hit so far (the far end of its interval).

    Returns a tuple of eight: for each child the least entry t over the rays (infinity if no
    ray enters it), then for each child the mask of the rays that enter it (bit i for ray i).
    Each lane's entry t is :func:`slab4`'s for that ray, bit for bit (the same operations in
    the same order); the least over the lanes is the same number as a loop of ``min`` gives
    (up to the sign of a zero entry).
    """
    if not (isinstance(box, types.Array) and box.ndim == 2 and box.layout == "C"
            and box.dtype == types.float64 and isinstance(node, types.Integer)
            and isinstance(ray, types.Array) and ray.ndim == 2 and ray.layout == "C"
            and ray.dtype == types.float64
            and all(isinstance(c, types.IntegerLiteral) for c in (o_row, i_row, t_row))):
        return None
    lanes_n = PACKET_LANES
    rows = (o_row.literal_value, i_row.literal_value, t_row.literal_value)
    f64, i64t = types.float64, types.int64
    sig = types.Tuple([f64] * 4 + [i64t] * 4)(box, node, ray, o_row, i_row, t_row)

    def codegen(context, builder, signature, args):
        box_v, node_v, ray_v = args[:3]
        bary = context.make_array(signature.args[0])(context, builder, box_v)
        rary = context.make_array(signature.args[2])(context, builder, ray_v)
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        dbl = ir.DoubleType()
        vec = ir.VectorType(dbl, lanes_n)
        node64 = builder.sext(node_v, i64) if node_v.type.width < 64 else node_v
        row = builder.gep(bary.data, [builder.mul(node64, ir.Constant(i64, ROW))])

        def lanes(c: int) -> ir.Value:
            # row c of the packet: one value a ray
            p = builder.bitcast(builder.gep(rary.data, [ir.Constant(i64, lanes_n * c)]), vec.as_pointer())
            return builder.load(p, align=8)

        oc, ic, tc = rows
        o = [lanes(oc + a) for a in range(3)]
        inv = [lanes(ic + a) for a in range(3)]
        tmax = lanes(tc)
        inf = _splat(builder, ir.Constant(dbl, math.inf), lanes_n)
        least, masks = [], []
        for j in range(4):
            # child j's box, the same for every ray
            lo = [_splat(builder, builder.load(builder.gep(row, [ir.Constant(i64, 4 * a + j)])), lanes_n)
                  for a in range(3)]
            hi = [_splat(builder, builder.load(builder.gep(row, [ir.Constant(i64, 4 * (3 + a) + j)])), lanes_n)
                  for a in range(3)]
            t = _slab_entries(builder, lo, hi, o, inv, tmax)
            bits = builder.bitcast(builder.fcmp_ordered("<", t, inf), ir.IntType(lanes_n))
            masks.append(builder.zext(bits, i64))
            # the least over the lanes: halves folded onto each other
            width = lanes_n
            while width > 1:
                width //= 2
                upper = builder.shuffle_vector(t, ir.Constant(vec, ir.Undefined),
                                               ir.Constant(ir.VectorType(i32, lanes_n),
                                                           [width + k if k < width else k for k in range(lanes_n)]))
                t = _vmin(builder, t, upper)
            least.append(builder.extract_element(t, ir.Constant(i32, 0)))
        return context.make_tuple(builder, signature.return_type, least + masks)

    return sig, codegen
