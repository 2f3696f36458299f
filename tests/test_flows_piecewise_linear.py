"""Tests for flows.piecewise_linear: the piecewise-linear bijection of NIS."""

from __future__ import annotations

import math

import pytest
import torch

from flows.piecewise_linear import (
    LOGIT_FLOOR,
    bin_log_probs,
    keep_in_cell,
    piecewise_linear,
    pl_forward,
    pl_inverse,
)

K = 7


def _log_probs(n: int, k: int = K, scale: float = 2.0, dtype: torch.dtype = torch.float64,
               seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return bin_log_probs(scale * torch.randn(n, k, generator=g, dtype=dtype))


def _points(n: int, dtype: torch.dtype = torch.float64, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_inverse_of_forward_and_logdets_cancel(dtype: torch.dtype) -> None:
    n = 5000
    # In float32 the inverse is only as accurate as eps / (K p_k): moderate logits there.
    lp = _log_probs(n, scale=2.0 if dtype == torch.float64 else 0.5, dtype=dtype)
    x = _points(n, dtype)
    y, ld_fwd = piecewise_linear(x, lp, inverse=False)
    x2, ld_inv = piecewise_linear(y, lp, inverse=True)
    tol = 1e-10 if dtype == torch.float64 else 2e-4
    torch.testing.assert_close(x2, x, atol=tol, rtol=0)
    torch.testing.assert_close(ld_fwd + ld_inv, torch.zeros_like(x), atol=tol, rtol=0)
    y2, _ = piecewise_linear(x2, lp, inverse=False)
    torch.testing.assert_close(y2, y, atol=tol, rtol=0)


@pytest.mark.parametrize("inverse", [False, True])
def test_logdet_matches_autograd(inverse: bool) -> None:
    n = 2000
    lp = _log_probs(n)
    z = _points(n, seed=3).requires_grad_(True)
    out, logdet = piecewise_linear(z, lp, inverse)
    (grad,) = torch.autograd.grad(out.sum(), z)  # elementwise map: the diagonal Jacobian
    torch.testing.assert_close(torch.log(grad), logdet.detach(), atol=1e-9, rtol=1e-9)


def test_density_is_the_bin_probability() -> None:
    lp = _log_probs(1)[0]
    centres = (torch.arange(K, dtype=torch.float64) + 0.5) / K
    _, ld = piecewise_linear(centres, lp, inverse=False)
    torch.testing.assert_close(torch.exp(ld), K * torch.exp(lp))
    # The CDF at the bin edges is the cumulative probability.
    edges = torch.arange(K + 1, dtype=torch.float64) / K
    y, _ = piecewise_linear(edges, lp, inverse=False)
    expected = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(torch.exp(lp), 0)])
    torch.testing.assert_close(y, expected.clamp(max=1.0), atol=1e-12, rtol=0)


def test_shared_bins_equal_per_point_bins() -> None:
    n = 1000
    shared = _log_probs(1)[0]
    x = _points(n)
    for inverse in (False, True):
        a = piecewise_linear(x, shared, inverse)
        b = piecewise_linear(x, shared.expand(n, K), inverse)
        torch.testing.assert_close(a[0], b[0])
        torch.testing.assert_close(a[1], b[1])


def test_uniform_bins_are_identity() -> None:
    x = torch.linspace(0.0, 1.0, 501, dtype=torch.float64)
    lp = bin_log_probs(torch.zeros(K, dtype=torch.float64))
    for inverse in (False, True):
        y, logdet = piecewise_linear(x, lp, inverse)
        torch.testing.assert_close(y, x, atol=1e-12, rtol=0)
        torch.testing.assert_close(logdet, torch.zeros_like(x), atol=1e-12, rtol=0)


@pytest.mark.parametrize("inverse", [False, True])
def test_edges_and_beyond_stay_inside(inverse: bool) -> None:
    x = torch.tensor([-5.0, -1e-7, 0.0, 1.0, 1.0 + 1e-7, 5.0, 0.5])
    lp = _log_probs(x.shape[0], scale=4.0, dtype=torch.float32)
    y, logdet = piecewise_linear(x, lp, inverse)
    assert torch.all(torch.isfinite(y)) and torch.all(torch.isfinite(logdet))
    assert torch.all((y >= 0) & (y <= 1))
    torch.testing.assert_close(y[:3], torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(y[3:6], torch.ones(3), atol=1e-6, rtol=0)


def test_monotonic() -> None:
    lp = _log_probs(1, scale=3.0)[0]
    x = torch.linspace(0.0, 1.0, 2000, dtype=torch.float64)
    y, _ = piecewise_linear(x, lp, inverse=False)
    assert torch.all(y[1:] > y[:-1])


def test_inverse_returns_bins_and_fractions() -> None:
    n = 3000
    lp = _log_probs(n)
    y = _points(n, seed=5)
    bins, frac, ld = pl_inverse(y, lp)
    assert torch.all((bins >= 0) & (bins < K)) and torch.all((frac >= 0) & (frac <= 1))
    y2, ld2 = pl_forward(bins, frac, lp)
    torch.testing.assert_close(y2, y, atol=1e-12, rtol=0)
    torch.testing.assert_close(ld + ld2, torch.zeros(n, dtype=torch.float64), atol=1e-12, rtol=0)


def test_floored_log_probs() -> None:
    logits = torch.tensor([[0.0, -1000.0, 5.0, -float(LOGIT_FLOOR) + 4.0]])
    lp = bin_log_probs(logits)
    torch.testing.assert_close(torch.exp(lp).sum(), torch.tensor(1.0))
    p = torch.exp(lp.to(torch.float32))
    # Every bin stays possible, and far above float32's subnormal range.
    assert float(p.min()) >= math.exp(-LOGIT_FLOOR) / 2 > torch.finfo(torch.float32).tiny
    # Logits within the floor are left alone: the ratio of bins 0 and 2 is e^-5.
    assert float(lp[0, 0] - lp[0, 2]) == pytest.approx(-5.0)


def test_keep_in_cell() -> None:
    # (k + t) / n with t just below 1 rounds up to the next cell in float32.
    n = 1000
    k = torch.tensor([597, 3, 999])
    t = torch.tensor([1.0 - 2.0**-24, 0.5, 1.0 - 2.0**-24])
    x = (k.to(torch.float32) + t) / n
    assert bool(((x * n).floor().long() != k).any())
    fixed = keep_in_cell(x, k, n)
    assert torch.equal((fixed * n).floor().long(), k)
    assert float((fixed - x).abs().max()) < 1e-6
    assert fixed[1] == x[1]  # points already inside are untouched


def test_torchscript_matches_eager() -> None:
    scripted = torch.jit.script(piecewise_linear)
    lp = _log_probs(400, dtype=torch.float32)
    x = _points(400, torch.float32, seed=6)
    for inverse in (False, True):
        a = piecewise_linear(x, lp, inverse)
        b = scripted(x, lp, inverse)
        torch.testing.assert_close(a[0], b[0])
        torch.testing.assert_close(a[1], b[1])
