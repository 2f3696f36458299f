r"""The mixture every flow on the square can be part of: a defensive uniform component and
single-pixel components beside the flow, written once for all the families.

The model density is

.. math::
    q(x) = w_f\, q_f(x) + a + \sum_{k=1}^{M} w_k\, H W\, \mathbb{1}[x \in \text{pixel } k],
    \qquad w_f + a + \sum_k w_k = 1 ,

where :math:`q_f = |\det \partial f / \partial x|` is the density of the flow's bijection
:math:`f` of the square (a subclass's :meth:`MixtureFlow.transform`), and

* :math:`a` = ``uniform_weight`` is a *defensive* uniform component of fixed weight
  (Hesterberg, "Weighted Average Importance Sampling and Defensive Mixture Distributions",
  Technometrics 1995), which bounds :math:`q \ge a` and hence the importance weights
  :math:`p / q`;
* :math:`M` = ``n_pixel_components`` *pixel* components, each uniform on one pixel of the
  ``H x W`` map the flow was fitted to (the brightest pixels, :func:`brightest_pixels`). A
  flow's density is continuous, so it cannot follow a point-like sun whose pixel is
  :math:`10^4` times brighter than its neighbours; a pixel component represents such a pixel
  exactly (the continuous analogue of sampling a sun separately). Their weights
  :math:`w_f, w_k = (1 - a)\,\mathrm{softmax}(\lambda)` are learned with the flow by maximum
  likelihood.

Sampling spends the first random number on the component: :math:`[0, 1)` is cut into
intervals of lengths :math:`a, w_1, \dots, w_M, w_f`; :math:`\xi_0` picks one and is stretched
back onto :math:`[0, 1]` inside it. The uniform component returns :math:`(\xi_0', \xi_1)`,
pixel :math:`k` at row :math:`r`, column :math:`c` returns :math:`((c + \xi_0') / W, (r +
\xi_1) / H)`, the flow :math:`f^{-1}(\xi_0', \xi_1)`; in all cases the returned log density is
that of the whole mixture at the returned point. Without a uniform or pixel component the
model is the bare flow.

Precision (see :mod:`flows.model` for the measurements). In eval mode :meth:`MixtureFlow.sample`
and :meth:`MixtureFlow.log_prob` compute the points in float64 whatever their input's dtype,
with float32 weights. A float32 sample is the float64 sample rounded, and its log density is
the forward pass's at the rounded point: exactly ``log_prob`` of the returned point, at the
price of a second pass. Given float64 input, ``sample`` returns the float64 point with the
inverse pass's log density in one pass. Training (train mode) computes in the weights' dtype.
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor

from flows.base import UnitSquareFlow


def brightest_pixels(
    p: np.ndarray, m: int, uniform_weight: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``m`` pixels of largest density and initial weights for pixel components.

    Each weight starts at the pixel's probability mass :math:`p_{ij} / (H W)` (scaled down
    if together they would take more than half of :math:`1 - a`), so that the flow starts
    by fitting the rest of the map. Ties are broken by the lower flat index.

    Returns:
        ``(flat_index (m,), weights (m,))`` with ``flat_index = row * W + col``.
    """
    flat = p.reshape(-1)
    if m > flat.size:
        raise ValueError(f"{m} pixel components requested for a map of {flat.size} pixels")
    index = np.argsort(-flat, kind="stable")[:m]
    mass = flat[index] / flat.sum()
    mass = np.maximum(mass, 1e-12)  # a component needs a positive weight
    cap = 0.5 * (1.0 - uniform_weight)
    if mass.sum() > cap:
        mass = mass * (cap / mass.sum())
    return torch.from_numpy(index.astype(np.int64)), torch.from_numpy(mass)


def check_mixture(uniform_weight: float, n_pixel_components: int) -> None:
    r"""Raise ``ValueError`` unless :math:`0 \le a < 1` and :math:`M \ge 0` (for configs)."""
    if not 0.0 <= uniform_weight < 1.0:
        raise ValueError(f"uniform_weight must be in [0, 1), got {uniform_weight}")
    if n_pixel_components < 0:
        raise ValueError(f"n_pixel_components must be >= 0, got {n_pixel_components}")


class MixtureFlow(UnitSquareFlow):
    """A bijection of the square (a subclass's ``transform`` / ``inverse_transform``) as a
    density, optionally mixed with uniform and single-pixel components (module docstring).

    Subclasses set ``self.config`` (with ``uniform_weight`` and ``n_pixel_components``) and
    implement, both ``@torch.jit.export``:

    * ``transform(x) -> (u = f(x), log|det df/dx|)``, the density direction;
    * ``inverse_transform(u) -> (x = f^{-1}(u), log|det df^{-1}/du|)``, the sampling direction.

    Args:
        uniform_weight: :math:`a`, in ``[0, 1)``.
        n_pixel_components: :math:`M`.
        chunk_size: rows per block in :meth:`sample` and :meth:`log_prob` (speed only).
    """

    __jit_ignored_attributes__ = ("config",)

    def __init__(self, uniform_weight: float, n_pixel_components: int, chunk_size: int = 16384) -> None:
        super().__init__(chunk_size)
        check_mixture(uniform_weight, n_pixel_components)
        self.uniform_weight = float(uniform_weight)
        self.log_uniform_weight = math.log(uniform_weight) if uniform_weight > 0 else 0.0
        self.log_non_uniform = math.log1p(-uniform_weight)
        self.n_pixels = int(n_pixel_components)
        self.is_mixture = self.uniform_weight > 0.0 or self.n_pixels > 0
        m = self.n_pixels
        # Mixture logits [flow, pixel 1..M]: weights (1 - a) softmax(logits). Without pixel
        # components the single logit is a constant buffer (it would get no gradient).
        if m > 0:
            # Until set_pixel_components places them, the pixel components are placeholder
            # strips with weight ~1e-4 each, so the model starts as (almost) the bare flow.
            logits = torch.full((m + 1,), math.log(1e-4))
            logits[0] = 0.0
            self.mix_logits = torch.nn.Parameter(logits)
        else:
            self.register_buffer("mix_logits", torch.zeros(1))
        # Sorted flat indices (row * W + col) of the pixel components, and the map's (H, W).
        self.register_buffer("pixel_index", torch.arange(m, dtype=torch.long))
        self.register_buffer("grid_hw", torch.tensor([1, max(1, m)], dtype=torch.long))

    @classmethod
    def for_density(cls, config: Any, p: np.ndarray) -> Self:
        """A new, untrained model of ``config`` for the normalised density ``p`` (H, W): its
        pixel components (if any) on the brightest pixels."""
        model = cls(config)
        if model.n_pixels > 0:
            index, weights = brightest_pixels(p, model.n_pixels, model.uniform_weight)
            model.set_pixel_components(index, p.shape[0], p.shape[1], weights)
        return model

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

    def transform(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The bijection: ``x (N, 2) -> (u = f(x), log|det df/dx| (N,))`` (subclass)."""
        raise NotImplementedError

    def inverse_transform(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """The inverse: ``u (N, 2) -> (x = f^{-1}(u), log|det df^{-1}/du| (N,))`` (subclass)."""
        raise NotImplementedError

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
