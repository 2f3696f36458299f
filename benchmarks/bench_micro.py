"""Per-call costs of the renderer's innermost pieces, each alone on one thread.

    python benchmarks/bench_micro.py [--n 1048576] [--repeats 9]

Prints the median nanoseconds per call of
- ``tracer.trig.sincos_pi`` / ``atan2_pi`` against libm's ``sin`` + ``cos`` / ``atan2``
  (each in a plain compiled loop over random arguments; the sine/cosine loop vectorises, as
  the stages' loops do not, so its figure is a floor);
- the square <-> direction maps of :mod:`tracer.sphere_map`;
- closest-hit and any-hit traversal of ``scenes/knot.toml``'s BVH for rays from a sphere
  around the knot aimed at random points of its box (the hard rays: most of them reach the
  mesh), and the BVH's triangle and node counts; one thread, and all threads (the render
  kernels' chunked loop);
- closest hits of the knot's camera rays (256x256, one a pixel, in the queue's row order):
  one by one against packets of neighbouring pixels (:mod:`tracer.packet`, the kernel the
  render runs at depth 0), one thread and all threads.

``--mitsuba`` also traces the same rays through Mitsuba 3 (``llvm_ad_rgb``, whose CPU
variants traverse with Embree; the triangles as one mesh, in float32 as Mitsuba keeps them):
``ray_intersect_preliminary`` and ``ray_test`` over the whole batch, all threads, the time
of the evaluated kernel (median). Set ``DRJIT_LIBLLVM_PATH`` where libLLVM is not found.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from numba import get_num_threads, njit, prange

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer import kernels
from tracer.geometry import STACK_SHAPE, trace
from tracer.packet import HIT, PACKET, PACKET_SHAPE, PACKET_STACK_SHAPE, set_ray, trace_packet
from tracer.pool import INDEX, STATE
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


# error_model="numpy": IEEE division, as in the render's kernels. With Numba's default
# ("python") a plain loop checks every divisor for zero, and the three checks of the ray
# set-up (tracer.geometry.ray_shear) cost it 25 ns a ray; the render's parallel kernels
# measured the same either way.
@njit(cache=True, error_model="numpy")
def _traverse(g, ro: np.ndarray, rd: np.ndarray, any_hit: bool, prim: np.ndarray) -> None:
    stack = np.empty(STACK_SHAPE)
    for i in range(ro.shape[0]):
        _, prim[i], _, _ = trace(g, ro[i, 0], ro[i, 1], ro[i, 2], rd[i, 0], rd[i, 1], rd[i, 2],
                                 math.inf, any_hit, stack)


@njit(cache=True, parallel=True)
def _traverse_threads(g, ro: np.ndarray, rd: np.ndarray, any_hit: bool, prim: np.ndarray) -> None:
    chunk = 256  # one stack per chunk of rays, as tracer.kernels does
    n = ro.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        stack = np.empty(STACK_SHAPE)
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            _, prim[i], _, _ = trace(g, ro[i, 0], ro[i, 1], ro[i, 2], rd[i, 0], rd[i, 1],
                                     rd[i, 2], math.inf, any_hit, stack)


def embree_ns(tri_v: np.ndarray, ro: np.ndarray, rd: np.ndarray, repeats: int) -> tuple[float, float, float] | None:
    """Mitsuba 3's closest-hit and any-hit ns per ray (all threads) for the same rays, and
    the fraction of them that hit; None without Mitsuba."""
    try:
        import drjit as dr
        import mitsuba as mi
        mi.set_variant(os.environ.get("MI_VARIANT", "llvm_ad_rgb"))
    except Exception as e:  # noqa: BLE001 - report any failure to start Mitsuba
        print(f"mitsuba unavailable ({e})")
        return None
    nt = tri_v.shape[0]
    mesh = mi.Mesh("knot", vertex_count=3 * nt, face_count=nt)
    params = mi.traverse(mesh)
    params["vertex_positions"] = mi.Float(tri_v.reshape(-1).astype(np.float32))
    params["faces"] = mi.UInt32(np.arange(3 * nt, dtype=np.uint32))
    params.update()
    scene = mi.load_dict({"type": "scene", "knot": mesh})
    o, d = ro.astype(np.float32), rd.astype(np.float32)

    def timed(any_hit: bool) -> tuple[float, np.ndarray]:
        ts, out = [], None
        for r in range(repeats + 1):  # the first compiles the kernel
            # a fresh (evaluated) ray each time, so that no result is reused
            ray = mi.Ray3f(mi.Point3f(o[:, 0] + 0.0 * r, o[:, 1], o[:, 2]),
                           mi.Vector3f(d[:, 0], d[:, 1], d[:, 2]))
            dr.eval(ray)
            dr.sync_thread()
            t0 = time.perf_counter()
            out = scene.ray_test(ray) if any_hit else scene.ray_intersect_preliminary(ray).t
            dr.eval(out)
            dr.sync_thread()
            if r:
                ts.append(time.perf_counter() - t0)
        return 1e9 * statistics.median(ts) / len(o), np.asarray(out)

    closest, t = timed(False)
    any_hit, _ = timed(True)
    return closest, any_hit, float(np.mean(np.isfinite(t)))


@njit(cache=True, error_model="numpy")
def _packets(g, ro: np.ndarray, rd: np.ndarray, prim: np.ndarray) -> None:
    """Closest hits of packets of PACKET consecutive rays (n a multiple of PACKET)."""
    stack = np.empty(PACKET_STACK_SHAPE)
    ray = np.empty(PACKET_SHAPE)
    for k in range(0, ro.shape[0], PACKET):
        for i in range(PACKET):
            set_ray(ray, i, ro[k + i, 0], ro[k + i, 1], ro[k + i, 2], rd[k + i, 0], rd[k + i, 1],
                    rd[k + i, 2])
        trace_packet(g, ray, stack)
        for i in range(PACKET):
            prim[k + i] = int(ray[HIT + 1, i])


def camera_rays(n: int) -> tuple:
    """The knot scene's camera rays at n x n, one a pixel, and its geometry; the directions
    in the render's float32 (tracer.pool.STATE)."""
    data = scene_data(load_scene(ROOT / "scenes" / "knot.toml"), n, n)
    m = n * n
    ro = np.empty((m, 3))
    rd, beta, radiance = (np.empty((m, 3), STATE) for _ in range(3))
    alive, delta = np.empty(m, np.bool_), np.empty(m, np.bool_)
    pdf, eta = np.empty(m, STATE), np.empty(m, STATE)
    key_of, idx = np.empty(m, np.int64), np.empty(m, INDEX)
    kernels.paths(0, m, 0, 1, 0, key_of, idx)
    kernels.generate_camera_rays(data.camera, n, n, 0, m, 0, 1, 0, key_of, ro, rd, beta, radiance,
                                 alive, pdf, delta, eta)
    return data.geom, ro, rd


def camera_ray_rows(repeats: int) -> None:
    """One by one against packets, on the knot's camera rays."""
    g, ro, rd = camera_rays(256)
    rd64 = rd.astype(np.float64)  # the one-thread loops take them widened, as the kernels do
    m = ro.shape[0]
    prim, prim_p = np.empty(m, np.int64), np.empty(m, np.int64)
    single = median_ns(_traverse, (g, ro, rd64, False, prim), m, repeats)
    packets = median_ns(_packets, (g, ro, rd64, prim_p), m, repeats)
    assert (prim == prim_p).all()
    print(f"\nknot camera rays (256x256, {np.mean(prim >= 0):.0%} hit), closest hits:")
    print(f"{'one by one, one thread':<36}{single:>9.1f}")
    print(f"{f'packets of {PACKET}, one thread':<36}{packets:>9.1f}   ({single / packets:.2f}x)")
    idx = np.arange(m, dtype=INDEX)  # the render's queue types (tracer.pool)
    hit = (np.empty(m), np.empty(m, INDEX), np.empty((m, 2), STATE))
    threads = [median_ns(k, (g, idx, ro, rd, *hit), m, repeats)
               for k in (kernels.intersect_closest, kernels.intersect_coherent)]
    print(f"{f'one by one, {get_num_threads()} threads':<36}{threads[0]:>9.1f}")
    print(f"{f'packets of {PACKET}, {get_num_threads()} threads':<36}{threads[1]:>9.1f}   "
          f"({threads[0] / threads[1]:.2f}x)")


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
    ap.add_argument("--mitsuba", action="store_true", help="the same rays through Mitsuba 3 (Embree)")
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
    print(f"\nknot: {g.tri_v.shape[0]} triangles, {g.node_box.shape[0]} 4-wide nodes, "
          f"{g.tri4_v.shape[0]} leaf blocks of four triangles")
    for any_hit in (False, True):
        ns = median_ns(_traverse, (g, ro, rd, any_hit, prim), m, r)
        kind = "any hit" if any_hit else "closest hit"
        print(f"{'traversal, ' + kind:<36}{ns:>9.1f}   ({np.mean(prim >= 0):.0%} of rays hit)")
    threads = get_num_threads()
    ours = [median_ns(_traverse_threads, (g, ro, rd, any_hit, prim), m, r) for any_hit in (False, True)]
    for kind, ns in zip(("closest hit", "any hit"), ours, strict=True):
        print(f"{f'traversal, {kind}, {threads} threads':<36}{ns:>9.1f}")
    if a.mitsuba:
        res = embree_ns(g.tri_v, ro, rd, r)
        if res is not None:
            closest, any_hit, hit = res
            for kind, ns, mine in (("closest hit", closest, ours[0]), ("any hit", any_hit, ours[1])):
                print(f"{f'Mitsuba 3 (Embree), {kind}':<36}{ns:>9.1f}   (ours / Mitsuba's time: "
                      f"{mine / ns:.2f}; {hit:.0%} of rays hit)")
    camera_ray_rows(r)


if __name__ == "__main__":
    main()
