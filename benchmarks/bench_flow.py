"""The flow sampler against piecewise, map by map: fit, size, KL, throughput, render error.

    python benchmarks/bench_flow.py [--maps a,b] [--spp 16] [--ref-spp 1024] [--size 128]

For each map (default: the five maps in ../shared/envmaps, else the bundled ones) prints:
fit seconds (from the cached fit's metadata; a missing fit is made now, and cached), the
parameter count and file size of the flow, KL(target || flow) in nats on the 500 x 500 grid,
light samples and pdf evaluations per second of ``flow`` and ``piecewise`` as the renderer
calls them (direction, solid-angle pdf and radiance included) at batches of 4k, 64k and 256k
(median of 5), and relMSE at equal spp of ``flow`` and ``piecewise`` with next-event
estimation only (the light sampler is all that differs) on scenes/spheres.toml lit by the
map, against a ``mis`` reference at ``--ref-spp``: the mean over ``--seeds`` independent
renders, with its standard error (relMSE at low spp is heavy-tailed: one firefly moves it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_flow_fit import map_paths
from tracer.envmap import load_envmap
from tracer.integrator import render
from tracer.job import error_metrics
from tracer.samplers import make_reference_strategy, make_strategy
from tracer.samplers.flow import cache_path, make_flow_sampler
from tracer.samplers.piecewise import PiecewiseSampler
from tracer.scene import EnvSpec, load_scene
from tracer.scene_data import scene_data

BATCHES = (4096, 65536, 262144)


def rate(fn: Callable[[np.ndarray], Any], arg: np.ndarray, repeats: int = 5) -> float:
    """Items per second of ``fn(arg)``: the median of ``repeats`` calls after a warm-up."""
    fn(arg)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(arg)
        ts.append(time.perf_counter() - t0)
    return len(arg) / statistics.median(ts)


def relmse_of_renders(data: Any, env: Any, strategy: Any, size: int, spp: int, depth: int, seeds: int,
                      ref: np.ndarray) -> tuple[float, float]:
    """relMSE against ``ref`` of ``seeds`` independent ``size`` x ``size`` renders (seeds 1, 2, ...):
    the mean and its standard error."""
    errs = [error_metrics(render(data, env, strategy, size, size, spp, depth, seed).film.image(), ref)["relmse"]
            for seed in range(1, seeds + 1)]
    return float(np.mean(errs)), float(np.std(errs, ddof=1) / np.sqrt(len(errs)))


def ratio_cell(a: tuple[float, float], b: tuple[float, float]) -> str:
    """``a / b`` of two (mean, standard error) pairs, with the ratio's standard error."""
    (am, ase), (bm, bse) = a, b
    return f"{am / bm:.3f} ({am / bm * np.hypot(ase / am, bse / bm):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maps", help="comma-separated map names or files (default: all)")
    ap.add_argument("--spp", type=int, default=16, help="spp of the compared renders")
    ap.add_argument("--ref-spp", type=int, default=1024, help="spp of the mis reference")
    ap.add_argument("--size", type=int, default=128, help="image width and height")
    ap.add_argument("--depth", type=int, default=5, help="max bounces")
    ap.add_argument("--seeds", type=int, default=32, help="independent renders per sampler")
    args = ap.parse_args()
    scene = load_scene(ROOT / "scenes" / "spheres.toml")
    data = scene_data(scene, args.size, args.size)
    rows = []
    for path in map_paths(args.maps):
        env = load_envmap(EnvSpec(kind="file", path=path))
        flow = make_flow_sampler(env, progress=False)  # loads the cached fit or fits now
        samplers = {"flow": flow, "piecewise": PiecewiseSampler(env)}
        thr = {}
        for name, s in samplers.items():
            for b in BATCHES:
                u = np.random.default_rng(b).random((b, 2))
                wi = s.sample(u).wi
                thr[name, "sample", b] = rate(s.sample, u)
                thr[name, "pdf", b] = rate(s.pdf, wi)
        ref = render(data, env, make_reference_strategy(env), args.size, args.size, args.ref_spp, args.depth, 999)
        rel = {}
        for name in samplers:
            extra = {"model_path": cache_path(env)} if name == "flow" else {}
            strategy = make_strategy(name, env, **extra)
            rel[name] = relmse_of_renders(data, env, strategy, args.size, args.spp, args.depth, args.seeds,
                                          ref.film.image())
        rows.append((path.stem, flow.meta, cache_path(env).stat().st_size, thr, rel))
        print(f"{path.stem}: done", file=sys.stderr, flush=True)

    head = ["map", "fit s", "params", "KB", "KL nats"]
    head += [f"{k} flow/pw @{b // 1024}k M/s" for k in ("sample", "pdf") for b in BATCHES]
    head += [f"relMSE flow @{args.spp}spp", "relMSE pw", "flow/pw"]
    print(f"\nrelMSE: mean (standard error) of {args.seeds} renders at {args.size}x{args.size}, "
          f"against mis at {args.ref_spp} spp")
    print("\n| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for name, meta, size, thr, rel in rows:
        cells = [name, f"{meta.get('fit_seconds', float('nan')):.1f}", str(meta.get("n_parameters", "?")),
                 str(size // 1024), f"{meta.get('kl', float('nan')):.4f}"]
        cells += [f"{thr['flow', k, b] / 1e6:.2f} / {thr['piecewise', k, b] / 1e6:.2f}"
                  for k in ("sample", "pdf") for b in BATCHES]
        (fm, fs), (pm, ps) = rel["flow"], rel["piecewise"]
        cells += [f"{fm:.4g} ({fs:.2g})", f"{pm:.4g} ({ps:.2g})", ratio_cell(rel["flow"], rel["piecewise"])]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
