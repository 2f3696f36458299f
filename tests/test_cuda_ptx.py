"""Every CUDA kernel compiles for a real GPU, without one.

The CUDA simulator (tests/test_cuda.py in CI) runs the kernels as Python, so code that NVVM
cannot lower passes there; ``benchmarks/cuda_ptx_check.py`` types every kernel of
:mod:`tracer.kernels_cuda` as the CUDA back-end launches it (the light kernels once per
registered sampler) and compiles it to PTX for sm_90 with NVVM (``numba-cuda[cu12]``, in the
``dev`` extra). It runs in a subprocess: it tells numba-cuda a compute capability in place of
the driver's.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_cuda_kernel_compiles_to_ptx() -> None:
    r = subprocess.run([sys.executable, "benchmarks/cuda_ptx_check.py", "--cc", "9.0"], cwd=ROOT,
                       capture_output=True, text=True, timeout=900, check=False)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    done = re.search(r"^(\d+) of (\d+) kernels compiled to PTX for sm_90$", r.stdout, re.MULTILINE)
    assert done is not None, out[-4000:]
    # the stage kernels, the queue kernels and two light kernels per registered sampler
    assert done[1] == done[2] and int(done[2]) >= 25, done[0]
