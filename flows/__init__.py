"""A small normalizing-flow library on the unit square (rational-quadratic spline couplings).

Modules, one concern each:

* :mod:`flows.spline`: the monotonic rational-quadratic spline (Durkan et al. 2019).
* :mod:`flows.coupling`: encodings, conditioners and the spline coupling layer.
* :mod:`flows.model`: :class:`SplineFlow`, the flow with a uniform base on ``[0, 1]^2``
  (optionally mixed with a uniform and single-pixel components), and :class:`FlowConfig`.
* :mod:`flows.train`: :func:`fit_flow` (maximum likelihood on a piecewise-constant density)
  and :func:`kl_divergence`.
* :mod:`flows.export`: :func:`save_flow` / :func:`load_flow`, TorchScript files with metadata.
* :mod:`flows.bench_fit`: ``python -m flows.bench_fit`` fits and benchmarks the bundled maps.
"""

from flows.coupling import SplineCoupling
from flows.export import content_hash, load_flow, save_flow
from flows.model import FlowConfig, SplineFlow
from flows.spline import periodic_derivatives, rational_quadratic_spline
from flows.train import FitResult, fit_flow, kl_divergence

__all__ = [
    "FitResult",
    "FlowConfig",
    "SplineCoupling",
    "SplineFlow",
    "content_hash",
    "fit_flow",
    "kl_divergence",
    "load_flow",
    "periodic_derivatives",
    "rational_quadratic_spline",
    "save_flow",
]
