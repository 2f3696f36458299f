r"""A normalizing flow on the unit square with a uniform base, for sampling environment maps.

The flow is a composition of :math:`L` spline couplings (:mod:`flows.coupling`),
:math:`f = f_{L-1} \circ \dots \circ f_0: [0, 1]^2 \to [0, 1]^2`, that alternate the transformed
coordinate (layer :math:`i` transforms coordinate :math:`i \bmod 2`; coordinate 0 is the
azimuth :math:`u`, coordinate 1 the polar :math:`v`). The base distribution is uniform on the
square, so by the change of variables formula (Rezende and Mohamed, "Variational Inference
with Normalizing Flows", ICML 2015; Papamakarios et al., "Normalizing Flows for Probabilistic
Modeling and Inference", JMLR 2021) the flow density is

.. math::
    q_f(x) = \left|\det \frac{\partial f}{\partial x}\right|
           = \prod_i \left|\frac{\partial f_i}{\partial x}\right| ,

and a sample is :math:`x = f^{-1}(\xi)` for :math:`\xi \sim U[0, 1]^2` with
:math:`\log q_f(x) = -\log|\det \partial f^{-1} / \partial \xi|`, so the renderer's random
numbers :math:`\xi` drive the flow directly (Mueller et al., "Neural Importance Sampling",
ACM TOG 2019).

Mixture (optional). The model density may be a mixture of the flow with a defensive uniform
component and single-pixel components (``uniform_weight``, ``n_pixel_components``): see
:mod:`flows.mixture`, which every family shares. :meth:`SplineFlow.transform` and
:meth:`SplineFlow.inverse_transform` expose the bijection :math:`f` itself (in the dtype of
their input).

Precision. A sample's returned log density must be the one :meth:`SplineFlow.log_prob` gives
at the returned point, to float precision: the renderer weighs the same direction by both
(multiple importance sampling), in batches of other sizes. Two things break that in float32:

* the flow amplifies rounding. Float32 arithmetic on the points makes a point's log density
  depend on the pass (inverse or forward) and on the batch it is evaluated in, by about
  1e-5 on a briefly fitted flow, 1e-4 on flows fitted to the shared maps and up to 1e-1 on
  a peaked one;
* the point is rounded to float32 after its log density was computed. A fitted flow's log
  density varies so fast that one float32 step moves it by up to 2e-4 (and, rarely, 1e-1
  across the edge of a pixel component).

So in eval mode (how a saved flow is used) :meth:`SplineFlow.sample` and
:meth:`SplineFlow.log_prob` compute the points in float64 whatever their input's dtype, with
float32 weights (:mod:`flows.spline`). A float32 sample is the float64 sample rounded, and
its log density is the forward pass's at the rounded point: exactly ``log_prob`` of the
returned point, at the price of a second pass (sampling takes about twice as long as
``log_prob``). Given float64 input, ``sample`` returns the float64 point with the inverse
pass's log density (``log_prob`` agrees to ~1e-12) in one pass. A point's log density is then
the same in any batch, bit for bit, as long as the matrix products compute a row alike
whatever the number of rows: true, as measured, of the CPU's BLAS from 16 rows on, to which
:class:`flows.coupling.Conditioner` pads smaller batches; not of cuBLAS, whose results move
the log density between batches by ~1e-5 on a moderate flow (1e-2 on a peaked one). Training
(train mode) computes in the weights' dtype, float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from flows.base import ConfigDict
from flows.coupling import SplineCoupling, check_stack
from flows.mixture import MixtureFlow, check_mixture


@dataclass(frozen=True)
class FlowConfig(ConfigDict):
    """Everything needed to rebuild a :class:`SplineFlow` (its weights and buffers aside).

    The defaults were chosen on the five shared 512 x 1024 maps (2 CPU threads, at most
    115 s per fit): KL(target || model) of 0.008 to 0.048 nats on four maps and about 0.12
    on ``forest``, 21k parameters, 0.5-0.7 M samples/s; without the time limit
    (``python benchmarks/bench_flow_fit.py --model spline``, 4000 steps or an early stop,
    51 to 117 s) 0.008 to 0.070 and 0.117 on ``forest``. Within the same time,
    ``n_bins=64, hidden=64, encoding_size=128`` (100k parameters) fits fewer steps and gains little (forest 0.095, studio 0.048 instead of
    0.034) at 0.4 M samples/s; ``n_bins=16, hidden=16, encoding_size=16`` samples 0.9 M/s
    but loses accuracy (courtyard 0.068, forest 0.16). The 32 pixel components are what
    bring the point-like sun of ``interior`` (one pixel at 3e4 x the mean) from ~0.15 down
    to ~0.03 nats: see the module docstring.

    Attributes:
        n_layers: number of coupling layers (alternating u and v; at least 2 so that both
            coordinates are transformed).
        n_bins: K, bins per spline.
        hidden: conditioner width.
        depth: hidden layers per conditioner.
        encoding: ``"one_blob"``, ``"fourier"`` or ``"raw"``.
        encoding_size: one-blob kernels or Fourier frequencies.
        periodic_u: treat u (coordinate 0, the azimuth) as circular.
        uniform_weight: weight :math:`a` of the defensive uniform component (0 disables it).
        n_pixel_components: :math:`M`, number of single-pixel mixture components (0: none).
        min_bin_width, min_bin_height, min_derivative: spline regularisers
            (see :mod:`flows.spline`).
    """

    kind: ClassVar[str] = "spline"
    n_layers: int = 4
    n_bins: int = 32
    hidden: int = 32
    depth: int = 2
    encoding: str = "one_blob"
    encoding_size: int = 32
    periodic_u: bool = True
    uniform_weight: float = 0.0
    n_pixel_components: int = 32
    min_bin_width: float = 1e-3
    min_bin_height: float = 1e-3
    min_derivative: float = 1e-3

    def __post_init__(self) -> None:
        check_stack(self.n_layers, self.encoding)
        check_mixture(self.uniform_weight, self.n_pixel_components)


class SplineFlow(MixtureFlow):
    """Spline-coupling flow on :math:`[0, 1]^2` with a uniform base (Durkan et al., "Neural
    Spline Flows", NeurIPS 2019; see the module docstring).

    TorchScript-compatible: ``torch.jit.script(model)`` exports :meth:`sample`,
    :meth:`log_prob`, :meth:`transform` and :meth:`inverse_transform`.

    Args:
        config: the architecture (default ``FlowConfig()``).
        chunk_size: rows per block in :meth:`sample` and :meth:`log_prob` (speed only).
    """

    def __init__(self, config: FlowConfig | None = None, chunk_size: int = 16384) -> None:
        config = FlowConfig() if config is None else config
        super().__init__(config.uniform_weight, config.n_pixel_components, chunk_size)
        self.config = config
        self.layers = nn.ModuleList(
            [
                SplineCoupling(
                    transform_dim=i % 2,
                    n_bins=config.n_bins,
                    hidden=config.hidden,
                    depth=config.depth,
                    encoding=config.encoding,
                    encoding_size=config.encoding_size,
                    periodic=config.periodic_u and i % 2 == 0,
                    periodic_cond=config.periodic_u and i % 2 == 1,
                    min_bin_width=config.min_bin_width,
                    min_bin_height=config.min_bin_height,
                    min_derivative=config.min_derivative,
                )
                for i in range(config.n_layers)
            ]
        )

    @torch.jit.export
    def transform(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The bijection: ``x (N, 2) -> (u = f(x), log|det df/dx| (N,))``."""
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    @torch.jit.export
    def inverse_transform(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """The inverse bijection: ``u (N, 2) -> (x = f^{-1}(u), log|det df^{-1}/du| (N,))``."""
        logdet = torch.zeros(u.shape[0], dtype=u.dtype, device=u.device)
        for layer in self.layers[::-1]:
            u, ld = layer.inverse(u)
            logdet = logdet + ld
        return u, logdet
