"""Render speed and equal-time efficiency, against Mitsuba 3 on the same scenes in the same run.

    python benchmarks/bench_render.py [--scenes spheres,knot] [--spp 64] [--size 256]
        [--repeats 3] [--ref-spp 1024] [--samplers uniform,piecewise,alias,bsdf,mis,...]
        [--mitsuba] [--mitsuba-sampler independent] [--rr-cap 0.95] [--memory] [--json OUT]

Per scene (its own map; 256x256, 64 spp, max depth 5): each sampler renders ``--repeats``
times after a warm-up that compiles the kernels (seeds 1, 2, ...), round-robin over the
samplers so that a slow spell of a shared machine falls on all of them. Printed per sampler:
paths per second (median), the stage split of the median run, relMSE against a reference
(``mis`` at ``--ref-spp``, mean over the repeats with its standard error) and the efficiency
``1 / (relMSE x seconds)`` (relMSE falls as 1/spp, so the ratio of two efficiencies is the
ratio of the errors they reach in equal time).

A sampler name is ``NAME[-LIGHT][+plain][+sobol]``: ``mis-alias`` is MIS with the alias-table
light sampler, ``mis+plain`` MIS with the plain light density instead of the MIS-compensated
one (``--no-compensate``), ``mis+sobol`` draws every path's numbers from Owen-scrambled Sobol
instead of independent hashes (``--sequence sobol``).

``--mitsuba`` (``pip install mitsuba``; the ``llvm_ad_rgb`` variant needs libLLVM >= 16, e.g.
Debian's ``libllvm19``, found through ``DRJIT_LIBLLVM_PATH`` if not on the default path)
renders the same scene with Mitsuba's ``path`` integrator (``max_depth`` one more than ours,
its convention counts the camera ray), same spp, with relMSE against the same reference and
the ratios of paths/s and efficiency printed for each of our samplers. Its sampler is
``independent`` unless ``--mitsuba-sampler`` names another (``ldsampler``, its
low-discrepancy sequence, is the one to set beside our ``+sobol`` samplers).

``--memory`` renders ``scenes/spheres.toml`` at 3840x2160, 16 spp with ``mis`` in a child
process and prints its peak resident memory: what one wavefront batch and the film cost.

``--rr-cap`` sets the Russian roulette cap (``tracer.integrator.RR_CAP``; 1 is pbrt-v4's
uncapped roulette).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer import integrator
from tracer.backend import CPU
from tracer.envmap import load_envmap
from tracer.integrator import render
from tracer.job import error_metrics
from tracer.samplers import (
    make_light_sampler,
    make_reference_strategy,
    make_strategy,
    parse_sampler_name,
)
from tracer.scene import load_scene
from tracer.scene_data import scene_data

DEFAULT_SAMPLERS = "uniform,piecewise,alias,bsdf,mis,mis+plain,mis-alias,mis+sobol"
#: Mitsuba 3's samplers that --mitsuba-sampler offers (stratified, multijitter: jittered
#: strata; ldsampler: Kollig and Keller's low-discrepancy (0, 2)-sequence)
MITSUBA_SAMPLERS = ("independent", "stratified", "multijitter", "ldsampler")


def bench_scene(scene_path: Path, samplers: list[str], spp: int, repeats: int, size: int,
                depth: int, ref_spp: int, mitsuba: bool, mitsuba_sampler: str = "independent") -> dict:
    scene = load_scene(scene_path)
    env = load_envmap(scene.env)
    data = scene_data(scene, size, size)
    strategies = {n: make_strategy(b, env, **kw) for n, (b, kw) in ((n, parse_sampler_name(n)) for n in samplers)}
    for st in strategies.values():
        render(data, env, st, size, size, 1, depth, 0)  # warm-up: compile / load the cache
    t0 = time.perf_counter()
    ref = render(data, env, make_reference_strategy(env), size, size, ref_spp, depth, 10_000).film.image()
    ref_s = time.perf_counter() - t0
    runs: dict[str, list] = {n: [] for n in samplers}
    for seed in range(1, repeats + 1):
        for name, st in strategies.items():
            res = render(data, env, st, size, size, spp, depth, seed)
            runs[name].append((res.seconds, res.times, error_metrics(res.film.image(), ref)["relmse"]))
    print(f"\n== {scene_path.name}: {size}x{size}, {spp} spp, max depth {depth}, "
          f"reference mis {ref_spp} spp ({ref_s:.0f} s) ==")
    print(f"{'sampler':<14}{'Mpaths/s':>9}{'median s':>9}{'light s':>8}{'trace s':>8}{'shade s':>8}"
          f"{'relMSE':>11}{'(se)':>9}{'efficiency':>11}")
    out: dict = {"scene": scene_path.name, "samplers": {}}
    for name in samplers:
        secs = [r[0] for r in runs[name]]
        med = statistics.median(secs)
        t = min(runs[name], key=lambda r: abs(r[0] - med))[1]
        rel = np.array([r[2] for r in runs[name]])
        rel_mean = float(rel.mean())
        rel_se = float(rel.std(ddof=1) / math.sqrt(rel.size)) if rel.size > 1 else float("nan")
        rate = size * size * spp / med
        eff = 1.0 / (rel_mean * med)
        out["samplers"][name] = {"paths_per_s": rate, "seconds": med, "relmse": rel_mean,
                                 "relmse_se": rel_se, "efficiency": eff, "times": t.as_dict()}
        print(f"{name:<14}{rate / 1e6:>9.3f}{med:>9.2f}{t.light:>8.2f}{t.trace:>8.2f}{t.shade:>8.2f}"
              f"{rel_mean:>11.3e}{rel_se:>9.1e}{eff:>11.1f}")
    if mitsuba:
        mi = bench_mitsuba(scene_path, spp, repeats, size, depth, ref, mitsuba_sampler)
        if mi is not None:
            out["mitsuba"] = mi
            print(f"{'mitsuba':<14}{mi['paths_per_s'] / 1e6:>9.3f}{mi['seconds']:>9.2f}{'':>24}"
                  f"{mi['relmse']:>11.3e}{mi['relmse_se']:>9.1e}{mi['efficiency']:>11.1f}")
            print(f"  image mean mitsuba / reference: {mi['mean_ratio']:.4f}")
            print(f"ratio to mitsuba {mi['variant']} {mi['version']} ({mi['sampler']} sampler):"
                  f"   paths/s   efficiency")
            for name, r in out["samplers"].items():
                print(f"  {name:<14}{r['paths_per_s'] / mi['paths_per_s']:>14.3f}"
                      f"{r['efficiency'] / mi['efficiency']:>13.3f}")
    return out


def bench_light(scene_path: Path, names: list[str], n: int = 1 << 20, repeats: int = 5) -> dict:
    """Light samples and pdfs per second of each sampler alone, through the CPU back-end as
    the renderer calls it (piecewise and alias: the grouped kernels, :mod:`tracer.light_dispatch`),
    outputs pooled."""
    scene = load_scene(scene_path)
    env = load_envmap(scene.env)
    h, w = env.shape
    print(f"\n== light sampling alone: {Path(env.name).name} ({h}x{w}), batches of {n} ==")
    print(f"{'sampler':<12}{'Msamples/s':>12}{'Mpdf/s':>10}")
    u = np.random.default_rng(0).random((n, 2))
    be = CPU.pooled()
    rates = {}
    for name in names:
        t = make_light_sampler(name, env).tables
        wi, _, _ = be.light_sample(t, env, u)  # warm-up: compile, fill the pool
        be.light_pdf(t, env, wi)
        ts, tp = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            wi, _, _ = be.light_sample(t, env, u)
            t1 = time.perf_counter()
            be.light_pdf(t, env, wi)
            tp.append(time.perf_counter() - t1)
            ts.append(t1 - t0)
        rates[name] = (n / statistics.median(ts), n / statistics.median(tp))
        print(f"{name:<12}{rates[name][0] / 1e6:>12.2f}{rates[name][1] / 1e6:>10.2f}")
    return rates


def bench_mitsuba(scene_path: Path, spp: int, repeats: int, size: int, depth: int,
                  ref: np.ndarray, sampler: str = "independent") -> dict | None:
    """The same scene in Mitsuba 3 (path integrator, max_depth = depth + 1 in its convention),
    with Mitsuba's sampler ``sampler``."""
    try:
        import mitsuba as mi
    except ImportError:
        print("\nmitsuba is not installed (pip install mitsuba): skipping the comparison")
        return None
    variant = os.environ.get("MI_VARIANT", "llvm_ad_rgb")
    try:
        mi.set_variant(variant)
    except Exception as e:  # noqa: BLE001 - report any failure to start the variant
        print(f"\nmitsuba variant {variant} unavailable ({e}); trying scalar_rgb")
        variant = "scalar_rgb"
        mi.set_variant(variant)
    ms = mi.load_dict(mitsuba_scene(mi, load_scene(scene_path), size, spp, depth, sampler))
    np.asarray(mi.render(ms, spp=spp))  # warm-up: JIT compile
    times, rels, means = [], [], []
    for seed in range(1, repeats + 1):
        t0 = time.perf_counter()
        img = np.asarray(mi.render(ms, spp=spp, seed=seed), np.float64)  # forces evaluation
        times.append(time.perf_counter() - t0)
        rels.append(error_metrics(img[..., :3], ref)["relmse"])
        means.append(img[..., :3].mean() / ref.mean())
    med = statistics.median(times)
    rel = float(np.mean(rels))
    return {"version": mi.__version__, "variant": variant, "sampler": sampler,
            "paths_per_s": size * size * spp / med,
            "seconds": med, "relmse": rel,
            "relmse_se": float(np.std(rels, ddof=1) / math.sqrt(len(rels))) if len(rels) > 1 else float("nan"),
            "efficiency": 1.0 / (rel * med), "mean_ratio": float(np.mean(means))}


def mitsuba_scene(mi: object, scene: object, size: int, spp: int, depth: int,
                  sampler: str = "independent") -> dict:
    """Our scene as a Mitsuba scene dict: spheres, one mesh per material (smooth normals)."""
    cam = scene.camera  # type: ignore[attr-defined]
    shapes: dict[str, object] = {}
    for i, (c, r, m) in enumerate(zip(scene.sphere_centers, scene.sphere_radii,  # type: ignore[attr-defined]
                                      scene.sphere_materials, strict=True)):  # type: ignore[attr-defined]
        shapes[f"sphere{i}"] = {"type": "sphere", "center": c.tolist(), "radius": float(r),
                                "bsdf": mi_bsdf(scene.materials[int(m)])}  # type: ignore[attr-defined]
    tri_m = np.asarray(scene.tri_materials)  # type: ignore[attr-defined]
    for m in np.unique(tri_m):
        sel = tri_m == m
        v = np.asarray(scene.tri_vertices)[sel].reshape(-1, 3)  # type: ignore[attr-defined]
        nrm = np.asarray(scene.tri_normals)[sel].reshape(-1, 3)  # type: ignore[attr-defined]
        mesh = mi.Mesh(f"mesh{m}", v.shape[0], v.shape[0] // 3, has_vertex_normals=True)  # type: ignore[attr-defined]
        params = mi.traverse(mesh)  # type: ignore[attr-defined]
        params["vertex_positions"] = mi.Float(v.astype(np.float32).ravel())  # type: ignore[attr-defined]
        params["vertex_normals"] = mi.Float(nrm.astype(np.float32).ravel())  # type: ignore[attr-defined]
        params["faces"] = mi.UInt32(np.arange(v.shape[0], dtype=np.uint32))  # type: ignore[attr-defined]
        params.update()
        mesh.set_bsdf(mi.load_dict(mi_bsdf(scene.materials[int(m)])))  # type: ignore[attr-defined]
        shapes[f"mesh{m}"] = mesh
    # Mitsuba's envmap: +y up, the same u convention as tracer.sphere_map
    return {
        "type": "scene",
        "integrator": {"type": "path", "max_depth": depth + 1},
        "sensor": {
            "type": "perspective", "fov": cam.fov_deg, "fov_axis": "y",
            "to_world": mi.ScalarTransform4f().look_at(  # type: ignore[attr-defined]
                origin=cam.eye.tolist(), target=cam.look_at.tolist(), up=cam.up.tolist()),
            "film": {"type": "hdrfilm", "width": size, "height": size, "rfilter": {"type": "box"}},
            "sampler": {"type": sampler, "sample_count": spp},
        },
        "env": {"type": "envmap", "filename": str(scene.env.path),  # type: ignore[attr-defined]
                "scale": float(scene.env.scale),  # type: ignore[attr-defined]
                "to_world": mi.ScalarTransform4f().rotate([0, 1, 0], float(scene.env.rotation_deg))},  # type: ignore[attr-defined]
        **shapes,
    }


def mi_bsdf(m: object) -> dict:
    kind = m.kind  # type: ignore[attr-defined]
    if kind == "diffuse":
        return {"type": "diffuse", "reflectance": {"type": "rgb", "value": m.albedo.tolist()}}  # type: ignore[attr-defined]
    if kind == "conductor":
        return {"type": "roughconductor", "distribution": "ggx", "alpha": float(m.roughness),  # type: ignore[attr-defined]
                "material": "none", "specular_reflectance": {"type": "rgb", "value": m.specular.tolist()}}  # type: ignore[attr-defined]
    return {"type": "dielectric", "int_ior": float(m.ior)}  # type: ignore[attr-defined]


def bench_memory(width: int = 3840, height: int = 2160, spp: int = 16) -> dict:
    """Peak RSS of a child process that renders the default scene at 4K with mis.

    The child reads its own high-water mark (``VmHWM`` of ``/proc/self/status``): the
    parent's ``RUSAGE_CHILDREN`` would count the parent's pages that a forked child holds
    before it execs (a 2.5 GB parent made a 0.8 GB render read as 2.5 GB).
    """
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]);"
            "from tracer.envmap import load_envmap; from tracer.integrator import render;"
            "from tracer.samplers import make_strategy; from tracer.scene import load_scene;"
            "from tracer.scene_data import scene_data;"
            "s = load_scene(sys.argv[1] + '/scenes/spheres.toml'); e = load_envmap(s.env);"
            f"d = scene_data(s, {width}, {height}); r = render(d, e, make_strategy('mis', e), "
            f"{width}, {height}, {spp}, 5, 0);"
            "hwm = [ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0];"
            "print(r.seconds, r.paths, r.buffer_bytes, hwm)")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, check=True)
    seconds, paths, buffer_bytes, peak_kib = out.stdout.split()[-4:]
    peak_kib = int(peak_kib)
    film_mib = width * height * (3 + 3 + 1 + 1) * 8 / 2**20  # mean, m2, count, bad (float64/int64)
    batch_mib = int(buffer_bytes) / 2**20  # the pool's buffers: queues and per-bounce arrays
    res = {"width": width, "height": height, "spp": spp, "peak_rss_mib": peak_kib / 1024,
           "film_mib": film_mib, "buffers_mib": batch_mib, "seconds": float(seconds),
           "paths_per_s": int(paths) / float(seconds)}
    print(f"\n== memory: scenes/spheres.toml {width}x{height}, {spp} spp, mis, one process ==")
    print(f"peak RSS {res['peak_rss_mib']:.0f} MiB (film {film_mib:.0f} MiB, the buffers of one batch "
          f"of {CPU.batch_paths} paths {batch_mib:.0f} MiB); {res['seconds']:.0f} s, "
          f"{res['paths_per_s'] / 1e6:.2f} Mpaths/s")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", default="spheres,knot")
    ap.add_argument("--spp", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ref-spp", type=int, default=1024)
    ap.add_argument("--samplers", default=DEFAULT_SAMPLERS)
    ap.add_argument("--mitsuba", action="store_true", help="also render each scene with Mitsuba 3")
    ap.add_argument("--mitsuba-sampler", default="independent", choices=MITSUBA_SAMPLERS,
                    help="Mitsuba's sampler (ldsampler: its low-discrepancy one, beside our "
                         "--sequence sobol)")
    ap.add_argument("--rr-cap", type=float, default=integrator.RR_CAP)
    ap.add_argument("--memory", action="store_true", help="peak RSS of a 4K render")
    ap.add_argument("--no-light", action="store_true", help="skip the light-sampling table")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import numba

    integrator.RR_CAP = args.rr_cap
    print(f"numba {numba.__version__}, {numba.get_num_threads()} threads, threading layer "
          f"{numba.config.THREADING_LAYER}, Russian roulette cap {args.rr_cap}")
    samplers = args.samplers.split(",")
    result: dict = {"rr_cap": args.rr_cap, "threads": numba.get_num_threads(), "scenes": []}
    for s in args.scenes.split(","):
        result["scenes"].append(bench_scene(ROOT / "scenes" / f"{s}.toml", samplers, args.spp,
                                            args.repeats, args.size, args.depth, args.ref_spp,
                                            args.mitsuba, args.mitsuba_sampler))
    if not args.no_light:
        result["light"] = bench_light(ROOT / "scenes" / "spheres.toml", ["uniform", "piecewise", "alias"])
    if args.memory:
        result["memory"] = bench_memory()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
