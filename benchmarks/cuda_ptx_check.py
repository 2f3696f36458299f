"""Compile every CUDA kernel to PTX for a given GPU architecture, without a GPU.

    python benchmarks/cuda_ptx_check.py [--cc 9.0]

Needs numba-cuda with NVVM (``pip install "numba-cuda[cu12]"``), no driver. It types each
kernel of tracer.kernels_cuda with the argument types the CUDA backend launches it with and
runs ``numba.cuda.compile_ptx``: a check that the shared device code is valid CUDA, for
machines where no GPU is at hand. The light kernels are compiled once per registered
sampler (:mod:`tracer.light_dispatch`), with the tables a real sampler of a bundled map
hands them (the product sampler's for one queue of conditions); every registered tables
class must be among them.

numba-cuda compiles the device functions that an ``@overload`` resolves to for the current
device's compute capability, which it asks the driver for; here it is told the one asked
for instead. The CUDA simulator cannot stand in for this check: it runs the kernels as
Python, so code that NVVM cannot lower passes there (the light dispatcher's overloads,
inlined by Numba's CPU inliner into CUDA kernels, did: tests/test_cuda_ptx.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

import numpy as np
from numba import cuda, typeof

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer import kernels_cuda as KC
from tracer import light_dispatch
from tracer.backend import CPU
from tracer.envmap import load_envmap
from tracer.geometry import build_geometry
from tracer.pool import INDEX, STATE
from tracer.product_model import build_product_model, random_conditions
from tracer.samplers import make_strategy
from tracer.samplers.flow import SquareDensities, SquareSamples
from tracer.samplers.product import ProductSampler
from tracer.scene import load_scene


def t(shape: tuple[int, ...] | int, dtype: type = np.float64):
    return typeof(np.zeros(shape, dtype))


F1, F2, F3 = t(4), t((4, 2)), t((4, 3))
# the path state and the vectors one stage hands the next (tracer.pool.STATE)
S1, S2, S3 = t(4, STATE), t((4, 2), STATE), t((4, 3), STATE)
I1, B1 = t(4, np.int64), t(4, np.bool_)
J1 = t(4, INDEX)  # queue entries, primitive and material ids (tracer.pool.INDEX)
F32_3 = t((2, 4, 3), np.float32)
# the types of a real Geometry's arrays (one sphere, one triangle), field by field
GEOM = tuple(typeof(a) for a in build_geometry(np.zeros((1, 3)), np.ones(1), np.eye(3)[None]))
i, f = typeof(1), typeof(1.0)

SIGS = {
    "_generate_camera_rays": (t((5, 3)), i, i, i, i, i, i, i, I1, F3, S3, S3, S3, B1, S1, B1, S1),
    "_intersect_closest": (*GEOM, J1, F3, S3, F1, J1, S2),
    "_surface_interaction": (*GEOM, t((1, 4, 3)), I1, I1, J1, F3, S3, F1, J1, S2, F3, S3, S3, J1),
    "_handle_escaped": (J1, i, i, f, F3, F1, S3, S3, B1, S1, B1),
    "_trace_shadow_rays": (*GEOM, J1, F3, S3, F3, S3, S3),
    "_shade_and_scatter": (J1, i, i, i, I1, i, f, i, f, f, F3, S3, S3, J1, I1, t((2, 8)), F3, F1,
                           F3, S3, F3, S3, S3, B1, S1, B1, S1),
    "_light_uniforms": (J1, i, i, i, I1, F2),
    "_record_condition": (J1, S3, S3, J1, F3, F3, I1),
    "_accumulate": (S3, i, F3, F3, I1, I1),
    "paths": (i, i, i, i, i, I1, J1),
    "split_escaped": (J1, F1, J1, S2, J1, J1, F1, J1, S2, I1),
    "compact": (J1, B1, J1, I1),
    "gather_rows": (S3, J1, F3),
    "env_eval": (F32_3, f, F3, F3),
    "_map_uv": (f, F3, F2),
}


def sampler_tables() -> dict[str, NamedTuple]:
    """The tables each registered light sampler hands the light kernels, on a bundled map."""
    env = load_envmap(load_scene(ROOT / "scenes" / "spheres.toml").env)
    tables: dict[str, Any] = {n: make_strategy(n, env).light.tables for n in ("uniform", "piecewise", "alias")}
    cond = random_conditions(8)[0]
    tables["product"] = ProductSampler(env, build_product_model(env)).queue_tables(cond, CPU)
    # the flow's Torch output, as the light kernels read it
    tables["flow-sample"] = SquareSamples(np.zeros((4, 2)), np.zeros(4))
    tables["flow-pdf"] = SquareDensities(np.zeros(4))
    missing = set(light_dispatch._REGISTRY) - {type(t) for t in tables.values()}
    if missing:
        raise SystemExit(f"registered light tables without a case here: {sorted(c.__name__ for c in missing)}")
    return tables


def light_signatures() -> dict[str, tuple]:
    """The light kernels' argument types, once per registered sampler's tables."""
    sigs = {}
    for name, tab in sampler_tables().items():
        if not name.endswith("-pdf"):
            sigs[f"_light_sample[{name}]"] = (typeof(tab), F32_3, f, F2, F3, F1, F3)
        if not name.endswith("-sample"):
            sigs[f"_light_pdf[{name}]"] = (typeof(tab), f, F3, F1)
    return sigs


#: kernels that test triangles, and the products rounded on their own that their PTX must hold:
#: the six of the watertight test's edge functions (tracer.geometry.rounded_product), which a
#: GPU would otherwise fuse into multiply-adds that break watertightness
ROUNDED_PRODUCTS = {"_intersect_closest": 6, "_trace_shadow_rays": 6}


def uncovered(sigs: dict[str, tuple]) -> list[str]:
    """Kernels of :mod:`tracer.kernels_cuda` that no case here compiles (the cache-less twins
    of the light kernels are the same Python functions)."""
    from numba.cuda.dispatcher import CUDADispatcher

    covered = {getattr(KC, name.split("[")[0]).py_func for name in sigs}
    return sorted(name for name, obj in vars(KC).items()
                  if isinstance(obj, CUDADispatcher) and obj.py_func not in covered)


def tell_compute_capability(cc: tuple[int, int]) -> None:
    """Make numba-cuda compile overloads' device functions for ``cc`` without asking a driver."""
    from numba.cuda import dispatcher

    dispatcher.get_current_device = lambda: SimpleNamespace(compute_capability=cc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cc", default="9.0", help="compute capability, e.g. 8.0 or 9.0")
    cc = tuple(int(x) for x in ap.parse_args().cc.split("."))
    tell_compute_capability(cc)
    sigs = {**SIGS, **light_signatures()}
    missing = uncovered(sigs)
    if missing:
        raise SystemExit(f"CUDA kernels without argument types here: {', '.join(missing)}")
    failed = 0
    for name, sig in sigs.items():
        kernel = getattr(KC, name.split("[")[0])
        t0 = time.perf_counter()
        try:
            ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
            have, need = ptx.count("mul.rn.f64"), ROUNDED_PRODUCTS.get(name, 0)
            if have < need:
                raise RuntimeError(f"{have} mul.rn.f64 in its PTX, fewer than the {need} of the "
                                   "watertight test's edge functions")
            print(f"ok    {name:<24} {len(ptx) // 1024:>5} KB PTX  {time.perf_counter() - t0:5.1f} s")
        except Exception as e:  # noqa: BLE001 - report every kernel
            failed += 1
            print(f"FAIL  {name}: {str(e).splitlines()[0]}")
    print(f"{len(sigs) - failed} of {len(sigs)} kernels compiled to PTX for sm_{cc[0]}{cc[1]}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
