"""Tests for flows.spline: the rational-quadratic spline bijection, and the spline flows'
float64 evaluation."""

from __future__ import annotations

import pytest
import torch

from flows.spline import periodic_derivatives, rational_quadratic_spline
from tests.flow_helpers import FAR_FLOWS, far_flow, uniform

K = 8


def _params(
    n: int, k: int = K, scale: float = 1.5, dtype: torch.dtype = torch.float64, seed: int = 0
):
    g = torch.Generator().manual_seed(seed)
    w = scale * torch.randn(n, k, generator=g, dtype=dtype)
    h = scale * torch.randn(n, k, generator=g, dtype=dtype)
    d = scale * torch.randn(n, k + 1, generator=g, dtype=dtype)
    return w, h, d


@pytest.mark.parametrize(
    "bounds", [(0.0, 1.0, 0.0, 1.0), (-2.0, 3.0, 1.0, 1.5)], ids=["unit", "general"]
)
def test_inverse_of_forward_and_logdets_cancel(bounds: tuple[float, float, float, float]) -> None:
    left, right, bottom, top = bounds
    n = 2000
    w, h, d = _params(n)
    x = left + (right - left) * torch.rand(
        n, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    y, ld_fwd = rational_quadratic_spline(x, w, h, d, False, left, right, bottom, top)
    assert torch.all((y >= bottom) & (y <= top))
    x2, ld_inv = rational_quadratic_spline(y, w, h, d, True, left, right, bottom, top)
    torch.testing.assert_close(x2, x, atol=1e-9, rtol=0)
    torch.testing.assert_close(ld_fwd + ld_inv, torch.zeros_like(x), atol=1e-8, rtol=0)
    # And the other way round: forward(inverse(y)) == y.
    y2, _ = rational_quadratic_spline(x2, w, h, d, False, left, right, bottom, top)
    torch.testing.assert_close(y2, y, atol=1e-9, rtol=0)


def test_inverse_of_forward_float32() -> None:
    n = 4000
    # Moderate parameters: in float32 the inverse is only as accurate as eps / (dy/dx), so
    # near-flat stretches (dy/dx ~ 1e-4) would be ill-conditioned, not wrong.
    w, h, d = _params(n, scale=0.5, dtype=torch.float32)
    x = torch.rand(n, generator=torch.Generator().manual_seed(2))
    y, ld_fwd = rational_quadratic_spline(x, w, h, d, False)
    x2, ld_inv = rational_quadratic_spline(y, w, h, d, True)
    torch.testing.assert_close(x2, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(ld_fwd + ld_inv, torch.zeros_like(x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("inverse", [False, True])
def test_logdet_matches_autograd(inverse: bool) -> None:
    left, right, bottom, top = -1.0, 2.0, 0.5, 3.0
    lo, hi = (bottom, top) if inverse else (left, right)
    n = 1000
    w, h, d = _params(n)
    t = torch.rand(n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    z = (lo + (hi - lo) * t).requires_grad_(True)
    out, logdet = rational_quadratic_spline(z, w, h, d, inverse, left, right, bottom, top)
    (grad,) = torch.autograd.grad(out.sum(), z)  # elementwise map: the diagonal Jacobian
    torch.testing.assert_close(torch.log(grad), logdet.detach(), atol=1e-8, rtol=1e-8)


def test_zero_parameters_are_identity() -> None:
    n = 500
    x = torch.linspace(0.0, 1.0, n)
    z = torch.zeros(n, K)
    zd = torch.zeros(n, K + 1)
    for inverse in (False, True):
        y, logdet = rational_quadratic_spline(x, z, z, zd, inverse)
        torch.testing.assert_close(y, x, atol=1e-6, rtol=0)
        torch.testing.assert_close(logdet, torch.zeros(n), atol=1e-6, rtol=0)


@pytest.mark.parametrize("inverse", [False, True])
def test_edges_and_beyond_stay_inside(inverse: bool) -> None:
    left, right, bottom, top = 0.0, 1.0, 0.0, 1.0
    lo, hi = (bottom, top) if inverse else (left, right)
    x = torch.tensor([lo - 5.0, lo - 1e-7, lo, hi, hi + 1e-7, hi + 5.0, 0.5 * (lo + hi)])
    n = x.shape[0]
    w, h, d = _params(n, scale=3.0, dtype=torch.float32)
    y, logdet = rational_quadratic_spline(x, w, h, d, inverse, left, right, bottom, top)
    out_lo, out_hi = (left, right) if inverse else (bottom, top)
    assert torch.all(torch.isfinite(y)) and torch.all(torch.isfinite(logdet))
    assert torch.all((y >= out_lo) & (y <= out_hi))
    # The ends map to the ends, and out-of-range inputs are clamped onto them.
    torch.testing.assert_close(y[:3], torch.full((3,), out_lo), atol=0, rtol=0)
    torch.testing.assert_close(y[3:6], torch.full((3,), out_hi), atol=0, rtol=0)


def test_periodic_derivatives_are_tied() -> None:
    n = 64
    w, h, d = _params(n)
    dp = periodic_derivatives(d[:, :K])
    assert dp.shape == (n, K + 1)
    torch.testing.assert_close(dp[:, 0], dp[:, -1])
    # The spline's slope (density) is the same at both ends of the interval.
    ends = torch.stack([torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)])
    _, ld = rational_quadratic_spline(
        ends, w.expand(2, n, K), h.expand(2, n, K), dp.expand(2, n, K + 1), False
    )
    torch.testing.assert_close(ld[0], ld[1], atol=1e-10, rtol=0)
    # Without tying they generally differ.
    _, ld_free = rational_quadratic_spline(
        ends, w.expand(2, n, K), h.expand(2, n, K), d.expand(2, n, K + 1), False
    )
    assert (ld_free[0] - ld_free[1]).abs().max() > 1e-2


def test_monotonic() -> None:
    n = 1000
    w, h, d = _params(1, scale=2.0)
    x = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    y, _ = rational_quadratic_spline(x, w.expand(n, K), h.expand(n, K), d.expand(n, K + 1), False)
    assert torch.all(y[1:] > y[:-1])


def test_torchscript_matches_eager() -> None:
    scripted = torch.jit.script(rational_quadratic_spline)
    n = 300
    w, h, d = _params(n, dtype=torch.float32)
    x = torch.rand(n, generator=torch.Generator().manual_seed(4))
    for inverse in (False, True):
        a = rational_quadratic_spline(x, w, h, d, inverse)
        b = scripted(x, w, h, d, inverse)
        torch.testing.assert_close(a[0], b[0])
        torch.testing.assert_close(a[1], b[1])


def test_bad_shapes_rejected() -> None:
    w, h, d = _params(4)
    with pytest.raises(ValueError, match="K \\+ 1"):
        rational_quadratic_spline(torch.rand(4, dtype=torch.float64), w, h, d[:, :K], False)
    with pytest.raises(ValueError, match="min_bin_width"):
        rational_quadratic_spline(
            torch.rand(4, dtype=torch.float64), w, h, d, False, min_bin_width=0.2
        )


def test_float64_points_with_float32_parameters() -> None:
    """The flows' evaluation: float32 parameters define the knots, float64 points are mapped
    exactly through them (so the inverse undoes the forward to float64 precision)."""
    n = 4000
    w, h, d = _params(n, scale=1.5, dtype=torch.float32)
    x = torch.rand(n, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y, ld_fwd = rational_quadratic_spline(x, w, h, d, False)
    assert y.dtype == ld_fwd.dtype == torch.float64
    x2, ld_inv = rational_quadratic_spline(y, w, h, d, True)
    torch.testing.assert_close(x2, x, atol=1e-10, rtol=0)
    torch.testing.assert_close(ld_fwd + ld_inv, torch.zeros_like(x), atol=1e-9, rtol=0)
    # The same spline as with the parameters in float64, up to float32 rounding of the knots.
    y64, ld64 = rational_quadratic_spline(x, w.double(), h.double(), d.double(), False)
    torch.testing.assert_close(y, y64, atol=1e-5, rtol=0)
    torch.testing.assert_close(ld_fwd, ld64, atol=1e-3, rtol=0)


# ---- the spline flows' precision (the check for every family: tests/test_flow_families.py) ----


@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize("name", sorted(n for n in FAR_FLOWS if n.startswith("spline")))
def test_float64_samples_are_not_rounded(name: str) -> None:
    """Given float64 numbers a spline flow returns the float64 point and the inverse pass's
    log density, which the forward pass reproduces to ~1e-12."""
    model = far_flow(name)
    u = uniform(20000, seed=4).double()
    with torch.no_grad():
        x, log_pdf = model.sample(u)
        assert x.dtype == log_pdf.dtype == torch.float64
        torch.testing.assert_close(model.log_prob(x), log_pdf, atol=1e-9, rtol=0)
        # the float32 sample is this point, rounded (u holds float32 values)
        x32, _ = model.sample(u.float())
        torch.testing.assert_close(x32, x.float(), atol=0, rtol=0)


def test_spline_flow_training_mode_stays_float32() -> None:
    """Fitting runs in the weights' dtype; the float64 evaluation is for eval mode."""
    model = far_flow("spline").train()
    x = uniform(256, seed=6)
    log_q = model.log_prob(x)
    assert log_q.dtype == torch.float32 and log_q.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(log_q.detach(), model.eval().log_prob(x), atol=1e-3, rtol=0)
