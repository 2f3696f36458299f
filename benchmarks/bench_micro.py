"""Per-call costs of the renderer's innermost pieces, each alone on one thread.

    python benchmarks/bench_micro.py [--n 1048576] [--repeats 9]

Prints the median nanoseconds per call of
- ``tracer.trig.sincos_pi`` / ``atan2_pi`` against libm's ``sin`` + ``cos`` / ``atan2``
  (each in a plain compiled loop over random arguments; the sine/cosine loop vectorises, as
  the stages' loops do not, so its figure is a floor);
- the square <-> direction maps of :mod:`tracer.sphere_map`;
- closest-hit and any-hit traversal of ``scenes/knot.toml``'s BVH for rays from a sphere
  around the knot aimed at random points of its box (the hard rays: most of them reach the
  mesh), and the BVH's triangle and node counts.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer.geometry import STACK_SHAPE, trace
from tracer.scene import load_scene
from tracer.scene_data import scene_data
from tracer.sphere_map import dir_to_uv, uv_to_dir
from tracer.trig import atan2_pi, sincos_pi


@njit(cache=True)
def _sincos_lib(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = math.sin(math.pi * x[i]) + math.cos(math.pi * x[i])


@njit(cache=True)
def _sincos_ours(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        s, c = sincos_pi(x[i])
        out[i] = s + c


@njit(cache=True)
def _atan2_lib(y: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = math.atan2(y[i], x[i]) / math.pi


@njit(cache=True)
def _atan2_ours(y: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = atan2_pi(y[i], x[i])


@njit(cache=True)
def _uv_to_dir(u: np.ndarray, v: np.ndarray, out: np.ndarray) -> None:
    for i in range(u.shape[0]):
        out[i, 0], out[i, 1], out[i, 2] = uv_to_dir(u[i], v[i])


@njit(cache=True)
def _dir_to_uv(d: np.ndarray, out: np.ndarray) -> None:
    for i in range(d.shape[0]):
        out[i, 0], out[i, 1] = dir_to_uv(d[i, 0], d[i, 1], d[i, 2])


@njit(cache=True)
def _traverse(g, ro: np.ndarray, rd: np.ndarray, any_hit: bool, prim: np.ndarray) -> None:
    stack = np.empty(STACK_SHAPE)
    for i in range(ro.shape[0]):
        _, prim[i], _, _ = trace(g, ro[i, 0], ro[i, 1], ro[i, 2], rd[i, 0], rd[i, 1], rd[i, 2],
                                 math.inf, any_hit, stack)


def median_ns(fn, args: tuple, n: int, repeats: int) -> float:
    fn(*args)  # compile / load the cache
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        ts.append(time.perf_counter() - t0)
    return 1e9 * statistics.median(ts) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1 << 20)
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    n, r = a.n, a.repeats
    rng = np.random.default_rng(0)
    x = rng.uniform(-2.0, 2.0, n)
    y, z = rng.normal(size=n), rng.normal(size=n)
    out = np.empty(n)
    print(f"{'call':<36}{'ns/call':>9}")
    rows = [
        ("libm sin(pi x) + cos(pi x)", _sincos_lib, (x, out)),
        ("trig.sincos_pi (vectorised loop)", _sincos_ours, (x, out)),
        ("libm atan2(y, x) / pi", _atan2_lib, (y, z, out)),
        ("trig.atan2_pi", _atan2_ours, (y, z, out)),
    ]
    u, v = rng.random(n), rng.random(n)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    rows += [
        ("sphere_map.uv_to_dir", _uv_to_dir, (u, v, np.empty((n, 3)))),
        ("sphere_map.dir_to_uv", _dir_to_uv, (d, np.empty((n, 2)))),
    ]
    for name, fn, args in rows:
        print(f"{name:<36}{median_ns(fn, args, n, r):>9.1f}")

    g = scene_data(load_scene(ROOT / "scenes" / "knot.toml"), 64, 64).geom
    tv = g.tri_v.reshape(-1, 3)
    lo, hi = np.percentile(tv, 5, axis=0), np.percentile(tv, 95, axis=0)
    m = min(n, 1 << 18)
    c, rad = (lo + hi) / 2, np.linalg.norm(hi - lo)
    s = rng.normal(size=(m, 3))
    s /= np.linalg.norm(s, axis=1, keepdims=True)
    ro = c + 1.5 * rad * s
    rd = lo + (hi - lo) * rng.random((m, 3)) - ro
    rd /= np.linalg.norm(rd, axis=1, keepdims=True)
    prim = np.empty(m, np.int64)
    print(f"\nknot: {g.tri_v.shape[0]} triangles, {g.node_box.shape[0]} 4-wide nodes")
    for any_hit in (False, True):
        ns = median_ns(_traverse, (g, ro, rd, any_hit, prim), m, r)
        kind = "any hit" if any_hit else "closest hit"
        print(f"{'traversal, ' + kind:<36}{ns:>9.1f}   ({np.mean(prim >= 0):.0%} of rays hit)")


if __name__ == "__main__":
    main()
