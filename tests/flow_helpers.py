"""Helpers shared by the flow tests: random inputs, perturbed weights, equal-flow checks."""

from __future__ import annotations

import torch
from torch import nn

from flows.base import ConfigDict
from flows.families import family
from flows.glow import GlowConfig
from flows.maf import IAFConfig, MAFConfig
from flows.model import FlowConfig
from flows.nice import NICEConfig
from flows.pixel_flow import PixelFlowConfig
from flows.realnvp import RealNVPConfig

#: How closely a sample's returned log density must equal ``log_prob`` at the returned point,
#: in any batch: absolute, and relative to the log density. A spline flow's agree exactly; the
#: pixel flow's log density is a float32 sum of three log terms of magnitude up to ~10
#: (float32 steps of 1e-6), computed in another order by sample, and their network's
#: outputs can differ in the last bit between batches: a few such steps. 1e-3, what float32
#: arithmetic on the points gave on peaked spline flows (MIS weights summing to 1 +- 1e-3), is
#: far outside.
LOG_PDF_ATOL = 4e-6
LOG_PDF_RTOL = 1e-6
#: ``(batch size, points)``: ``log_prob`` in batches of these sizes must give what it gives on
#: the whole batch: one row (BLAS's matrix-vector path), a few rows (its small-matrix kernels)
#: and an odd size (vector loops with remainders).
CHECK_BATCHES = ((1, 48), (7, 700), (101, 2020))


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


def assert_sample_log_pdf_is_log_prob(model: nn.Module, u: torch.Tensor) -> tuple:
    """``model.sample(u)``'s log density is ``log_prob`` at the returned point, to
    :data:`LOG_PDF_ATOL` and :data:`LOG_PDF_RTOL`, and ``log_prob`` gives the same in batches
    of other sizes (:data:`CHECK_BATCHES`), as the renderer evaluates the density of a sampled
    direction in a batch of its own. Returns ``(x, log_pdf)``."""
    n = u.shape[0]
    tol = {"atol": LOG_PDF_ATOL, "rtol": LOG_PDF_RTOL}
    with torch.no_grad():
        x, log_pdf = model.sample(u)
        assert x.shape == (n, 2) and log_pdf.shape == (n,) and x.dtype == u.dtype
        assert torch.all((x >= 0) & (x <= 1))
        torch.testing.assert_close(model.log_prob(x), log_pdf, **tol)
        for size, count in CHECK_BATCHES:
            count = min(count, n)
            parts = [model.log_prob(x[s : s + size]) for s in range(0, count, size)]
            torch.testing.assert_close(
                torch.cat(parts), log_pdf[:count], **tol,
                msg=lambda m, size=size: f"log_prob in batches of {size}: {m}",
            )
    return x, log_pdf


#: Flows far from uniform, by name: ``(config, perturbation scale)``. One per family of
#: :mod:`flows.families` under the family's name (tests/test_flow_families.py runs its suite
#: on these), and variants: spline flows of other architectures (one a mixture with uniform
#: and pixel components, two of them side by side) and a RealNVP mixture. "spline_peaked" is
#: the default spline architecture perturbed until its density spans e^-8 .. e^11: float32
#: arithmetic on the points put its sample's log density and log_prob up to 0.1 apart. The
#: real-line families' scales keep their density's standard deviation on the square at 0.35
#: to 0.75: perturbed further, they pile mass against the square's edges (a power law in the
#: distance), beyond what a 640 x 640 grid integrates or float64 resolves.
_TINY = {"n_layers": 4, "hidden": 16, "depth": 1, "encoding_size": 8, "n_pixel_components": 0}
FAR_FLOWS: dict[str, tuple[ConfigDict, float]] = {
    "nice": (NICEConfig(**_TINY), 0.2),
    "realnvp": (RealNVPConfig(**_TINY), 0.15),
    "realnvp_mixture": (
        RealNVPConfig(**{**_TINY, "uniform_weight": 0.05, "n_pixel_components": 4}), 0.15
    ),
    "glow": (GlowConfig(**_TINY), 0.04),
    "maf": (MAFConfig(**_TINY), 0.15),
    "iaf": (IAFConfig(**_TINY), 0.08),
    "spline": (
        FlowConfig(n_layers=4, n_bins=8, hidden=16, encoding_size=8, n_pixel_components=0), 0.3
    ),
    "spline_raw_aperiodic": (
        FlowConfig(
            n_layers=3, n_bins=5, hidden=8, encoding="raw", periodic_u=False, n_pixel_components=0
        ),
        0.5,
    ),
    "spline_mixture": (
        FlowConfig(
            n_layers=4, n_bins=8, hidden=16, encoding_size=8, uniform_weight=0.05,
            n_pixel_components=4,
        ),
        0.3,
    ),
    "spline_peaked": (FlowConfig(n_pixel_components=0), 0.3),
    "pixel": (PixelFlowConfig(hidden=12).for_shape(16, 32), 1.5),
}


def far_flow(name: str) -> nn.Module:
    """The flow :data:`FAR_FLOWS` names, with seeded weights, in eval mode. A mixture's
    pixel components sit on a 16 x 16 map, two of them side by side (pixels 40 and 41)."""
    config, scale = FAR_FLOWS[name]
    torch.manual_seed(0)
    model = family(config.kind).model_class()(config)
    if getattr(config, "n_pixel_components", 0):
        model.set_pixel_components(
            torch.tensor([40, 41, 7, 255]), 16, 16, torch.tensor([0.2, 0.15, 0.1, 0.05])
        )
    return perturb(model, scale)
