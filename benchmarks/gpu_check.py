"""CPU against GPU on the bundled scene, and flow against piecewise light sampling on the GPU.

    python benchmarks/gpu_check.py [--size 1024] [--cpu-spp 2] [--gpu-spp 16]

Renders ``scenes/spheres.toml`` at ``size`` x ``size`` with every sampler on the CPU and on
the CUDA back-end (after a warm-up that compiles the kernels) and prints paths per second of
each and their ratio; then light samples and pdf evaluations per second of ``flow``,
``piecewise`` and ``alias`` on the GPU at batches of 64k to 4M (median of 5,
device-synchronised). The
flow is a briefly fitted pixel flow (its speed, not its fit, is measured here). Needs a
CUDA GPU; run by ``benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flows.pixel_flow import PixelFlowConfig
from tracer.backend import CPU, make_backend
from tracer.envmap import load_envmap
from tracer.integrator import render
from tracer.samplers import make_strategy
from tracer.samplers.alias import AliasSampler
from tracer.samplers.flow import fit_map_flow, make_flow_sampler
from tracer.samplers.piecewise import PiecewiseSampler
from tracer.scene import load_scene
from tracer.scene_data import scene_data

SCENE = ROOT / "scenes" / "spheres.toml"
CASES = [("uniform", {}), ("piecewise", {}), ("alias", {}), ("flow", {}), ("product", {}), ("bsdf", {}),
         ("mis", {}), ("mis", {"light": "alias"}), ("mis", {"sequence": "sobol"}),
         ("mis", {"light": "flow"}), ("mis", {"light": "product"})]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--cpu-spp", type=int, default=2)
    ap.add_argument("--gpu-spp", type=int, default=16)
    ap.add_argument("--depth", type=int, default=5)
    args = ap.parse_args()
    from numba import cuda

    gpu = make_backend("cuda")
    print(f"GPU: {cuda.get_current_device().name!s}, Torch on {gpu.torch_device}")
    scene = load_scene(SCENE)
    env = load_envmap(scene.env)
    model = Path(tempfile.mkdtemp()) / "flow.pt"
    t0 = time.perf_counter()
    fit_map_flow(env, model, progress=False, config=PixelFlowConfig(hidden=16), max_steps=200,
                 eval_every=100)
    print(f"fitted a short pixel flow in {time.perf_counter() - t0:.1f} s (its speed is measured, not its fit)")

    n = args.size
    data, tiny = scene_data(scene, n, n), scene_data(scene, 8, 8)
    print(f"\n== {SCENE.name} at {n}x{n}, max depth {args.depth}: CPU {args.cpu_spp} spp, "
          f"GPU {args.gpu_spp} spp ==")
    print(f"{'sampler':<12}{'CPU Mpaths/s':>14}{'GPU Mpaths/s':>14}{'GPU/CPU':>9}{'GPU mean':>11}{'CPU mean':>11}")
    for name, kw in CASES:
        label = name + "".join(f"-{v}" for v in kw.values())
        extra = {"model_path": model} if "flow" in (name, kw.get("light")) else {}
        st = make_strategy(name, env, **kw, **extra)
        rates, means = {}, {}
        for be, spp in ((CPU, args.cpu_spp), (gpu, args.gpu_spp)):
            render(tiny, env, st, 8, 8, 1, args.depth, 0, be=be)  # compile / load the cache
            res = render(data, env, st, n, n, spp, args.depth, 1, be=be)
            rates[be.name] = res.paths / res.seconds
            means[be.name] = float(res.film.image().mean())
        print(f"{label:<12}{rates['cpu'] / 1e6:>14.2f}{rates['cuda'] / 1e6:>14.2f}"
              f"{rates['cuda'] / rates['cpu']:>9.1f}{means['cuda']:>11.4f}{means['cpu']:>11.4f}")

    print("\n== light sampling alone on the GPU (median of 5, synchronised) ==")
    print(f"{'batch':>9}{'flow Ms/s':>11}{'pw Ms/s':>10}{'alias Ms/s':>12}{'flow Mpdf/s':>13}"
          f"{'pw Mpdf/s':>11}{'alias Mpdf/s':>14}")
    samplers = {"flow": make_flow_sampler(env, model_path=model), "piecewise": PiecewiseSampler(env),
                "alias": AliasSampler(env)}
    for batch in (1 << 16, 1 << 18, 1 << 20, 1 << 22):
        u = cuda.to_device(np.random.default_rng(0).random((batch, 2)))
        row = []
        for s in samplers.values():
            wi = s.sample(u, gpu).wi  # warm-up
            s.pdf(wi, gpu)
            gpu.sync()
            ts, tp = [], []
            for _ in range(5):
                t0 = time.perf_counter()
                s.sample(u, gpu)
                gpu.sync()
                ts.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                s.pdf(wi, gpu)
                gpu.sync()
                tp.append(time.perf_counter() - t0)
            row.append((batch / statistics.median(ts) / 1e6, batch / statistics.median(tp) / 1e6))
        (fs, fp), (ps, pp), (as_, ap) = row
        print(f"{batch:>9}{fs:>11.1f}{ps:>10.1f}{as_:>12.1f}{fp:>13.1f}{pp:>11.1f}{ap:>14.1f}")


if __name__ == "__main__":
    main()
