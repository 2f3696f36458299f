"""What each shadow ray of a `mis` render carries, and what shadow-ray roulette trades for it.

    python benchmarks/shadow_energy.py [--scenes knot,spheres,clay] [--size 128] [--spp 64]
        [--ref-spp 512] [--thresholds 0.03,0.1,0.3,1]

Renders each scene with ``mis`` and every shadow ray traced (``--shadow-rr 0``), recording
each next-event term (:func:`tracer.stages.shade_at`: the light sample's contribution to its
path, MIS weight, throughput and BSDF included), its pixel, and whether its light was visible;
and times the shadow-ray calls. Then, for thresholds tau, it predicts what the unbiased
roulette (keep a term of largest component c < tau with probability q = c / tau, weighted
1 / q; Arvo and Kirk 1990) would do, from those same terms:

- the share of shadow rays it leaves untraced, sum (1 - q) over the terms, and the time
  that saves (that share of the shadow-ray calls' time);
- the variance it adds to each pixel, sum c_ch^2 (1 / q - 1) over its visible terms / spp^2,
  and so the relMSE, mean var / (ref^2 + 0.01), against the render's own (from its
  per-pixel variances; ``ref`` a ``mis`` render at ``--ref-spp``);
- their ratio: the equal-time efficiency the roulette would reach, relative to none.

Two rules for tau: ``global``, what the renderer does (``--shadow-rr`` x the map's mean
luminance, one tau for every term), and ``pixel``, an oracle that sets tau to the threshold
x the reference's value of the term's pixel (its largest channel): relMSE weighs an error by
its pixel's value, so that is the threshold a renderer would use if it knew its image (as
adjoint-driven roulette, Vorba and Krivanek 2016, approximates with a pre-pass). The
oracle's line is what such a pre-pass could at best buy.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer import kernels
from tracer.envmap import load_envmap
from tracer.integrator import render
from tracer.samplers import make_strategy
from tracer.scene import load_scene
from tracer.scene_data import scene_data

#: per call: (the entries' paths, their next-event terms, visible or not), and the seconds
RECORDS: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
SECONDS: list[float] = []
_trace = kernels.trace_shadow_rays


def recording_trace(g, idx, pos, ng, wi, nee, radiance) -> None:
    """:func:`tracer.kernels.trace_shadow_rays`, timed, recording its terms and which it added
    (it adds into a zeroed copy of the radiance, so that a visible term shows however small,
    and that copy is then added to the paths' radiance)."""
    added = np.zeros_like(radiance)
    t0 = time.perf_counter()
    _trace(g, idx, pos, ng, wi, nee, added)
    SECONDS.append(time.perf_counter() - t0)
    radiance += added
    m = idx.shape[0]
    terms = nee[:m]
    traced = np.any(terms != 0.0, axis=1)
    visible = traced & np.any(added[idx] != 0.0, axis=1)
    RECORDS.append((idx[traced], terms[traced].copy(), visible[traced]))


def predict(c: np.ndarray, tau: np.ndarray, terms: np.ndarray, visible: np.ndarray, pix: np.ndarray,
            npix: int, spp: int, weight: np.ndarray) -> tuple[float, float]:
    """(share of the traced shadow rays left untraced, relMSE added) under threshold tau: the
    keep probability of :func:`tracer.stages.shade_at`'s roulette, min(1, c / tau), in NumPy
    (a model of the kernel's rule over recorded terms, not the renderer's code path)."""
    q = np.minimum(1.0, c / tau)
    untraced = float(np.mean(1.0 - q))
    v = visible & (q < 1.0)
    added = np.zeros((npix, 3))
    for ch in range(3):
        added[:, ch] = np.bincount(pix[v], terms[v, ch] ** 2 * (1.0 / q[v] - 1.0), npix)
    return untraced, float(np.mean(added / spp**2 * weight))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", default="knot,spheres,clay")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--spp", type=int, default=64)
    ap.add_argument("--ref-spp", type=int, default=512)
    ap.add_argument("--thresholds", default="0.03,0.1,0.3,1")
    args = ap.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    size, spp = args.size, args.spp
    npix = size * size
    kernels.trace_shadow_rays = recording_trace  # the integrator calls it through the module
    for name in args.scenes.split(","):
        scene = load_scene(ROOT / "scenes" / f"{name}.toml")
        env = load_envmap(scene.env)
        data = scene_data(scene, size, size)
        st = make_strategy("mis", env, shadow_rr=0.0)
        render(data, env, st, size, size, 1, 5, 0)  # compile
        RECORDS.clear()
        ref = render(data, env, st, size, size, args.ref_spp, 5, 10_000).film.image().reshape(npix, 3)
        RECORDS.clear()
        SECONDS.clear()
        res = render(data, env, st, size, size, spp, 5, 1)
        paths, terms, visible = (np.concatenate(r) for r in zip(*RECORDS, strict=True))
        pix = paths % npix  # a batch holds whole samples of every pixel: path = sample x npix + pixel
        c = terms.max(axis=1)
        weight = 1.0 / (ref**2 + 1e-2)
        rel0 = float(np.mean(res.film.variance().reshape(npix, 3) * weight))
        t_all, t_shadow = res.seconds, sum(SECONDS)
        hits = res.paths  # camera paths; the terms are per hit
        print(f"\n{name} ({size}x{size}, {spp} spp, mis, every shadow ray traced): {c.size / hits:.2f} "
              f"shadow rays a path, {visible.mean():.2f} of them visible; shadow rays {t_shadow:.2f} s "
              f"of {t_all:.2f} s; relMSE from the pixel variances {rel0:.3e}")
        print(f"  a term's largest component / the map's mean luminance: median "
              f"{np.median(c) / env.mean_luminance:.3g}, mean {c.mean() / env.mean_luminance:.3g}")
        print(f"  {'rule':<8}{'tau':>6}{'untraced':>10}{'saves s':>9}{'relMSE +':>10}{'efficiency':>12}")
        for rule in ("global", "pixel"):
            for f in thresholds:
                tau = np.full(c.size, f * env.mean_luminance) if rule == "global" else f * ref.max(axis=1)[pix]
                untraced, added = predict(c, np.maximum(tau, 1e-30), terms, visible, pix, npix, spp, weight)
                saved = untraced * t_shadow
                eff = rel0 / (rel0 + added) * t_all / (t_all - saved)
                print(f"  {rule:<8}{f:>6g}{untraced:>10.2f}{saved:>9.3f}{added / rel0:>+10.1%}{eff:>12.3f}")


if __name__ == "__main__":
    main()
