"""The CUDA backend agrees with the CPU backend: the same image from the same random numbers.

Without a GPU the CUDA kernels run under numba's CUDA simulator (in a subprocess, with
``NUMBA_ENABLE_CUDASIM=1`` and ``NUMBA_DISABLE_JIT=1``: the simulator runs kernels as Python,
so the shared device functions must be Python too); with a GPU they run on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cuda_render import MODEL_CASES, SAMPLERS, render_all
from tracer.backend import cuda_available, make_backend
from tracer.errors import TracerError

ROOT = Path(__file__).resolve().parents[1]


def run_on_cuda(module: str, *args: str) -> str:
    """Run a helper module of the CUDA tests in a child process, on the GPU if there is one
    and under the CUDA simulator otherwise; returns which ("gpu" or "simulator")."""
    env = dict(os.environ)
    where = "gpu"
    if not cuda_available():
        env.update(NUMBA_ENABLE_CUDASIM="1", NUMBA_DISABLE_JIT="1")
        where = "simulator"
    r = subprocess.run([sys.executable, "-m", module, *args], check=False, cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return where


@pytest.fixture(scope="module")
def flow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly fitted flow for the test scene's sky."""
    from tests.test_flow_sampler import FITS
    from tests.test_render import SPHERES
    from tracer.envmap import load_envmap
    from tracer.samplers.flow import fit_map_flow
    from tracer.scene import load_scene

    folder = tmp_path_factory.mktemp("flow")
    (folder / "scene.toml").write_text(SPHERES)
    env = load_envmap(load_scene(folder / "scene.toml").env)
    fit_map_flow(env, folder / "sky.pt", progress=False, **FITS["pixel"])
    return folder / "sky.pt"


@pytest.fixture(scope="module")
def product_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The product model of the test scene's sky (built here: the simulator would build it
    in Python)."""
    from tests.test_render import SPHERES
    from tracer.envmap import load_envmap
    from tracer.product_model import build_product_model, save_product_model
    from tracer.scene import load_scene

    folder = tmp_path_factory.mktemp("product")
    (folder / "scene.toml").write_text(SPHERES)
    env = load_envmap(load_scene(folder / "scene.toml").env)
    save_product_model(build_product_model(env), folder / "sky.npz")
    return folder / "sky.npz"


@pytest.fixture(scope="module")
def cuda_images(tmp_path_factory: pytest.TempPathFactory, flow_model: Path,
                product_model: Path) -> tuple[dict[str, np.ndarray], str]:
    out = tmp_path_factory.mktemp("cuda") / "cuda.npz"
    where = run_on_cuda("tests.cuda_render", str(out), "cuda", str(flow_model), str(product_model))
    with np.load(out) as z:
        return {k: z[k] for k in z.files}, where


@pytest.fixture(scope="module")
def cpu_images(tmp_path_factory: pytest.TempPathFactory, flow_model: Path,
               product_model: Path) -> dict[str, np.ndarray]:
    return render_all("cpu", tmp_path_factory.mktemp("cpu"), flow_model, product_model)


CASES = [n + "".join(f"-{v}" for v in kw.values()) for n, kw in SAMPLERS + MODEL_CASES] + ["mis-slabs"]


@pytest.mark.parametrize("key", CASES)
def test_cuda_and_cpu_render_the_same_image(cuda_images: tuple, cpu_images: dict, key: str) -> None:
    cu, where = cuda_images
    cpu = cpu_images[key]
    assert cu[key].shape == cpu.shape
    assert int(cu[key + ":bad"]) == 0
    assert cpu.max() > 0
    # the simulator runs the same float64 operations in Python: bit-identical (the flow's
    # float32 Torch calls too); a GPU may contract multiply-adds (FMA) and runs Torch's CUDA
    # kernels, so there allow rounding-level differences
    tol = 0.0 if where == "simulator" else (1e-4 if "flow" in key else 1e-9)
    np.testing.assert_allclose(cu[key], cpu, rtol=tol, atol=tol)
    np.testing.assert_allclose(cu[key + ":var"], cpu_images[key + ":var"], rtol=max(tol, 1e-12), atol=1e-15)


def test_the_cuda_traversal_is_watertight(tmp_path: Path) -> None:
    # rays at a closed mesh's shared edges through the CUDA closest-hit kernel: on a GPU, a
    # multiply-add fused into an edge function would let some slip between two triangles
    out = tmp_path / "hits.npz"
    run_on_cuda("tests.cuda_watertight", str(out))
    with np.load(out) as z:
        dist, hit_t, hit_prim = z["dist"], z["hit_t"], z["hit_prim"]
    assert dist.size > 2000
    assert (hit_prim >= 0).all(), f"{(hit_prim < 0).sum()} of {dist.size} rays slipped through"
    np.testing.assert_allclose(hit_t, dist, rtol=1e-9)


def test_device_flag() -> None:
    assert make_backend("cpu").name == "cpu"
    assert make_backend("auto").name == ("cuda" if cuda_available() else "cpu")
    if not cuda_available():
        with pytest.raises(TracerError, match="no CUDA GPU"):
            make_backend("cuda")
    with pytest.raises(TracerError, match="unknown device"):
        make_backend("tpu")


NUMPY_PROBE = """
import numpy
if {remove}:
    del numpy.row_stack  # as NumPy 2.5 did
from tracer.backend_cuda import require_numpy_support
from tracer.errors import TracerError
try:
    require_numpy_support()
    print("supported")
except TracerError as e:
    print(e)
"""


@pytest.mark.parametrize("remove", [False, True])
def test_a_numpy_that_numba_cuda_cannot_use_is_refused_in_one_line(remove: bool) -> None:
    # a GPU machine had NumPy 2.5.2 beside numba-cuda 0.30.4, whose NumPy support registers
    # np.row_stack: the first kernel compile failed deep inside numba-cuda. The back-end now
    # loads that support when it is made (not under the simulator, which has none)
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM", "NUMBA_DISABLE_JIT")}
    r = subprocess.run([sys.executable, "-c", NUMPY_PROBE.format(remove=remove)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    if remove:
        assert r.stdout.startswith("--device cuda: numba-cuda "), r.stdout
        assert "cannot compile kernels with NumPy" in r.stdout and "row_stack" in r.stdout, r.stdout
    else:
        assert r.stdout.strip() == "supported", r.stdout
