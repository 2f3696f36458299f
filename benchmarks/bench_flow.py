"""The flow sampler against piecewise, map by map: fit, size, KL, throughput, render error.

    python benchmarks/bench_flow.py [--maps DIR_OR_FILES...] [--spp 16] [--ref-spp 1024]

For each map (default: the five maps in ../shared/envmaps, else the bundled ones) prints:
fit seconds (from the cached fit's metadata; a missing fit is made now), parameter count and
file bytes, KL(target || flow) in nats on a 500x500 grid, sample and pdf throughput of the
flow and of piecewise at batches of 4k, 64k and 256k (median of 5), and relMSE at equal spp
of ``flow`` and ``piecewise`` (next-event estimation only, so the light sampler is all that
differs) on scenes/spheres.toml at 128x128 against a ``mis`` reference at ``--ref-spp``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer.envmap import load_envmap
from tracer.integrator import render
from tracer.job import error_metrics, scene_data
from tracer.samplers import make_strategy
from tracer.samplers.flow import cache_path, make_flow_sampler
from tracer.samplers.piecewise import PiecewiseSampler
from tracer.scene import EnvSpec, load_scene

BATCHES = (4096, 65536, 262144)


def rate(fn, arg, repeats: int = 5) -> float:
    fn(arg)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(arg)
        ts.append(time.perf_counter() - t0)
    return len(arg) / statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maps", nargs="*", type=Path)
    ap.add_argument("--spp", type=int, default=16)
    ap.add_argument("--ref-spp", type=int, default=1024)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()
    shared = ROOT.parent / "shared" / "envmaps"
    maps = args.maps or sorted((shared if shared.is_dir() else ROOT / "scenes" / "envmaps").glob("*.exr"))
    scene = load_scene(ROOT / "scenes" / "spheres.toml")
    data = scene_data(scene, args.size, args.size)
    rows = []
    for path in maps:
        env = load_envmap(EnvSpec(kind="file", path=path))
        flow = make_flow_sampler(env)  # loads the cached fit or fits now
        meta = flow.meta
        pw = PiecewiseSampler(env)
        thr = {}
        for name, s in (("flow", flow), ("piecewise", pw)):
            for b in BATCHES:
                u = np.random.default_rng(b).random((b, 2))
                wi = s.sample(u).wi
                thr[name, "sample", b] = rate(s.sample, u)
                thr[name, "pdf", b] = rate(s.pdf, wi)
        # render error at equal spp against a MIS reference
        ref = render(data, env, make_strategy("mis", env), args.size, args.size, args.ref_spp, 5, 999).film.image()
        rel = {}
        for name in ("piecewise", "flow"):
            st = make_strategy(name, env, model_path=cache_path(env)) if name == "flow" else make_strategy(name, env)
            img = render(data, env, st, args.size, args.size, args.spp, 5, 1).film.image()
            rel[name] = error_metrics(img, ref)["relmse"]
        rows.append((path.stem, meta, cache_path(env).stat().st_size, thr, rel))
        print(f"{path.stem}: done", file=sys.stderr)

    print(f"\n{'map':<10}{'fit s':>7}{'params':>8}{'KB':>6}{'KL nats':>9}  "
          + "".join(f"{'flow/pw smp ' + str(b // 1024) + 'k':>20}" for b in BATCHES)
          + f"{'relMSE flow':>13}{'relMSE pw':>11}{'ratio':>7}")
    for name, meta, size, thr, rel in rows:
        cols = "".join(f"{thr['flow', 'sample', b] / 1e6:>9.2f}/{thr['piecewise', 'sample', b] / 1e6:<6.2f}M/s"[:20].rjust(20)
                       for b in BATCHES)
        print(f"{name:<10}{meta.get('fit_seconds', float('nan')):>7.1f}{meta.get('n_parameters', 0):>8}{size // 1024:>6}"
              f"{meta.get('kl', float('nan')):>9.4f}  {cols}{rel['flow']:>13.4g}{rel['piecewise']:>11.4g}"
              f"{rel['flow'] / rel['piecewise']:>7.2f}")
    print("\npdf evaluations per second (flow / piecewise), M/s:")
    for name, _, _, thr, _ in rows:
        print(f"{name:<10}" + "".join(f"{thr['flow', 'pdf', b] / 1e6:>10.2f}/{thr['piecewise', 'pdf', b] / 1e6:<7.2f}" for b in BATCHES))


if __name__ == "__main__":
    main()
