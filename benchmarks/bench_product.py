"""Product sampling against MIS: relMSE at equal spp and at equal time, per map and scene.

    python benchmarks/bench_product.py [--size 128] [--spp 16] [--renders 4] [--ref-spp 1024]
        [--scenes spheres,clay,knot] [--maps DIR] [--json OUT]

For every map in ``../shared/envmaps`` (else the bundled ones) and every scene (its own map
replaced, rotation and scale kept): a reference rendered with ``mis`` at ``--ref-spp``, then
``--renders`` independent renders at ``--spp`` of each sampler. Prints per map and scene the
mean relMSE (with its standard error over the renders), the median render time, paths/s,
and the two ratios to ``mis``: equal spp (relMSE_mis / relMSE) and equal time
((relMSE_mis t_mis) / (relMSE t), the efficiency ratio: relMSE falls as 1/spp, so this is
the error ratio the two would reach in the same time; the renders go round-robin over the
samplers, so that a slow spell of a shared machine falls on all of them). Also, per map: the product model's
build time, KL over random conditions (product vs piecewise) and table size.

Samplers: ``mis`` (here the plain light density, ``--no-compensate``: the ratios' baseline),
``mis-compensate`` (``mis``'s default), ``product``, ``mis-product`` (the shipped model),
and ``mis-product-cosine`` (the baseline: the same model without conductor tables, i.e. the
map times the clamped cosine on a grid of normals, for every material). Timings are medians
of renders made in this one process after a warm-up; ratios compare renders of the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer.envmap import load_envmap
from tracer.integrator import render
from tracer.job import error_metrics
from tracer.product_model import build_product_model, mean_kl, random_conditions
from tracer.samplers import make_reference_strategy, make_strategy
from tracer.samplers.mis import make_mis_strategy
from tracer.samplers.product import ProductSampler
from tracer.samplers.strategy import NEE_ONLY, Strategy
from tracer.scene import load_scene
from tracer.scene_data import scene_data

SAMPLERS = ("mis", "mis-compensate", "product", "mis-product", "mis-product-cosine")


def default_maps() -> list[Path]:
    shared = ROOT.parent / "shared" / "envmaps"
    folder = shared if shared.is_dir() else ROOT / "scenes" / "envmaps"
    return sorted(folder.glob("*.exr"))


def strategies(env, models: dict) -> dict[str, Strategy]:
    prod = ProductSampler(env, models["product"])
    cos = ProductSampler(env, models["cosine"])
    cos.name = "product-cosine"
    return {
        "mis": make_strategy("mis", env, compensate=False),
        "mis-compensate": make_strategy("mis", env, compensate=True),
        "product": Strategy("product", NEE_ONLY, prod),
        "mis-product": make_mis_strategy(prod),
        "mis-product-cosine": make_mis_strategy(cos),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--spp", type=int, default=16)
    ap.add_argument("--renders", type=int, default=4)
    ap.add_argument("--ref-spp", type=int, default=1024)
    ap.add_argument("--depth", type=int, default=5)
    ap.add_argument("--scenes", default="spheres,clay,knot")
    ap.add_argument("--maps", type=Path, help="folder of .exr maps (default: ../shared/envmaps)")
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument("--kl-conditions", type=int, default=96)
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args()
    maps = sorted(args.maps.glob("*.exr")) if args.maps else default_maps()
    names = [s for s in args.samplers.split(",") if s]
    size, spp = args.size, args.spp
    rows, model_rows = [], []
    print(f"product sampling benchmark: {size}x{size}, {spp} spp x {args.renders} renders, "
          f"reference mis {args.ref_spp} spp, max depth {args.depth}")
    for map_path in maps:
        scene0 = load_scene(ROOT / "scenes" / "spheres.toml")
        env = load_envmap(dataclasses.replace(scene0.env, path=map_path))
        t0 = time.perf_counter()
        model = build_product_model(env)
        build_s = time.perf_counter() - t0
        kl = mean_kl(model, random_conditions(args.kl_conditions)[0])
        models = {"product": model, "cosine": build_product_model(env, alphas=())}
        mrow = {"map": map_path.stem, "build_s": build_s, **kl,
                "table_mib": model.nbytes() / 2**20, "cosine_table_mib": models["cosine"].nbytes() / 2**20}
        model_rows.append(mrow)
        print(f"\n## {map_path.stem}: product model built in {build_s:.1f} s, {mrow['table_mib']:.1f} MiB "
              f"(cosine-only {mrow['cosine_table_mib']:.1f} MiB); KL over {kl['conditions']} conditions: "
              f"product {kl['kl_product']:.3f}, piecewise {kl['kl_piecewise']:.3f} nats")
        for scene_name in args.scenes.split(","):
            scene = load_scene(ROOT / "scenes" / f"{scene_name}.toml")
            env = load_envmap(dataclasses.replace(scene.env, path=map_path))
            data = scene_data(scene, size, size)
            ref = render(data, env, make_reference_strategy(env), size, size, args.ref_spp, args.depth, 999).film.image()
            sts = strategies(env, {"product": model, "cosine": models["cosine"]})
            for name in names:
                render(data, env, sts[name], 8, 8, 1, args.depth, 0)  # warm-up (compile or load)
            errs: dict[str, list[float]] = {name: [] for name in names}
            times: dict[str, list[float]] = {name: [] for name in names}
            # round-robin over the samplers, so that a slow spell of a shared machine falls on all
            for r in range(args.renders):
                for name in names:
                    out = render(data, env, sts[name], size, size, spp, args.depth, 1 + r)
                    errs[name].append(error_metrics(out.film.image(), ref)["relmse"])
                    times[name].append(out.seconds)
            res = {name: (float(np.mean(errs[name])), float(np.std(errs[name], ddof=1) / math.sqrt(args.renders)),
                          statistics.median(times[name])) for name in names}
            base_e, _, base_t = res["mis"] if "mis" in res else next(iter(res.values()))
            print(f"{scene_name:<8}{'sampler':<20}{'relMSE':>11}{'+-':>9}{'time s':>8}{'Mpaths/s':>9}"
                  f"{'eq.spp':>8}{'eq.time':>8}")
            for name, (e, se, t) in res.items():
                row = {"map": map_path.stem, "scene": scene_name, "sampler": name, "relmse": e, "se": se,
                       "seconds": t, "paths_per_s": size * size * spp / t,
                       "gain_equal_spp": base_e / e, "gain_equal_time": (base_e * base_t) / (e * t)}
                rows.append(row)
                print(f"{'':<8}{name:<20}{e:>11.4e}{se:>9.1e}{t:>8.2f}{row['paths_per_s'] / 1e6:>9.2f}"
                      f"{row['gain_equal_spp']:>8.2f}{row['gain_equal_time']:>8.2f}")
    # ---- summary: gains over mis averaged over the maps (geometric mean), per scene
    print("\n## gains over mis, geometric mean over the maps (min .. max)")
    print(f"{'scene':<8}{'sampler':<20}{'equal spp':>22}{'equal time':>22}")
    for scene_name in args.scenes.split(","):
        for name in names:
            sel = [r for r in rows if r["scene"] == scene_name and r["sampler"] == name]
            if not sel:
                continue
            gs = [r["gain_equal_spp"] for r in sel]
            gt = [r["gain_equal_time"] for r in sel]
            geo = lambda v: math.exp(sum(math.log(x) for x in v) / len(v))
            print(f"{scene_name:<8}{name:<20}{geo(gs):>8.2f} ({min(gs):.2f}..{max(gs):.2f}){'':>2}"
                  f"{geo(gt):>8.2f} ({min(gt):.2f}..{max(gt):.2f})")
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"maps": [str(m) for m in maps],
                                                                    "json": str(args.json)},
                                         "models": model_rows, "renders": rows}, indent=1, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
