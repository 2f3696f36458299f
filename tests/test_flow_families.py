"""One suite for every flow family of :mod:`flows.families` (and the variants in
:data:`tests.flow_helpers.FAR_FLOWS`): the mathematics every flow on the square must satisfy.

Each test runs on the family's flow of :data:`~tests.flow_helpers.FAR_FLOWS`, a tiny
configuration perturbed far from the identity: the bijection and its inverse agree, the
log-determinant is the autograd Jacobian's, the density integrates to one, a sample's log
density is ``log_prob`` at the returned point (in any batch), the scripted and loaded modules
equal the eager one, every parameter learns, the fit honours its time budget, and the samples
follow the density (chi-square).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import chi2

from flows.export import load_flow, save_flow
from flows.families import FAMILIES, FAMILY_NAMES, config_from_dict, family
from flows.train import fit_flow
from tests.chi2 import _cell_nodes, pooled_chi2, sidak_threshold
from tests.flow_helpers import (
    FAR_FLOWS,
    assert_same_flow,
    assert_sample_log_pdf_is_log_prob,
    far_flow,
    uniform,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated"),
    pytest.mark.usefixtures("torch_one_thread"),
]

#: Chi-square cells: 16 rows (v) x 32 columns (u), aligned with the pixel flow's 16 x 32 map
#: (its density is constant on them, so the quadrature is exact there).
CELLS = (16, 32)
#: Samples per chi-square test: 200k over 512 cells is ~390 expected per cell on average
#: (standard error 20, 5 %), so a family whose samples miss its density by a few percent over a
#: region of cells fails; the quadrature of the expected counts is checked to be ten times
#: finer than the sampling noise in every cell.
CHI2_SAMPLES = 200_000


@pytest.fixture(autouse=True)
def plain_torchscript_executor() -> Iterator[None]:
    """Run scripted modules without the profiling executor's optimisation, which spends about
    2 s on the first calls of each module here. On the CPU it computes the same: Torch does not
    fuse on the CPU (``torch._C._jit_can_fuse_on_cpu()`` is False), so its graphs only add
    shape guards."""
    with torch.jit.optimized_execution(False):
        yield


@functools.cache
def scripted_flow(name: str) -> torch.jit.ScriptModule:
    """``torch.jit.script(far_flow(name))``, scripted once per name (scripting takes seconds)."""
    return torch.jit.script(far_flow(name))


def test_every_family_has_a_test_flow() -> None:
    for name in FAMILY_NAMES:
        assert FAR_FLOWS[name][0].kind == name
        assert FAMILIES[name].config_class() is type(FAR_FLOWS[name][0])


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_inverse_round_trip(name: str) -> None:
    """``transform(inverse_transform(u)) == u`` and the two log-determinants cancel (float64
    points, the flows' evaluation precision; float32 weights: a conditioner reads its input
    rounded to float32, and an autoregressive layer's inverse recomputes that input, whose
    rounding can then differ by one float32 step, 1e-9 here)."""
    model = far_flow(name)
    u = uniform(4000, seed=11).double().clamp(1e-4, 1 - 1e-4)
    with torch.no_grad():
        x, ld_inv = model.inverse_transform(u)
        assert torch.all((x >= 0) & (x <= 1))
        u2, ld_fwd = model.transform(x)
    torch.testing.assert_close(u2, u, atol=1e-7, rtol=0)
    torch.testing.assert_close(ld_fwd + ld_inv, torch.zeros_like(ld_fwd), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_log_det_matches_autograd(name: str) -> None:
    """``transform``'s log-determinant is log|det| of its 2 x 2 Jacobian by autograd (all in
    float64, so that the comparison is tight), where the density is above e^-20: below, the
    pixel flow's autograd derivative of a CDF difference underflows (1 + 1e-20 - 1 = 0)."""
    model = copy.deepcopy(far_flow(name)).double()
    x = uniform(600, seed=12).double().clamp(1e-3, 1 - 1e-3).requires_grad_(True)
    y, logdet = model.transform(x)
    # Rows are independent, so the gradient of a column's sum is that row of each Jacobian.
    g0 = torch.autograd.grad(y[:, 0].sum(), x, retain_graph=True)[0]
    g1 = torch.autograd.grad(y[:, 1].sum(), x)[0]
    det = g0[:, 0] * g1[:, 1] - g0[:, 1] * g1[:, 0]
    keep = logdet.detach() > -20.0
    assert keep.float().mean() > 0.5
    torch.testing.assert_close(torch.log(det.abs())[keep], logdet.detach()[keep], atol=1e-7, rtol=1e-6)


def _grid(n: int) -> torch.Tensor:
    c = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    vv, uu = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([uu.reshape(-1), vv.reshape(-1)], dim=1)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_density_integrates_to_one(name: str) -> None:
    """Midpoint rule on a 640 x 640 grid (pixel boundaries of the pixel flow's 16 x 32 map
    fall between grid points); and the flow is really far from uniform."""
    model = far_flow(name)
    with torch.no_grad():
        q = torch.exp(model.log_prob(_grid(640)))
    assert abs(float(q.mean()) - 1.0) < 5e-3
    assert float(q.std()) > 0.3


@pytest.mark.parametrize("scripted", [False, True], ids=["eager", "scripted"])
@pytest.mark.parametrize("name", sorted(FAR_FLOWS))
def test_sample_log_pdf_is_log_prob_at_the_returned_point(name: str, scripted: bool) -> None:
    model = scripted_flow(name) if scripted else far_flow(name)  # scripted: what the renderer loads
    assert_sample_log_pdf_is_log_prob(model, uniform(20000, seed=3))


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_scripted_equals_eager(name: str) -> None:
    assert_same_flow(far_flow(name), scripted_flow(name), uniform(3000, seed=6))


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_save_load_round_trip(tmp_path: Path, name: str) -> None:
    """The file names its family; the loaded module needs no Python class, and the eager
    class rebuilt from the registry and the metadata is the same flow."""
    model = far_flow(name)
    path = tmp_path / f"{name}.pt"
    save_flow(model, path, {"map_hash": "abc", "kl": 0.5})
    loaded, meta = load_flow(path, expected_hash="abc")
    assert meta["model"] == name and meta["n_parameters"] == model.count_parameters()
    config = config_from_dict(name, meta["config"])
    assert config == model.config
    u = uniform(2000, seed=8)
    assert_same_flow(model, loaded, u)
    rebuilt = family(name).model_class()(config)
    rebuilt.load_state_dict(loaded.state_dict())
    assert_same_flow(model, rebuilt.eval(), u)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = far_flow(name).train()
    x = uniform(2048, seed=5) ** 2  # a non-uniform "data" set
    (-model.log_prob(x).mean()).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.all(torch.isfinite(p.grad)), pname
        assert p.grad.abs().max() > 0, pname


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_fit_honours_the_time_budget_and_learns(name: str) -> None:
    """:func:`fit_flow` with a time limit stops on time (steps are milliseconds here) and
    beats the uniform density on a two-level map."""
    d = np.ones((8, 16))
    d[2:4, 3:7] = 20.0
    small = {"hidden": 8, "n_layers": 2} if name != "pixel" else {"hidden": 8}
    config = family(name).default_config(**small)
    if hasattr(config, "n_pixel_components"):
        config = type(config).from_dict({**config.to_dict(), "n_pixel_components": 0})
    res = fit_flow(d, config, time_limit_s=0.6, max_steps=10**6, eval_every=20, n_val=2048,
                   batch_size=512)
    assert res.seconds < 1.5
    p = d / d.mean()
    uniform_kl = float(np.mean(p * np.log(p)))  # KL(p || 1)
    assert res.kl < 0.8 * uniform_kl, (res.kl, uniform_kl)


def _cell_masses(model: torch.nn.Module, sub: int) -> np.ndarray:
    """Mass of each chi-square cell under ``model.log_prob``: a tensor Gauss-Legendre rule of
    order 3 on ``sub`` x ``sub`` sub-cells per cell (tests/chi2.py's nodes)."""
    rows, cols = CELLS
    v, wv = _cell_nodes(np.linspace(0.0, 1.0, rows + 1), sub, 3)  # (rows, k)
    u, wu = _cell_nodes(np.linspace(0.0, 1.0, cols + 1), sub, 3)  # (cols, k)
    vv = np.broadcast_to(v[:, None, :, None], (rows, cols, v.shape[1], u.shape[1]))
    uu = np.broadcast_to(u[None, :, None, :], vv.shape)
    x = torch.from_numpy(np.stack([uu.reshape(-1), vv.reshape(-1)], 1))
    with torch.no_grad():
        q = torch.exp(model.log_prob(x)).numpy().reshape(vv.shape)
    w = wv[:, None, :, None] * wu[None, :, None, :]
    return (q * w).sum(axis=(2, 3))


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_samples_follow_the_density_chi2(name: str) -> None:
    """Pearson's chi-square of :data:`CHI2_SAMPLES` samples in 16 x 32 cells against the
    cell masses of the model's own density (pooled as Mitsuba's harness, tests/chi2.py),
    Sidak-corrected over the families at alpha = 0.01."""
    model = far_flow(name)
    n = CHI2_SAMPLES
    with torch.no_grad():
        x, _ = model.sample(uniform(n, seed=21))
    rows, cols = CELLS
    r = (x[:, 1] * rows).long().clamp(0, rows - 1)
    c = (x[:, 0] * cols).long().clamp(0, cols - 1)
    observed = torch.bincount(r * cols + c, minlength=rows * cols).double().numpy()
    expected = n * _cell_masses(model, 8).reshape(-1)
    coarser = n * _cell_masses(model, 4).reshape(-1)
    # The quadrature's error moves the statistic by far less than its spread, sqrt(2 dof) = 32:
    # the rule with half the sub-cells is off by less than sqrt(10) standard errors in all
    # (and halving the sub-cells shrank this sum 3 to 30 times on these flows).
    assert np.sum((coarser - expected) ** 2 / np.maximum(expected, 5.0)) < 10.0
    assert abs(expected.sum() / n - 1.0) < 1e-3
    pooled = pooled_chi2(observed, expected)
    assert pooled.dof >= 64  # cells alone or in pools: resolution enough to see a wrong shape
    p_value = chi2.sf(pooled.statistic, pooled.dof)
    assert p_value >= sidak_threshold(0.01, len(FAMILY_NAMES)), (pooled.statistic, pooled.dof)
