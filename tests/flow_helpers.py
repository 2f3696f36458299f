"""Helpers shared by the flow tests: random inputs, perturbed weights, equal-flow checks."""

from __future__ import annotations

import torch
from torch import nn


def uniform(n: int, seed: int = 1) -> torch.Tensor:
    """``n`` points uniform on the unit square, from a seeded generator."""
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(seed))


def perturb(model: nn.Module, scale: float, seed: int = 0) -> nn.Module:
    """Add ``scale`` times Gaussian noise to every parameter (zero-initialised heads included),
    so the flow is far from its initial state; returns the model in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model.eval()


def assert_same_flow(a: nn.Module, b: nn.Module, u: torch.Tensor) -> None:
    """``a`` and ``b`` (eager, scripted or loaded) sample and evaluate the same."""
    with torch.no_grad():
        xa, la = a.sample(u)
        xb, lb = b.sample(u)
        torch.testing.assert_close(xb, xa)
        torch.testing.assert_close(lb, la)
        torch.testing.assert_close(b.log_prob(u), a.log_prob(u))


def sample_and_check(model: nn.Module, u: torch.Tensor, atol: float, rtol: float) -> tuple:
    """``model.sample(u)``, checked: shapes, points inside the square, and the returned
    log-density equal to ``log_prob`` at the returned points. Returns ``(x, log_pdf)``."""
    n = u.shape[0]
    with torch.no_grad():
        x, log_pdf = model.sample(u)
        assert x.shape == (n, 2) and log_pdf.shape == (n,)
        assert torch.all((x >= 0) & (x <= 1))
        torch.testing.assert_close(model.log_prob(x), log_pdf, atol=atol, rtol=rtol)
    return x, log_pdf
