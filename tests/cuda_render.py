"""Render a tiny scene with the CPU and the CUDA backend (helper of tests/test_cuda.py).

    python -m tests.cuda_render OUT.npz BACKEND

Run with ``NUMBA_ENABLE_CUDASIM=1 NUMBA_DISABLE_JIT=1`` for the CUDA simulator (the
simulator runs kernels as Python, so the device functions must be plain Python too).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLERS = [("uniform", {}), ("piecewise", {}), ("bsdf", {}), ("mis", {}), ("mis", {"light": "uniform"})]
W, H, SPP, DEPTH = 6, 4, 2, 4


def render_all(device: str, folder: Path) -> dict[str, np.ndarray]:
    from tests.test_render import SPHERES
    from tracer.backend import make_backend
    from tracer.envmap import load_envmap
    from tracer.integrator import render
    from tracer.job import scene_data
    from tracer.samplers import make_strategy
    from tracer.scene import load_scene

    tmp = Path(folder) / "scene.toml"
    tmp.write_text(SPHERES)
    scene = load_scene(tmp)
    env = load_envmap(scene.env)
    data = scene_data(scene, W, H)
    be = make_backend(device)
    out = {}
    for name, kw in SAMPLERS:
        key = name + "".join(f"-{v}" for v in kw.values())
        res = render(data, env, make_strategy(name, env, **kw), W, H, SPP, DEPTH, 5, be=be)
        out[key] = res.film.image()
        out[key + ":var"] = res.film.variance()
        out[key + ":bad"] = np.array(res.film.bad.sum())
    return out


if __name__ == "__main__":
    out = Path(sys.argv[1])
    np.savez(out, **render_all(sys.argv[2], out.parent))
