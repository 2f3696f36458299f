r"""A flow at the map's own resolution: autoregressive piecewise-linear couplings (NIS).

The target of a light sampler is piecewise constant on the map's :math:`H \times W` pixels
(:mod:`flows.train`). A flow made of smooth bijections (:class:`flows.model.SplineFlow`)
blurs it, and on textured maps the blur alone costs about as much as the 0.05 nats we aim
for: replacing the ``forest`` map's pixels by the averages of pairs along u costs 0.040
nats, by 2 x 2 averages 0.068 (``python benchmarks/bench_flow_fit.py --resolution-floor``).
:class:`PixelFlow` is a normalizing flow whose bijections are exactly as fine as the pixels,
and whose network learns how the pixels' probabilities depend on each other.

Structure. An autoregressive flow (Papamakarios et al., "Normalizing Flows for
Probabilistic Modeling and Inference", JMLR 2021, sec. 3.1) over :math:`x = (u, v)` built
from the piecewise-linear coupling transform of Müller et al. ("Neural Importance
Sampling", ACM TOG 2019; :mod:`flows.piecewise_linear`):

.. math::
    q(u, v) = \underbrace{H\, a_r}_{v} \;
              \underbrace{K_c\, \pi_c(r)}_{\text{coarse } u} \;
              \underbrace{K_f\, \rho_f(r, c)}_{\text{fine } u},
    \qquad r = \lfloor H v \rfloor,\ W u = K_f c + f + \text{frac},

1. :math:`v` by a piecewise-linear transform with :math:`H` bins (one per row) and learned
   probabilities :math:`a = \mathrm{softmax}(\alpha)`: the map's marginal over rows;
2. :math:`u` given :math:`v`, as a composition of two piecewise-linear transforms that
   together have one bin per column, :math:`W = K_c K_f`: a coarse one with :math:`K_c` bins
   of probability :math:`\pi(r)`, and inside coarse bin :math:`c` a fine one with
   :math:`K_f` bins of probability :math:`\rho(r, c)`. This is the flat transform with
   :math:`W` bins and probabilities :math:`\pi_c \rho_f` (a hierarchical softmax), but a
   sample or a density needs :math:`K_c + K_f` logits instead of :math:`W`.

The conditioner is one MLP of the row: the one-blob encoding of the row centre
(:class:`flows.coupling.OneBlobLinear`, one Gaussian kernel per row, Müller et al. 2019), then
``depth - 1`` hidden layers, giving features :math:`g(r)`; :math:`\pi(r) =
\mathrm{softmax}(A g + b)` and :math:`\rho(r, c) = \mathrm{softmax}(B_c g + b_c)` with one
small output head per coarse bin. The logits over all columns of a row are therefore a
rank-``hidden`` function of the row features: the network is a learned, nonlinear low-rank
model of the map's log-density (152k parameters at the default width for a 512 x 1024 map,
whose conditional CDF has 525k entries).

The conditioner reads the row (the centre of the pixel row), not the continuous :math:`v`:
the target is constant along :math:`v` inside a row, and so is the model (measured on a
prototype, a flat 64-wide version: forest's KL 0.036 reading :math:`v`, 0.027 reading the
row). Because every factor is a piecewise-constant density on the same pixels as the target,
the KL divergence to the target is a finite sum that :func:`flows.train.fit_flow` minimises
directly (the ``"exact"`` objective) instead of estimating it from samples.

Sampling spends :math:`\xi_1` on the row and :math:`\xi_0` on the coarse and then the fine
bin, so the flow stays a bijection of the square driven by the renderer's random numbers.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from flows.base import ConfigDict, UnitSquareFlow
from flows.coupling import OneBlobLinear
from flows.piecewise_linear import bin_log_probs, keep_in_cell, pl_forward, pl_inverse


def _distinct(keys: Tensor, n_keys: int) -> tuple[Tensor, Tensor]:
    r"""``torch.unique(keys, return_inverse=True)`` for keys in ``[0, n_keys)``, without sorting.

    Marks the keys present, numbers them in increasing order by a running count, and reads
    each key's number back: :math:`O(N + n_\text{keys})`.
    """
    present = torch.zeros(n_keys, dtype=torch.bool, device=keys.device)
    present = present.index_fill(0, keys, True)
    rank = torch.cumsum(present.to(torch.long), 0) - 1
    return torch.nonzero(present).squeeze(1), rank.index_select(0, keys)


def coarse_bins_for(width: int) -> int:
    """The largest divisor of ``width`` not above :math:`\\sqrt{W}` (32 for 1024 columns)."""
    best = 1
    for d in range(1, math.isqrt(width) + 1):
        if width % d == 0:
            best = d
    return best


@dataclass(frozen=True)
class PixelFlowConfig(ConfigDict):
    """Everything needed to rebuild a :class:`PixelFlow` (its weights aside).

    The defaults are what ``python benchmarks/bench_flow_fit.py`` measured on the five
    512 x 1024 maps (see the README): KL(target || flow) 0.0005 to 0.016 nats after fits of
    15 to 37 s on 2 CPU threads; 64 wide gives 0.0008 to 0.025, 32 wide 0.052 on forest.

    Attributes:
        height, width: the map's pixels :math:`H \\times W`; 0 means "the fitted map's"
            (:func:`flows.train.fit_flow` fills them in).
        hidden: width of the conditioner (the rank of the per-row logits).
        depth: layers of the conditioner before the heads, counting the encoding layer.
        coarse_bins: :math:`K_c`, a divisor of ``width``; 0 picks :func:`coarse_bins_for`.
    """

    kind: ClassVar[str] = "pixel"
    height: int = 0
    width: int = 0
    hidden: int = 96
    depth: int = 1
    coarse_bins: int = 0

    def __post_init__(self) -> None:
        if self.height < 0 or self.width < 0:
            raise ValueError(
                f"map size must be >= 0 (0: the fitted map's), got {self.height} x {self.width}"
            )
        if self.hidden < 1:
            raise ValueError(f"hidden must be at least 1, got {self.hidden}")
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")
        if self.coarse_bins < 0 or (
            self.coarse_bins and self.width and self.width % self.coarse_bins
        ):
            raise ValueError(f"coarse_bins {self.coarse_bins} must divide width {self.width}")

    def for_shape(self, height: int, width: int) -> PixelFlowConfig:
        """This configuration for a map of ``height x width`` pixels."""
        coarse = self.coarse_bins if self.coarse_bins else coarse_bins_for(width)
        return dataclasses.replace(self, height=height, width=width, coarse_bins=coarse)


class PixelFlow(UnitSquareFlow):
    """Autoregressive piecewise-linear flow at pixel resolution (see the module docstring).

    TorchScript-compatible: ``torch.jit.script(model)`` exports :meth:`sample`,
    :meth:`log_prob`, :meth:`transform` and :meth:`inverse_transform`.

    Args:
        config: the architecture; ``height`` and ``width`` must be set
            (:meth:`PixelFlowConfig.for_shape`).
        chunk_size: points per block in :meth:`sample` and :meth:`log_prob` (speed only).
            Large: the per-point work is a few gathers and compares, and the larger a block,
            the more of its points share a row and a coarse bin (``forest``, batches of 64k:
            blocks of 256k sample 1.7x and evaluate 2.4x faster than blocks of 16k;
            ``benchmarks/bench_flow_gap.py``).
    """

    __jit_ignored_attributes__ = ("config",)

    def __init__(self, config: PixelFlowConfig, chunk_size: int = 1 << 18) -> None:
        super().__init__(chunk_size)
        if config.height < 1 or config.width < 1:
            raise ValueError("PixelFlow needs the map size: use PixelFlowConfig.for_shape(h, w)")
        if not config.coarse_bins:
            config = config.for_shape(config.height, config.width)
        self.config = config
        self.height = config.height
        self.width = config.width
        self.n_coarse = config.coarse_bins
        self.n_fine = config.width // config.coarse_bins
        h = config.hidden
        # v: the marginal over rows (the fit sets it to the map's row masses, its optimum).
        self.row_logits = nn.Parameter(torch.zeros(config.height))
        # The conditioner g(r): one-blob encoding of the row centre, then hidden layers.
        self.encoding = OneBlobLinear(config.height, h, periodic=False)
        layers: list[nn.Module] = []
        for _ in range(config.depth - 1):
            layers += [nn.ReLU(), nn.Linear(h, h)]
        layers.append(nn.ReLU())
        self.trunk = nn.Sequential(*layers)
        # Heads start at zero: uniform bins, so the flow starts as the marginal times uniform u.
        self.coarse_head = nn.Linear(h, self.n_coarse)
        nn.init.zeros_(self.coarse_head.weight)
        nn.init.zeros_(self.coarse_head.bias)
        self.fine_weight = nn.Parameter(torch.zeros(self.n_coarse, h, self.n_fine))
        self.fine_bias = nn.Parameter(torch.zeros(self.n_coarse, self.n_fine))

    # ---- the conditioner ------------------------------------------------------------------

    def row_features(self, rows: Tensor) -> Tensor:
        """:math:`g(r)` for row indices ``rows (N,)``: ``(N, hidden)``."""
        centre = (rows.to(self.row_logits.dtype) + 0.5) / self.height
        return self.trunk(self.encoding(centre))

    def _row_terms(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The conditioner on the distinct rows of a batch.

        Returns ``(row_of (N,), g (U, hidden), coarse log-probs (U, K_c))``: each point's index
        among the ``U`` distinct rows, and the features and coarse bins of those rows. The
        network runs once per distinct row, not once per point: the same values, computed
        ``N / U`` times fewer.
        """
        distinct, row_of = _distinct(rows, self.height)
        g = self.row_features(distinct)
        return row_of, g, bin_log_probs(self.coarse_head(g))

    def _fine_terms(self, g: Tensor, row_of: Tensor, coarse: Tensor) -> tuple[Tensor, Tensor]:
        """Fine log-probs ``(P, K_f)`` of the distinct (coarse bin, row) pairs of a batch, and
        each point's pair ``(N,)``.

        The pairs come out ordered by coarse bin, so each coarse bin's pairs are one matrix
        product with that bin's head.
        """
        n_rows = g.shape[0]
        pairs, pair_of = _distinct(coarse * n_rows + row_of, self.n_coarse * n_rows)
        pair_coarse = torch.div(pairs, n_rows, rounding_mode="floor")
        g_pairs = g.index_select(0, pairs - pair_coarse * n_rows)
        return pair_of, bin_log_probs(self._fine_heads(g_pairs, pair_coarse))

    def _fine_heads(self, g: Tensor, coarse: Tensor) -> Tensor:
        """Fine logits ``(P, K_f)``: head ``coarse[i]`` applied to ``g[i]``; ``coarse`` sorted.

        Each coarse bin's run of rows is one matrix product with that bin's head (a gathered
        ``(P, hidden, K_f)`` weight tensor would be 32x more memory traffic).
        """
        counts: list[int] = torch.bincount(coarse, minlength=self.n_coarse).tolist()
        parts: list[Tensor] = []
        start = 0
        for k, n in enumerate(counts):
            if n > 0:
                block = g[start : start + n]
                parts.append(torch.addmm(self.fine_bias[k], block, self.fine_weight[k]))
            start += n
        if len(parts) == 0:  # an empty batch
            return g.new_zeros((0, self.n_fine))
        return torch.cat(parts)

    def pixel_log_masses(self, rows: Tensor) -> Tensor:
        """Log probability of every pixel of the given rows, ``(R, W)``: the exact objective.

        :math:`\\log Q_{r, K_f c + f} = \\log a_r + \\log \\pi_c(r) + \\log \\rho_f(r, c)`;
        the density on the pixel is :math:`H W Q`. All fine heads are applied to all rows at
        once (one batched product), which is what training wants.
        """
        g = self.row_features(rows)
        row_lp = bin_log_probs(self.row_logits).index_select(0, rows)
        coarse_lp = bin_log_probs(self.coarse_head(g))
        fine = torch.einsum("rh,khf->rkf", g, self.fine_weight) + self.fine_bias
        fine_lp = bin_log_probs(fine)
        log_q = row_lp[:, None, None] + coarse_lp[:, :, None] + fine_lp
        return log_q.reshape(rows.shape[0], self.width)

    # ---- the bijection --------------------------------------------------------------------

    def _cells(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Row, coarse and fine bin of each point, and its fractional positions in u and v."""
        tv = x[:, 1].clamp(0.0, 1.0) * self.height
        tu = x[:, 0].clamp(0.0, 1.0) * self.width
        rows = tv.floor().long().clamp(0, self.height - 1)
        cols = tu.floor().long().clamp(0, self.width - 1)
        coarse = torch.div(cols, self.n_fine, rounding_mode="floor")
        fine = cols - coarse * self.n_fine
        frac_v = (tv - rows.to(x.dtype)).clamp(0.0, 1.0)
        frac_u = (tu - cols.to(x.dtype)).clamp(0.0, 1.0)
        return rows, coarse, fine, frac_v, frac_u

    @classmethod
    def for_density(cls, config: PixelFlowConfig, p: np.ndarray) -> PixelFlow:
        """A new flow of ``config`` at ``p``'s size (H, W), its row marginal at ``p``'s row
        masses (the maximum-likelihood value of that factor)."""
        model = cls(config.for_shape(*p.shape))
        rows = p.sum(axis=1)
        with torch.no_grad():
            model.row_logits.copy_(torch.from_numpy(np.log(np.maximum(rows, rows.max() * 1e-30))))
        return model

    @torch.jit.export
    def transform(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The bijection ``x (N, 2) -> (z = f(x), log|det df/dx| (N,))``; ``z`` is uniform."""
        rows, coarse, fine, frac_v, frac_u = self._cells(x)
        z_v, ld_v = pl_forward(rows, frac_v, bin_log_probs(self.row_logits))
        row_of, g, coarse_lp = self._row_terms(rows)
        pair_of, fine_lp = self._fine_terms(g, row_of, coarse)
        t, ld_f = pl_forward(fine, frac_u, fine_lp, pair_of)  # inside the coarse bin
        z_u, ld_c = pl_forward(coarse, t, coarse_lp, row_of)
        return torch.stack([z_u, z_v], dim=1), ld_v + ld_c + ld_f

    @torch.jit.export
    def inverse_transform(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """The inverse ``z (N, 2) -> (x = f^{-1}(z), log|det df^{-1}/dz| (N,))``."""
        rows, frac_v, ld_v = pl_inverse(z[:, 1], bin_log_probs(self.row_logits))
        row_of, g, coarse_lp = self._row_terms(rows)
        coarse, t, ld_c = pl_inverse(z[:, 0], coarse_lp, row_of)
        pair_of, fine_lp = self._fine_terms(g, row_of, coarse)
        fine, frac_u, ld_f = pl_inverse(t, fine_lp, pair_of)
        cols = coarse * self.n_fine + fine
        u = keep_in_cell((cols.to(z.dtype) + frac_u) / self.width, cols, self.width)
        v = keep_in_cell((rows.to(z.dtype) + frac_v) / self.height, rows, self.height)
        return torch.stack([u, v], dim=1), ld_v + ld_c + ld_f

    def _log_prob(self, x: Tensor) -> Tensor:
        rows, coarse, fine, _, _ = self._cells(x)
        row_of, g, coarse_lp = self._row_terms(rows)
        pair_of, fine_lp = self._fine_terms(g, row_of, coarse)
        log_q = bin_log_probs(self.row_logits).index_select(0, rows)
        log_q = log_q + coarse_lp.reshape(-1).index_select(0, row_of * self.n_coarse + coarse)
        log_q = log_q + fine_lp.reshape(-1).index_select(0, pair_of * self.n_fine + fine)
        return log_q + math.log(float(self.height * self.width))

    def _sample(self, u: Tensor) -> tuple[Tensor, Tensor]:
        x, logdet = self.inverse_transform(u)
        return x, -logdet
