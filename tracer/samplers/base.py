"""The light-sampler contract shared by every environment sampler.

``sample`` and ``pdf`` are always a pair, vectorised over a whole wavefront (as pbrt-v4's
``SampleLi``/``PDF_Li`` and Mitsuba 3's ``sample_direction``/``pdf_direction``), and both
speak of the same density per unit **solid angle**. A sample whose pdf is 0 (a pole of the
lat-long parameterisation) carries no light and is skipped by the integrator.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np


class LightSamples(NamedTuple):
    """A batch of light samples."""

    wi: np.ndarray  # (N, 3) float64 unit world directions towards the light
    pdf: np.ndarray  # (N,) float64 solid-angle density of wi
    le: np.ndarray  # (N, 3) float64 radiance arriving from wi


class LightSampler(Protocol):
    """Batched importance sampling of the environment light."""

    name: str

    def sample(self, u: np.ndarray) -> LightSamples:
        """Directions for (N, 2) uniforms in [0, 1)^2."""
        ...

    def pdf(self, wi: np.ndarray) -> np.ndarray:
        """Solid-angle density of (N, 3) world directions."""
        ...
