"""Compile every CUDA kernel to PTX for a given GPU architecture, without a GPU.

    python benchmarks/cuda_ptx_check.py [--cc 9.0]

Needs numba-cuda with NVVM (``pip install "numba-cuda[cu12]"``), no driver. It types each
kernel of tracer.kernels_cuda with the argument types the CUDA backend launches it with and
runs ``numba.cuda.compile_ptx``: a check that the shared device code is valid CUDA, for
machines where no GPU is at hand.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from numba import cuda, typeof

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracer import kernels_cuda as KC
from tracer.samplers.alias import AliasTables
from tracer.samplers.flow import SquareDensities, SquareSamples
from tracer.samplers.piecewise import PiecewiseTables
from tracer.samplers.uniform import UniformTables


def t(shape: tuple[int, ...] | int, dtype: type = np.float64):
    return typeof(np.zeros(shape, dtype))


F1, F2, F3 = t(4), t((4, 2)), t((4, 3))
I1, B1 = t(4, np.int64), t(4, np.bool_)
F32_3 = t((2, 4, 3), np.float32)
GEOM = (t((1, 3)), t(1), t((1, 3, 3)), t((1, 24)), t((1, 8), np.int64), I1)
i, f = typeof(1), typeof(1.0)

SIGS = {
    "_generate_camera_rays": (t((5, 3)), i, i, i, i, i, i, i, F3, F3, F3, F3, B1, F1, B1, F1),
    "_intersect_closest": (*GEOM, I1, F3, F3, F1, I1, F2),
    "_surface_interaction": (*GEOM, t((1, 3, 3)), I1, I1, I1, F3, F3, F1, I1, F2, F3, F3, F3, I1),
    "_handle_escaped": (I1, i, i, f, F3, F1, F3, F3, B1, F1, B1),
    "_trace_shadow_rays": (*GEOM, I1, F3, F3, F3, F3, F1, I1, I1, B1),
    "_shade_and_scatter": (I1, i, i, i, I1, I1, i, f, i, f, F3, F3, F3, I1, I1, t((2, 8)), F3, F1,
                           F3, B1, F3, F3, F3, F3, B1, F1, B1, F1),
    "_light_uniforms": (I1, i, i, i, I1, I1, F2),
    "_accumulate": (F3, i, F3, F3, I1, I1),
    "paths": (i, i, i, I1, I1, I1),
    "split_escaped": (I1, F1, I1, F2, I1, I1, F1, I1, F2, I1),
    "compact": (I1, B1, I1, I1),
    "gather_rows": (F3, I1, F3),
    "env_eval": (F32_3, f, F3, F3),
    "_map_uv": (f, F3, F2),
}
# the light kernels, once per registered sampler's tables (tracer.light_dispatch)
TABLES = {
    "uniform": UniformTables(np.zeros(1)),
    "piecewise": PiecewiseTables(np.zeros((2, 5)), np.zeros((2, 2)), np.zeros(3), np.zeros((2, 4)),
                                 np.ones(1)),
    "alias": AliasTables(np.zeros((2, 2)), np.zeros((2, 4, 2)), np.zeros((2, 4)), np.ones(1)),
}
for _name, _tab in TABLES.items():
    SIGS[f"_light_sample[{_name}]"] = (typeof(_tab), F32_3, f, F2, F3, F1, F3)
    SIGS[f"_light_pdf[{_name}]"] = (typeof(_tab), f, F3, F1)
SIGS["_light_sample[flow]"] = (typeof(SquareSamples(np.zeros((4, 2)), np.zeros(4))), F32_3, f, F2, F3, F1, F3)
SIGS["_light_pdf[flow]"] = (typeof(SquareDensities(np.zeros(4))), f, F3, F1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cc", default="9.0", help="compute capability, e.g. 8.0 or 9.0")
    cc = tuple(int(x) for x in ap.parse_args().cc.split("."))
    failed = 0
    for name, sig in SIGS.items():
        kernel = getattr(KC, name.split("[")[0])
        t0 = time.perf_counter()
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
            print(f"ok    {name:<24} {len(ptx) // 1024:>5} KB PTX  {time.perf_counter() - t0:5.1f} s")
        except Exception as e:  # noqa: BLE001 - report every kernel
            failed += 1
            print(f"FAIL  {name}: {str(e).splitlines()[0]}")
    print(f"{len(SIGS) - failed} of {len(SIGS)} kernels compiled to PTX for sm_{cc[0]}{cc[1]}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
