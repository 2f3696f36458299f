r"""Chi-square goodness-of-fit test for direction samplers on the unit sphere.

After Mitsuba 3's ``chi2.py`` (``ChiSquareTest`` with a ``SphericalDomain``): draw many
directions from a sampler, histogram them over a grid of cells on the sphere, integrate the
sampler's claimed solid-angle density over the same cells, and run Pearson's test of the
histogram against the integrated density.

Sphere convention (the one of :mod:`tracer.sphere_map`, re-implemented here in plain numpy
so that the harness is an independent check of it): +y is up, the polar angle
:math:`\theta \in [0, \pi]` is measured from +y and the azimuth :math:`\phi \in [0, 2\pi)`
from -z towards +x,

.. math::
    d(\theta, \phi) = (\sin\phi \sin\theta,\; \cos\theta,\; -\cos\phi \sin\theta),
    \qquad \theta = \arccos d_y, \quad \phi = \operatorname{atan2}(d_x, -d_z) \bmod 2\pi .

Cells are products :math:`[\theta_i, \theta_{i+1}) \times [\phi_j, \phi_{j+1})` with
:math:`\phi_j = 2\pi j / n_\phi`. By default the theta edges are equal-area,
:math:`\theta_i = \arccos(1 - 2 i / n_\theta)`, so every cell has solid angle
:math:`4\pi / (n_\theta n_\phi)`; ``theta_edges`` lets a caller align the cells with the pixel
rows of an equirectangular map (:math:`\theta_i = \pi i / H`), where a tabulated density is
discontinuous.

Expected counts. With :math:`N` = ``n_samples`` and :math:`p` the claimed density,

.. math::
    E_{ij} = N \int_{\theta_i}^{\theta_{i+1}} \int_{\phi_j}^{\phi_{j+1}}
             p(d(\theta, \phi)) \sin\theta \, d\phi \, d\theta ,

computed by splitting each cell into ``sub`` x ``sub`` sub-cells (uniform in theta and phi)
and applying a tensor Gauss-Legendre rule of order ``quad_order`` on each. The total
:math:`I = \sum E_{ij} / N` is the integral of :math:`p` over the sphere.

Invalid samples. A sampler may flag samples invalid (a failed BSDF sample); those are not
histogrammed. The expected counts are *not* renormalised: a sampler that returns a valid
sample with probability :math:`I` has density :math:`p` with :math:`\int p = I`. When at
least one sample was invalid (:math:`N_\text{invalid} > 0`), the invalid samples get a bin
of their own with :math:`O = N_\text{invalid}`, :math:`E = N (1 - I)`; together the bins are
a multinomial with :math:`N` trials, so the test stays exact, and a density that integrates
to less (or more) than the valid fraction is caught. When every sample was valid there is
no invalid bin: a deficit :math:`1 - I` that is only quadrature error would otherwise
become a bin with :math:`O = 0` and a spurious expected count (and a density that really
integrates to less than 1 shows as a deficit of expected counts in the cells).

Statistic. Pooling follows Mitsuba 3 (``mitsuba::chi2`` in ``include/mitsuba/core/math.h``,
called by ``ChiSquareTest.run``). Bins with :math:`E = 0` take no part (see below). The
others are sorted by increasing :math:`E` (stably, so equal expectations keep the order of
the bins); each bin with :math:`E \ge 5` (``MIN_EXPECTED``) stands alone; the bins with
:math:`E < 5` are added one after the other to a running pool, and each time the pool's
:math:`E` reaches 5 the pool becomes one bin of the statistic and a new, empty pool starts.
So many dim bins form many pools of :math:`E \approx 5`..10, each worth a degree of
freedom, and a sampler that puts the right total but the wrong shape into the dim regions
is still caught. Two details differ from Mitsuba, which closes a pool at :math:`E > 5` and
drops a final remainder pool: here a pool closes at :math:`E \ge 5`, and a remainder pool
with :math:`E < 5` is merged into the last pool formed (or, if none formed, with the
smallest bin that stands alone), so that every sample is counted and the bins stay a
partition of the multinomial. Then

.. math::
    X^2 = \sum_k \frac{(O_k - E_k)^2}{E_k}, \qquad \nu = (\text{number of bins}) - 1,
    \qquad p\text{-value} = P(\chi^2_\nu \ge X^2) ,

the sum running over the bins that stand alone and the pools. Pools are formed from the
expected counts only, never from the observations, so the null distribution is unaffected.

Bins with :math:`E = 0` take no part; if one of them holds samples (a cell outside the
density's support, or invalid samples while :math:`I \ge 1`) the data are impossible under
the null hypothesis, so :math:`X^2 = \infty` and the p-value is 0 (the message also gives
the statistic over the other bins).

The test passes when the p-value is at least the Sidak-corrected threshold
:math:`1 - (1 - \alpha)^{1 / n_\text{tests}}` and no sanity check failed: samples outside
the support (the cells are named), a negative, non-finite or over-normalised
(:math:`I > 1 + 10^{-3}`) density, non-unit or non-finite valid directions, or fewer than
one degree of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Bins with a smaller expected count are pooled (Mitsuba's ``min_exp_frequency``).
MIN_EXPECTED = 5.0
#: The density may integrate to at most 1 + this over the sphere (quadrature error allowance).
INTEGRAL_TOL = 1e-3
#: Valid directions must have |norm - 1| below this.
UNIT_TOL = 1e-4
#: Maximum number of pdf evaluation points per batch.
MAX_BATCH = 4_000_000
#: Number of worst cells listed in the message.
N_WORST = 5


@dataclass
class Chi2Result:
    """Outcome of :func:`chi2_test`.

    ``observed`` and ``expected`` are per-cell counts over the (n_theta, n_phi) grid (row i
    is theta in [theta_edges[i], theta_edges[i+1]), column j is phi in
    [2 pi j / n_phi, 2 pi (j+1) / n_phi)); the invalid bin is not part of them.
    """

    statistic: float
    dof: int
    p_value: float
    passed: bool
    message: str
    observed: np.ndarray
    expected: np.ndarray


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------


def equal_area_theta_edges(n_theta: int) -> np.ndarray:
    r"""Theta edges of equal-area bands: :math:`\theta_i = \arccos(1 - 2i/n)`, i = 0..n."""
    edges = np.arccos(np.clip(1.0 - 2.0 * np.arange(n_theta + 1) / n_theta, -1.0, 1.0))
    edges[0], edges[-1] = 0.0, math.pi
    return edges


def dirs_to_theta_phi(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""(N, 3) unit directions -> theta = arccos(y) in [0, pi], phi = atan2(x, -z) in [0, 2pi)."""
    theta = np.arccos(np.clip(d[:, 1], -1.0, 1.0))
    phi = np.arctan2(d[:, 0], -d[:, 2])
    phi = np.where(phi < 0.0, phi + 2.0 * math.pi, phi)
    phi = np.where(phi >= 2.0 * math.pi, 0.0, phi)
    return theta, phi


def theta_phi_to_dirs(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Broadcast theta, phi -> (..., 3) directions (sin phi sin th, cos th, -cos phi sin th)."""
    st = np.sin(theta)
    return np.stack(
        np.broadcast_arrays(np.sin(phi) * st, np.cos(theta), -np.cos(phi) * st), axis=-1
    )


def _cell_nodes(edges: np.ndarray, sub: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights of every cell of ``edges``: two (n_cells, sub*order)."""
    x, w = np.polynomial.legendre.leggauss(order)
    t = np.linspace(0.0, 1.0, sub + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    sub_lo = lo + (hi - lo) * t[None, :-1]  # (n, sub)
    half = (hi - lo) / (2.0 * sub)  # (n, 1): half-width of a sub-cell
    mid = sub_lo + half
    nodes = mid[:, :, None] + half[:, :, None] * x[None, None, :]
    weights = np.broadcast_to(half[:, :, None] * w[None, None, :], nodes.shape)
    n = edges.size - 1
    return nodes.reshape(n, sub * order), weights.reshape(n, sub * order)


def integrate_cells(
    pdf: Callable[[np.ndarray], np.ndarray],
    theta_edges: np.ndarray,
    n_phi: int,
    sub: int = 4,
    quad_order: int = 3,
) -> tuple[np.ndarray, bool]:
    r"""Integral of ``pdf`` over every cell, :math:`\iint p \sin\theta\,d\theta\,d\phi`.

    Tensor Gauss-Legendre rule of order ``quad_order`` on ``sub`` x ``sub`` sub-cells per
    cell; the pdf is evaluated on whole rows of cells at once, at most ~``MAX_BATCH`` points
    per call. Returns the (n_theta, n_phi) integrals and whether every pdf value was finite
    and non-negative.
    """
    n_theta = theta_edges.size - 1
    k = sub * quad_order
    th, wth = _cell_nodes(theta_edges, sub, quad_order)
    wth = wth * np.sin(th)  # d omega = sin(theta) dtheta dphi
    ph, wph = _cell_nodes(np.linspace(0.0, 2.0 * math.pi, n_phi + 1), sub, quad_order)
    ph, wph = ph.reshape(-1), wph.reshape(-1)
    sp, cp = np.sin(ph), np.cos(ph)

    out = np.empty((n_theta, n_phi))
    ok = True
    rows_per_batch = max(1, MAX_BATCH // (k * ph.size))
    for r0 in range(0, n_theta, rows_per_batch):
        r1 = min(n_theta, r0 + rows_per_batch)
        t = th[r0:r1].reshape(-1)
        st, ct = np.sin(t)[:, None], np.cos(t)[:, None]
        d = np.empty((t.size, ph.size, 3))
        d[..., 0] = sp[None, :] * st
        d[..., 1] = ct
        d[..., 2] = -cp[None, :] * st
        vals = np.asarray(pdf(d.reshape(-1, 3)), dtype=np.float64)
        m = d.shape[0] * d.shape[1]
        if vals.shape != (m,):
            raise ValueError(f"pdf returned shape {vals.shape} for {m} directions, expected ({m},)")
        good = np.isfinite(vals) & (vals >= 0.0)
        if not good.all():
            ok = False
            vals = np.where(good, vals, 0.0)
        v = vals.reshape(r1 - r0, k, n_phi, k)
        out[r0:r1] = np.einsum("akbl,ak,bl->ab", v, wth[r0:r1], wph.reshape(n_phi, k))
    return out, ok


def histogram(dirs: np.ndarray, theta_edges: np.ndarray, n_phi: int) -> np.ndarray:
    """Counts of unit ``dirs`` (N, 3) per (theta, phi) cell: (n_theta, n_phi) int64."""
    n_theta = theta_edges.size - 1
    theta, phi = dirs_to_theta_phi(dirs)
    i = np.clip(np.searchsorted(theta_edges, theta, side="right") - 1, 0, n_theta - 1)
    j = np.clip((phi * (n_phi / (2.0 * math.pi))).astype(np.int64), 0, n_phi - 1)
    counts = np.bincount(i * n_phi + j, minlength=n_theta * n_phi)
    return counts.reshape(n_theta, n_phi).astype(np.int64)


# --------------------------------------------------------------------------------------------
# Statistic
# --------------------------------------------------------------------------------------------


@dataclass
class _Pooled:
    statistic: float
    dof: int
    n_bins: int  # bins entering the statistic (each pool counted as one)
    n_pooled: int  # original bins merged into pools
    pool_observed: np.ndarray  # observed count of each pool
    pool_expected: np.ndarray  # expected count of each pool
    pool_of: np.ndarray  # per input bin: index of its pool, -1 if it stands alone or is dropped
    contrib: np.ndarray  # per input bin (O - E)^2 / E if it stands alone, else 0


def pooled_chi2(observed: np.ndarray, expected: np.ndarray) -> _Pooled:
    """Pearson statistic with Mitsuba's pooling of low-expectation bins (1-D inputs).

    Only bins with E > 0 take part (a bin with E = 0 and O > 0 is a support failure, which
    :func:`chi2_test` reports and scores as an infinite statistic). The bins are sorted by
    E (stably); a bin with E >= ``MIN_EXPECTED`` stands alone; the bins with smaller E are
    accumulated in order into a pool, which becomes a bin of its own as soon as its E reaches
    ``MIN_EXPECTED``, and a new pool starts. A remainder pool still below ``MIN_EXPECTED``
    at the end is merged into the last pool formed, or, if no pool formed, with the smallest
    bin that stands alone (if there is none, it stays a bin by itself).
    dof = (bins standing alone + pools) - 1.
    """
    o = np.asarray(observed, dtype=np.float64).ravel()
    e = np.asarray(expected, dtype=np.float64).ravel()
    idx = np.flatnonzero(e > 0.0)
    idx = idx[np.argsort(e[idx], kind="stable")]
    n_small = int(np.searchsorted(e[idx], MIN_EXPECTED, side="left"))  # E < MIN_EXPECTED

    pool_of = np.full(e.shape, -1, dtype=np.int64)
    pool_e: list[float] = []
    pool_o: list[float] = []
    acc_e = acc_o = 0.0
    members: list[int] = []
    for b in idx[:n_small].tolist():
        acc_e += e[b]
        acc_o += o[b]
        members.append(b)
        if acc_e >= MIN_EXPECTED:
            pool_of[members] = len(pool_e)
            pool_e.append(acc_e)
            pool_o.append(acc_o)
            acc_e = acc_o = 0.0
            members = []
    alone = idx[n_small:]
    if members:  # the remainder pool, E < MIN_EXPECTED
        if pool_e:
            k = len(pool_e) - 1
        else:
            k = 0
            pool_e.append(0.0)
            pool_o.append(0.0)
            if alone.size:
                first, alone = int(alone[0]), alone[1:]
                members.append(first)
                pool_e[0] += e[first]
                pool_o[0] += o[first]
        pool_of[members] = k
        pool_e[k] += acc_e
        pool_o[k] += acc_o

    contrib = np.zeros_like(e)
    c = (o[alone] - e[alone]) ** 2 / e[alone]
    contrib[alone] = c
    pe, po = np.asarray(pool_e), np.asarray(pool_o)
    stat = float(c.sum() + ((po - pe) ** 2 / pe).sum()) if pe.size else float(c.sum())
    n_bins = alone.size + pe.size
    n_pooled = int((pool_of >= 0).sum())
    return _Pooled(stat, n_bins - 1, n_bins, n_pooled, po, pe, pool_of, contrib)


def sidak_threshold(alpha: float, n_tests: int) -> float:
    r"""Per-test significance level so that ``n_tests`` tests jointly have level alpha."""
    return 1.0 - (1.0 - alpha) ** (1.0 / n_tests)


# --------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------


def _cell_name(i: int, j: int, theta_edges: np.ndarray, n_phi: int) -> str:
    dphi = 360.0 / n_phi
    return (
        f"cell (theta {i}, phi {j}): theta in [{math.degrees(theta_edges[i]):.2f}, "
        f"{math.degrees(theta_edges[i + 1]):.2f}] deg, phi in [{j * dphi:.2f}, "
        f"{(j + 1) * dphi:.2f}] deg"
    )


def chi2_test(
    sample: Callable[[int], tuple[np.ndarray, np.ndarray]],
    pdf: Callable[[np.ndarray], np.ndarray],
    n_samples: int = 1_000_000,
    n_theta: int = 32,
    n_phi: int = 64,
    theta_edges: np.ndarray | None = None,
    sub: int = 4,
    quad_order: int = 3,
    alpha: float = 0.01,
    n_tests: int = 1,
) -> Chi2Result:
    r"""Pearson chi-square test that ``sample`` draws directions with solid-angle density ``pdf``.

    Parameters
    ----------
    sample
        ``n -> (dirs, valid)``: ``dirs`` (n, 3) unit vectors, ``valid`` (n,) bool. Invalid
        samples (failed BSDF samples) are not histogrammed; their directions are ignored.
    pdf
        ``dirs (m, 3) -> (m,)`` solid-angle density the sampler claims. It may integrate to
        less than 1: the deficit is the probability of an invalid sample.
    n_samples
        N, the number of samples drawn (valid or not).
    n_theta, n_phi
        Grid resolution; theta edges equal-area (cos theta uniform), phi edges uniform.
    theta_edges
        Overrides ``n_theta``: increasing theta edges from 0 to pi (e.g. ``pi * j / H`` to
        align cells with the pixel rows of an H-row equirectangular map).
    sub, quad_order
        Each cell is integrated with a ``quad_order``-point Gauss-Legendre rule in theta and
        in phi on each of ``sub`` x ``sub`` sub-cells.
    alpha, n_tests
        Significance level, Sidak-corrected to ``1 - (1 - alpha) ** (1 / n_tests)``.

    Returns
    -------
    Chi2Result
        ``passed`` is True iff the p-value is at least the threshold and no sanity check
        failed; ``message`` lists counts, pdf integral, pooling, worst cells and the verdict.
    """
    if n_samples < 1:
        raise ValueError("n_samples must be positive")
    if sub < 1 or quad_order < 1:
        raise ValueError("sub and quad_order must be >= 1")
    if not (0.0 < alpha < 1.0) or n_tests < 1:
        raise ValueError("need 0 < alpha < 1 and n_tests >= 1")
    if theta_edges is None:
        if n_theta < 1:
            raise ValueError("n_theta must be >= 1")
        edges = equal_area_theta_edges(n_theta)
    else:
        edges = np.asarray(theta_edges, dtype=np.float64).ravel()
        if (
            edges.size < 2
            or not np.all(np.diff(edges) > 0.0)
            or abs(edges[0]) > 1e-12
            or abs(edges[-1] - math.pi) > 1e-12
        ):
            raise ValueError("theta_edges must increase strictly from 0 to pi")
        edges = edges.copy()
        edges[0], edges[-1] = 0.0, math.pi
    if n_phi < 1:
        raise ValueError("n_phi must be >= 1")
    n_theta = edges.size - 1
    threshold = sidak_threshold(alpha, n_tests)
    failures: list[str] = []
    lines: list[str] = []

    # --- samples ------------------------------------------------------------------------
    dirs, valid = sample(n_samples)
    dirs = np.asarray(dirs, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    if dirs.shape != (n_samples, 3) or valid.shape != (n_samples,):
        raise ValueError(
            f"sample({n_samples}) returned dirs {dirs.shape} and valid {valid.shape}; "
            f"expected ({n_samples}, 3) and ({n_samples},)"
        )
    d = dirs[valid]
    n_valid = d.shape[0]
    n_invalid = n_samples - n_valid
    finite = np.isfinite(d).all(axis=1)
    if not finite.all():
        failures.append(f"{int((~finite).sum())} valid samples have non-finite directions")
        d = d[finite]
    norm_err = np.abs(np.linalg.norm(d, axis=1) - 1.0)
    if d.shape[0] and norm_err.max() > UNIT_TOL:
        failures.append(
            f"{int((norm_err > UNIT_TOL).sum())} valid samples are not unit vectors "
            f"(max |norm - 1| = {norm_err.max():.3g})"
        )
    observed = histogram(d, edges, n_phi)
    n_hist = int(observed.sum())
    lines.append(
        f"samples: {n_samples} drawn, {n_valid} valid ({n_valid / n_samples:.6f}), "
        f"{n_invalid} invalid, {n_hist} histogrammed into {n_theta} x {n_phi} cells"
    )

    # --- expected counts ----------------------------------------------------------------
    integrals, pdf_ok = integrate_cells(pdf, edges, n_phi, sub, quad_order)
    if not pdf_ok:
        failures.append("pdf returned negative or non-finite values at quadrature nodes")
    expected = n_samples * integrals
    integral = float(integrals.sum())
    lines.append(
        f"pdf integral over the sphere = {integral:.6f} (valid fraction "
        f"{n_valid / n_samples:.6f}); quadrature: {sub}x{sub} sub-cells, "
        f"order {quad_order} Gauss-Legendre"
    )
    if integral > 1.0 + INTEGRAL_TOL:
        failures.append(
            f"pdf integrates to {integral:.6f} > 1 (allowance {INTEGRAL_TOL:g} for "
            "quadrature error; refine sub/quad_order or align theta_edges if it is that)"
        )

    # Samples where the density is 0 (outside its support).
    bad = (expected <= 0.0) & (observed > 0)
    if bad.any():
        cells = np.argwhere(bad)
        order = np.argsort(-observed[bad], kind="stable")
        names = [
            f"{_cell_name(int(i), int(j), edges, n_phi)}: {int(observed[i, j])} samples"
            for i, j in cells[order[:N_WORST]]
        ]
        more = f" (and {len(cells) - N_WORST} more cells)" if len(cells) > N_WORST else ""
        failures.append(
            f"{int(observed[bad].sum())} samples fell outside the pdf's support, in "
            f"{len(cells)} cells where the pdf integrates to 0{more}:\n    " + "\n    ".join(names)
        )

    # --- invalid bin ----------------------------------------------------------------------
    e_inv = n_samples * (1.0 - integral)
    obs_all = observed.ravel().astype(np.float64)
    exp_all = expected.ravel()
    if n_invalid > 0:  # only then: a deficit 1 - I may be nothing but quadrature error
        if e_inv <= 0.0:
            failures.append(
                f"{n_invalid} samples were invalid but the pdf integrates to {integral:.6f} "
                f">= 1, leaving them an expected count of {e_inv:.3g}"
            )
            e_inv = 0.0
        obs_all = np.append(obs_all, float(n_invalid))
        exp_all = np.append(exp_all, e_inv)
        lines.append(f"invalid bin: observed {n_invalid}, expected {e_inv:.1f}")
        has_inv = True
    else:
        has_inv = False

    # --- statistic ------------------------------------------------------------------------
    pooled = pooled_chi2(obs_all, exp_all)
    if pooled.n_pooled:
        pe, po = pooled.pool_expected, pooled.pool_observed
        worst_pool = int(np.argmax((po - pe) ** 2 / pe))
        lines.append(
            f"pooled {pooled.n_pooled} bins with expected < {MIN_EXPECTED:g} into "
            f"{pe.size} bins (expected {pe.min():.2f} to {pe.max():.2f}; the worst pool: "
            f"observed {po[worst_pool]:.0f}, expected {pe[worst_pool]:.2f})"
        )
    lines.append(f"{pooled.n_bins} bins in the statistic")
    worst = np.argsort(-pooled.contrib, kind="stable")[:N_WORST]
    worst = worst[pooled.contrib[worst] > 0.0]
    if worst.size:
        lines.append("worst bins, (O - E)^2 / E:")
        for b in worst:
            if has_inv and b == obs_all.size - 1:
                name = "invalid bin"
            else:
                name = _cell_name(int(b) // n_phi, int(b) % n_phi, edges, n_phi)
            lines.append(
                f"    {name}: observed {obs_all[b]:.0f}, expected {exp_all[b]:.1f}, "
                f"contribution {pooled.contrib[b]:.2f}"
            )

    dof = pooled.dof
    statistic = pooled.statistic
    if dof < 1:
        failures.append(f"too few degrees of freedom ({dof}) for a test")
        p_value = math.nan
    else:
        p_value = float(stats.chi2.sf(statistic, dof))
    if np.any((exp_all <= 0.0) & (obs_all > 0.0)):
        # Impossible under the null hypothesis: the exact p-value is 0. Keep the fit of the
        # rest in the message, it tells a support bug from a wrong density.
        lines.append(
            f"over the bins with expected > 0 only: chi^2 = {statistic:.2f}, dof = {dof}, "
            f"p-value = {p_value:.4g}"
        )
        statistic, p_value = math.inf, 0.0
    lines.append(
        f"chi^2 = {statistic:.2f}, dof = {dof}, p-value = {p_value:.4g}, "
        f"threshold = {threshold:.4g} (alpha = {alpha:g}, {n_tests} tests, Sidak)"
    )

    passed = bool(not failures and math.isfinite(p_value) and p_value >= threshold)
    if failures:
        lines.append("FAILED:\n  " + "\n  ".join(failures))
    elif passed:
        lines.append("accepted the null hypothesis: the samples follow the pdf")
    else:
        lines.append("REJECTED the null hypothesis: the samples do not follow the pdf")
    return Chi2Result(
        statistic=float(statistic),
        dof=int(dof),
        p_value=p_value,
        passed=passed,
        message="\n".join(lines),
        observed=observed,
        expected=expected,
    )
