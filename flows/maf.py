r"""MAF and IAF: masked autoregressive affine flows, one in each direction (Papamakarios,
Pavlakou and Murray, "Masked Autoregressive Flow for Density Estimation", NeurIPS 2017;
Kingma, Salimans, Jozefowicz, Chen, Sutskever and Welling, "Improved Variational Inference
with Inverse Autoregressive Flow", NeurIPS 2016).

An autoregressive affine layer maps :math:`a \mapsto b` with

.. math::
    b_d = a_d\, e^{s_d(a_{<d})} + m_d(a_{<d}), \qquad \log|\det| = \sum_d s_d(a_{<d}),

where :math:`(s, m)` for all :math:`d` come from *one* pass of a MADE network (Germain et al.,
"MADE: Masked Autoencoder for Distribution Estimation", ICML 2015) whose output :math:`d`
sees only the inputs before :math:`d`. So the map :math:`a \mapsto b` costs one pass; its
inverse :math:`b \mapsto a` is sequential: :math:`a_d = (b_d - m_d) e^{-s_d}` needs
:math:`a_{<d}` first, one MADE pass per dimension (:math:`D` passes).

* **MAF** puts the one-pass direction on the density side (data :math:`y` to base :math:`z`):
  ``log_prob`` is one pass per layer, ``sample`` sequential.
* **IAF** puts it on the sampling side (base to data): ``sample`` is one pass per layer,
  ``log_prob`` sequential.

The renderer needs both: ``sample`` before shading, which it calls with float64 numbers (one
pass in the sampling direction, returning that pass's own log-determinant; a float32 call
adds a density pass at the rounded point, :mod:`flows.mixture`), and ``log_prob`` on escaped
rays. Per layer, in MADE passes: MAF ``sample`` 2, ``log_prob`` 1; IAF ``sample`` 1,
``log_prob`` 2. Measured (``benchmarks/bench_flow_families.py``, README "Flow families", one
thread): MAF samples at 0.15-0.23 M/s where RealNVP samples at 0.30-0.40, IAF evaluates
0.15-0.22 M pdfs/s where RealNVP evaluates 0.24-0.43; and IAF's fit, which evaluates the
density every step, makes about 40% fewer steps in the same time.

In 2-D the MADE is: constants :math:`(s_0, m_0)` for the first coordinate of the layer's
order (it depends on nothing) and the shared conditioner :class:`flows.coupling.Conditioner`
of :math:`\sigma(a_{\text{first}})` for the second; successive layers reverse the order. The
sequential inverse is written for any :math:`D` (a loop of :math:`D` MADE passes, each fixing
one more coordinate), as in the papers; in 2-D its first pass is wasted (the first
coordinate's parameters are constants), and a 2-D specialisation that skips it would make
both directions cost one conditioner pass, i.e. an affine coupling plus a per-coordinate
affine map. We keep the general form to measure what the autoregressive families cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from flows.coupling import Conditioner
from flows.plane import PlaneFlow, ScaledPlaneFlowConfig, soft_clamp


class AutoregressiveAffine(nn.Module):
    """One masked autoregressive affine layer on the plane (module docstring).

    Args:
        first: the coordinate first in the autoregressive order (its parameters are constants).
        one_pass_forward: the one-pass map is :meth:`forward` (data to base, MAF); else it is
            :meth:`inverse` (base to data, IAF).
        hidden, depth, encoding, encoding_size: the conditioner.
        max_log_scale: bound of the log-scales (:func:`flows.plane.soft_clamp`).
    """

    def __init__(
        self, first: int, one_pass_forward: bool, hidden: int, depth: int, encoding: str,
        encoding_size: int, max_log_scale: float = 3.0,
    ) -> None:
        super().__init__()
        if first not in (0, 1):
            raise ValueError(f"first must be 0 or 1, got {first}")
        self.order = [first, 1 - first]
        self.one_pass_forward = one_pass_forward
        self.max_log_scale = float(max_log_scale)
        self.first_params = nn.Parameter(torch.zeros(2))  # (s, m) of the first coordinate
        self.conditioner = Conditioner(encoding, encoding_size, False, 2, hidden, depth)

    def _made(self, a: Tensor) -> tuple[Tensor, Tensor]:
        """One MADE pass: ``(s, m)``, each ``(N, 2)`` in coordinate order; output ``d``
        depends on the inputs before ``d`` in :attr:`order` only."""
        n = a.shape[0]
        first = self.first_params.to(a.dtype)
        out = self.conditioner(torch.sigmoid(a[:, self.order[0]])).to(a.dtype)
        s_first = soft_clamp(first[0], self.max_log_scale).expand(n)
        s_second = soft_clamp(out[:, 0], self.max_log_scale)
        m_first = first[1].expand(n)
        m_second = out[:, 1]
        if self.order[0] == 0:
            return torch.stack([s_first, s_second], dim=1), torch.stack([m_first, m_second], dim=1)
        return torch.stack([s_second, s_first], dim=1), torch.stack([m_second, m_first], dim=1)

    def _one_pass(self, a: Tensor) -> tuple[Tensor, Tensor]:
        """:math:`b = a e^{s(a)} + m(a)` in one MADE pass, and :math:`\\sum_d s_d`."""
        s, m = self._made(a)
        return a * torch.exp(s) + m, s.sum(dim=1)

    def _sequential_inverse(self, b: Tensor) -> tuple[Tensor, Tensor]:
        """:math:`a` from :math:`b` one coordinate at a time, a MADE pass each, and
        :math:`-\\sum_d s_d`."""
        a = torch.zeros_like(b)
        s = torch.zeros_like(b)
        cols = torch.arange(b.shape[1], device=b.device)
        for d in self.order:
            s, m = self._made(a)
            a_d = (b - m) * torch.exp(-s)
            a = torch.where(cols == d, a_d, a)  # fix coordinate d; the later ones follow
        return a, -s.sum(dim=1)

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Data to base: ``y (N, 2) -> (z (N, 2), log|det dz/dy| (N,))``."""
        if self.one_pass_forward:
            return self._one_pass(y)
        return self._sequential_inverse(y)

    @torch.jit.export
    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Base to data: ``z (N, 2) -> (y (N, 2), log|det dy/dz| (N,))``."""
        if self.one_pass_forward:
            return self._sequential_inverse(z)
        return self._one_pass(z)


@dataclass(frozen=True)
class MAFConfig(ScaledPlaneFlowConfig):
    """A :class:`MAFFlow` (fields: :class:`flows.plane.ScaledPlaneFlowConfig`)."""

    kind: ClassVar[str] = "maf"


@dataclass(frozen=True)
class IAFConfig(ScaledPlaneFlowConfig):
    """An :class:`IAFFlow` (fields: :class:`flows.plane.ScaledPlaneFlowConfig`)."""

    kind: ClassVar[str] = "iaf"


def autoregressive_layers(config: ScaledPlaneFlowConfig, one_pass_forward: bool) -> list[nn.Module]:
    """``n_layers`` :class:`AutoregressiveAffine` layers, reversing the order each layer."""
    return [
        AutoregressiveAffine(
            i % 2, one_pass_forward, max_log_scale=config.max_log_scale, **config.conditioner_args()
        )
        for i in range(config.n_layers)
    ]


class MAFFlow(PlaneFlow):
    """MAF on the square: one-pass density, sequential sampling (module docstring)."""

    def __init__(self, config: MAFConfig | None = None, chunk_size: int = 16384) -> None:
        config = MAFConfig() if config is None else config
        super().__init__(config, autoregressive_layers(config, True), chunk_size)


class IAFFlow(PlaneFlow):
    """IAF on the square: one-pass sampling, sequential density (module docstring)."""

    def __init__(self, config: IAFConfig | None = None, chunk_size: int = 16384) -> None:
        config = IAFConfig() if config is None else config
        super().__init__(config, autoregressive_layers(config, False), chunk_size)
