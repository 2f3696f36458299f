"""``bsdf``: no light sampling; paths find the environment by BSDF sampling alone.

The baseline every renderer has: unbiased, cheap, and noisy for small bright lights.
"""

from __future__ import annotations

from tracer.samplers.strategy import BSDF_ONLY, Strategy


def make_bsdf_strategy() -> Strategy:
    """The BSDF-sampling-only strategy."""
    return Strategy("bsdf", BSDF_ONLY, None)
