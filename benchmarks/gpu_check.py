"""CPU against GPU on the bundled scenes, and flow against piecewise light sampling on the GPU.

    python benchmarks/gpu_check.py [--scenes spheres,knot] [--size 1024] [--cpu-spp 2] [--gpu-spp 16]
    python benchmarks/gpu_check.py --warm {cpu,cuda}

Prints light samples and pdf evaluations per second of ``flow``, ``piecewise`` and ``alias``
on the GPU at batches of 64k to 4M (median of 5, device-synchronised), on the first scene's
map; then renders each scene (``scenes/spheres.toml`` and ``knot.toml`` by default) at
``size`` x ``size`` with every sampler on the CPU and on the CUDA back-end (after a warm-up
that compiles the kernels) and prints paths per second of each, their ratio, and where the
GPU's time went (the renderer's stage clock: tracing, shading, light sampling). The flow is
a briefly fitted pixel flow (its speed, not its fit, is measured here). Needs a CUDA GPU;
run by ``benchmarks/gpu_check.sh``.

``--warm cpu`` / ``--warm cuda`` only compile every case's kernels on one back-end (or load
them from Numba's on-disk cache) and exit: ``gpu_check.sh`` runs the two at once, in two
processes, before anything else, so that the cold compile costs about the longer of the two
rather than their sum (on an H200 machine: 198 s for both, the CPU's the longer; the GPU's
cases alone 83 s). The kernels of the two back-ends go to different cache files; the
CPU-side functions both processes run (map, BVH, product model) are compiled by both, the
same signatures, and Numba writes its cache files atomically.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flows.pixel_flow import PixelFlowConfig
from tracer.backend import CPU, make_backend
from tracer.envmap import EnvMap, load_envmap
from tracer.integrator import render
from tracer.samplers import Strategy, make_strategy
from tracer.samplers.alias import AliasSampler
from tracer.samplers.flow import fit_map_flow, make_flow_sampler
from tracer.samplers.piecewise import PiecewiseSampler
from tracer.scene import load_scene
from tracer.scene_data import scene_data

#: the product cases last: theirs are the longest CPU compiles
CASES = [("uniform", {}), ("piecewise", {}), ("alias", {}), ("flow", {}), ("bsdf", {}), ("mis", {}),
         ("mis", {"light": "alias"}), ("mis", {"sequence": "sobol"}), ("mis", {"light": "flow"}),
         ("product", {}), ("mis", {"light": "product"})]


def fit_flow(env: EnvMap, folder: Path) -> Path:
    """A short pixel-flow fit of ``env`` (for its speed, not its fit)."""
    model = folder / "flow.pt"
    fit_map_flow(env, model, progress=False, config=PixelFlowConfig(hidden=16), max_steps=200,
                 eval_every=100)
    return model


def strategy(name: str, kw: dict, env: EnvMap, model: Path) -> Strategy:
    """The strategy of one case (the flow cases read ``model``)."""
    extra = {"model_path": model} if "flow" in (name, kw.get("light")) else {}
    return make_strategy(name, env, **kw, **extra)


def warm(device: str, depth: int) -> None:
    """Compile (or load from the cache) every case's kernels on one back-end."""
    be = CPU if device == "cpu" else make_backend("cuda")
    scene = load_scene(ROOT / "scenes" / "spheres.toml")
    env = load_envmap(scene.env)
    model = fit_flow(env, Path(tempfile.mkdtemp()))
    tiny = scene_data(scene, 8, 8)
    for name, kw in CASES:
        t0 = time.perf_counter()
        render(tiny, env, strategy(name, kw, env, model), 8, 8, 1, depth, 0, be=be)
        print(f"warm {device}: {name} {kw or ''} {time.perf_counter() - t0:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", default="spheres,knot", help="comma-separated names in scenes/")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--cpu-spp", type=int, default=2)
    ap.add_argument("--gpu-spp", type=int, default=16)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--batches", default="16,18,20,22", help="log2 of the light-sampling batches")
    ap.add_argument("--warm", choices=("cpu", "cuda"), help="only compile one back-end's kernels")
    args = ap.parse_args()
    if args.warm:
        warm(args.warm, args.depth)
        return
    from numba import cuda

    gpu = make_backend("cuda")
    print(f"GPU: {getattr(cuda.get_current_device(), 'name', 'CUDA simulator')!s}, Torch on {gpu.torch_device}; "
          f"CPU: {os.cpu_count()} cores, {numba.get_num_threads()} Numba threads")
    # light sampling alone first (GPU only, quick), on the first scene's map
    scenes = args.scenes.split(",")
    env = load_envmap(load_scene(ROOT / "scenes" / f"{scenes[0]}.toml").env)
    first_model = fit_flow(env, Path(tempfile.mkdtemp()))
    print(f"\n== light sampling alone on the GPU, {Path(env.name).name} (median of 5, synchronised) ==")
    print(f"{'batch':>9}{'flow Ms/s':>11}{'pw Ms/s':>10}{'alias Ms/s':>12}{'flow Mpdf/s':>13}"
          f"{'pw Mpdf/s':>11}{'alias Mpdf/s':>14}")
    samplers = {"flow": make_flow_sampler(env, model_path=first_model), "piecewise": PiecewiseSampler(env),
                "alias": AliasSampler(env)}
    for batch in (1 << int(b) for b in args.batches.split(",")):
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

    n = args.size
    for scene_name in scenes:
        scene = load_scene(ROOT / "scenes" / f"{scene_name}.toml")
        env = load_envmap(scene.env)
        # the first scene's flow is the one fitted above
        model = first_model if scene_name == scenes[0] else fit_flow(env, Path(tempfile.mkdtemp()))
        data, tiny = scene_data(scene, n, n), scene_data(scene, 8, 8)
        print(f"== {scene_name}.toml at {n}x{n}, max depth {args.depth}: CPU {args.cpu_spp} spp, "
              f"GPU {args.gpu_spp} spp ==")
        print(f"{'sampler':<20}{'CPU Mpaths/s':>13}{'GPU Mpaths/s':>13}{'GPU/CPU':>8}{'GPU mean':>10}"
              f"{'CPU mean':>10}{'GPU trace s':>12}{'shade s':>8}{'light s':>8}")
        for name, kw in CASES:
            label = name + "".join(f"-{v}" for v in kw.values())
            st = strategy(name, kw, env, model)
            rates, means = {}, {}
            for be, spp in ((CPU, args.cpu_spp), (gpu, args.gpu_spp)):
                render(tiny, env, st, 8, 8, 1, args.depth, 0, be=be)  # compile / load the cache
                res = render(data, env, st, n, n, spp, args.depth, 1, be=be)
                rates[be.name] = res.paths / res.seconds
                means[be.name] = float(res.film.image().mean())
            t = res.times
            print(f"{label:<20}{rates['cpu'] / 1e6:>13.2f}{rates['cuda'] / 1e6:>13.2f}"
                  f"{rates['cuda'] / rates['cpu']:>8.1f}{means['cuda']:>10.4f}{means['cpu']:>10.4f}"
                  f"{t.trace:>12.3f}{t.shade:>8.3f}{t.light:>8.3f}")


if __name__ == "__main__":
    main()
