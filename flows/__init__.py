"""A small normalizing-flow library on the unit square, for sampling environment maps.

Modules, one concern each:

* :mod:`flows.spline`: the monotonic rational-quadratic spline (Durkan et al. 2019).
* :mod:`flows.piecewise_linear`: the piecewise-linear transform (Müller et al. 2019).
* :mod:`flows.coupling`: encodings, conditioners and the spline coupling layer.
* :mod:`flows.base`: :class:`UnitSquareFlow`, the ``sample`` / ``log_prob`` interface.
* :mod:`flows.model`: :class:`SplineFlow`, spline couplings with a uniform base on
  ``[0, 1]^2`` (optionally mixed with uniform and single-pixel components), and
  :class:`FlowConfig`.
* :mod:`flows.pixel_flow`: :class:`PixelFlow`, an autoregressive piecewise-linear flow at the
  map's pixel resolution (the default), and :class:`PixelFlowConfig`.
* :mod:`flows.train`: :func:`fit_flow` (the exact pixel KL, or maximum likelihood on samples
  of a piecewise-constant density) and :func:`kl_divergence`.
* :mod:`flows.export`: :func:`save_flow` / :func:`load_flow`, TorchScript files with metadata.
"""

from flows.base import UnitSquareFlow
from flows.coupling import SplineCoupling
from flows.export import content_hash, load_flow, save_flow
from flows.model import FlowConfig, SplineFlow
from flows.piecewise_linear import piecewise_linear
from flows.pixel_flow import PixelFlow, PixelFlowConfig
from flows.spline import periodic_derivatives, rational_quadratic_spline
from flows.train import FitResult, fit_flow, kl_divergence

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
