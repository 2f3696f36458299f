r"""``mis``: BSDF sampling and a light sampler combined by multiple importance sampling.

Each shading point takes one light sample and one BSDF sample; a direction sampled by
technique a with density :math:`p_a` is weighted by the balance heuristic
:math:`p_a / (p_a + p_b)` or the power heuristic :math:`p_a^2 / (p_a^2 + p_b^2)`
(Veach and Guibas 1995, "Optimally Combining Sampling Techniques for Monte Carlo
Rendering"). The weights of the two techniques sum to one for every direction, so the
estimator is unbiased whenever the union of their supports covers the integrand; this is
what lets the MIS-compensated piecewise density drop dim pixels.
"""

from __future__ import annotations

from tracer.errors import TracerError
from tracer.samplers.base import LightSampler
from tracer.samplers.strategy import MIS, Strategy

HEURISTICS = {"balance": 1.0, "power": 2.0}


def make_mis_strategy(light: LightSampler, heuristic: str = "power") -> Strategy:
    """MIS of BSDF sampling with ``light``."""
    if heuristic not in HEURISTICS:
        raise TracerError(f"unknown MIS heuristic {heuristic!r}; choose one of {', '.join(HEURISTICS)}")
    return Strategy("mis", MIS, light, HEURISTICS[heuristic])
