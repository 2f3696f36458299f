"""Does the order of a queue of scattered rays matter to their traversal, and would another
order, or packets, trace them faster?

    python benchmarks/queue_order.py [--scene knot] [--spp 4] [--repeats 15]

Renders the scene (256x256, ``--spp`` samples a pixel in one batch, ``mis``) and keeps the
queues that the render's closest-hit kernel traces after the first and second bounces. Each
is then traced again by that kernel (:func:`tracer.kernels.intersect_closest`, one thread
and all threads, the median of ``--repeats`` calls, ns a ray) with its entries in:

- ``queue``: the render's own order (a batch is sample-major, then pixels row by row);
- ``tile8`` / ``tile32``: pixels in 8x8 or 32x32 tiles, row by row inside a tile;
- ``morton``: pixels in Morton (Z) order;
- ``octant+origin``: sorted by the direction's octant, then by the Morton code of the origin
  on a 1024^3 grid over the box of the queue's origins (a sort of the rays themselves, as ray-reordering
  renderers do: Pharr et al. 1997, "Rendering complex scenes with memory-coherent ray
  tracing"; Garanzha and Loop 2010, "Fast ray sorting and breadth-first packet traversal");
- ``shuffled``: a random permutation (what an order with no coherence at all costs);

and, in queue order, as packets of eight neighbouring entries
(:func:`tracer.kernels.intersect_coherent`, what the render does with the camera rays). The
hits are the same in every order (checked). A reordering that pays would have to pay for
its sort too; this prints the traversal alone, an upper bound on what an order can buy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from numba import get_num_threads, njit, set_num_threads

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer import kernels
from tracer.envmap import load_envmap
from tracer.integrator import render
from tracer.pool import INDEX, STATE
from tracer.samplers import make_strategy
from tracer.scene import load_scene
from tracer.scene_data import scene_data

SIZE = 256


def capture(scene: str, spp: int) -> list[tuple]:
    """(geometry, queue, origins, directions) of the closest-hit calls after the first
    bounce, in the order the render made them."""
    sc = load_scene(ROOT / "scenes" / f"{scene}.toml")
    env = load_envmap(sc.env)
    calls: list[tuple] = []
    traced = kernels.intersect_closest

    def keep(g, idx, ro, rd, hit_t, hit_prim, hit_b):
        calls.append((g, idx.copy(), ro.copy(), rd.copy()))
        return traced(g, idx, ro, rd, hit_t, hit_prim, hit_b)

    kernels.intersect_closest = keep
    try:
        render(scene_data(sc, SIZE, SIZE), env, make_strategy("mis", env), SIZE, SIZE, spp,
               sc.render.max_depth, 0, batch_paths=SIZE * SIZE * spp)
    finally:
        kernels.intersect_closest = traced
    return calls


@njit(cache=True)
def morton3(q: np.ndarray) -> np.ndarray:
    """Morton codes of (N, 3) integer cells of 10 bits each."""
    out = np.zeros(q.shape[0], np.int64)
    for k in range(q.shape[0]):
        c = 0
        for b in range(9, -1, -1):
            for a in range(3):
                c = (c << 1) | ((q[k, a] >> b) & 1)
        out[k] = c
    return out


def morton2(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    for b in range(10):
        out |= ((x >> b) & 1) << (2 * b) | ((y >> b) & 1) << (2 * b + 1)
    return out


def orders(idx: np.ndarray, ro: np.ndarray, rd: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The queue's entries in each order of the module's list."""
    npix = SIZE * SIZE
    pix, smp = idx % npix, idx // npix
    x, y = pix % SIZE, pix // SIZE
    out = {"queue": idx}
    for t in (8, 32):
        key = (((smp * SIZE + y // t) * SIZE + x // t) * t + y % t) * t + x % t
        out[f"tile{t}"] = idx[np.argsort(key, kind="stable")]
    out["morton"] = idx[np.argsort(smp * (1 << 20) + morton2(x, y), kind="stable")]
    o = ro[idx]
    lo, hi = o.min(axis=0), o.max(axis=0)
    cells = np.clip((o - lo) / np.maximum(hi - lo, 1e-30) * 1024, 0, 1023).astype(np.int64)
    octant = (rd[idx, 0] < 0) * 4 + (rd[idx, 1] < 0) * 2 + (rd[idx, 2] < 0)
    out["octant+origin"] = idx[np.argsort(octant.astype(np.int64) << 40 | morton3(cells), kind="stable")]
    out["shuffled"] = idx[rng.permutation(idx.shape[0])]
    return out


def ns_per_ray(kernel, g, idx, ro, rd, repeats: int) -> tuple[float, np.ndarray]:
    """Median ns a ray of ``kernel`` over the queue, and the primitive each path hit."""
    m = idx.shape[0]
    # the render's types (tracer.pool)
    hit_t, hit_prim, hit_b = np.empty(m), np.empty(m, INDEX), np.empty((m, 2), STATE)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        kernel(g, idx, ro, rd, hit_t, hit_prim, hit_b)
        times.append(time.perf_counter() - t0)
    prim = np.full(ro.shape[0], -2, np.int64)
    prim[idx] = hit_prim
    return statistics.median(times) / m * 1e9, prim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", default="knot")
    ap.add_argument("--spp", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    calls = capture(args.scene, args.spp)
    threads = get_num_threads()
    rng = np.random.default_rng(1)
    print(f"{args.scene}, {SIZE}x{SIZE} {args.spp} spp, mis: closest hits of the queues after "
          f"the first and second bounces, ns a ray (median of {args.repeats})")
    for depth, (g, idx, ro, rd) in enumerate(calls[:2], start=1):
        print(f"\ndepth {depth}: {idx.shape[0]} rays")
        print(f"  {'order':<16}{'1 thread':>10}{f'{threads} threads':>12}")
        want = None
        for name, q in orders(idx, ro, rd, rng).items():
            row = []
            for t in (1, threads):
                set_num_threads(t)
                ns, prim = ns_per_ray(kernels.intersect_closest, g, q, ro, rd, args.repeats)
                want = prim if want is None else want
                if not np.array_equal(prim, want):
                    raise SystemExit(f"{name}: other hits than in queue order")
                row.append(ns)
            print(f"  {name:<16}{row[0]:>10.1f}{row[1]:>12.1f}")
        row = []
        for t in (1, threads):
            set_num_threads(t)
            ns, prim = ns_per_ray(kernels.intersect_coherent, g, idx, ro, rd, args.repeats)
            if not np.array_equal(prim, want):
                raise SystemExit("packets: other hits than one by one")
            row.append(ns)
        print(f"  {'packets of 8':<16}{row[0]:>10.1f}{row[1]:>12.1f}")
        set_num_threads(threads)


if __name__ == "__main__":
    main()
