r"""Monotonic rational-quadratic splines on a bounded interval.

This is the elementwise bijection of *Neural Spline Flows* (Durkan, Bekasov, Murray and
Papamakarios, NeurIPS 2019, arXiv:1906.04032), built from the monotone rational-quadratic
interpolant of Gregory and Delbourgo (IMA J. Numer. Anal. 2(2), 1982).

The interval :math:`[\mathrm{left}, \mathrm{right}]` is cut into :math:`K` bins with knots
:math:`x_0 = \mathrm{left} < x_1 < \dots < x_K = \mathrm{right}` that map to
:math:`y_0 = \mathrm{bottom} < \dots < y_K = \mathrm{top}`, with positive derivatives
:math:`\delta_0, \dots, \delta_K` at the knots. Inside bin :math:`k`, with
:math:`w_k = x_{k+1} - x_k`, :math:`h_k = y_{k+1} - y_k`, :math:`s_k = h_k / w_k` and
:math:`\xi = (x - x_k) / w_k \in [0, 1]`,

.. math::
    y = y_k + \frac{h_k \left[ s_k \xi^2 + \delta_k \xi (1 - \xi) \right]}
                  {s_k + (\delta_{k+1} + \delta_k - 2 s_k)\, \xi (1 - \xi)},

    \frac{dy}{dx} = \frac{s_k^2 \left[ \delta_{k+1} \xi^2 + 2 s_k \xi (1 - \xi)
                    + \delta_k (1 - \xi)^2 \right]}
                   {\left[ s_k + (\delta_{k+1} + \delta_k - 2 s_k)\, \xi (1 - \xi) \right]^2}.

The inverse solves the quadratic :math:`a \xi^2 + b \xi + c = 0` with

.. math::
    a = h_k (s_k - \delta_k) + (y - y_k)(\delta_{k+1} + \delta_k - 2 s_k), \quad
    b = h_k \delta_k - (y - y_k)(\delta_{k+1} + \delta_k - 2 s_k), \quad
    c = -s_k (y - y_k),

using the cancellation-free root :math:`\xi = 2c / (-b - \sqrt{b^2 - 4ac})`
(Durkan et al. 2019, appendix A.3).

Parameterisation (the unnormalised parameters are what a conditioner network outputs):

* widths ``(..., K)``: :math:`w = m_w + (1 - K m_w)\,\mathrm{softmax}(\cdot)`, scaled to
  the interval, so every bin is at least ``min_bin_width`` (relative) wide; heights likewise
  with ``min_bin_height``;
* derivatives ``(..., K + 1)``: **all** :math:`K + 1` knots, including the two boundary
  knots, :math:`\delta = m_\delta + \mathrm{softplus}(\cdot + c)` with
  :math:`c = \log(e^{1 - m_\delta} - 1)`, so that an unnormalised value of 0 gives
  :math:`\delta = 1` exactly.

Hence **all-zero unnormalised parameters give the identity** on the unit square (uniform
bins, unit slopes; in general the affine map of ``[left, right]`` onto ``[bottom, top]`` when
that has unit slope). For a periodic (circular) coordinate use :func:`periodic_derivatives`,
which ties :math:`\delta_K = \delta_0` so that the density :math:`dy/dx` is continuous across
the seam (as in the circular splines of Rezende et al., "Normalizing Flows on Tori and
Spheres", ICML 2020).

Implementation notes: inputs are clamped into the interval (outputs therefore never leave
it, and values at or beyond the edges map to the edges); the bin is found with
``torch.searchsorted`` and its parameters are read with ``torch.gather``. There is no
boolean-mask indexing (the inside/outside masked selects of the nflows reference
implementation were measured to be slow), so the function is branch-free over the batch,
works on any leading shape and compiles with ``torch.jit.script``.

Precision: the arithmetic on the points runs in the dtype of ``inputs``, while the parameters
may be less precise. :class:`flows.model.SplineFlow` evaluates with float64 points and
float32 conditioner outputs: the softmax and cumulative sums of the bins stay in float32
(they only *define* the knots, exact float64 numbers from then on), and everything that
depends on the point (the bin, :math:`\xi`, the root of the quadratic, the log-derivative)
is float64. In float32 that part loses digits where a bin is narrow (:math:`\xi = (x -
x_k) / w_k` in a bin 1e-3 wide keeps about 4 of float32's 7), and a flow composes and
amplifies such errors over its layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_MIN_BIN_WIDTH = 1e-3
DEFAULT_MIN_BIN_HEIGHT = 1e-3
DEFAULT_MIN_DERIVATIVE = 1e-3


def _cumulative(unnormalized: Tensor) -> Tensor:
    """Cumulative softmax ``(..., K)``: entry ``j - 1`` is the share of bins ``0..j-1``."""
    return torch.cumsum(F.softmax(unnormalized, dim=-1), dim=-1)


def _bin_edges(
    cumulative: Tensor,
    bin_idx: Tensor,
    lo: float,
    hi: float,
    min_size: float,
    dtype: torch.dtype,
) -> tuple[Tensor, Tensor]:
    """Left edge and size of bin ``bin_idx`` (shape ``(..., 1)``) in ``[lo, hi]``, in ``dtype``.

    The relative knot ``j`` is :math:`m j + (1 - K m) C_j` with :math:`C_j` the cumulative
    softmax (:math:`C_0 = 0`, :math:`C_K = 1`); the end knots are set exactly.
    """
    num_bins = cumulative.shape[-1]
    pair = cumulative.gather(-1, torch.cat([(bin_idx - 1).clamp_min(0), bin_idx], dim=-1))
    pair = pair.to(dtype)
    k = bin_idx.squeeze(-1).to(dtype)
    scale = 1.0 - min_size * num_bins
    lower = min_size * k + scale * pair[..., 0]
    upper = min_size * (k + 1.0) + scale * pair[..., 1]
    lower = torch.where(k == 0.0, torch.zeros_like(lower), lower)
    upper = torch.where(k == num_bins - 1.0, torch.ones_like(upper), upper)
    return lo + (hi - lo) * lower, (hi - lo) * (upper - lower)


def _find_bin(cumulative: Tensor, t: Tensor, min_size: float) -> Tensor:
    """Index ``(..., 1)`` of the bin holding the relative position ``t`` in ``[0, 1]``.

    ``searchsorted`` over the knots ``1..K`` counts the knots at or below ``t``, which is the
    bin index (clamped to ``K - 1`` for ``t = 1``).
    """
    num_bins = cumulative.shape[-1]
    ar = torch.arange(1, num_bins + 1, dtype=cumulative.dtype, device=cumulative.device)
    knots = torch.add(ar * min_size, cumulative, alpha=1.0 - min_size * num_bins)
    idx = torch.searchsorted(knots, t.unsqueeze(-1).contiguous(), right=True)
    return idx.clamp_max(num_bins - 1)


def derivative_offset(min_derivative: float = DEFAULT_MIN_DERIVATIVE) -> float:
    """The constant :math:`c = \\log(e^{1 - m_\\delta} - 1)` with
    :math:`m_\\delta + \\mathrm{softplus}(0 + c) = 1`."""
    return math.log(math.expm1(1.0 - min_derivative))


def periodic_derivatives(unnormalized_derivatives: Tensor) -> Tensor:
    """Tie the boundary derivatives for a circular coordinate: ``(..., K) -> (..., K + 1)``.

    Knot 0 and knot K are the same point of the circle, so the last derivative is a copy of
    the first and the spline's density :math:`dy/dx` takes the same value at both ends.
    """
    return torch.cat([unnormalized_derivatives, unnormalized_derivatives[..., :1]], dim=-1)


def rational_quadratic_spline(
    inputs: Tensor,
    unnormalized_widths: Tensor,
    unnormalized_heights: Tensor,
    unnormalized_derivatives: Tensor,
    inverse: bool,
    left: float = 0.0,
    right: float = 1.0,
    bottom: float = 0.0,
    top: float = 1.0,
    min_bin_width: float = DEFAULT_MIN_BIN_WIDTH,
    min_bin_height: float = DEFAULT_MIN_BIN_HEIGHT,
    min_derivative: float = DEFAULT_MIN_DERIVATIVE,
) -> tuple[Tensor, Tensor]:
    """Apply the monotonic rational-quadratic spline (or its inverse) elementwise.

    Args:
        inputs: points, shape ``(...)``; clamped into ``[left, right]`` (forward) or
            ``[bottom, top]`` (inverse). The arithmetic and the outputs are of their dtype,
            which may be more precise than the parameters' (module docstring).
        unnormalized_widths: shape ``(..., K)``.
        unnormalized_heights: shape ``(..., K)``.
        unnormalized_derivatives: shape ``(..., K + 1)``, one per knot including both
            boundary knots (see :func:`periodic_derivatives` for a circular coordinate).
        inverse: ``False`` maps ``x -> y``, ``True`` maps ``y -> x``.
        left, right, bottom, top: the domain ``[left, right]`` and range ``[bottom, top]``.
        min_bin_width, min_bin_height: the smallest bin, as a fraction of the interval
            (``K * min_bin_width`` must be below 1).
        min_derivative: the smallest knot derivative.

    Returns:
        ``(outputs, logabsdet)``, both of shape ``(...)``. Forward: ``y`` and
        :math:`\\log|dy/dx|`. Inverse: ``x`` and :math:`\\log|dx/dy| = -\\log|dy/dx|` at
        that ``x``, so forward and inverse log-determinants cancel.
    """
    num_bins = unnormalized_widths.shape[-1]
    if min_bin_width * num_bins > 1.0:
        raise ValueError("min_bin_width * num_bins must be at most 1")
    if min_bin_height * num_bins > 1.0:
        raise ValueError("min_bin_height * num_bins must be at most 1")
    if unnormalized_derivatives.shape[-1] != num_bins + 1:
        raise ValueError("unnormalized_derivatives must have K + 1 entries (one per knot)")

    # The knots are defined in the parameters' precision and evaluated in the points' (the
    # module docstring): the .to() are no-ops when the two agree.
    dtype = inputs.dtype
    cum_w = _cumulative(unnormalized_widths)
    cum_h = _cumulative(unnormalized_heights)
    if inverse:
        z = inputs.clamp(bottom, top)
        bin_idx = _find_bin(cum_h.to(dtype), (z - bottom) / (top - bottom), min_bin_height)
    else:
        z = inputs.clamp(left, right)
        bin_idx = _find_bin(cum_w.to(dtype), (z - left) / (right - left), min_bin_width)

    x_k, w_k = _bin_edges(cum_w, bin_idx, left, right, min_bin_width, dtype)
    y_k, h_k = _bin_edges(cum_h, bin_idx, bottom, top, min_bin_height, dtype)
    s_k = h_k / w_k

    # Only the two knot derivatives of the chosen bin are needed: gather, then softplus.
    offset = derivative_offset(min_derivative)
    d_pair = unnormalized_derivatives.gather(-1, torch.cat([bin_idx, bin_idx + 1], dim=-1))
    d_pair = min_derivative + F.softplus(d_pair.to(inputs.dtype) + offset)
    d_k = d_pair[..., 0]
    d_k1 = d_pair[..., 1]
    d_sum = d_k + d_k1 - 2.0 * s_k

    if inverse:
        dy = z - y_k
        a = h_k * (s_k - d_k) + dy * d_sum
        b = h_k * d_k - dy * d_sum
        c = -s_k * dy
        disc = (b * b - 4.0 * a * c).clamp_min(0.0)
        xi = (2.0 * c) / (-b - torch.sqrt(disc))
        xi = xi.clamp(0.0, 1.0)
        outputs = (xi * w_k + x_k).clamp(left, right)
        # The ends map to the ends exactly (not up to rounding).
        outputs = torch.where(z >= top, right, torch.where(z <= bottom, left, outputs))
    else:
        xi = ((z - x_k) / w_k).clamp(0.0, 1.0)
        outputs = z  # replaced below; TorchScript wants it bound on both branches

    xi_1m = xi * (1.0 - xi)
    denominator = s_k + d_sum * xi_1m
    derivative_numerator = (s_k * s_k) * (
        d_k1 * xi * xi + 2.0 * s_k * xi_1m + d_k * (1.0 - xi) * (1.0 - xi)
    )
    logabsdet = torch.log(derivative_numerator) - 2.0 * torch.log(denominator)

    if inverse:
        return outputs, -logabsdet
    numerator = h_k * (s_k * xi * xi + d_k * xi_1m)
    outputs = (y_k + numerator / denominator).clamp(bottom, top)
    outputs = torch.where(z >= right, top, torch.where(z <= left, bottom, outputs))
    return outputs, logabsdet
