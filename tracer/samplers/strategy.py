"""How a render combines light sampling and BSDF sampling (the ``--sampler`` flag)."""

from __future__ import annotations

from dataclasses import dataclass

from tracer.samplers.base import LightSampler
from tracer.stages import BSDF_ONLY, MIS, NEE_ONLY

#: the default of :attr:`Strategy.shadow_rr`: on the bundled knot it leaves a quarter of the
#: shadow rays untraced for +0.1% relMSE, elsewhere fewer for as little (README, "Shadow-ray
#: roulette"; ``benchmarks/shadow_energy.py``)
SHADOW_RR = 0.15


@dataclass
class Strategy:
    """The integrator's sampling strategy.

    ``mode`` is ``NEE_ONLY`` (the light sampler alone estimates direct light; escaped rays
    after a non-delta bounce are not counted), ``BSDF_ONLY`` (no light sampling) or ``MIS``
    (both, weighted by the balance (power 1) or power (power 2) heuristic).
    """

    name: str
    mode: int
    light: LightSampler | None
    power: float = 2.0
    #: the numbers that drive every path: ``independent`` (a hash per pixel, sample and
    #: dimension) or ``sobol`` (padded Owen-scrambled Sobol, :func:`tracer.rng.sobol_uniform`)
    sequence: str = "independent"
    #: shadow-ray roulette's threshold, in units of the map's mean luminance: a next-event
    #: term below it is traced with probability term / threshold and weighted by the
    #: inverse (:func:`tracer.stages.shade_at`; 0: every shadow ray is traced)
    shadow_rr: float = SHADOW_RR

    @property
    def light_name(self) -> str | None:
        return None if self.light is None else self.light.name


__all__ = ["BSDF_ONLY", "MIS", "NEE_ONLY", "SHADOW_RR", "Strategy"]
