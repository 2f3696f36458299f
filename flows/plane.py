r"""Flows built on the real line, carried onto the unit square: the square <-> plane map and
the pieces the real-line families share (NICE, RealNVP, Glow, MAF, IAF).

The square <-> plane map. The renderer's flows are bijections of :math:`[0, 1]^2` with a
uniform base (:mod:`flows.model`); the real-line families are bijections
:math:`g: \mathbb{R}^2 \to \mathbb{R}^2`. The coordinate-wise logistic map
:math:`\sigma(y) = 1 / (1 + e^{-y})` and its inverse, the logit
:math:`\ell(x) = \log x - \log(1 - x)`, carry one to the other at both ends:

.. math::
    f = \sigma \circ g \circ \ell : [0, 1]^2 \to [0, 1]^2, \qquad
    \log q(x) = \log\left|\det \frac{\partial f}{\partial x}\right|
    = \underbrace{\sum_i -\log x_i - \log(1 - x_i)}_{\ell}
    + \log|\det \partial g|
    + \underbrace{\sum_i \log\sigma(z_i) + \log\sigma(-z_i)}_{\sigma},
    \quad z = g(\ell(x)),

so the density on the square is that of :math:`g` with a standard *logistic* base on the plane,
pulled back through :math:`\ell`; with :math:`g` the identity, :math:`f` is the identity and
:math:`q` uniform, and the renderer's uniforms :math:`\xi` drive the flow directly:
:math:`x = \sigma(g^{-1}(\ell(\xi)))`. :func:`to_plane` and :func:`to_square` are that map and
its log-determinant, the one place both live. The logistic rather than the normal CDF
:math:`\Phi` (the other common choice): it and its inverse are elementary (no ``erfinv``), and
an affine layer that scales the plane by :math:`e^s` changes the density near an edge of the
square by a power :math:`x^{e^s - 1}` (logistic tails) instead of :math:`x^{e^{2s} - 1}`
(Gaussian tails), gentler for a fit.

Positivity. Every factor of :math:`q` is finite and positive on the open square: the logistic
and logit derivatives are, the couplings' log-scales are bounded (:math:`|s| \le`
``max_log_scale``, a soft clamp :math:`s = L \tanh(\tilde s / L)`), and the linear maps
have nonzero determinants. So the density is positive wherever the target is and the
estimator unbiased. At the edges of the square :math:`q` behaves like a power of the distance
to the edge; points are clamped to :math:`[\epsilon, 1 - \epsilon]` before the logit
(:data:`EDGE_EPS`: 1e-6 in float32, 1e-12 in float64), so even :math:`x = 0` or :math:`1`
get the positive density of their clamped neighbour. (A defensive uniform component,
``uniform_weight`` in :mod:`flows.mixture`, bounds :math:`q` below as well, if wanted.)

Conditioners read the conditioning coordinate on the square, :math:`\sigma(y_c) \in (0, 1)`,
through the shared encodings and MLP of :mod:`flows.coupling` (a coupling may use any
function of :math:`y_c`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flows.base import ConfigDict
from flows.coupling import Conditioner, check_stack
from flows.mixture import MixtureFlow, check_mixture

#: Points are clamped this far inside the square before the logit, by dtype.
EDGE_EPS = {torch.float32: 1e-6, torch.float64: 1e-12}


def to_plane(x: Tensor) -> tuple[Tensor, Tensor]:
    r"""The logit, square to plane: ``x (N, 2) -> (y = log x - log(1 - x), log|det dy/dx| (N,))``.

    :math:`\log|\det| = \sum_i -\log x_i - \log(1 - x_i)`, at ``x`` clamped to
    :math:`[\epsilon, 1 - \epsilon]` (:data:`EDGE_EPS`; module docstring).
    """
    eps = 1e-12 if x.dtype == torch.float64 else 1e-6
    x = x.clamp(eps, 1.0 - eps)
    log_x = torch.log(x)
    log_1mx = torch.log1p(-x)
    return log_x - log_1mx, -(log_x + log_1mx).sum(dim=1)


def to_square(y: Tensor) -> tuple[Tensor, Tensor]:
    r"""The logistic, plane to square: ``y (N, 2) -> (x = sigmoid(y), log|det dx/dy| (N,))``.

    :math:`\log|\det| = \sum_i \log\sigma(y_i) + \log\sigma(-y_i)`, computed stably as
    :math:`-\mathrm{softplus}(y_i) - \mathrm{softplus}(-y_i)`.
    """
    return torch.sigmoid(y), -(F.softplus(y) + F.softplus(-y)).sum(dim=1)


def soft_clamp(s: Tensor, bound: float) -> Tensor:
    """:math:`L \\tanh(s / L)`: the identity near 0, bounded by ``bound`` = L."""
    return bound * torch.tanh(s / bound)


class ElementwiseAffine(nn.Module):
    r"""A learned per-coordinate affine map :math:`z_i = y_i e^{s_i} + b_i`, starting at the
    identity: NICE's final diagonal *scaling layer* (Dinh et al. 2014, sec. 3.3) and Glow's
    *actnorm* (Kingma and Dhariwal 2018, sec. 3.1; here initialised to the identity, not from
    the first batch: the flow starts as the identity map of the square).
    :math:`\log|\det| = \sum_i s_i`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(2))
        self.shift = nn.Parameter(torch.zeros(2))

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``y (N, 2) -> (z (N, 2), log|det dz/dy| (N,))``."""
        s = self.log_scale.to(y.dtype)  # in the points' dtype, so that inverse undoes it exactly
        return y * torch.exp(s) + self.shift.to(y.dtype), s.sum().expand(y.shape[0])

    @torch.jit.export
    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (N, 2) -> (y (N, 2), log|det dy/dz| (N,))``."""
        s = self.log_scale.to(z.dtype)
        return (z - self.shift.to(z.dtype)) * torch.exp(-s), -s.sum().expand(z.shape[0])


class AffineCoupling(nn.Module):
    r"""Coupling on the plane: coordinate ``transform_dim`` is moved given the other one,

    .. math::
        z_c = y_c, \qquad z_t = y_t\, e^{s(y_c)} + m(y_c), \qquad
        \log|\det| = s(y_c),

    *additive* (:math:`s \equiv 0`, NICE: Dinh, Krueger and Bengio, "NICE: Non-linear
    Independent Components Estimation", 2014) or *affine* (RealNVP: Dinh, Sohl-Dickstein and
    Bengio, "Density estimation using Real NVP", ICLR 2017; and Glow's coupling), with
    :math:`s = L \tanh(\tilde s / L)` bounded by ``max_log_scale`` = L and
    :math:`(\tilde s, m) = \mathrm{MLP}(\gamma(\sigma(y_c)))` the shared
    :class:`flows.coupling.Conditioner` (zero-initialised output: the layer starts as the
    identity).

    Args:
        transform_dim: 0 or 1, the coordinate that moves.
        affine: learn the scale :math:`s` (else additive).
        hidden, depth, encoding, encoding_size: the conditioner (:class:`Conditioner`).
        max_log_scale: L.
    """

    def __init__(
        self, transform_dim: int, affine: bool, hidden: int, depth: int, encoding: str,
        encoding_size: int, max_log_scale: float = 3.0,
    ) -> None:
        super().__init__()
        if transform_dim not in (0, 1):
            raise ValueError(f"transform_dim must be 0 or 1, got {transform_dim}")
        self.transform_dim = transform_dim
        self.cond_dim = 1 - transform_dim
        self.affine = affine
        self.max_log_scale = float(max_log_scale)
        n_out = 2 if affine else 1
        self.conditioner = Conditioner(encoding, encoding_size, False, n_out, hidden, depth)

    def _params(self, y_c: Tensor) -> tuple[Tensor, Tensor]:
        """The log-scale :math:`s` and shift :math:`m` for the conditioning coordinate ``y_c``."""
        out = self.conditioner(torch.sigmoid(y_c)).to(y_c.dtype)
        if self.affine:
            return soft_clamp(out[:, 0], self.max_log_scale), out[:, 1]
        return torch.zeros_like(y_c), out[:, 0]

    def _join(self, y_c: Tensor, z_t: Tensor) -> Tensor:
        if self.transform_dim == 0:
            return torch.stack([z_t, y_c], dim=1)
        return torch.stack([y_c, z_t], dim=1)

    def forward(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``y (N, 2) -> (z (N, 2), log|det dz/dy| (N,))``."""
        y_c = y[:, self.cond_dim]
        s, m = self._params(y_c)
        return self._join(y_c, y[:, self.transform_dim] * torch.exp(s) + m), s

    @torch.jit.export
    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (N, 2) -> (y (N, 2), log|det dy/dz| (N,))``; exact inverse of :meth:`forward`."""
        z_c = z[:, self.cond_dim]
        s, m = self._params(z_c)
        return self._join(z_c, (z[:, self.transform_dim] - m) * torch.exp(-s)), -s


@dataclass(frozen=True)
class PlaneFlowConfig(ConfigDict):
    """The fields every real-line family shares (a family's config adds its own).

    Attributes:
        n_layers: couplings (NICE, RealNVP), steps (Glow) or autoregressive layers (MAF, IAF).
        hidden: conditioner width.
        depth: hidden layers per conditioner.
        encoding: ``"one_blob"``, ``"fourier"`` or ``"raw"`` (:mod:`flows.coupling`), of
            :math:`\\sigma(y_c)`.
        encoding_size: one-blob kernels or Fourier frequencies.
        uniform_weight: weight of the defensive uniform component (:mod:`flows.mixture`).
        n_pixel_components: single-pixel mixture components (:mod:`flows.mixture`); 32 as the
            spline flow, for point-like suns.
    """

    kind: ClassVar[str] = ""
    n_layers: int = 8
    hidden: int = 64
    depth: int = 2
    encoding: str = "one_blob"
    encoding_size: int = 32
    uniform_weight: float = 0.0
    n_pixel_components: int = 32

    def __post_init__(self) -> None:
        check_stack(self.n_layers, self.encoding)
        check_mixture(self.uniform_weight, self.n_pixel_components)

    def conditioner_args(self) -> dict[str, Any]:
        """The keyword arguments of the layers' conditioners."""
        names = ("hidden", "depth", "encoding", "encoding_size")
        return {k: v for k, v in dataclasses.asdict(self).items() if k in names}


@dataclass(frozen=True)
class ScaledPlaneFlowConfig(PlaneFlowConfig):
    """:class:`PlaneFlowConfig` of a family whose layers scale (all but NICE's couplings).

    Attributes:
        max_log_scale: L, the bound of each layer's log-scale (:func:`soft_clamp`).
    """

    max_log_scale: float = 3.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.max_log_scale > 0:
            raise ValueError(f"max_log_scale must be positive, got {self.max_log_scale}")


class PlaneFlow(MixtureFlow):
    """:math:`f = \\sigma \\circ g \\circ \\ell` on the square, :math:`g = g_{L-1} \\circ \\dots
    \\circ g_0` a stack of plane bijections (module docstring), optionally in the mixture of
    :mod:`flows.mixture`. A family's class builds ``self.layers``: modules with
    ``forward(y) -> (z, log|det|)`` (data to base, the density direction) and an exported
    ``inverse(z) -> (y, log|det|)``.

    Args:
        config: the family's :class:`PlaneFlowConfig`.
        layers: the plane bijections :math:`g_0, \\dots, g_{L-1}`.
        chunk_size: rows per block in :meth:`sample` and :meth:`log_prob` (speed only).
    """

    def __init__(self, config: PlaneFlowConfig, layers: list[nn.Module], chunk_size: int = 16384) -> None:
        super().__init__(config.uniform_weight, config.n_pixel_components, chunk_size)
        self.config = config
        self.layers = nn.ModuleList(layers)

    @torch.jit.export
    def transform(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The bijection: ``x (N, 2) -> (u = f(x), log|det df/dx| (N,))``."""
        y, logdet = to_plane(x)
        for layer in self.layers:
            y, ld = layer(y)
            logdet = logdet + ld
        u, ld = to_square(y)
        return u, logdet + ld

    @torch.jit.export
    def inverse_transform(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """The inverse: ``u (N, 2) -> (x = f^{-1}(u), log|det df^{-1}/du| (N,))``."""
        y, logdet = to_plane(u)
        for layer in self.layers[::-1]:
            y, ld = layer.inverse(y)
            logdet = logdet + ld
        x, ld = to_square(y)
        return x, logdet + ld
