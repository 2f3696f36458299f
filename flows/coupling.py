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
  :math:`x - c_i` and wrap around. The conditioner evaluates the encoding and its first linear
  layer together and sparsely (:class:`OneBlobLinear`: only the 8 kernels within
  :math:`4\sigma` of :math:`x`), so the cost does not grow with :math:`k`.
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
import torch.nn.functional as F
from torch import Tensor, nn

from flows.spline import (
    DEFAULT_MIN_BIN_HEIGHT,
    DEFAULT_MIN_BIN_WIDTH,
    DEFAULT_MIN_DERIVATIVE,
    periodic_derivatives,
    rational_quadratic_spline,
)

ENCODINGS = ("one_blob", "fourier", "raw")
#: The fewest rows a :class:`Conditioner` evaluates at once (it pads smaller batches).
MIN_ROWS = 16


def check_stack(n_layers: int, encoding: str) -> None:
    """Raise ``ValueError`` unless ``n_layers >= 1`` and ``encoding`` is one of
    :data:`ENCODINGS` (for the configurations of flows built of these layers)."""
    if n_layers < 1:
        raise ValueError(f"n_layers must be at least 1, got {n_layers}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")


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
        # Centres (one-blob) or angular frequencies (Fourier): a buffer, saved with the weights.
        self.register_buffer("centres", centres)

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


class OneBlobLinear(nn.Module):
    """One-blob encoding followed by a linear layer, computed sparsely.

    Mathematically ``Linear(k, out)(Encoding("one_blob", k, periodic)(x))``: the kernels at
    more than 4 sigma from ``x`` are below :math:`e^{-8}` and are dropped, so only the 8 nearest
    kernels are evaluated, and their weight rows combined with
    :func:`torch.nn.functional.embedding_bag` (per-sample weights) in eval mode, or scattered
    into the dense encoding for a matmul in training mode (a faster backward). The cost hardly grows
    with ``k``, which makes fine encodings (k = 64 ... 256) affordable; this is a 1-D,
    Gaussian-interpolated learned feature grid in the sense of Mueller et al., "Instant Neural
    Graphics Primitives", ACM TOG 2022.

    Args:
        size: k, the number of kernels.
        out_features: the output width.
        periodic: kernels on the circle (von Mises, as in :class:`Encoding`).
    """

    TAPS = 8

    def __init__(self, size: int, out_features: int, periodic: bool) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"encoding size must be at least 1, got {size}")
        self.size = size
        self.periodic = periodic
        self.all_taps = size <= self.TAPS
        sigma = 1.0 / size
        if periodic:
            self.scale = 1.0 / (2.0 * math.pi * sigma) ** 2
        else:
            self.scale = 1.0 / (2.0 * sigma * sigma)
        offsets = torch.arange(size) if self.all_taps else torch.arange(-3, self.TAPS - 3)
        self.register_buffer("offsets", offsets)
        # Same initialisation as nn.Linear(size, out_features).
        bound = 1.0 / math.sqrt(size)
        self.weight = nn.Parameter(torch.empty(size, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        """``x (N,) -> (N, out_features)``; ``x`` is first rounded to the weights' dtype."""
        x = x.to(self.weight.dtype)
        k = self.size
        t = x * k - 0.5  # kernel i sits at t = i
        if self.all_taps:
            idx = self.offsets.unsqueeze(0).expand(x.shape[0], -1)
        else:
            idx = torch.floor(t).long().unsqueeze(1) + self.offsets
        d = (t.unsqueeze(1) - idx.to(t.dtype)) * (1.0 / k)  # x - c_i
        if self.periodic:
            arg = (torch.cos(2.0 * math.pi * d) - 1.0) * self.scale
            idx = torch.remainder(idx, k)
        else:
            arg = (d * d) * -self.scale
            valid = (idx >= 0) & (idx < k)
            arg = torch.where(valid, arg, -60.0)
            idx = idx.clamp(0, k - 1)
        w = torch.exp(arg.clamp_min(-60.0))
        if self.training:
            # Training: scatter into the dense (N, k) encoding and multiply; its backward is
            # a gather and two matmuls (embedding_bag's backward sorts, ~5x slower).
            enc = torch.zeros(x.shape[0], k, dtype=w.dtype, device=w.device)
            enc = enc.scatter_add(1, idx, w)
            return torch.addmm(self.bias, enc, self.weight)
        # Inference: gather and sum the 8 weight rows.
        out = F.embedding_bag(idx, self.weight, per_sample_weights=w, mode="sum")
        return out + self.bias


class FeatureLinear(nn.Module):
    """:class:`Encoding` followed by ``nn.Linear``: ``x (N,) -> (N, out_features)``."""

    def __init__(self, kind: str, size: int, out_features: int, periodic: bool) -> None:
        super().__init__()
        self.encoding = Encoding(kind, size, periodic)
        self.linear = nn.Linear(self.encoding.n_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.encoding(x.to(self.linear.weight.dtype)))


class Conditioner(nn.Module):
    """The MLP :math:`\\theta(x_c)`: encoding + linear, ReLU, ``depth - 1`` hidden layers, output.

    The output layer starts at zero, so :math:`\\theta \\equiv 0` at initialisation.

    Args:
        encoding: ``"one_blob"`` (computed sparsely, :class:`OneBlobLinear`), ``"fourier"`` or
            ``"raw"``.
        encoding_size: kernels or frequencies.
        periodic: the input coordinate is circular.
        n_out: output size.
        hidden: width of the hidden layers.
        depth: number of hidden layers (at least 1).
    """

    def __init__(
        self, encoding: str, encoding_size: int, periodic: bool, n_out: int, hidden: int, depth: int
    ) -> None:
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"unknown encoding {encoding!r}; expected one of {ENCODINGS}")
        if depth < 1:
            raise ValueError(f"conditioner depth must be at least 1, got {depth}")
        if hidden < 1:
            raise ValueError(f"conditioner hidden width must be at least 1, got {hidden}")
        self.periodic = periodic
        self.min_rows = MIN_ROWS
        if encoding == "one_blob":
            self.input = OneBlobLinear(encoding_size, hidden, periodic)
        else:
            self.input = FeatureLinear(encoding, encoding_size, hidden, periodic)
        layers: list[nn.Module] = [nn.ReLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        last = nn.Linear(hidden, n_out)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        layers.append(last)
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``x (N,) -> (N, n_out)``.

        Fewer than :data:`MIN_ROWS` rows are padded to that many: BLAS computes a small
        product with other kernels than a large one, whose last bits differ (seen for up to
        7 rows at the shapes used here), and a flow amplifies the last bit of its
        parameters some thousandfold in its log density, which would then depend on the
        size of the batch that a point is evaluated in.
        """
        n = x.shape[0]
        if n < self.min_rows:
            x = torch.cat([x, x.new_zeros(self.min_rows - n)])
        return self.mlp(self.input(x))[:n]


class SplineCoupling(nn.Module):
    """Rational-quadratic spline coupling on the unit square.

    Coordinate ``transform_dim`` (0 is u, 1 is v) is transformed by a K-bin spline on
    ``[0, 1]`` whose unnormalised widths, heights and derivatives are the output of the
    conditioner applied to the encoding of the other coordinate.

    Precision: points may be more precise than the weights (float64 points, float32 weights,
    as :class:`flows.model.SplineFlow` evaluates): the conditioner then reads its coordinate
    rounded to the weights' dtype, and the spline runs in the points' dtype
    (:mod:`flows.spline`).

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
        n_derivatives = n_bins if periodic else n_bins + 1
        self.conditioner = Conditioner(
            encoding, encoding_size, periodic_cond, 2 * n_bins + n_derivatives, hidden, depth
        )

    def _spline(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        cond = x[:, self.cond_dim]
        params = self.conditioner(cond)
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
