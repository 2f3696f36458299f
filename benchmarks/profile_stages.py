"""Where a render's time goes: wall time and entries of every kernel and back-end call.

    python benchmarks/profile_stages.py [--scene spheres] [--sampler mis] [--light piecewise]
        [--sequence independent] [--shadow-rr 0.15] [--size 256] [--spp 64] [--batch N] [--no-pool]
        [--device cpu]

Wraps each stage kernel of the back-end's kernel module (:mod:`tracer.kernels`, or
:mod:`tracer.kernels_cuda` with ``--device cuda``) and each array operation of the back-end
in a timer, renders once after a warm-up, and prints per call site the seconds, the entries
it processed (the length of its queue) and the wall time per entry (all threads together).
On the GPU every timed call is bracketed by device synchronisations, so a call's seconds are
its kernels' run time plus one launch and sync. ``--no-pool`` makes every stage allocate
fresh arrays, as the renderer did before :mod:`tracer.pool`, to measure what the pool buys.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer.backend import make_backend
from tracer.envmap import load_envmap
from tracer.integrator import render
from tracer.samplers import SHADOW_RR, make_strategy
from tracer.scene import load_scene
from tracer.scene_data import scene_data

KERNELS = ("generate_camera_rays", "intersect_coherent", "intersect_closest", "surface_interaction", "handle_escaped",
           "trace_shadow_rays", "shade_and_scatter", "light_uniforms", "accumulate", "record_condition")
BACKEND = ("paths", "split_escaped", "compact", "gather", "env_eval", "light_sample", "light_pdf", "escaped")
SECONDS: collections.Counter = collections.Counter()
ENTRIES: collections.Counter = collections.Counter()
SYNC: list[Callable[[], None]] = []  # the back-end's device synchronisation (a no-op on the CPU)


def queue_length(args: tuple) -> int:
    """The entries a call works on: the first array argument that is a queue (not a table)."""
    for a in args:
        # host or device array (a device array has shape and ndim but is no ndarray)
        if not isinstance(a, tuple) and getattr(a, "ndim", 0) >= 1 and a.shape[0] > 64:
            return int(a.shape[0])
    return 0


def timed(label: str, f: Callable[..., Any], queue_arg: int | None = None) -> Callable[..., Any]:
    def g(*args: Any, **kw: Any) -> Any:
        ENTRIES[label] += queue_length(args[queue_arg:] if queue_arg is not None else args)
        SYNC[0]()
        t0 = time.perf_counter()
        r = f(*args, **kw)
        SYNC[0]()
        SECONDS[label] += time.perf_counter() - t0
        return r

    return g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default="spheres")
    ap.add_argument("--sampler", default="mis")
    ap.add_argument("--light", default="piecewise")
    ap.add_argument("--sequence", default="independent")
    ap.add_argument("--shadow-rr", type=float, default=SHADOW_RR, help="shadow-ray roulette (0: off)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--spp", type=int, default=64)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--batch", type=int, help="paths per batch (default: the back-end's)")
    ap.add_argument("--no-pool", action="store_true", help="fresh arrays at every stage")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    be = make_backend(args.device)
    SYNC.append(be.sync)
    backend_class = type(be)
    scene = load_scene(ROOT / "scenes" / f"{args.scene}.toml")
    env = load_envmap(scene.env)
    data = scene_data(scene, args.size, args.size)
    kw = {"light": args.light} if args.sampler == "mis" else {}
    st = make_strategy(args.sampler, env, sequence=args.sequence, shadow_rr=args.shadow_rr, **kw)
    if args.no_pool:
        backend_class.pooled = lambda self: self  # type: ignore[method-assign]
    for name in KERNELS:
        # the surface kernels take tables first: count the queue (idx) from its position on
        setattr(be.k, name, timed(name, getattr(be.k, name), 4 if name == "surface_interaction" else None))
    for name in BACKEND:
        # light_sample, light_pdf, env_eval and gather take tables, the map or the whole
        # path state first: count from the queue
        skip = {"light_sample": 2, "light_pdf": 2, "env_eval": 1, "gather": 2, "escaped": 3}.get(name)
        setattr(backend_class, name, timed(f"be.{name}", getattr(backend_class, name), skip))
    render(scene_data(scene, 8, 8), env, st, 8, 8, 1, args.depth, 0, be=be)  # compile or load the cache
    SECONDS.clear()
    ENTRIES.clear()
    res = render(data, env, st, args.size, args.size, args.spp, args.depth, 1, batch_paths=args.batch, be=be)
    print(f"{args.scene} {args.sampler} on {args.device} (light {st.light_name}, {args.sequence}, "
          f"{args.size}x{args.size} {args.spp} spp, batches of {args.batch or be.batch_paths} paths"
          f"{', no pool' if args.no_pool else ''}): {res.paths / res.seconds / 1e6:.3f} Mpaths/s, "
          f"{res.seconds:.2f} s")
    print(f"  {'call':<26}{'seconds':>9}{'M entries':>11}{'ns/entry':>10}")
    for k, v in SECONDS.most_common():
        n = ENTRIES[k]
        per = f"{v / n * 1e9:>10.1f}" if n else f"{'':>10}"
        print(f"  {k:<26}{v:>9.3f}{n / 1e6:>11.2f}{per}")
    print(f"  {'(sum of the calls)':<26}{sum(SECONDS.values()):>9.3f}")


if __name__ == "__main__":
    main()
