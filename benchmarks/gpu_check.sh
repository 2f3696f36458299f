#!/usr/bin/env bash
# The GPU check: one command, in the project root, on a machine with a CUDA GPU whose Python
# already has torch, numba, numba-cuda, numpy, scipy, pytest, pillow, matplotlib and tqdm.
#   1. tests/test_cuda.py on the GPU (CUDA back-end against the CPU, every sampler)
#   2. benchmarks/gpu_check.py: spheres.toml at 1024x1024, every sampler, CPU and GPU paths/s
#      and their ratio; flow vs piecewise light samples/s on the GPU at 64k..4M
# OpenEXR (and NumPy, see below) come along as wheels in .whl/, made on a networked machine with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl OpenEXR==3.5.3 numpy==2.4.6
# for the GPU machine's Python version.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
# numba-cuda 0.30 still uses np.row_stack, which NumPy 2.5 removed: a NumPy wheel in .whl/
# (the version the project's own venv resolves) is put ahead of the machine's
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu_check_site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
$PY -c "import numba, numba_cuda, torch; print('numba', numba.__version__, 'numba-cuda', numba_cuda.__version__, 'torch', torch.__version__)"
status=0
echo "== tests/test_cuda.py on the GPU =="
timeout 230 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py -x || status=1
echo "== benchmarks/gpu_check.py =="
timeout 280 $PY benchmarks/gpu_check.py "$@" || status=1
exit $status
