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

Mixture (optional). The model density may be a mixture of the flow with two kinds of fixed-shape
components,

.. math::
    q(x) = w_f\, q_f(x) + a + \sum_{k=1}^{M} w_k\, H W\, \mathbb{1}[x \in \text{pixel } k],
    \qquad w_f + a + \sum_k w_k = 1 ,

* a *defensive* uniform component of fixed weight :math:`a` = ``uniform_weight`` (Hesterberg,
  "Weighted Average Importance Sampling and Defensive Mixture Distributions", Technometrics
  1995), which bounds :math:`q \ge a` and hence the importance weights :math:`p / q`;
* :math:`M` = ``n_pixel_components`` *pixel* components, each uniform on one pixel of the
  ``H x W`` map the flow was fitted to (the brightest pixels, chosen by
  :func:`flows.train.fit_flow`). A flow's density is continuous, so it cannot follow a
  point-like sun whose pixel is :math:`10^4` times brighter than its neighbours; a pixel
  component represents such a pixel exactly (the continuous analogue of sampling a sun
  separately). Their weights :math:`w_f, w_k = (1 - a)\,\mathrm{softmax}(\lambda)` are
  learned with the flow by maximum likelihood.

Sampling a mixture spends the first random number to pick the component: :math:`[0, 1)` is cut
into intervals of lengths :math:`a, w_1, \dots, w_M, w_f`; :math:`\xi_0` picks one and is
stretched back onto :math:`[0, 1]` inside it. The uniform component returns
:math:`(\xi_0', \xi_1)`, pixel :math:`k` at row :math:`r`, column :math:`c` returns
:math:`((c + \xi_0') / W, (r + \xi_1) / H)`, the flow :math:`f^{-1}(\xi_0', \xi_1)`; in all
cases the returned log density is that of the whole mixture at the returned point.
:meth:`SplineFlow.transform` and :meth:`SplineFlow.inverse_transform` expose the bijection
:math:`f` itself (in the dtype of their input).

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

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from flows.base import ConfigDict, UnitSquareFlow
from flows.coupling import ENCODINGS, SplineCoupling


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
        if self.n_layers < 1:
            raise ValueError(f"n_layers must be at least 1, got {self.n_layers}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if not 0.0 <= self.uniform_weight < 1.0:
            raise ValueError(f"uniform_weight must be in [0, 1), got {self.uniform_weight}")
        if self.n_pixel_components < 0:
            raise ValueError(f"n_pixel_components must be >= 0, got {self.n_pixel_components}")


class SplineFlow(UnitSquareFlow):
    """Spline-coupling flow on :math:`[0, 1]^2` with a uniform base (see the module docstring).

    TorchScript-compatible: ``torch.jit.script(model)`` exports :meth:`sample`,
    :meth:`log_prob`, :meth:`transform` and :meth:`inverse_transform`.

    Args:
        config: the architecture (default ``FlowConfig()``).
        chunk_size: rows per block in :meth:`sample` and :meth:`log_prob` (speed only).
    """

    __jit_ignored_attributes__ = ("config",)

    def __init__(self, config: FlowConfig | None = None, chunk_size: int = 16384) -> None:
        super().__init__(chunk_size)
        config = FlowConfig() if config is None else config
        self.config = config
        self.uniform_weight = float(config.uniform_weight)
        self.log_uniform_weight = (
            math.log(config.uniform_weight) if config.uniform_weight > 0 else 0.0
        )
        self.log_non_uniform = math.log1p(-config.uniform_weight)
        self.n_pixels = int(config.n_pixel_components)
        self.is_mixture = self.uniform_weight > 0.0 or self.n_pixels > 0
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
        m = self.n_pixels
        # Mixture logits [flow, pixel 1..M]: weights (1 - a) softmax(logits). Without pixel
        # components the single logit is a constant buffer (it would get no gradient).
        if m > 0:
            # Until set_pixel_components places them, the pixel components are placeholder
            # strips with weight ~1e-4 each, so the model starts as (almost) the bare flow.
            logits = torch.full((m + 1,), math.log(1e-4))
            logits[0] = 0.0
            self.mix_logits = nn.Parameter(logits)
        else:
            self.register_buffer("mix_logits", torch.zeros(1))
        # Sorted flat indices (row * W + col) of the pixel components, and the map's (H, W).
        self.register_buffer("pixel_index", torch.arange(m, dtype=torch.long))
        self.register_buffer("grid_hw", torch.tensor([1, max(1, m)], dtype=torch.long))

    @torch.jit.ignore
    def set_pixel_components(
        self, flat_index: Tensor, height: int, width: int, weights: Tensor
    ) -> None:
        """Place the ``M`` pixel components and set the initial mixture weights.

        Args:
            flat_index: ``(M,)`` distinct pixel indices ``row * width + col``.
            height, width: the map's size ``H x W``.
            weights: ``(M,)`` initial weights :math:`w_k` (their sum below ``1 - a``); the flow
                gets the rest, :math:`w_f = 1 - a - \\sum_k w_k`.
        """
        m = self.n_pixels
        flat_index = torch.as_tensor(flat_index, dtype=torch.long).reshape(-1)
        weights = torch.as_tensor(weights, dtype=torch.float64).reshape(-1)
        if flat_index.numel() != m or weights.numel() != m:
            raise ValueError(f"expected {m} pixel indices and weights")
        if m == 0:
            return
        if torch.unique(flat_index).numel() != m:
            raise ValueError("pixel component indices must be distinct")
        if int(flat_index.min()) < 0 or int(flat_index.max()) >= height * width:
            raise ValueError(f"pixel component index outside the {height} x {width} map")
        free = 1.0 - self.uniform_weight
        w_flow = free - float(weights.sum())
        if not (bool(torch.all(weights > 0)) and w_flow > 0):
            raise ValueError("pixel weights must be positive and sum below 1 - uniform_weight")
        order = torch.argsort(flat_index)
        w = torch.cat([torch.tensor([w_flow], dtype=torch.float64), weights[order]]) / free
        with torch.no_grad():
            self.pixel_index.copy_(flat_index[order])
            self.grid_hw.copy_(torch.tensor([height, width], dtype=torch.long))
            self.mix_logits.copy_(torch.log(w).to(self.mix_logits.dtype))

    @torch.jit.export
    def mixture_weights(self) -> Tensor:
        """``(M + 2,)``: the weights ``[a, w_1, ..., w_M, w_f]`` in sampling order."""
        lw = torch.log_softmax(self.mix_logits, 0) + self.log_non_uniform
        w = torch.exp(lw)
        a = torch.full([1], self.uniform_weight, dtype=w.dtype, device=w.device)
        if self.n_pixels > 0:
            return torch.cat([a, w[1:], w[:1]])
        return torch.cat([a, w])

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

    def _mixture_log_prob(self, x: Tensor, log_q_flow: Tensor) -> Tensor:
        """:math:`\\log q(x)` of the mixture given the flow's :math:`\\log q_f(x)`."""
        lw = torch.log_softmax(self.mix_logits, 0) + self.log_non_uniform
        out = log_q_flow + lw[0]
        if self.uniform_weight > 0.0:
            out = torch.logaddexp(out, torch.full_like(out, self.log_uniform_weight))
        if self.n_pixels > 0:
            h = int(self.grid_hw[0])
            w = int(self.grid_hw[1])
            col = (x[:, 0] * w).floor().clamp(0, w - 1).long()
            row = (x[:, 1] * h).floor().clamp(0, h - 1).long()
            flat = row * w + col
            pos = torch.searchsorted(self.pixel_index, flat).clamp_max(self.n_pixels - 1)
            hit = self.pixel_index.index_select(0, pos) == flat
            log_box = lw[1:].index_select(0, pos) + math.log(float(h * w))
            out = torch.logaddexp(out, torch.where(hit, log_box, torch.full_like(out, -math.inf)))
        return out

    def _work_dtype(self) -> torch.dtype:
        """The dtype of the points inside :meth:`sample` and :meth:`log_prob`: float64, except
        in training mode (float32, as fast as the weights; see the module docstring)."""
        if self.training:
            return self.mix_logits.dtype
        return torch.float64

    def _log_prob(self, x: Tensor) -> Tensor:
        xw = x.to(self._work_dtype())
        _, log_q = self.transform(xw)
        if self.is_mixture:
            log_q = self._mixture_log_prob(xw, log_q)
        return log_q.to(x.dtype)

    def _sample(self, u: Tensor) -> tuple[Tensor, Tensor]:
        uw = u.to(self._work_dtype())
        if uw.dtype == torch.float64 and u.dtype == torch.float64:
            # The point is returned as computed: the inverse pass's log-determinant is its own.
            return self._sample_points(uw, True)
        # The point is rounded to u's dtype (or computed in float32): its log-density is
        # that of the forward pass at the returned point, which is what log_prob gives.
        x, _ = self._sample_points(uw, False)
        x = x.to(u.dtype)
        return x, self._log_prob(x)

    def _sample_points(self, u: Tensor, with_log_q: bool) -> tuple[Tensor, Tensor]:
        """Samples ``x`` for ``u``, with their log-density when ``with_log_q`` (else zeros)."""
        if not self.is_mixture:
            x, logdet = self.inverse_transform(u)
            return x, -logdet
        n_comp = self.n_pixels + 2  # uniform, pixels 1..M, flow
        flow_id = n_comp - 1
        weights = self.mixture_weights().to(u.dtype)
        cum = torch.cumsum(weights, 0)
        u0 = u[:, 0]
        comp = torch.searchsorted(cum, u0.contiguous(), right=True).clamp_max(flow_id)
        start = torch.where(comp > 0, cum.index_select(0, (comp - 1).clamp_min(0)), 0.0)
        u0 = ((u0 - start) / weights.index_select(0, comp)).clamp(0.0, 1.0)
        u = torch.stack([u0, u[:, 1]], dim=1)

        x = u  # the uniform component's sample
        if self.n_pixels > 0:
            h = int(self.grid_hw[0])
            w = int(self.grid_hw[1])
            pix = self.pixel_index.index_select(0, (comp - 1).clamp(0, self.n_pixels - 1))
            row = torch.div(pix, w, rounding_mode="floor")
            col = pix - row * w
            x_pix = torch.stack([(col + u0) / w, (row + u[:, 1]) / h], dim=1).clamp(0.0, 1.0)
            is_pix = ((comp > 0) & (comp < flow_id)).unsqueeze(1)
            x = torch.where(is_pix, x_pix.to(u.dtype), x)

        # The flow maps its share; the others need the flow's density by the forward pass.
        is_flow = comp == flow_id
        flow_rows = torch.nonzero(is_flow).squeeze(1)
        other_rows = torch.nonzero(~is_flow).squeeze(1)
        log_q_flow = torch.zeros_like(u0)
        if flow_rows.numel() > 0:
            x_flow, logdet = self.inverse_transform(u.index_select(0, flow_rows))
            x = x.index_copy(0, flow_rows, x_flow)
            log_q_flow = log_q_flow.index_copy(0, flow_rows, -logdet)
        if not with_log_q:
            return x, log_q_flow
        if other_rows.numel() > 0:
            _, logdet = self.transform(x.index_select(0, other_rows))
            log_q_flow = log_q_flow.index_copy(0, other_rows, logdet)
        return x, self._mixture_log_prob(x, log_q_flow)
