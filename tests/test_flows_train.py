"""Tests for flows.train: fitting a flow to a piecewise-constant density, and the KL."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from flows.model import FlowConfig, SplineFlow
from flows.pixel_flow import PixelFlow, PixelFlowConfig
from flows.train import (
    ExactObjective,
    PiecewiseConstantSampler,
    build_flow,
    fit_flow,
    kl_divergence,
    normalize_density,
)
from tests.flow_helpers import perturb

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated"),
    pytest.mark.usefixtures("torch_one_thread"),
]

CONFIG = FlowConfig(
    n_layers=4, n_bins=8, hidden=16, depth=1, encoding_size=16, n_pixel_components=0
)
FIT = {"max_steps": 300, "batch_size": 1024, "lr": 1e-2, "eval_every": 50, "n_val": 8192}
#: Measured 0.033 nats for this fit (uniform: 1.98); the bound leaves room for platforms.
KL_BOUND = 0.1


def blob_density(h: int = 16, w: int = 32) -> np.ndarray:
    """A smooth blob, a floor, and one bright cell holding ~10% of the mass.

    The bright cell is (4, 25) at the default 16 x 32.
    """
    v = (np.arange(h) + 0.5) / h
    u = (np.arange(w) + 0.5) / w
    d = np.exp(-((u[None, :] - 0.3) ** 2 / 0.02 + (v[:, None] - 0.6) ** 2 / 0.03)) + 0.05
    d[h // 4, (25 * w) // 32] += 40.0
    return d


class _Uniform(torch.nn.Module):
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0])


@pytest.fixture(scope="module")
def fitted():
    return fit_flow(blob_density(), CONFIG, seed=0, **FIT)


def test_fit_beats_uniform(fitted) -> None:
    d = blob_density()
    kl_uniform = kl_divergence(_Uniform(), d)
    assert kl_uniform > 1.5
    assert fitted.kl < KL_BOUND
    assert fitted.kl < 0.1 * kl_uniform
    assert fitted.steps == FIT["max_steps"]
    assert fitted.seconds > 0
    assert [h["step"] for h in fitted.history] == [50, 100, 150, 200, 250, 300]
    assert fitted.history[-1]["val_kl"] < fitted.history[0]["val_kl"]
    assert isinstance(fitted.model, SplineFlow) and not fitted.model.training
    # The reported KL is kl_divergence of the returned model.
    assert fitted.kl == pytest.approx(kl_divergence(fitted.model, d), abs=1e-9)


def test_fitted_model_puts_mass_on_the_bright_cell(fitted) -> None:
    # Mass of the bright cell (row 4, column 25) under the flow, by a grid inside the cell.
    c = (torch.arange(20, dtype=torch.float32) + 0.5) / 20
    vv, uu = torch.meshgrid((4 + c) / 16, (25 + c) / 32, indexing="ij")
    x = torch.stack([uu.reshape(-1), vv.reshape(-1)], 1)
    with torch.no_grad():
        mass = float(torch.exp(fitted.model.log_prob(x)).mean()) / (16 * 32)
    p = normalize_density(blob_density())
    target = p[4, 25] / p.size
    assert mass == pytest.approx(target, rel=0.25)


def test_pixel_components_take_the_bright_cell() -> None:
    config = FlowConfig(**{**CONFIG.to_dict(), "n_pixel_components": 2, "uniform_weight": 0.01})
    d = blob_density()
    r = fit_flow(d, config, seed=0, **{**FIT, "max_steps": 150})
    bright = 4 * 32 + 25
    assert bright in r.model.pixel_index.tolist()
    p = normalize_density(d)
    with torch.no_grad():
        w = r.model.mixture_weights()  # [uniform, pixels in index order, flow]
    k = 1 + r.model.pixel_index.tolist().index(bright)
    # The component carries (most of) the cell's mass; the flow adds the rest.
    assert 0.5 * p[4, 25] / p.size < float(w[k]) < 1.1 * p[4, 25] / p.size
    assert float(w[0]) == pytest.approx(0.01)
    assert r.kl < KL_BOUND


def test_same_seed_same_result() -> None:
    kw = {"max_steps": 20, "batch_size": 256, "eval_every": 10, "n_val": 1024}
    a = fit_flow(blob_density(), CONFIG, seed=3, **kw)
    b = fit_flow(blob_density(), CONFIG, seed=3, **kw)
    c = fit_flow(blob_density(), CONFIG, seed=4, **kw)
    for (name, pa), pb in zip(
        a.model.state_dict().items(), b.model.state_dict().values(), strict=True
    ):
        assert torch.equal(pa, pb), name
    assert a.kl == b.kl
    assert [h["val_kl"] for h in a.history] == [h["val_kl"] for h in b.history]
    assert a.kl != c.kl


def test_fit_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit_flow(blob_density(), CONFIG, max_steps=2, batch_size=64, eval_every=1, n_val=64)
    torch.testing.assert_close(torch.rand(3), expected)


def test_early_stopping() -> None:
    d = np.ones((8, 8))  # already fitted by the identity: the KL cannot improve
    r = fit_flow(d, CONFIG, max_steps=1000, batch_size=128, eval_every=5, patience=2, n_val=512)
    assert r.steps < 1000


def test_time_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The time limit stops the fit, on a fake clock (no wall-clock assert: the fit's real
    speed is measured by benchmarks/bench_io_and_fit.py)."""
    now = [100.0]

    def tick() -> float:  # every reading of the clock advances it by 10 ms
        now[0] += 0.01
        return now[0]

    monkeypatch.setattr("flows.train.time", SimpleNamespace(perf_counter=tick))
    d = np.ones((8, 8))
    r = fit_flow(d, CONFIG, max_steps=500, batch_size=64, patience=10**6, eval_every=10**6,
                 n_val=256, time_limit_s=0.5)
    # Each step reads the clock at least once, so 0.5 s of fake time is at most 50 steps;
    # without the limit the fit would take all 500.
    assert 0 < r.steps <= 50
    assert r.seconds >= 0.5 and r.history[-1]["seconds"] >= 0.5


@pytest.mark.parametrize(
    ("density", "message"),
    [
        (np.zeros((4, 8)), "sums to zero"),
        (np.where(np.eye(4, 8) > 0, np.nan, 1.0), "non-finite"),
        (np.where(np.eye(4, 8) > 0, np.inf, 1.0), "non-finite"),
        (-np.ones((4, 8)), "negative"),
        (np.ones(8), "2-D"),
    ],
    ids=["zeros", "nan", "inf", "negative", "1d"],
)
def test_rejects_bad_density(density: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_flow(density, CONFIG, max_steps=1)
    with pytest.raises(ValueError, match=message):
        kl_divergence(SplineFlow(CONFIG), density)


def test_sampler_matches_density() -> None:
    d = blob_density(4, 8)
    p = normalize_density(d)
    assert p.mean() == pytest.approx(1.0)
    sampler = PiecewiseConstantSampler(p, torch.Generator().manual_seed(0))
    x, log_p = sampler.sample(200_000)
    assert torch.all((x >= 0) & (x <= 1))
    rows = np.minimum((x[:, 1].numpy() * 4).astype(int), 3)
    cols = np.minimum((x[:, 0].numpy() * 8).astype(int), 7)
    hist = np.bincount(rows * 8 + cols, minlength=32).reshape(4, 8) / x.shape[0]
    np.testing.assert_allclose(hist, p / p.size, atol=3e-3)
    np.testing.assert_allclose(log_p.numpy(), np.log(p[rows, cols]), rtol=1e-5)


def test_sampler_never_picks_empty_cells() -> None:
    d = np.zeros((4, 4))
    d[1, 2] = 1.0
    d[3, 0] = 3.0
    sampler = PiecewiseConstantSampler(normalize_density(d), torch.Generator().manual_seed(1))
    x, log_p = sampler.sample(10_000)
    rows = (x[:, 1] * 4).long().clamp(max=3)
    cols = (x[:, 0] * 4).long().clamp(max=3)
    assert set(zip(rows.tolist(), cols.tolist(), strict=True)) == {(1, 2), (3, 0)}
    assert torch.all(torch.isfinite(log_p))


def test_kl_of_exact_and_uniform_models() -> None:
    # A density that is uniform in each half: KL(p || uniform) is known in closed form.
    d = np.ones((4, 4))
    d[:, 2:] = 3.0
    p_left, p_right = 0.5, 1.5  # normalised values
    expected = 0.5 * (p_left * math.log(p_left) + p_right * math.log(p_right))
    assert kl_divergence(_Uniform(), d, grid=100) == pytest.approx(expected, rel=1e-9)
    # Zero-density cells contribute nothing (and do not produce NaN).
    d0 = np.ones((4, 4))
    d0[:, :2] = 0.0
    assert kl_divergence(_Uniform(), d0, grid=100) == pytest.approx(math.log(2.0), rel=1e-9)


# --- the pixel flow and the exact objective ------------------------------------------------

PIXEL = PixelFlowConfig(hidden=16)


@pytest.fixture(scope="module")
def pixel_fitted():
    return fit_flow(blob_density(), PIXEL, seed=0, max_steps=600, eval_every=50)


def _pixel_kl(model: PixelFlow, d: np.ndarray) -> float:
    """sum P log(P / Q) over pixels, from the model's pixel masses (a slow, obvious reference)."""
    mass = d / d.sum()
    with torch.no_grad():
        q = torch.exp(model.pixel_log_masses(torch.arange(d.shape[0]))).double().numpy()
    pos = mass > 0
    return float((mass[pos] * np.log(mass[pos] / q[pos])).sum())


def test_pixel_flow_fits_the_exact_kl(pixel_fitted) -> None:
    d = blob_density()
    r = pixel_fitted
    assert isinstance(r.model, PixelFlow) and not r.model.training
    # The default objective of a PixelFlow is the exact one: its validation KL is the pixel KL.
    assert r.history[-1]["val_kl"] == pytest.approx(_pixel_kl(r.model, d), abs=1e-4)
    # Its pixels are the map's, so it can follow the map closely (measured 0.0005; uniform 1.98).
    assert min(h["val_kl"] for h in r.history) < 0.005
    assert r.kl < 0.005
    assert r.history[-1]["val_kl"] < 0.5 * r.history[0]["val_kl"]
    # The row marginal starts (and stays) at the map's row masses.
    rows = d.sum(axis=1) / d.sum()
    with torch.no_grad():
        a = torch.softmax(r.model.row_logits, 0).double().numpy()
    np.testing.assert_allclose(a, rows, rtol=1e-3)


def test_pixel_flow_puts_mass_on_the_bright_cell(pixel_fitted) -> None:
    p = normalize_density(blob_density())
    with torch.no_grad():
        q = torch.exp(pixel_fitted.model.pixel_log_masses(torch.arange(16))).numpy()
    assert q[4, 25] == pytest.approx(p[4, 25] / p.size, rel=0.05)


def test_exact_objective_on_a_row_subset_is_unbiased(monkeypatch: pytest.MonkeyPatch) -> None:
    d = blob_density()
    torch.manual_seed(0)
    model = build_flow(PIXEL, normalize_density(d))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    full = ExactObjective(normalize_density(d), torch.Generator().manual_seed(0))
    assert full.rows_per_step == 16
    exact = full.kl(model)
    assert exact == pytest.approx(_pixel_kl(model, d), rel=1e-4)
    with torch.no_grad():
        assert float(full.loss(model)) == pytest.approx(exact, rel=1e-5)
    monkeypatch.setattr("flows.train.EXACT_PIXELS_PER_STEP", 2 * 32)
    sub = ExactObjective(normalize_density(d), torch.Generator().manual_seed(1))
    assert sub.rows_per_step == 2
    assert sub.kl(model) == pytest.approx(exact, rel=1e-5)  # evaluation still covers all rows
    with torch.no_grad():
        draws = torch.stack([sub.loss(model) for _ in range(4000)]).double()
    se = float(draws.std()) / math.sqrt(draws.numel())
    assert abs(float(draws.mean()) - exact) < 4 * se


def test_pixel_flow_with_samples_objective_and_determinism() -> None:
    kw = {"max_steps": 30, "eval_every": 10, "n_val": 1024, "batch_size": 512}
    a = fit_flow(blob_density(), PIXEL, seed=3, objective="samples", **kw)
    b = fit_flow(blob_density(), PIXEL, seed=3, objective="samples", **kw)
    assert a.kl == b.kl and a.kl < kl_divergence(_Uniform(), blob_density())
    c = fit_flow(blob_density(), PIXEL, seed=3, max_steps=30, eval_every=10)
    d = fit_flow(blob_density(), PIXEL, seed=3, max_steps=30, eval_every=10)
    for (name, pc), pd in zip(c.model.state_dict().items(), d.model.state_dict().values(), strict=True):
        assert torch.equal(pc, pd), name


def test_objective_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown objective"):
        fit_flow(blob_density(), PIXEL, objective="nope", max_steps=1)
    with pytest.raises(ValueError, match="PixelFlow"):
        fit_flow(blob_density(), CONFIG, objective="exact", max_steps=1)


def test_default_model_is_the_pixel_flow() -> None:
    r = fit_flow(blob_density(8, 16), max_steps=5, eval_every=5)
    assert isinstance(r.model, PixelFlow) and r.model.config.hidden == PixelFlowConfig().hidden


def test_exact_objective_with_empty_rows_and_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Black rows (never drawn, no NaN), a black column, a tiny pixel: finite losses, and a
    fit that follows the map."""
    d = blob_density(12, 16)
    d[[0, 5, 11], :] = 0.0
    d[:, 3] = 0.0
    d[7, 9] = 1e-200
    monkeypatch.setattr("flows.train.EXACT_PIXELS_PER_STEP", 3 * 16)
    p = normalize_density(d)
    torch.manual_seed(0)
    model = perturb(build_flow(PIXEL, p), 0.5)
    sub = ExactObjective(p, torch.Generator().manual_seed(2))
    with torch.no_grad():
        losses = torch.stack([sub.loss(model) for _ in range(300)])
    assert torch.all(torch.isfinite(losses))
    se = float(losses.double().std()) / math.sqrt(losses.numel())
    assert abs(float(losses.mean()) - sub.kl(model)) < 4 * se
    r = fit_flow(d, PIXEL, max_steps=200, eval_every=50)
    assert math.isfinite(r.kl) and r.history[-1]["val_kl"] < 0.5 * r.history[0]["val_kl"]
