"""Tests for flows.pixel_flow: the autoregressive piecewise-linear flow at pixel resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from scipy.stats import chi2

from flows.export import content_hash, load_flow, save_flow
from flows.pixel_flow import PixelFlow, PixelFlowConfig, coarse_bins_for
from tests.chi2 import pooled_chi2
from tests.flow_helpers import assert_same_flow, perturb, sample_and_check, uniform

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated"),
    pytest.mark.usefixtures("torch_one_thread"),
]

#: map sizes: power-of-two, non-power-of-two, a prime width (one coarse bin), tiny
SHAPES = [(16, 32), (6, 30), (5, 13), (3, 2)]


def _model(h: int, w: int, seed: int = 0, scale: float = 1.5, **kw: int) -> PixelFlow:
    """A flow with random weights (the heads start at zero, i.e. uniform in u)."""
    torch.manual_seed(seed)
    return perturb(PixelFlow(PixelFlowConfig(hidden=12, **kw).for_shape(h, w)), scale, seed)


def _subpixel_grid(h: int, w: int, sub: int = 3) -> torch.Tensor:
    """Centres of a grid of ``sub x sub`` points inside every pixel."""
    v = (torch.arange(h * sub, dtype=torch.float32) + 0.5) / (h * sub)
    u = (torch.arange(w * sub, dtype=torch.float32) + 0.5) / (w * sub)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu.reshape(-1), vv.reshape(-1)], dim=1)


def test_coarse_bins() -> None:
    assert coarse_bins_for(1024) == 32
    assert coarse_bins_for(2048) == 32
    assert coarse_bins_for(30) == 5
    assert coarse_bins_for(13) == 1
    assert coarse_bins_for(2) == 1
    model = PixelFlow(PixelFlowConfig().for_shape(512, 1024))
    assert (model.n_coarse, model.n_fine) == (32, 32)


def test_config() -> None:
    c = PixelFlowConfig(hidden=8).for_shape(16, 32)
    assert (c.height, c.width, c.coarse_bins) == (16, 32, 4)
    assert PixelFlowConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert PixelFlowConfig.kind == "pixel"
    for bad in ({"hidden": 0}, {"depth": 0}, {"width": 30, "coarse_bins": 7}, {"height": -1}):
        with pytest.raises(ValueError):
            PixelFlowConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        PixelFlowConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="map size"):
        PixelFlow(PixelFlowConfig())


def test_initial_model_is_the_row_marginal_times_uniform_u() -> None:
    torch.manual_seed(0)
    model = PixelFlow(PixelFlowConfig(hidden=8).for_shape(4, 8)).eval()
    with torch.no_grad():
        model.row_logits.copy_(torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])))
        q = torch.exp(model.log_prob(_subpixel_grid(4, 8)).reshape(12, 24))
    rows = torch.tensor([0.1, 0.2, 0.3, 0.4]).repeat_interleave(3) * 4  # density = H * mass
    torch.testing.assert_close(q, rows[:, None].expand(12, 24), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_density_integrates_to_one_and_is_constant_per_pixel(shape: tuple[int, int]) -> None:
    h, w = shape
    model = _model(h, w)
    with torch.no_grad():
        q = torch.exp(model.log_prob(_subpixel_grid(h, w)))
        masses = torch.exp(model.pixel_log_masses(torch.arange(h)))
    # Constant on each pixel, so a grid inside the pixels integrates it exactly.
    assert float(q.mean()) == pytest.approx(1.0, abs=1e-5)
    per_pixel = q.reshape(h, 3, w, 3)
    torch.testing.assert_close(per_pixel, per_pixel[:, :1, :, :1].expand_as(per_pixel), atol=0, rtol=1e-5)
    # pixel_log_masses is the same density: mass = q / (H W).
    torch.testing.assert_close(masses, per_pixel[:, 0, :, 0] / (h * w), atol=1e-7, rtol=1e-4)
    assert float(q.std()) > 0.3  # really not uniform


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_sample_log_pdf_matches_log_prob_and_transform(shape: tuple[int, int]) -> None:
    h, w = shape
    model = _model(h, w, seed=2)
    u = uniform(20000, seed=2)
    x, log_pdf = sample_and_check(model, u, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        z, logdet = model.transform(x)
        torch.testing.assert_close(logdet, log_pdf, atol=1e-5, rtol=1e-5)
        # float32: the round trip is as accurate as eps / (dy/dx) in the least likely pixels
        torch.testing.assert_close(z, u, atol=1e-3, rtol=0)
        x2, ld_inv = model.inverse_transform(z)
        torch.testing.assert_close(x2, x, atol=1e-4, rtol=0)
        torch.testing.assert_close(ld_inv, -logdet, atol=1e-5, rtol=1e-5)


def test_samples_follow_the_pixel_masses() -> None:
    """A chi-square test of the sampled pixels against the model's own pixel masses.

    Every pixel takes part: the harness's pooling (tests/chi2.py, as Mitsuba) merges pixels
    expecting fewer than 5 samples into pools of at least 5, so the dim pixels are tested
    too; a sample in a pixel of mass 0 is impossible. p >= 1e-3 with a fixed seed.
    """
    h, w = 6, 30
    model = _model(h, w, seed=3, scale=0.7)
    n = 200_000
    with torch.no_grad():
        x, _ = model.sample(uniform(n, seed=3))
        expected = torch.exp(model.pixel_log_masses(torch.arange(h))).double().reshape(-1) * n
    assert float(expected.sum()) == pytest.approx(n, rel=1e-6)
    cells = (x[:, 1] * h).long().clamp(max=h - 1) * w + (x[:, 0] * w).long().clamp(max=w - 1)
    observed = torch.bincount(cells, minlength=h * w).double()
    assert not torch.any((expected == 0) & (observed > 0))
    pooled = pooled_chi2(observed.numpy(), expected.numpy())
    assert pooled.dof >= h * w // 2  # most pixels stand alone or in small pools
    assert chi2.sf(pooled.statistic, pooled.dof) >= 1e-3, (pooled.statistic, pooled.dof)


def test_every_parameter_gets_a_gradient() -> None:
    model = _model(6, 30, scale=0.3).train()
    x = uniform(2048, seed=5) ** 2
    (-model.log_prob(x).mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.all(torch.isfinite(p.grad)), name
        assert p.grad.abs().max() > 0, name
    # and through the exact objective's pixel masses
    model.zero_grad()
    (-model.pixel_log_masses(torch.arange(6)).mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name


def test_scripted_equals_eager() -> None:
    model = _model(16, 32, seed=6)
    scripted = torch.jit.script(model)
    u = uniform(3000, seed=6)
    assert_same_flow(model, scripted, u)
    with torch.no_grad():
        torch.testing.assert_close(scripted.transform(u)[0], model.transform(u)[0])


def test_chunked_equals_whole() -> None:
    model = _model(16, 32, seed=7)
    small = PixelFlow(model.config, chunk_size=1000).eval()
    small.load_state_dict(model.state_dict())
    u = uniform(4500, seed=7)
    with torch.no_grad():
        # Chunks change the shapes of the conditioner's matrix products, and BLAS may then
        # round a sample's u, v in the last float32 place (seen: 3e-8, one ulp, in 6 of 9000
        # coordinates with Torch 2.13 on one thread): equal to a few ulps, not bitwise.
        xs, ls = small.sample(u)
        xw, lw = model.sample(u)
        torch.testing.assert_close(xs, xw, atol=4 * 2.0**-24, rtol=0)
        torch.testing.assert_close(ls, lw, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(small.log_prob(u), model.log_prob(u), atol=0, rtol=0)


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = _model(16, 32, seed=8)
    path = tmp_path / "pixel.pt"
    h = content_hash(torch.arange(6.0).numpy())
    save_flow(model, path, {"map_hash": h, "kl": 0.01})
    loaded, meta = load_flow(path, expected_hash=h)
    assert meta["model"] == "pixel" and meta["n_parameters"] == model.count_parameters()
    assert PixelFlowConfig.from_dict(meta["config"]) == model.config
    assert_same_flow(model, loaded, uniform(2000, seed=8))


def test_empty_batch() -> None:
    model = _model(6, 30, seed=9)
    empty = torch.zeros(0, 2)
    scripted = torch.jit.script(model)
    for m in (model, scripted):
        with torch.no_grad():
            x, log_q = m.sample(empty)
            assert x.shape == (0, 2) and log_q.shape == (0,)
            assert m.log_prob(empty).shape == (0,)
            assert m.transform(empty)[0].shape == (0, 2)
