r"""Piecewise-linear bijections of :math:`[0, 1]`: the piecewise-constant densities of NIS.

This is the *piecewise-linear coupling transform* of Müller, McWilliams, Rousselle, Gross and
Novák, "Neural Importance Sampling" (ACM TOG 38(5), 2019, sec. 3.2). The interval is cut into
:math:`K` bins of equal width :math:`1/K` with probabilities :math:`p_0, \dots, p_{K-1}`
(:math:`\sum_k p_k = 1`), so the density is :math:`K p_k` on bin :math:`k` and the map is the
CDF, linear inside each bin:

.. math::
    k = \lfloor K x \rfloor, \qquad
    y = F(x) = C_k + p_k (K x - k), \qquad C_k = \sum_{j < k} p_j, \qquad
    \log\left|\frac{dy}{dx}\right| = \log (K p_k).

The inverse finds the bin by counting the cumulative sums at or below :math:`y`,
:math:`k = \#\{j \ge 1 : C_j \le y\}` (``torch.searchsorted`` for one set of bins, a
binary search of each point's own row for many), and
:math:`x = (k + (y - C_k) / p_k) / K` with :math:`\log|dx/dy| = -\log(K p_k)`. The search
and :math:`C_k` are read from one cumulative sum, so a :math:`y` on a bin edge lands exactly
at the start of its bin.

Where a rational-quadratic spline (:mod:`flows.spline`) is smooth, this transform is exactly
as fine as its bins: with bins aligned to a map's pixels it represents a piecewise-constant
target exactly, which is what :class:`flows.pixel_flow.PixelFlow` builds on.

Bin probabilities come from unnormalised logits through :func:`bin_log_probs`, a log-softmax
whose logits are first floored at :data:`LOGIT_FLOOR` below their maximum. The floor keeps every
bin's probability positive (at least :math:`e^{-60}/K`, a normal float32), so a flow built of
these transforms has a positive density wherever its target is nonzero, and it keeps the
``exp`` of hopeless bins out of the subnormal range, where x86 arithmetic is ~50x slower.
(A bin whose share of the CDF is below float32's resolution, ~6e-8, is still never *drawn*
by float32 uniforms: the same limit as any tabulated sampler driven by 24-bit random
numbers.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: How far below the largest logit a bin's logit may go (natural log units).
LOGIT_FLOOR = 60.0


def bin_log_probs(logits: Tensor, floor: float = LOGIT_FLOOR) -> Tensor:
    """Log bin probabilities ``(..., K)`` from unnormalised logits, floored at ``floor`` below
    the largest (module docstring)."""
    top = logits.max(dim=-1, keepdim=True).values.detach()
    return F.log_softmax(torch.maximum(logits, top - floor), dim=-1)


def _row_base(log_probs: Tensor, group: Tensor | None, n: int) -> Tensor:
    """The row of ``log_probs`` (viewed as ``(G, K)``) that each of ``n`` points uses."""
    if log_probs.dim() == 1:
        return torch.zeros(n, dtype=torch.long, device=log_probs.device)
    if group is None:
        return torch.arange(n, dtype=torch.long, device=log_probs.device)
    return group


def _cumulative(log_probs: Tensor) -> Tensor:
    r""":math:`C_0 = 0, C_1, \dots, C_K` of each row of bins: ``(G, K + 1)``."""
    k = log_probs.shape[-1]
    cdf = torch.cumsum(torch.exp(log_probs.reshape(-1, k)), dim=-1)
    return F.pad(cdf, (1, 0))


def _cell_terms(
    bins: Tensor, log_probs: Tensor, cumulative: Tensor, rows: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """``log p_k``, :math:`C_k` and :math:`C_{k+1} - C_k` of each point's bin ``k``.

    The map is linear from :math:`C_k` to :math:`C_{k+1}` as the cumulative sum holds them,
    so that the ends of a bin map to each other exactly in both directions; its slope
    differs from :math:`K p_k` by float rounding only.
    """
    k = log_probs.shape[-1]
    lp = log_probs.reshape(-1).index_select(0, rows * k + bins)
    flat = cumulative.reshape(-1)
    start = rows * (k + 1) + bins
    below = flat.index_select(0, start)
    return lp, below, flat.index_select(0, start + 1) - below


def pl_forward(
    bins: Tensor, frac: Tensor, log_probs: Tensor, group: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The CDF at the point ``(bins + frac) / K``: ``(y (N,), log|dy/dx| (N,))``.

    ``log_probs`` is ``(K,)`` (the same bins for every point), ``(N, K)`` (a row per point) or
    ``(G, K)`` with ``group (N,)`` naming each point's row (many points sharing a few sets of
    bins, which is how :class:`flows.pixel_flow.PixelFlow` evaluates its conditioner once
    per distinct input). Taking the bin and the position inside it (``frac`` in ``[0, 1]``)
    rather than ``x`` lets a caller that already knows the bin avoid recomputing it from a
    rounded ``x``.
    """
    rows = _row_base(log_probs, group, bins.shape[0])
    lp, below, width = _cell_terms(bins, log_probs, _cumulative(log_probs), rows)
    y = (below + width * frac).clamp(0.0, 1.0)
    return y, lp + math.log(log_probs.shape[-1])


def _search_rows(upper: Tensor, rows: Tensor, y: Tensor) -> Tensor:
    r"""For each point, how many of its row's sorted values ``upper[row, :]`` are ``<= y``.

    A branch-free binary search over the rows of ``upper (G, M)``, all points in step: at
    each of the :math:`\lceil \log_2 (M + 1) \rceil` steps a point reads one value of its own
    row. (``torch.searchsorted`` needs one sorted sequence per point, i.e. an ``(N, M)``
    copy, or one long sequence of all rows, whose search misses the cache at every step.)
    """
    m = upper.shape[1]
    flat = upper.reshape(-1)
    base = rows * m
    count = torch.zeros_like(rows)
    if m == 0:
        return count  # one bin: nothing to search
    step = 1
    while step * 2 <= m:
        step *= 2
    while step > 0:
        cand = count + step
        inside = cand <= m
        value = flat.index_select(0, base + (cand - 1).clamp(0, m - 1))
        count = torch.where(inside & (value <= y), cand, count)
        step = step // 2
    return count


def pl_inverse(
    y: Tensor, log_probs: Tensor, group: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    r"""The inverse CDF at ``y``: ``(bin (N,) int64, frac (N,), log|dx/dy| (N,))``.

    ``log_probs`` and ``group`` as in :func:`pl_forward`. The point is
    :math:`x = (\text{bin} + \text{frac}) / K`. The bin is the number of cumulative sums
    :math:`C_1, \dots, C_{K-1}` of the point's row at or below ``y``.
    """
    k = log_probs.shape[-1]
    y = y.clamp(0.0, 1.0)
    rows = _row_base(log_probs, group, y.shape[0])
    cumulative = _cumulative(log_probs)
    upper = cumulative[:, 1:k]  # C_1 .. C_{K-1}
    if log_probs.dim() == 1:
        bins = torch.searchsorted(upper[0].contiguous(), y.contiguous(), right=True)
    else:
        bins = _search_rows(upper.contiguous(), rows, y)
    lp, below, width = _cell_terms(bins, log_probs, cumulative, rows)
    frac = ((y - below) / width.clamp_min(1e-30)).clamp(0.0, 1.0)
    return bins, frac, -(lp + math.log(k))


def piecewise_linear(
    inputs: Tensor, log_probs: Tensor, inverse: bool
) -> tuple[Tensor, Tensor]:
    """Apply the piecewise-linear CDF with bin log-probabilities ``log_probs`` (or its inverse).

    Args:
        inputs: points ``(N,)``, clamped into ``[0, 1]``.
        log_probs: ``(K,)`` (the same bins for every point) or ``(N, K)``; each row sums to one
            in probability (e.g. :func:`bin_log_probs`).
        inverse: ``False`` for :math:`y = F(x)`, ``True`` for :math:`x = F^{-1}(y)`.

    Returns:
        ``(outputs (N,), log|det J| (N,))``: the image and the log-derivative of the map
        applied (so the inverse's is the negative of the forward's at the same point).
    """
    k_bins = log_probs.shape[-1]
    if inverse:
        bins, frac, logabsdet = pl_inverse(inputs, log_probs)
        x = keep_in_cell((bins.to(inputs.dtype) + frac) / k_bins, bins, k_bins)
        return x, logabsdet
    x = inputs.clamp(0.0, 1.0)
    bins = (x * k_bins).floor().long().clamp(0, k_bins - 1)
    return pl_forward(bins, x * k_bins - bins.to(x.dtype), log_probs)


def keep_in_cell(x: Tensor, cell: Tensor, n_cells: int) -> Tensor:
    """Nudge ``x`` by one ulp where rounding put it outside ``cell`` of ``n_cells`` equal cells.

    ``(k + t) / n`` with ``t`` just below 1 can round up to ``(k + 1) / n``; the density there
    belongs to the next cell, so a sample's returned log-density would not be that of its
    point. This moves such points back to the largest float inside their cell (and points
    rounded below a cell's start to the smallest inside it). When ``n_cells`` is not a power
    of two ``x * n_cells`` rounds too, so the step is repeated (three times is ample).
    """
    for _ in range(3):
        found = (x * n_cells).floor().long()
        if not bool(torch.any(found != cell)):
            break
        x = torch.where(found > cell, torch.nextafter(x, torch.zeros_like(x)), x)
        x = torch.where(found < cell, torch.nextafter(x, torch.ones_like(x)), x)
    return x
