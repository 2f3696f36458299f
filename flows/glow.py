r"""Glow: steps of actnorm, an invertible 1x1 convolution and an affine coupling (Kingma and
Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions", NeurIPS 2018).

In 2-D a "1x1 convolution" over two channels is an invertible 2 x 2 linear map
:math:`z = W y`. We use the paper's LU parameterisation (sec. 3.2),

.. math::
    W = P L U, \qquad L = \begin{pmatrix} 1 & 0 \\ l & 1 \end{pmatrix}, \qquad
    U = \begin{pmatrix} e^{a} & c \\ 0 & e^{b} \end{pmatrix}, \qquad
    \log|\det W| = a + b ,

with :math:`P` a fixed permutation: the identity in even steps and the swap in odd ones, so
that the initial model (:math:`l = c = a = b = 0`) alternates the coupled coordinate as
RealNVP does, and learning :math:`l, c` shears and (together with :math:`a, b`) rotates from
there. Keeping :math:`U`'s diagonal an exponential keeps :math:`W` invertible (the paper keeps
the sign of :math:`s` fixed and learns :math:`\log|s|`: the same). The inverse is two
triangular solves, in closed form.

A step is :class:`flows.plane.ElementwiseAffine` (actnorm, identity-initialised here rather
than from the first batch), :class:`InvertibleLinear2d`, and the affine coupling of
:mod:`flows.realnvp` moving the second coordinate; on the square through :mod:`flows.plane`.
Against RealNVP the learned linear maps let a coupling act along any direction of the plane,
not only the axes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from flows.plane import AffineCoupling, ElementwiseAffine, PlaneFlow, ScaledPlaneFlowConfig


class InvertibleLinear2d(nn.Module):
    """:math:`z = P L U y` on the plane, LU-parameterised (module docstring).

    Args:
        swap: :math:`P` is the swap of the two coordinates (else the identity).
    """

    def __init__(self, swap: bool) -> None:
        super().__init__()
        self.swap = swap
        # [l, c, a, b]: L's shear, U's off-diagonal, U's log-diagonal; zero = the identity.
        self.params = nn.Parameter(torch.zeros(4))

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``y (N, 2) -> (z = P L U y (N, 2), log|det W| (N,))``."""
        p = self.params.to(y.dtype)
        l, c, a, b = p[0], p[1], p[2], p[3]
        t0 = y[:, 0] * torch.exp(a) + c * y[:, 1]  # U y
        t1 = y[:, 1] * torch.exp(b)
        w1 = t1 + l * t0  # L U y
        ld = (a + b).expand(y.shape[0])
        if self.swap:
            return torch.stack([w1, t0], dim=1), ld
        return torch.stack([t0, w1], dim=1), ld

    @torch.jit.export
    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (N, 2) -> (y = U^{-1} L^{-1} P^T z (N, 2), -log|det W| (N,))``."""
        p = self.params.to(z.dtype)
        l, c, a, b = p[0], p[1], p[2], p[3]
        if self.swap:
            t0, w1 = z[:, 1], z[:, 0]
        else:
            t0, w1 = z[:, 0], z[:, 1]
        y1 = (w1 - l * t0) * torch.exp(-b)  # L^{-1}, then U's second row
        y0 = (t0 - c * y1) * torch.exp(-a)
        return torch.stack([y0, y1], dim=1), -(a + b).expand(z.shape[0])


@dataclass(frozen=True)
class GlowConfig(ScaledPlaneFlowConfig):
    """A :class:`GlowFlow`; ``n_layers`` counts steps (fields:
    :class:`flows.plane.ScaledPlaneFlowConfig`)."""

    kind: ClassVar[str] = "glow"


class GlowFlow(PlaneFlow):
    """Glow on the square (module docstring); ``sample`` / ``log_prob`` as every family."""

    def __init__(self, config: GlowConfig | None = None, chunk_size: int = 16384) -> None:
        config = GlowConfig() if config is None else config
        layers: list[nn.Module] = []
        for i in range(config.n_layers):
            layers += [
                ElementwiseAffine(),
                InvertibleLinear2d(swap=i % 2 == 1),
                AffineCoupling(
                    1, True, max_log_scale=config.max_log_scale, **config.conditioner_args()
                ),
            ]
        super().__init__(config, layers, chunk_size)
