"""A small normalizing-flow library on the unit square, for sampling environment maps.

Modules, one concern each:

* :mod:`flows.families`: the registry of flow families (name -> config and model class).
* :mod:`flows.spline`: the monotonic rational-quadratic spline (Durkan et al. 2019).
* :mod:`flows.piecewise_linear`: the piecewise-linear transform (Müller et al. 2019).
* :mod:`flows.coupling`: encodings, conditioners and the spline coupling layer.
* :mod:`flows.base`: :class:`UnitSquareFlow`, the ``sample`` / ``log_prob`` interface.
* :mod:`flows.mixture`: :class:`MixtureFlow`, a flow mixed with uniform and single-pixel
  components (for suns), shared by the families.
* :mod:`flows.model`: :class:`SplineFlow`, spline couplings with a uniform base on
  ``[0, 1]^2``, and :class:`FlowConfig`.
* :mod:`flows.plane`: the square <-> plane (logistic) map and the pieces of the real-line
  families: :mod:`flows.nice`, :mod:`flows.realnvp`, :mod:`flows.glow`, :mod:`flows.maf`
  (MAF and IAF).
* :mod:`flows.pixel_flow`: :class:`PixelFlow`, an autoregressive piecewise-linear flow at the
  map's pixel resolution (the default), and :class:`PixelFlowConfig`.
* :mod:`flows.train`: :func:`fit_flow` (the exact pixel KL, or maximum likelihood on samples
  of a piecewise-constant density) and :func:`kl_divergence`.
* :mod:`flows.export`: :func:`save_flow` / :func:`load_flow`, TorchScript files with metadata.

The names below are imported on first use (PEP 562), so that ``import flows.families`` (the
CLI's argument parser) does not import Torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "FitResult": "flows.train",
    "FlowConfig": "flows.model",
    "PixelFlow": "flows.pixel_flow",
    "PixelFlowConfig": "flows.pixel_flow",
    "SplineCoupling": "flows.coupling",
    "SplineFlow": "flows.model",
    "UnitSquareFlow": "flows.base",
    "content_hash": "flows.export",
    "fit_flow": "flows.train",
    "kl_divergence": "flows.train",
    "load_flow": "flows.export",
    "periodic_derivatives": "flows.spline",
    "piecewise_linear": "flows.piecewise_linear",
    "rational_quadratic_spline": "flows.spline",
    "save_flow": "flows.export",
}

__all__ = [
    "FitResult",
    "FlowConfig",
    "PixelFlow",
    "PixelFlowConfig",
    "SplineCoupling",
    "SplineFlow",
    "UnitSquareFlow",
    "content_hash",
    "fit_flow",
    "kl_divergence",
    "load_flow",
    "periodic_derivatives",
    "piecewise_linear",
    "rational_quadratic_spline",
    "save_flow",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'flows' has no attribute {name!r}")
