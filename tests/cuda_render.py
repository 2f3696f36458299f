"""Render a tiny scene with the CPU and the CUDA backend (helper of tests/test_cuda.py).

    python -m tests.cuda_render OUT.npz BACKEND [FLOW.pt [PRODUCT.npz]]

Run with ``NUMBA_ENABLE_CUDASIM=1 NUMBA_DISABLE_JIT=1`` for the CUDA simulator (the
simulator runs kernels as Python, so the device functions must be plain Python too).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLERS = [("uniform", {}), ("piecewise", {}), ("alias", {}), ("bsdf", {}), ("mis", {}),
            ("mis", {"compensate": False}), ("mis", {"light": "uniform"}), ("mis", {"sequence": "sobol"})]
#: the samplers that read a model file
MODEL_CASES = [("flow", {}), ("mis", {"light": "flow"}), ("product", {}), ("mis", {"light": "product"})]
W, H, SPP, DEPTH = 6, 4, 2, 4


def render_all(device: str, folder: Path, flow: Path | None = None,
               product: Path | None = None) -> dict[str, np.ndarray]:
    from tests.test_render import SPHERES
    from tracer.backend import make_backend
    from tracer.envmap import load_envmap
    from tracer.integrator import render
    from tracer.samplers import make_strategy
    from tracer.scene import load_scene
    from tracer.scene_data import scene_data

    tmp = Path(folder) / "scene.toml"
    tmp.write_text(SPHERES)
    scene = load_scene(tmp)
    env = load_envmap(scene.env)
    data = scene_data(scene, W, H)
    be = make_backend(device)
    out = {}
    models = {"flow": flow, "product": product}
    cases = SAMPLERS + [(n, kw) for n, kw in MODEL_CASES if models[kw.get("light", n)] is not None]
    for name, kw in cases:
        key = name + "".join(f"-{v}" for v in kw.values())
        model = models.get(kw.get("light", name))
        extra = {"model_path": model} if model is not None else {}
        res = render(data, env, make_strategy(name, env, **kw, **extra), W, H, SPP, DEPTH, 5, be=be)
        out[key] = res.film.image()
        out[key + ":var"] = res.film.variance()
        out[key + ":bad"] = np.array(res.film.bad.sum())
    # slabs of pixels (an image larger than a batch): film views from an offset
    res = render(data, env, make_strategy("mis", env), W, H, SPP, DEPTH, 5, be=be, batch_paths=10)
    out["mis-slabs"] = res.film.image()
    out["mis-slabs:var"] = res.film.variance()
    out["mis-slabs:bad"] = np.array(res.film.bad.sum())
    return out


if __name__ == "__main__":
    out = Path(sys.argv[1])
    flow = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    product = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    np.savez(out, **render_all(sys.argv[2], out.parent, flow, product))
