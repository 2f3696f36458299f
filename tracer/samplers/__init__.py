"""Light samplers (one module each) and the ``--sampler`` registry."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from tracer.envmap import EnvMap
from tracer.errors import TracerError
from tracer.rng import SAMPLINGS
from tracer.samplers.base import LightSampler, LightSamples
from tracer.samplers.strategy import BSDF_ONLY, NEE_ONLY, SHADOW_RR, Strategy

#: values of ``--sampler``
SAMPLERS = ("uniform", "piecewise", "alias", "flow", "product", "bsdf", "mis")
#: values of ``--light`` (the light sampler inside ``mis``)
LIGHTS = ("uniform", "piecewise", "alias", "flow", "product")
#: values of ``--sequence``
SEQUENCES = tuple(SAMPLINGS)
#: samplers that read a fitted model file (``--flow-model``)
MODEL_SAMPLERS = ("flow", "product")
#: light samplers inside ``mis`` whose density can be MIS-compensated (they tabulate the map)
COMPENSABLE = ("piecewise", "alias")


def parse_sampler_name(name: str) -> tuple[str, dict[str, Any]]:
    """A sampler named ``NAME[-LIGHT][+plain][+SEQUENCE][+srr=X]`` (``tracer converge
    --samplers``, the benchmarks) -> (:func:`make_strategy`'s sampler, its keyword arguments):
    ``mis-alias`` is mis with the alias light, ``+plain`` mis with the plain light density
    (``--no-compensate``), ``+sobol`` the Sobol sample sequence, ``+srr=0`` no shadow-ray
    roulette (``--shadow-rr 0``). ``tracer converge`` takes the first two
    (:func:`sweep_sampler_names`) and sets the others for every sampler by flag."""
    base, *mods = name.split("+")
    kw: dict[str, Any] = {}
    for mod in mods:
        if mod == "plain":
            kw["compensate"] = False
        elif mod.startswith("srr="):
            try:
                kw["shadow_rr"] = float(mod[4:])
            except ValueError:
                raise TracerError(f"sampler {name!r}: +srr= takes a number, not {mod[4:]!r}") from None
        else:
            kw["sequence"] = mod
    if "-" in base:
        base, kw["light"] = base.split("-", 1)
    return base, kw


def sweep_sampler_names() -> tuple[str, ...]:
    """The names :func:`parse_sampler_name` takes in ``tracer converge --samplers``: every
    ``--sampler``, ``mis-LIGHT`` for every light, and ``+plain`` where the light density can
    be compensated (``mis`` and ``mis-LIGHT`` for the :data:`COMPENSABLE` lights)."""
    plain = ("mis", *(f"mis-{light}" for light in COMPENSABLE))
    return (*SAMPLERS, *(f"mis-{light}" for light in LIGHTS), *(f"{name}+plain" for name in plain))


def check_compensate(sampler: str, light: str, compensate: bool | None) -> None:
    """Refuse ``--compensate`` / ``--no-compensate`` where no tabulated light density would take
    them: outside ``mis`` (the compensated density drops dim pixels and is unbiased only under
    MIS), or with a light that has no table of the map."""
    if compensate is None or (sampler == "mis" and light in COMPENSABLE):
        return
    flag = "--compensate" if compensate else "--no-compensate"
    raise TracerError(f"{flag} chooses the light density of --sampler mis with --light "
                      f"{' or '.join(COMPENSABLE)}; the sampler is {sampler}"
                      + (f" with --light {light}" if sampler == "mis" else ""))


def make_light_sampler(name: str, env: EnvMap, compensate: bool = False, **flow_opts: Any) -> LightSampler:
    """The light sampler called ``name`` for ``env``."""
    if name == "uniform":
        from tracer.samplers.uniform import UniformSampler

        return UniformSampler(env)
    if name == "piecewise":
        from tracer.samplers.piecewise import PiecewiseSampler

        return PiecewiseSampler(env, compensate=compensate)
    if name == "alias":
        from tracer.samplers.alias import AliasSampler

        return AliasSampler(env, compensate=compensate)
    if name == "flow":
        from tracer.samplers.flow import make_flow_sampler

        return make_flow_sampler(env, **flow_opts)
    if name == "product":
        from tracer.product_model import make_product_sampler

        return make_product_sampler(env, **flow_opts)
    raise TracerError(f"unknown light sampler {name!r}; choose one of {', '.join(LIGHTS)}")


def make_strategy(
    sampler: str,
    env: EnvMap,
    light: str = "piecewise",
    heuristic: str = "power",
    compensate: bool | None = None,
    sequence: str = "independent",
    shadow_rr: float = SHADOW_RR,
    **flow_opts: Any,
) -> Strategy:
    """The strategy for ``--sampler``; ``light``, ``heuristic``, ``compensate`` apply to ``mis``;
    ``sequence`` (``--sequence``) is the sample sequence of every path, ``shadow_rr``
    (``--shadow-rr``) the threshold of shadow-ray roulette (:attr:`Strategy.shadow_rr`).

    ``mis`` draws its light samples from the MIS-compensated density by default
    (``compensate=None``; pbrt-v4's default for image lights, Karlik et al. 2019), where the
    light sampler tabulates the map (``piecewise``, ``alias``); ``compensate=False`` keeps the
    plain density. On the bundled scenes and maps the compensated density's error at equal
    time is 1.01-1.93x lower (README, "Product sampling"; ``bench_render.py``)."""
    if sampler not in SAMPLERS:
        raise TracerError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if sequence not in SEQUENCES:
        raise TracerError(f"unknown sample sequence {sequence!r}; choose one of {', '.join(SEQUENCES)}")
    if not (math.isfinite(shadow_rr) and shadow_rr >= 0.0):
        raise TracerError(f"the shadow-ray roulette threshold must be finite and >= 0 (0: off), not {shadow_rr}")
    st = _strategy(sampler, env, light, heuristic, compensate, **flow_opts)
    # (BSDF sampling alone traces no shadow rays: 0, so that its logs and keys say so)
    return dataclasses.replace(st, sequence=sequence,
                               shadow_rr=float(shadow_rr) if st.mode != BSDF_ONLY else 0.0)


def make_reference_strategy(env: EnvMap) -> Strategy:
    """The strategy of the reference images (``tracer converge`` and the benchmarks): ``mis``
    with every shadow ray traced (no shadow-ray roulette), as references were before it
    existed, so that a reference does not move with ``--shadow-rr``'s default."""
    return make_strategy("mis", env, shadow_rr=0.0)


def _strategy(
    sampler: str, env: EnvMap, light: str, heuristic: str, compensate: bool | None, **flow_opts: Any
) -> Strategy:
    check_compensate(sampler, light, compensate)
    if compensate is None:
        compensate = sampler == "mis" and light in COMPENSABLE
    if sampler == "bsdf":
        from tracer.samplers.bsdf import make_bsdf_strategy

        return make_bsdf_strategy()
    if sampler == "mis":
        from tracer.samplers.mis import make_mis_strategy

        return make_mis_strategy(make_light_sampler(light, env, compensate, **flow_opts), heuristic)
    return Strategy(sampler, NEE_ONLY, make_light_sampler(sampler, env, **flow_opts))


__all__ = ["COMPENSABLE", "LIGHTS", "MODEL_SAMPLERS", "SAMPLERS", "SEQUENCES", "SHADOW_RR", "LightSampler", "LightSamples", "Strategy", "check_compensate", "make_light_sampler", "make_reference_strategy", "make_strategy", "parse_sampler_name"]
