"""Which CPU kernels LLVM compiled to vector code: packed against scalar double arithmetic.

    python benchmarks/vector_check.py [--scene spheres] [--cpu NAME ...] [--tuning-only]

Renders a small image (from the kernel cache) to learn the signatures the render compiles,
then compiles the grouped kernels afresh in a child process for each ``--cpu``: ``host``
(the default), or an LLVM CPU name (``skylake-avx512``, ``znver3``, ``haswell`` ...), set as
``NUMBA_CPU_NAME`` with ``NUMBA_CPU_FEATURES`` empty, so that the code is that CPU's, both its
instruction set and its tuning (with the name alone, Numba keeps the host's instruction set
and takes only the tuning, which ``--tuning-only`` asks for). The code is only compiled,
never run, so any x86 CPU will do. It counts, in the machine code of each kernel (whose
parallel loop Numba links into it), the packed double-precision multiplies, adds,
subtracts, divides, fused multiply-adds and square roots (``mulpd``, ``vfmadd231pd``,
``sqrtpd`` ...) against the scalar ones (``...sd``). A kernel whose maths LLVM vectorised
has dozens to hundreds of packed ones; one that stayed scalar has none or a handful (the
BVH node and triangle tests are vector IR of their own, :mod:`tracer.simd`, and are not
among these).

The light kernels are written in groups (a step for 16 entries, over a scratch of their
own) so that LLVM *can* vectorise them; whether it does depends on the CPU and on the LLVM
version under Numba, and this prints which. The shading kernel's maths is compiled with
LLVM's vectoriser told to vectorise it (:mod:`tracer.shade_vector`, linked into the kernel,
so counted with it).
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: the kernels written to vectorise across a group of entries
KERNELS = ("shade_and_scatter", "light_sample_grouped", "light_pdf_grouped")
PACKED = re.compile(r"\bv?(?:mul|add|sub|div|sqrt|fn?m(?:add|sub)\d{3})pd\b")
SCALAR = re.compile(r"\bv?(?:mul|add|sub|div|sqrt|fn?m(?:add|sub)\d{3})sd\b")


def signatures(scene: str) -> dict[str, list]:
    """The signatures of :data:`KERNELS` that a small render of ``scene`` compiles."""
    from tracer import kernels
    from tracer.envmap import load_envmap
    from tracer.integrator import render
    from tracer.samplers import make_strategy
    from tracer.scene import load_scene
    from tracer.scene_data import scene_data

    sc = load_scene(ROOT / "scenes" / f"{scene}.toml")
    env = load_envmap(sc.env)
    render(scene_data(sc, 8, 8), env, make_strategy("mis", env), 8, 8, 1, 5, 0)
    return {name: list(getattr(kernels, name).signatures) for name in KERNELS}


def count(sigs_file: str) -> None:
    """Child process: compile each signature afresh and print the instruction counts."""
    from tracer import kernels

    with open(sigs_file, "rb") as f:
        sigs = pickle.load(f)
    for name, ss in sigs.items():
        fn = getattr(kernels, name)
        for sig in ss:
            fn.compile(sig)
            # the prange loop's library is linked into the kernel's module when it is finalised
            asm = fn.overloads[sig].library.get_asm_str()
            packed, scalar = len(PACKED.findall(asm)), len(SCALAR.findall(asm))
            print(f"  {name:<24}{packed:>8}{scalar:>8}   {'vector' if packed > 20 else 'scalar'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default="spheres")
    ap.add_argument("--cpu", nargs="*", default=["host"], help="Numba CPU names to compile for")
    ap.add_argument("--tuning-only", action="store_true",
                    help="the named CPUs' tuning with the host's instruction set")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        count(a.child)
        return
    import llvmlite
    import llvmlite.binding
    import numba

    sigs = signatures(a.scene)
    with tempfile.TemporaryDirectory() as tmp:
        sigs_file = os.path.join(tmp, "sigs.pkl")
        with open(sigs_file, "wb") as f:
            pickle.dump(sigs, f)
        print(f"Numba {numba.__version__}, llvmlite {llvmlite.__version__} "
              f"(LLVM {'.'.join(map(str, llvmlite.binding.llvm_version_info))})")
        for cpu in a.cpu:
            cache = os.path.join(tmp, f"cache-{cpu}")
            # a fresh cache: machine code loaded from the cache cannot be inspected
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            if cpu != "host":
                # the CPU's own instruction set: features empty, not the host's
                env["NUMBA_CPU_NAME"] = cpu
                if not a.tuning_only:
                    env["NUMBA_CPU_FEATURES"] = ""
            what = " (tuning; the host's instruction set)" if a.tuning_only and cpu != "host" else ""
            print(f"\n{cpu}{what}:\n  {'kernel':<24}{'packed':>8}{'scalar':>8}")
            sys.stdout.flush()
            subprocess.run([sys.executable, __file__, "--child", sigs_file], env=env, check=True)


if __name__ == "__main__":
    main()
