"""Render and light-sampling throughput, optionally against Mitsuba 3 on the same scene.

    python benchmarks/bench_render.py [--spp 64] [--repeats 3] [--mitsuba]

Prints, on the two-sphere scene (256x256, 64 spp, max depth 5): paths per second of each
sampler (median of ``--repeats`` timed renders after a warm-up that compiles the kernels),
with the stage split; and light samples per second of each sampler alone on the scene's
512x1024 map (median of 5 calls of 1M samples). With ``--mitsuba`` (``pip install mitsuba``;
the ``llvm_ad_rgb`` variant needs libLLVM >= 16, e.g. Debian's ``libllvm19``, found through
``DRJIT_LIBLLVM_PATH`` if it is not on the default path) it renders the same scene with
Mitsuba's ``path`` integrator and prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer.envmap import load_envmap
from tracer.integrator import render
from tracer.samplers import make_light_sampler, make_strategy
from tracer.scene import load_scene
from tracer.scene_data import scene_data

SCENE = ROOT / "scenes" / "spheres.toml"


def bench_render(samplers: list[str], spp: int, repeats: int, size: int, depth: int) -> dict[str, float]:
    scene = load_scene(SCENE)
    env = load_envmap(scene.env)
    data = scene_data(scene, size, size)
    out = {}
    print(f"\n== render: {SCENE.name}, {size}x{size}, {spp} spp, max depth {depth} ==")
    print(f"{'sampler':<12}{'Mpaths/s':>10}{'median s':>10}{'light s':>9}{'trace s':>9}{'shade s':>9}")
    for name in samplers:
        strategy = make_strategy(name, env)
        render(data, env, strategy, size, size, 1, depth, 0)  # warm-up: compile / load cache
        runs = [render(data, env, strategy, size, size, spp, depth, seed) for seed in range(repeats)]
        med = statistics.median(r.seconds for r in runs)
        best = min(runs, key=lambda r: abs(r.seconds - med))
        t = best.times
        out[name] = size * size * spp / med
        print(f"{name:<12}{out[name] / 1e6:>10.3f}{med:>10.2f}{t.light:>9.2f}{t.trace:>9.2f}{t.shade:>9.2f}")
    return out


def bench_light(samplers: list[str], n: int = 1 << 20, repeats: int = 5) -> None:
    scene = load_scene(SCENE)
    env = load_envmap(scene.env)
    h, w = env.shape
    print(f"\n== light sampling alone: {Path(env.name).name} ({h}x{w}), batches of {n} ==")
    print(f"{'sampler':<12}{'Msamples/s':>12}{'Mpdf/s':>10}")
    u = np.random.default_rng(0).random((n, 2))
    for name in samplers:
        s = make_light_sampler(name, env)
        wi = s.sample(u).wi  # warm-up
        s.pdf(wi)
        ts, tp = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            s.sample(u)
            t1 = time.perf_counter()
            s.pdf(wi)
            tp.append(time.perf_counter() - t1)
            ts.append(t1 - t0)
        print(f"{name:<12}{n / statistics.median(ts) / 1e6:>12.2f}{n / statistics.median(tp) / 1e6:>10.2f}")


def bench_mitsuba(spp: int, repeats: int, size: int, depth: int) -> float | None:
    """The same scene in Mitsuba 3 (path integrator, max_depth = depth + 1 in its convention)."""
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
    scene = load_scene(SCENE)
    cam = scene.camera
    shapes: dict[str, dict] = {}
    for i, (c, r, m) in enumerate(zip(scene.sphere_centers, scene.sphere_radii, scene.sphere_materials, strict=True)):
        shapes[f"sphere{i}"] = {"type": "sphere", "center": c.tolist(), "radius": float(r),
                                "bsdf": mi_bsdf(scene.materials[int(m)])}
    if len(scene.tri_vertices):
        v = scene.tri_vertices.reshape(-1, 3)
        mesh = mi.Mesh("floor", v.shape[0], v.shape[0] // 3)
        params = mi.traverse(mesh)
        params["vertex_positions"] = mi.Float(v.astype(np.float32).ravel())
        params["faces"] = mi.UInt32(np.arange(v.shape[0], dtype=np.uint32))
        params.update()
        mesh.set_bsdf(mi.load_dict(mi_bsdf(scene.materials[int(scene.tri_materials[0])])))
        shapes["mesh"] = mesh
    # Mitsuba's envmap: +y up, same u convention as tracer.sphere_map
    scene_dict = {
        "type": "scene",
        "integrator": {"type": "path", "max_depth": depth + 1},
        "sensor": {
            "type": "perspective", "fov": cam.fov_deg, "fov_axis": "y",
            "to_world": mi.ScalarTransform4f().look_at(origin=cam.eye.tolist(), target=cam.look_at.tolist(),
                                                       up=cam.up.tolist()),
            "film": {"type": "hdrfilm", "width": size, "height": size, "rfilter": {"type": "box"}},
            "sampler": {"type": "independent", "sample_count": spp},
        },
        "env": {"type": "envmap", "filename": str(scene.env.path)},
        **shapes,
    }
    ms = mi.load_dict(scene_dict)
    mi.render(ms, spp=spp)  # warm-up: JIT compile
    times = []
    for seed in range(repeats):
        t0 = time.perf_counter()
        img = mi.render(ms, spp=spp, seed=seed + 1)
        np.asarray(img)  # force evaluation
        times.append(time.perf_counter() - t0)
    rate = size * size * spp / statistics.median(times)
    print(f"\n== mitsuba {mi.__version__} {variant}: {rate / 1e6:.3f} Mpaths/s (median {statistics.median(times):.2f} s)")
    return rate


def mi_bsdf(m: object) -> dict:
    kind = m.kind  # type: ignore[attr-defined]
    if kind == "diffuse":
        return {"type": "diffuse", "reflectance": {"type": "rgb", "value": m.albedo.tolist()}}  # type: ignore[attr-defined]
    if kind == "conductor":
        return {"type": "roughconductor", "distribution": "ggx", "alpha": float(m.roughness),  # type: ignore[attr-defined]
                "material": "none", "specular_reflectance": {"type": "rgb", "value": m.specular.tolist()}}  # type: ignore[attr-defined]
    return {"type": "dielectric", "int_ior": float(m.ior)}  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spp", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--samplers", default="uniform,piecewise,bsdf,mis")
    ap.add_argument("--mitsuba", action="store_true", help="also render the scene with Mitsuba 3")
    args = ap.parse_args()
    import numba

    print(f"numba {numba.__version__}, {numba.get_num_threads()} threads")
    samplers = args.samplers.split(",")
    rates = bench_render(samplers, args.spp, args.repeats, args.size, args.depth)
    bench_light([s for s in samplers if s in ("uniform", "piecewise", "flow")])
    if args.mitsuba:
        mi_rate = bench_mitsuba(args.spp, args.repeats, args.size, args.depth)
        if mi_rate:
            print("\nratio flowtracer / mitsuba (paths per second):")
            for k, v in rates.items():
                print(f"  {k:<12}{v / mi_rate:>8.3f}")


if __name__ == "__main__":
    main()
