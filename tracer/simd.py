r"""Four-wide vector code for the CPU kernels, written as LLVM vector IR (Numba intrinsics).

Numba compiles the kernels' scalar code one value at a time and leaves LLVM's
superword-level vectoriser off, so four slab tests of a 4-wide BVH node stay four scalar
chains. :func:`slab4` states them as one ``<4 x double>`` computation (Embree's
``intersect_node`` in ``bvh/node_intersector1.h`` is the same slab test over its node's
four children in one SIMD register), in double precision: the entry distances are the
scalar code's, bit for bit (the same IEEE operations on the same values, only four at a
time).

The intrinsics compile for the CPU only. Callers reach them through a stub with a scalar
twin (:func:`tracer.geometry.children_entry`), which the CUDA target and Python (the CUDA
simulator) run instead.
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
