r"""The square root as LLVM's ``llvm.sqrt`` intrinsic, for the per-entry kernels.

Numba lowers ``math.sqrt`` to a call of libm's ``sqrt``, which may set ``errno`` for a
negative argument, so LLVM keeps it a call unless it can prove the argument non-negative
(``sqrt(x * x + y * y + z * z)`` it cannot). A call is a stop for the loop vectoriser ("call
instruction cannot be vectorized"). The intrinsic has no ``errno``: it is one ``vsqrtsd``,
or a lane of ``vsqrtpd``, and IEEE 754's correctly rounded square root, so its values are
libm's bit for bit (a negative argument gives NaN, as ``math.sqrt`` does in a kernel).

:func:`fsqrt` is a stub: on the CPU target it compiles to the intrinsic; on the CUDA target
and in Python (the CUDA simulator) it is ``math.sqrt`` (numba-cuda lowers that to
libdevice's ``__nv_sqrt``, also correctly rounded).
"""

from __future__ import annotations

import math

from numba import types
from numba.extending import intrinsic, overload


def fsqrt(x: float) -> float:
    """The correctly rounded square root of x."""
    return math.sqrt(x)


@intrinsic
def _sqrt_intrinsic(typingctx, x):
    sig = types.float64(types.float64)

    def codegen(context, builder, signature, args):
        fn = builder.module.declare_intrinsic("llvm.sqrt", [args[0].type])
        return builder.call(fn, [args[0]])

    return sig, codegen


@overload(fsqrt, target="cpu", inline="always")
def _fsqrt_cpu(x):
    def impl(x):
        return _sqrt_intrinsic(float(x))

    return impl


@overload(fsqrt, target="cuda")
def _fsqrt_cuda(x):
    def impl(x):
        return math.sqrt(x)

    return impl
