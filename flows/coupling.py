r"""Coupling layers over the unit square, and the encodings of their conditioning input.

A coupling layer (Dinh, Krueger and Bengio, "NICE", 2015; Dinh, Sohl-Dickstein and Bengio,
"Density estimation using Real NVP", ICLR 2017) on :math:`x = (x_0, x_1) \in [0, 1]^2`
transforms one coordinate :math:`x_t` with a bijection whose parameters depend on the other
coordinate :math:`x_c` only:

.. math::
    y_c = x_c, \qquad y_t = g\big(x_t;\ \theta(x_c)\big), \qquad
    \log\left|\det \frac{\partial y}{\partial x}\right|
        = \log\left|\frac{\partial g}{\partial x_t}\right| ,

because the Jacobian is triangular. Here :math:`g` is the monotonic rational-quadratic spline
of :mod:`flows.spline` (Durkan et al., "Neural Spline Flows", NeurIPS 2019) and
:math:`\theta(x_c) = \mathrm{MLP}(\gamma(x_c))` is a small fully connected conditioner applied
to an encoding :math:`\gamma` of the conditioning coordinate. Following Mueller et al.
("Neural Importance Sampling", ACM TOG 2019) the last linear layer of the conditioner is
initialised to zero, so :math:`\theta \equiv 0` and (see :mod:`flows.spline`) the layer starts
as the identity.

Encodings :math:`\gamma: [0, 1] \to \mathbb{R}^E` (``n_features`` below):

* ``"one_blob"`` (Mueller et al. 2019): :math:`k` Gaussian kernels with centres
  :math:`c_i = (i + 1/2)/k` and width :math:`\sigma = 1/k`,
  :math:`\gamma_i(x) = \exp(-(x - c_i)^2 / 2\sigma^2)`. Periodic version: von Mises kernels
  :math:`\gamma_i(x) = \exp\big((\cos 2\pi(x - c_i) - 1) / (2\pi\sigma)^2\big)`, functions of
  the sin/cos features of :math:`x` that agree with the Gaussian for small
  :math:`x - c_i` and wrap around.
* ``"fourier"`` (Tancik et al., "Fourier Features Let Networks Learn High Frequency
  Functions", NeurIPS 2020), :math:`k` frequencies: :math:`x` together with
  :math:`\sin(\pi f x), \cos(\pi f x)` for :math:`f = 1..k` (half periods, so that
  :math:`x = 0` and :math:`x = 1` stay distinguishable); periodic version
  :math:`\sin(2\pi f x), \cos(2\pi f x)`.
* ``"raw"``: :math:`2x - 1`; periodic version :math:`(\sin 2\pi x, \cos 2\pi x)`.

For the azimuth :math:`u` of a lat-long map, which wraps around, ``periodic=True`` on the layer
that *transforms* :math:`u` ties the spline's boundary derivatives
(:func:`flows.spline.periodic_derivatives`) so that the density is continuous across the seam
:math:`u = 0 \equiv 1`; ``periodic_cond=True`` on the layer *conditioned* on :math:`u` uses the
periodic encoding, so that the conditional of :math:`v` is continuous across the seam too.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from flows.spline import (
    DEFAULT_MIN_BIN_HEIGHT,
    DEFAULT_MIN_BIN_WIDTH,
    DEFAULT_MIN_DERIVATIVE,
    periodic_derivatives,
    rational_quadratic_spline,
)

ENCODINGS = ("one_blob", "fourier", "raw")


class Encoding(nn.Module):
    """Encoding :math:`\\gamma` of one coordinate in ``[0, 1]`` (see the module docstring).

    Args:
        kind: ``"one_blob"``, ``"fourier"`` or ``"raw"``.
        size: number of kernels (``one_blob``) or frequencies (``fourier``); unused for raw.
        periodic: use the wrap-around (period 1) version.
    """

    def __init__(self, kind: str, size: int, periodic: bool) -> None:
        super().__init__()
        if kind not in ENCODINGS:
            raise ValueError(f"unknown encoding {kind!r}; expected one of {ENCODINGS}")
        if kind != "raw" and size < 1:
            raise ValueError(f"encoding size must be at least 1, got {size}")
        self.kind = kind
        self.periodic = periodic
        if kind == "one_blob":
            centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
            sigma = 1.0 / size
            self.n_features = size
            if periodic:
                # exp((cos(2 pi (x - c)) - 1) / (2 pi sigma)^2)
                self.scale = 1.0 / (2.0 * math.pi * sigma) ** 2
            else:
                # exp(-(x - c)^2 / (2 sigma^2))
                self.scale = 1.0 / (2.0 * sigma * sigma)
        elif kind == "fourier":
            centres = torch.arange(1, size + 1, dtype=torch.float32)
            centres = centres * (2.0 * math.pi if periodic else math.pi)
            self.n_features = 2 * size if periodic else 2 * size + 1
            self.scale = 1.0
        else:
            centres = torch.zeros(1)
            self.n_features = 2 if periodic else 1
            self.scale = 1.0
        # Centres (one-blob) or angular frequencies (Fourier); a buffer, so it is saved.
        self.register_buffer("centres", centres, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Encode ``x`` of shape ``(N,)`` as ``(N, n_features)``."""
        if self.kind == "one_blob":
            d = x.unsqueeze(-1) - self.centres
            if self.periodic:
                arg = (torch.cos(2.0 * math.pi * d) - 1.0) * self.scale
            else:
                arg = (d * d) * -self.scale
            # Far kernels would underflow to denormals, which make exp ~50x slower on x86.
            return torch.exp(arg.clamp_min(-60.0))
        if self.kind == "fourier":
            a = x.unsqueeze(-1) * self.centres
            if self.periodic:
                return torch.cat([torch.sin(a), torch.cos(a)], dim=-1)
            return torch.cat([2.0 * x.unsqueeze(-1) - 1.0, torch.sin(a), torch.cos(a)], dim=-1)
        if self.periodic:
            a = 2.0 * math.pi * x.unsqueeze(-1)
            return torch.cat([torch.sin(a), torch.cos(a)], dim=-1)
        return 2.0 * x.unsqueeze(-1) - 1.0


def make_conditioner(n_in: int, n_out: int, hidden: int, depth: int) -> nn.Sequential:
    """MLP ``n_in -> hidden (ReLU) x depth -> n_out`` whose last layer starts at zero.

    ``depth`` is the number of hidden layers (at least 1).
    """
    if depth < 1:
        raise ValueError(f"conditioner depth must be at least 1, got {depth}")
    if hidden < 1:
        raise ValueError(f"conditioner hidden width must be at least 1, got {hidden}")
    layers: list[nn.Module] = [nn.Linear(n_in, hidden), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden, hidden), nn.ReLU()]
    last = nn.Linear(hidden, n_out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class SplineCoupling(nn.Module):
    """Rational-quadratic spline coupling on the unit square.

    Coordinate ``transform_dim`` (0 is u, 1 is v) is transformed by a K-bin spline on
    ``[0, 1]`` whose unnormalised widths, heights and derivatives are the output of the
    conditioner applied to the encoding of the other coordinate.

    Args:
        transform_dim: 0 or 1, the coordinate that is transformed.
        n_bins: K, the number of spline bins.
        hidden: conditioner width.
        depth: number of hidden conditioner layers.
        encoding: ``"one_blob"``, ``"fourier"`` or ``"raw"``.
        encoding_size: kernels or frequencies of the encoding.
        periodic: the transformed coordinate is circular (tie the boundary derivatives).
        periodic_cond: the conditioning coordinate is circular (periodic encoding).
    """

    def __init__(
        self,
        transform_dim: int,
        n_bins: int,
        hidden: int,
        depth: int,
        encoding: str = "one_blob",
        encoding_size: int = 32,
        periodic: bool = False,
        periodic_cond: bool = False,
        min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
        min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
        min_derivative: float = DEFAULT_MIN_DERIVATIVE,
    ) -> None:
        super().__init__()
        if transform_dim not in (0, 1):
            raise ValueError(f"transform_dim must be 0 or 1, got {transform_dim}")
        if n_bins < 1:
            raise ValueError(f"n_bins must be at least 1, got {n_bins}")
        if n_bins * max(min_bin_width, min_bin_height) >= 1.0:
            raise ValueError("n_bins * min_bin_width (and min_bin_height) must be below 1")
        self.transform_dim = transform_dim
        self.cond_dim = 1 - transform_dim
        self.n_bins = n_bins
        self.periodic = periodic
        self.min_bin_width = min_bin_width
        self.min_bin_height = min_bin_height
        self.min_derivative = min_derivative
        self.encoding = Encoding(encoding, encoding_size, periodic_cond)
        n_derivatives = n_bins if periodic else n_bins + 1
        self.conditioner = make_conditioner(
            self.encoding.n_features, 2 * n_bins + n_derivatives, hidden, depth
        )

    def _spline(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        cond = x[:, self.cond_dim]
        params = self.conditioner(self.encoding(cond))
        k = self.n_bins
        # split (not three slices): its backward is one cat instead of three zero-fills.
        widths, heights, derivatives = torch.split(params, [k, k, params.shape[1] - 2 * k], 1)
        if self.periodic:
            derivatives = periodic_derivatives(derivatives)
        z, logabsdet = rational_quadratic_spline(
            x[:, self.transform_dim],
            widths,
            heights,
            derivatives,
            inverse,
            min_bin_width=self.min_bin_width,
            min_bin_height=self.min_bin_height,
            min_derivative=self.min_derivative,
        )
        if self.transform_dim == 0:
            out = torch.stack([z, cond], dim=1)
        else:
            out = torch.stack([cond, z], dim=1)
        return out, logabsdet

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (N, 2) -> (y (N, 2), log|det dy/dx| (N,))``."""
        return self._spline(x, False)

    @torch.jit.export
    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``y (N, 2) -> (x (N, 2), log|det dx/dy| (N,))``; exact inverse of :meth:`forward`."""
        return self._spline(y, True)
