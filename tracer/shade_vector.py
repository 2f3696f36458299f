r"""The shading's maths as vector code on the CPU: one loop per material, compiled with
LLVM's loop vectoriser told to vectorise it.

:func:`tracer.stages.shade_columns` runs :func:`tracer.stages.shade_maths` over a run of
scratch columns of one material. Compiled in a function of its own with the material a
constant (the other materials' branches pruned), its loop is one body of arithmetic and
selects, which LLVM's loop vectoriser can widen to lanes of doubles. Two things stand
in its way, and this module moves both, for these functions alone:

* the loop reads and writes some 45 rows of the scratch, more run-time alias checks than
  LLVM's limits allow ("too many memory checks needed"): they are raised;
* its cost model finds the vector code "not beneficial" for the conductor (the branches of
  GGX sampling become selects on both sides). Measured, it is (``benchmarks/shade_bound.py``):
  the widths are forced to :data:`LANES`: four doubles (AVX2's 256-bit registers), or eight
  where the CPU Numba compiles for has AVX-512 (measured on an AMD EPYC with AVX-512,
  ``profile_stages.py`` alternating with four lanes: the knot's shading stage 0.138-0.144 ->
  0.123-0.136 s, the spheres' 0.142-0.154 -> 0.134-0.135 s; Mitsuba's LLVM back-end likewise
  takes its width from the host).

Those limits are LLVM's command-line options, global to the process, so they are set for
the compilation of these functions only, under Numba's compiler lock, and put back to
LLVM's defaults after. The functions are compiled here, on import, for the one signature
the shading kernel calls them with (and from then on loaded from Numba's cache, which keeps
the vector code; ``tests/test_shade.py`` checks that the vector code is there). The lanes
compute the scalar code's IEEE operations on the same values, so the numbers are those of
the one-entry-at-a-time schedule (the GPU's, run on the CPU) bit for bit
(``tests/test_shade.py``). The options are put back to LLVM's defaults, not to whatever a
user had set before importing this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types
from numba.core import codegen, config
from numba.core.compiler_lock import global_compiler_lock

from tracer.bsdf import CONDUCTOR, DIELECTRIC, DIFFUSE, N_KINDS
from tracer.stages import shade_columns


def host_lanes() -> int:
    """Doubles in one vector register of the CPU Numba compiles for: 8 where its features
    hold AVX-512 (``+avx512f``), else 4. The features are those Numba's CPU code generator
    compiles with (``CPUCodegen._get_host_cpu_features``): ``NUMBA_CPU_FEATURES`` if set,
    else the host's, less AVX under ``NUMBA_ENABLE_AVX=0``."""
    features = config.CPU_FEATURES if config.CPU_FEATURES is not None else codegen.get_host_cpu_features()
    return 8 if "+avx512f" in features.split(",") else 4


#: lanes of the shading's vector code
LANES = host_lanes()
#: LLVM's options while these functions compile, and LLVM's defaults, restored after
#: (``LoopAccessAnalysis.cpp``, ``LoopVectorize.cpp``)
VECTOR_OPTIONS = ("-runtime-memory-check-threshold=512", "-vectorize-memory-check-threshold=4096",
                  "-memory-check-merge-threshold=4096", f"-force-vector-width={LANES}")
DEFAULT_OPTIONS = ("-runtime-memory-check-threshold=8", "-vectorize-memory-check-threshold=128",
                   "-memory-check-merge-threshold=100", "-force-vector-width=0")

#: (j0, j1, scratch, depth, mode, power, rr_depth, rr_cap, rr_shadow)
SIGNATURE = types.void(types.int64, types.int64, types.float64[:, ::1], types.int64,
                       types.int64, types.float64, types.int64, types.float64, types.float64)


@contextmanager
def vectorising() -> Iterator[None]:
    """LLVM's alias-check limits raised and vector widths forced to :data:`LANES`, for what is
    compiled inside (under Numba's compiler lock, so nothing else compiles meanwhile)."""
    with global_compiler_lock:
        for option in VECTOR_OPTIONS:
            llvm.set_option("", option)
        try:
            yield
        finally:
            for option in DEFAULT_OPTIONS:
                llvm.set_option("", option)


with vectorising():

    @njit(SIGNATURE, cache=True, error_model="numpy")
    def shade_diffuse(j0, j1, sf, depth, mode, power, rr_depth, rr_cap, rr_shadow):
        """:func:`tracer.stages.shade_columns` for diffuse columns ``j0`` to ``j1``."""
        shade_columns(DIFFUSE, j0, j1, sf, depth, mode, power, rr_depth, rr_cap, rr_shadow)

    @njit(SIGNATURE, cache=True, error_model="numpy")
    def shade_conductor(j0, j1, sf, depth, mode, power, rr_depth, rr_cap, rr_shadow):
        """:func:`tracer.stages.shade_columns` for rough-conductor columns ``j0`` to ``j1``."""
        shade_columns(CONDUCTOR, j0, j1, sf, depth, mode, power, rr_depth, rr_cap, rr_shadow)

    @njit(SIGNATURE, cache=True, error_model="numpy")
    def shade_dielectric(j0, j1, sf, depth, mode, power, rr_depth, rr_cap, rr_shadow):
        """:func:`tracer.stages.shade_columns` for dielectric columns ``j0`` to ``j1``."""
        shade_columns(DIELECTRIC, j0, j1, sf, depth, mode, power, rr_depth, rr_cap, rr_shadow)


# shade_run has a function for each of these kinds: a new kind needs its own
assert (DIFFUSE, CONDUCTOR, DIELECTRIC) == tuple(range(N_KINDS)), "a material kind without shading"


@njit(cache=True, inline="always")
def shade_run(kind: int, j0: int, j1: int, sf: np.ndarray, depth: int, mode: int, power: float,
              rr_depth: int, rr_cap: float, rr_shadow: float) -> None:
    """Scratch columns ``j0`` to ``j1``, all of material ``kind``, through that material's
    vector code."""
    if kind == DIFFUSE:
        shade_diffuse(j0, j1, sf, depth, mode, power, rr_depth, rr_cap, rr_shadow)
    elif kind == CONDUCTOR:
        shade_conductor(j0, j1, sf, depth, mode, power, rr_depth, rr_cap, rr_shadow)
    else:
        shade_dielectric(j0, j1, sf, depth, mode, power, rr_depth, rr_cap, rr_shadow)
