#!/usr/bin/env bash
# The GPU check: one command, in the project root, on a machine with a CUDA GPU whose Python
# already has torch, numba, numba-cuda, numpy, scipy, pytest, pillow, matplotlib and tqdm but
# no network. Finishes in under 8 minutes (every step has a time limit within one deadline).
#   0. OpenEXR (and, where needed, NumPy) from wheels in .whl/; a probe kernel on the GPU
#   1. every kernel compiled once, CPU and GPU at the same time (benchmarks/gpu_check.py --warm)
#   2. tests/test_cuda.py on the GPU (the CUDA back-end against the CPU, every sampler)
#   3. benchmarks/gpu_check.py: flow vs piecewise vs alias light samples/s on the GPU at
#      64k..4M; spheres.toml and knot.toml at 1024x1024, every sampler, CPU and GPU paths/s
#      and their ratio
#   4. benchmarks/profile_stages.py --device cuda: where the GPU's time goes, per kernel, in the
#      GPU's default batches (2^22 paths) and in the CPU's (2^17)
# A step that would start past the deadline is skipped and reported (status 1).
# The wheels are made on a networked machine, for the GPU machine's Python version, with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       OpenEXR==3.5.3 numpy==2.4.6
# Extra arguments go to benchmarks/gpu_check.py.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
SITE=${TMPDIR:-/tmp}/gpu_check_site
export PYTHONUNBUFFERED=1
DEADLINE=450 # seconds from the start; every step's limit is cut to what is left of it
status=0
mkdir -p "$SITE"

step() { echo; echo "== $1 (at ${SECONDS} s) =="; }
# limited CAP CMD...: run CMD for at most CAP seconds and at most what is left of the deadline
limited() {
    local cap=$1 left=$((DEADLINE - SECONDS))
    shift
    ((left < cap)) && cap=$left
    if ((cap < 10)); then echo "skipped (the ${DEADLINE} s deadline is reached): $*"; return 1; fi
    timeout "$cap" "$@"
    local rc=$?
    ((rc == 124)) && echo "stopped after its ${cap} s limit: $*"
    return $rc
}
# put a wheel of .whl/ ahead of the machine's packages
use_wheel() {
    local whl
    whl=$(ls .whl/"$1"-*.whl 2>/dev/null | head -1)
    [[ -n $whl ]] || { echo "no $1 wheel in .whl/ (see the header of this script)"; return 1; }
    limited 60 $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE/$1" "$whl" || return 1
    export PYTHONPATH=$SITE/$1${PYTHONPATH:+:$PYTHONPATH}
    echo "using $whl"
}

step "machine"
limited 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
limited 60 $PY -c "import OpenEXR" 2>/dev/null || use_wheel openexr || exit 1
limited 60 $PY -c "import sys, numpy, numba, torch; from importlib.metadata import version; print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'numba', numba.__version__, 'numba-cuda', version('numba-cuda'), 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
# a probe: numba-cuda compiles and runs a kernel with the machine's NumPy; if it cannot (numba-cuda
# 0.30 registers np.row_stack, which NumPy 2.5 removed), the NumPy wheel of .whl/ goes ahead
PROBE='
import numpy as np
from numba import cuda
@cuda.jit
def twice(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] = 2.0 * i
a = cuda.to_device(np.zeros(64))
twice[1, 64](a)
assert a.copy_to_host()[3] == 6.0
print("numba-cuda ran a kernel on", cuda.get_current_device().name, "with NumPy", np.__version__)'
if ! limited 90 $PY -c "$PROBE"; then
    use_wheel numpy && limited 90 $PY -c "$PROBE" || { echo "numba-cuda cannot run a kernel here"; exit 1; }
fi

step "compiling every kernel: CPU and GPU at once"
limited 300 $PY benchmarks/gpu_check.py --warm cpu >"$SITE/warm_cpu.log" 2>&1 &
cpu_pid=$!
limited 300 $PY benchmarks/gpu_check.py --warm cuda >"$SITE/warm_cuda.log" 2>&1 || status=1
wait $cpu_pid || status=1
cat "$SITE/warm_cpu.log" "$SITE/warm_cuda.log"

step "tests/test_cuda.py on the GPU"
limited 120 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py || status=1

step "benchmarks/gpu_check.py"
limited 200 $PY benchmarks/gpu_check.py "$@" || status=1

step "where the GPU's time goes: benchmarks/profile_stages.py --device cuda"
limited 40 $PY benchmarks/profile_stages.py --device cuda --size 1024 --spp 16 || status=1
limited 40 $PY benchmarks/profile_stages.py --device cuda --size 1024 --spp 16 --batch 131072 || status=1
limited 40 $PY benchmarks/profile_stages.py --device cuda --size 1024 --spp 16 --scene knot || status=1
echo
echo "gpu_check.sh: done in ${SECONDS} s, status ${status}"
exit $status
