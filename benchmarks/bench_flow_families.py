"""The flow families side by side: size, fit, KL, throughput and render error on every map.

    python benchmarks/bench_flow_families.py [--budget 60] [--maps a,b] [--families a,b]
        [--renders 4] [--spp 16] [--size 64] [--ref-spp 256] [--threads 1]
        [--table out.md] [--figure renders/figures/flow_families.png --figure-map forest]

For every family of :mod:`flows.families` (default: all) on every map (default: the five in
../shared/envmaps) at the family's default configuration, prints one row: parameters and
file size of the saved flow, fit seconds and steps within the same time budget
(``--budget`` seconds of :func:`flows.train.fit_flow`, whose early stop may end it sooner),
KL(target || flow) in nats on the 500 x 500 grid, light samples and pdf evaluations per
second as the renderer calls them (:class:`tracer.samplers.flow.FlowSampler`: direction,
solid-angle pdf and radiance included; median of 5 calls) at batches of 64k and 256k, and
relMSE at equal spp of ``flow`` and ``piecewise`` with next-event estimation only (the light
sampler is all that differs) on scenes/spheres.toml lit by the map, against a ``mis``
reference at ``--ref-spp``: mean (standard error) of ``--renders`` independent renders
(the same measure as ``benchmarks/bench_flow.py``).

Fits are cached in ``--cache`` (per budget, map and family) and reused; ``--refit`` redoes
them. ``--threads`` sets Torch's and Numba's threads (1 on the shared 2-core machines, so that
fit times compare). ``--figure`` draws each family's learned density beside the target for
``--figure-map``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_flow import rate, ratio_cell, relmse_of_renders
from benchmarks.bench_flow_fit import map_paths
from flows.families import FAMILY_NAMES, family
from tracer.envmap import EnvMap, load_envmap
from tracer.integrator import render
from tracer.samplers import make_reference_strategy, make_strategy
from tracer.samplers.flow import fit_map_flow, make_flow_sampler
from tracer.samplers.piecewise import PiecewiseSampler
from tracer.scene import EnvSpec, load_scene
from tracer.scene_data import scene_data

BATCHES = (65536, 262144)


def fitted_flow(env: EnvMap, name: str, budget: float, cache: Path, refit: bool) -> Path:
    """The flow file of family ``name`` for ``env``, fitted within ``budget`` seconds (cached)."""
    path = cache / f"budget-{budget:g}s" / f"{Path(env.name).stem}-{name}.pt"
    if refit or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fit_map_flow(env, path, seed=0, progress=False, config=family(name).default_config(),
                     time_limit_s=budget, max_steps=10**7)
    return path


def throughput(sampler: Any) -> dict[tuple[str, int], float]:
    """Samples and pdf evaluations per second of ``sampler`` at :data:`BATCHES`."""
    out = {}
    for b in BATCHES:
        u = np.random.default_rng(b).random((b, 2))
        wi = sampler.sample(u).wi
        out["sample", b] = rate(sampler.sample, u)
        out["pdf", b] = rate(sampler.pdf, wi)
    return out


def draw_figure(env: EnvMap, paths: dict[str, Path], out: Path) -> None:
    """Target density and each family's learned density (log10, one colour scale), with KL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tracer.flow_report import density_grid
    from tracer.samplers.flow import load_map_flow

    target = env.sampling_density()
    target = target / target.mean()
    h, w = 128, 256
    rows = np.minimum(((np.arange(h) + 0.5) / h * target.shape[0]).astype(int), target.shape[0] - 1)
    cols = np.minimum(((np.arange(w) + 0.5) / w * target.shape[1]).astype(int), target.shape[1] - 1)
    panels = [("target", target[rows[:, None], cols[None, :]])]
    for name, path in paths.items():
        module, meta = load_map_flow(env, path)
        panels.append((f"{name}: KL {meta['kl']:.3f}", density_grid(module, h, w)))
    lo, hi = -3.0, float(np.log10(max(p.max() for _, p in panels)))
    n_cols = 4
    n_rows = -(-len(panels) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.4 * n_cols, 2.0 * n_rows), constrained_layout=True)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, img) in zip(axes.ravel(), panels, strict=False):
        im = ax.imshow(np.log10(np.maximum(img, 1e-3)), vmin=lo, vmax=hi, cmap="magma", aspect="auto")
        ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8, label="log10 density on the square")
    fig.suptitle(f"{Path(env.name).stem}: learned densities (u across, v down)", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=60)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=60.0, help="fit seconds per family and map")
    ap.add_argument("--maps", help="comma-separated map names or files (default: all)")
    ap.add_argument("--families", default=",".join(FAMILY_NAMES), help="comma-separated families")
    ap.add_argument("--renders", type=int, default=4, help="independent renders per sampler")
    ap.add_argument("--spp", type=int, default=16, help="spp of the compared renders")
    ap.add_argument("--size", type=int, default=64, help="image width and height")
    ap.add_argument("--ref-spp", type=int, default=256, help="spp of the mis reference")
    ap.add_argument("--depth", type=int, default=5, help="max bounces")
    ap.add_argument("--threads", type=int, default=1, help="Torch and Numba threads")
    ap.add_argument("--cache", type=Path, default=ROOT / "renders" / "flow_families", help="fitted flows")
    ap.add_argument("--refit", action="store_true", help="fit again even when cached")
    ap.add_argument("--table", type=Path, help="also write the table (markdown) here")
    ap.add_argument("--figure", type=Path, help="write the density figure here (PNG)")
    ap.add_argument("--figure-map", default="forest", help="the map of --figure")
    ap.add_argument("--figure-only", action="store_true",
                    help="only draw --figure from the cached fits (fitting any that are missing)")
    args = ap.parse_args()

    import numba
    import torch

    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    for n in names:
        family(n)  # unknown names fail here, before any fit
    if args.figure_only:
        env = load_envmap(EnvSpec(kind="file", path=map_paths(args.figure_map)[0]))
        draw_figure(env, {n: fitted_flow(env, n, args.budget, args.cache, args.refit) for n in names},
                    args.figure or ROOT / "renders" / "figures" / "flow_families.png")
        return
    scene = load_scene(ROOT / "scenes" / "spheres.toml")
    data = scene_data(scene, args.size, args.size)
    rows = []
    for map_path in map_paths(args.maps):
        env = load_envmap(EnvSpec(kind="file", path=map_path))
        ref = render(data, env, make_reference_strategy(env), args.size, args.size, args.ref_spp, args.depth, 999)
        ref_img = ref.film.image()
        pw = relmse_of_renders(data, env, make_strategy("piecewise", env), args.size, args.spp, args.depth,
                               args.renders, ref_img)
        pw_thr = throughput(PiecewiseSampler(env))
        paths = {}
        for name in names:
            path = fitted_flow(env, name, args.budget, args.cache, args.refit)
            paths[name] = path
            flow = make_flow_sampler(env, model_path=path, progress=False)
            strategy = make_strategy("flow", env, model_path=path)
            rel = relmse_of_renders(data, env, strategy, args.size, args.spp, args.depth, args.renders, ref_img)
            rows.append((map_path.stem, name, flow.meta, path.stat().st_size, throughput(flow), rel, pw))
            meta = flow.meta
            print(f"{map_path.stem} {name}: KL {meta['kl']:.4f}, fit {meta['fit_seconds']:.1f} s "
                  f"({meta['steps']} steps)", file=sys.stderr, flush=True)
        print(f"{map_path.stem}: piecewise sample " + ", ".join(
            f"{pw_thr['sample', b] / 1e6:.2f}" for b in BATCHES) + " M/s, pdf " + ", ".join(
            f"{pw_thr['pdf', b] / 1e6:.2f}" for b in BATCHES) + " M/s", file=sys.stderr, flush=True)
        if args.figure is not None and map_path.stem == args.figure_map:
            draw_figure(env, paths, args.figure)

    head = ["map", "family", "params", "KB", "fit s", "steps", "KL nats"]
    head += [f"{k} M/s @{b // 1024}k" for k in ("sample", "pdf") for b in BATCHES]
    head += [f"relMSE flow @{args.spp}spp", "relMSE piecewise", "flow/piecewise"]
    caption = (f"Budget {args.budget:g} s per fit, {args.threads} thread(s); relMSE: mean (standard error) "
               f"of {args.renders} renders at {args.size}x{args.size}, {args.spp} spp, against mis at "
               f"{args.ref_spp} spp")
    lines = [caption, "", "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for map_name, name, meta, size, thr, rel, pw in rows:
        cells = [map_name, name, str(meta.get("n_parameters", "?")), str(round(size / 1024)),
                 f"{meta['fit_seconds']:.1f}", str(meta["steps"]), f"{meta['kl']:.4f}"]
        cells += [f"{thr[k, b] / 1e6:.2f}" for k in ("sample", "pdf") for b in BATCHES]
        cells += [f"{rel[0]:.4g} ({rel[1]:.2g})", f"{pw[0]:.4g} ({pw[1]:.2g})", ratio_cell(rel, pw)]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print("\n" + text)
    if args.table is not None:
        args.table.write_text(text + "\n")


if __name__ == "__main__":
    main()
