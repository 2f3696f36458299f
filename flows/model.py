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

Optional defensive mixture (Hesterberg, "Weighted Average Importance Sampling and
Defensive Mixture Distributions", Technometrics 1995): with ``uniform_weight`` :math:`a > 0`
the model density is

.. math::
    q(x) = (1 - a)\, q_f(x) + a ,

which is bounded below by :math:`a`, so importance weights :math:`p / q` stay bounded
wherever the target is bounded. Sampling spends the first random number to pick the
component: :math:`\xi_0 < a` takes the uniform component with :math:`\xi_0' = \xi_0 / a`,
otherwise the flow with :math:`\xi_0' = (\xi_0 - a) / (1 - a)`; in both cases the returned
log density is that of the mixture. :meth:`SplineFlow.transform` and
:meth:`SplineFlow.inverse_transform` expose the bijection :math:`f` itself.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from flows.coupling import ENCODINGS, SplineCoupling


@dataclass(frozen=True)
class FlowConfig:
    """Everything needed to rebuild a :class:`SplineFlow` (its weights aside).

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
        min_bin_width, min_bin_height, min_derivative: spline regularisers
            (see :mod:`flows.spline`).
    """

    n_layers: int = 4
    n_bins: int = 32
    hidden: int = 32
    depth: int = 2
    encoding: str = "one_blob"
    encoding_size: int = 32
    periodic_u: bool = True
    uniform_weight: float = 0.0
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

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict; :meth:`from_dict` inverts it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlowConfig:
        """Rebuild from :meth:`to_dict` output (unknown keys are an error)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown FlowConfig fields: {sorted(unknown)}")
        return cls(**d)


class SplineFlow(nn.Module):
    """Spline-coupling flow on :math:`[0, 1]^2` with a uniform base (see the module docstring).

    TorchScript-compatible: ``torch.jit.script(model)`` exports :meth:`sample`,
    :meth:`log_prob`, :meth:`transform` and :meth:`inverse_transform`.
    """

    __jit_ignored_attributes__ = ("config",)

    def __init__(self, config: FlowConfig | None = None, chunk_size: int = 16384) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        #: Rows per block in :meth:`sample` and :meth:`log_prob` (an inference knob only).
        self.chunk_size = chunk_size
        config = FlowConfig() if config is None else config
        self.config = config
        self.uniform_weight = float(config.uniform_weight)
        self.log_uniform_weight = (
            math.log(config.uniform_weight) if config.uniform_weight > 0 else 0.0
        )
        self.log_flow_weight = math.log1p(-config.uniform_weight)
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

    def count_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`log_prob`."""
        return self.log_prob(x)

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

    def _mix(self, log_q_flow: Tensor) -> Tensor:
        """:math:`\\log((1 - a) e^{\\log q_f} + a)`."""
        return torch.logaddexp(
            log_q_flow + self.log_flow_weight,
            torch.full_like(log_q_flow, self.log_uniform_weight),
        )

    @torch.jit.export
    def log_prob(self, x: Tensor) -> Tensor:
        """Log density of the model at ``x (N, 2)`` in ``[0, 1]^2``: shape ``(N,)``.

        Large batches are processed ``chunk_size`` rows at a time (faster: the temporaries
        stay in cache), with identical results.
        """
        n = x.shape[0]
        if n <= self.chunk_size:
            return self._log_prob(x)
        parts: list[Tensor] = []
        for s in range(0, n, self.chunk_size):
            parts.append(self._log_prob(x[s : s + self.chunk_size]))
        return torch.cat(parts)

    @torch.jit.export
    def sample(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """Map uniform random numbers ``u (N, 2)`` to samples ``x (N, 2)`` and ``log q(x) (N,)``.

        Without the uniform component this is ``x = f^{-1}(u)`` and
        ``log q(x) = -log|det df^{-1}/du|``; with it, see the module docstring. Large batches
        are processed ``chunk_size`` rows at a time, with identical results.
        """
        n = u.shape[0]
        if n <= self.chunk_size:
            return self._sample(u)
        xs: list[Tensor] = []
        log_qs: list[Tensor] = []
        for s in range(0, n, self.chunk_size):
            x, log_q = self._sample(u[s : s + self.chunk_size])
            xs.append(x)
            log_qs.append(log_q)
        return torch.cat(xs), torch.cat(log_qs)

    def _log_prob(self, x: Tensor) -> Tensor:
        _, log_q = self.transform(x)
        if self.uniform_weight > 0.0:
            log_q = self._mix(log_q)
        return log_q

    def _sample(self, u: Tensor) -> tuple[Tensor, Tensor]:
        if self.uniform_weight <= 0.0:
            x, logdet = self.inverse_transform(u)
            return x, -logdet
        a = self.uniform_weight
        u0 = u[:, 0]
        is_uniform = u0 < a
        u0 = torch.where(is_uniform, u0 / a, (u0 - a) / (1.0 - a)).clamp(0.0, 1.0)
        u = torch.stack([u0, u[:, 1]], dim=1)
        x_flow, logdet = self.inverse_transform(u)
        x = torch.where(is_uniform.unsqueeze(1), u, x_flow)
        log_q = -logdet
        # The flow density at the (few) uniform-component samples needs the forward pass.
        idx = torch.nonzero(is_uniform).squeeze(1)
        if idx.numel() > 0:
            _, log_q_uniform = self.transform(x.index_select(0, idx))
            log_q = log_q.index_copy(0, idx, log_q_uniform)
        return x, self._mix(log_q)
