"""What each shadow ray of a `mis` render carries: the case for Russian roulette on them.

    python benchmarks/shadow_energy.py [--scenes knot,spheres] [--size 128] [--spp 16]

Renders each scene with ``mis`` and records, at every bounce, what next-event estimation
added to each path's radiance (its luminance: the light sample's contribution, MIS weight,
throughput and BSDF included), which shadow rays were traced (the renderer's own test,
:func:`tracer.stages.light_sample_can_count`) and which of them reached the map. Prints the
distribution of an unoccluded ray's contribution c, and for thresholds tau (multiples of
its mean) what an unbiased roulette on shadow rays (trace with probability
q = min(1, c / tau), weight 1 / q; Arvo and Kirk 1990) would do: the share of the rays
below tau and of the energy they carry, the expected share of shadow rays not traced
(estimated from the unoccluded ones, whose contribution is known), and the second moment
it adds, sum c (tau - c) over c < tau, relative to the NEE terms' own second moment (a
proxy for the variance it adds). The renderer does not do this; the figures are what a
future lever would work from (README, "The levers, measured").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from numba import njit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer import kernels
from tracer.envmap import LUMINANCE, load_envmap
from tracer.integrator import render
from tracer.samplers import make_strategy
from tracer.scene import load_scene
from tracer.scene_data import scene_data
from tracer.stages import light_sample_can_count


@njit
def can_count(idx, rd, ng, wi, light_pdf, mat, mat_kind, out):
    """Which entries' shadow rays the renderer traces (:func:`light_sample_can_count`)."""
    for k in range(idx.shape[0]):
        out[k] = light_sample_can_count(k, idx, rd, ng, wi, light_pdf, mat, mat_kind)


#: per bounce: (NEE luminance added, shadow ray traced, shadow ray unoccluded)
RECORDS: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
_shade = kernels.shade_and_scatter


def recording_shade(idx, depth, seed, sampling, sample_of, pixel_of, mode, power, rr_depth, rr_cap,
                    pos, ng, ns, mat, mat_kind, mat_prm, lwi, lpdf, lle, unocc, ro, rd, beta,
                    radiance, *rest):
    """:func:`tracer.kernels.shade_and_scatter`, recording what it adds to the radiance."""
    m = idx.shape[0]
    before = radiance[idx] @ LUMINANCE
    traced = np.empty(m, np.bool_)
    can_count(idx, rd, ng, lwi, lpdf, mat, mat_kind, traced)
    _shade(idx, depth, seed, sampling, sample_of, pixel_of, mode, power, rr_depth, rr_cap, pos, ng,
           ns, mat, mat_kind, mat_prm, lwi, lpdf, lle, unocc, ro, rd, beta, radiance, *rest)
    RECORDS.append((radiance[idx] @ LUMINANCE - before, traced, unocc[:m].copy()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", default="knot,spheres")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--spp", type=int, default=16)
    args = ap.parse_args()
    kernels.shade_and_scatter = recording_shade  # the integrator calls it through the module
    for name in args.scenes.split(","):
        RECORDS.clear()
        scene = load_scene(ROOT / "scenes" / f"{name}.toml")
        env = load_envmap(scene.env)
        render(scene_data(scene, args.size, args.size), env, make_strategy("mis", env), args.size,
               args.size, args.spp, 5, 1)
        c, traced, unocc = (np.concatenate(r) for r in zip(*RECORDS, strict=True))
        cu = c[unocc]
        print(f"{name} ({args.size}x{args.size}, {args.spp} spp): {c.size} hits, {traced.sum()} shadow "
              f"rays traced ({traced.mean():.2f} a hit), {unocc.sum() / traced.sum():.2f} of them unoccluded")
        mean = cu.mean()
        print(f"  contribution of an unoccluded ray: mean {mean:.3g}, median {np.median(cu):.3g}, "
              f"90th percentile {np.percentile(cu, 90):.3g}, max {cu.max():.3g}")
        second = np.sum(cu**2)
        for f in (0.1, 0.3, 1.0, 3.0):
            tau = f * mean
            low = cu < tau
            skipped = np.mean(1.0 - np.minimum(1.0, cu / tau))
            added = np.sum(cu[low] * (tau - cu[low])) / second
            print(f"  tau = {f:g} x mean: {low.mean():.2f} of the rays below it, carrying "
                  f"{cu[low].sum() / cu.sum():.3f} of the energy; roulette would not trace "
                  f"{skipped:.2f} of the shadow rays and add {added:.3f} to the second moment")


if __name__ == "__main__":
    main()
