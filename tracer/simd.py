r"""Four-wide vector code for the CPU kernels, written as LLVM vector IR (Numba intrinsics).

Numba compiles the kernels' scalar code one value at a time and leaves LLVM's
superword-level vectoriser off, so four slab tests of a 4-wide BVH node stay four scalar
chains. :func:`slab4` states them as one ``<4 x double>`` computation (Embree's
``intersect_node`` in ``bvh/node_intersector1.h`` is the same slab test over its node's
four children in one SIMD register), in double precision: the entry distances are the
scalar code's, bit for bit (the same IEEE operations on the same values, only four at a
time).

:func:`tri4` does the same for a leaf's block of four triangles (Embree's ``Triangle4``):
the watertight ray-triangle test of each in one lane, the scalar test's values bit for bit.

The intrinsics compile for the CPU only. Callers reach them through stubs with scalar twins
(:func:`tracer.geometry.children_entry`, :func:`tracer.geometry.tri4_entry`), which the
CUDA target and Python (the CUDA simulator) run instead.
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

        def splat(x: ir.Value) -> ir.Value:
            v = ir.Constant(vec, ir.Undefined)
            for lane in range(4):
                v = builder.insert_element(v, x, ir.Constant(i32, lane))
            return v

        # Numba's min and max of two floats: the first argument on a tie
        def vmin(a: ir.Value, b: ir.Value) -> ir.Value:
            return builder.select(builder.fcmp_ordered("<", b, a), b, a)

        def vmax(a: ir.Value, b: ir.Value) -> ir.Value:
            return builder.select(builder.fcmp_ordered(">", b, a), b, a)

        near, far = [], []
        for a, (o, inv) in enumerate(((ox_v, ix_v), (oy_v, iy_v), (oz_v, iz_v))):
            so, si = splat(o), splat(inv)
            t0 = builder.fmul(builder.fsub(load(a), so), si)
            t1 = builder.fmul(builder.fsub(load(3 + a), so), si)
            near.append(vmin(t0, t1))
            far.append(vmax(t0, t1))
        # combined in _slab's order, so that even the sign of a zero entry is the same
        tn = vmax(vmax(near[0], near[1]), vmax(near[2], splat(ir.Constant(dbl, 0.0))))
        tf = vmin(vmin(far[0], far[1]), vmin(far[2], splat(tmax_v)))
        entered = builder.fcmp_ordered("<=", tn, builder.fmul(tf, splat(ir.Constant(dbl, FAR_SCALE))))
        t = builder.select(entered, tn, splat(ir.Constant(dbl, math.inf)))
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
            v = ir.Constant(vec, ir.Undefined)
            for lane in range(4):
                v = builder.insert_element(v, x, ir.Constant(i32, lane))
            return v

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
