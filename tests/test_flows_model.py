"""Tests for flows.coupling, flows.model and flows.export."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from scipy.stats import chi2

from flows.coupling import Encoding, OneBlobLinear, SplineCoupling
from flows.export import content_hash, load_flow, save_flow
from flows.model import FlowConfig, SplineFlow
from tests.chi2 import pooled_chi2
from tests.flow_helpers import assert_same_flow, perturb, sample_and_check, uniform

pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated"),
    pytest.mark.usefixtures("torch_one_thread"),
]

#: Small configurations; all but "pixels" without pixel components (the default has 32).
SMALL = FlowConfig(n_layers=4, n_bins=8, hidden=16, encoding_size=8, n_pixel_components=0)
CONFIGS = {
    "one_blob": SMALL,
    "fourier": FlowConfig(
        n_layers=3,
        n_bins=6,
        hidden=12,
        depth=1,
        encoding="fourier",
        encoding_size=4,
        n_pixel_components=0,
    ),
    "raw_aperiodic": FlowConfig(
        n_layers=2,
        n_bins=5,
        hidden=8,
        depth=3,
        encoding="raw",
        periodic_u=False,
        n_pixel_components=0,
    ),
    "mixture": FlowConfig(
        n_layers=4, n_bins=8, hidden=16, encoding_size=8, uniform_weight=0.1, n_pixel_components=0
    ),
    "pixels": FlowConfig(
        n_layers=4, n_bins=8, hidden=16, encoding_size=8, uniform_weight=0.05, n_pixel_components=3
    ),
}
#: Pixel components of the "pixels" config: a 16 x 16 map (so a 400-point grid tiles each
#: pixel with exactly 25 x 25 points), flat indices row * 16 + col, and initial weights.
PIXELS = {"flat_index": torch.tensor([40, 7, 255]), "height": 16, "width": 16}
PIXEL_WEIGHTS = torch.tensor([0.2, 0.1, 0.05])


def _perturbed(config: FlowConfig, seed: int = 0, scale: float = 0.3) -> SplineFlow:
    """A model whose zero-initialised last layers are perturbed (so it is not the identity)."""
    torch.manual_seed(seed)
    model = SplineFlow(config)
    if config.n_pixel_components:
        model.set_pixel_components(weights=PIXEL_WEIGHTS, **PIXELS)
    return perturb(model, scale, seed)


def _grid(n: int) -> torch.Tensor:
    c = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    vv, uu = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([uu.reshape(-1), vv.reshape(-1)], dim=1)


def test_initial_model_is_identity() -> None:
    model = SplineFlow(SMALL).eval()
    u = uniform(500)
    with torch.no_grad():
        x, log_pdf = model.sample(u)
        torch.testing.assert_close(x, u, atol=1e-6, rtol=0)
        torch.testing.assert_close(log_pdf, torch.zeros(500), atol=1e-5, rtol=0)
        torch.testing.assert_close(model.log_prob(u), torch.zeros(500), atol=1e-5, rtol=0)


def test_default_config_starts_nearuniform() -> None:
    # 32 placeholder pixel components (weight 1e-4 each) until fit_flow places them.
    model = SplineFlow(FlowConfig(n_bins=8, hidden=8, encoding_size=8)).eval()
    assert model.config.n_pixel_components == 32
    with torch.no_grad():
        q = torch.exp(model.log_prob(_grid(64)))
        _, log_pdf = model.sample(uniform(1000))
    torch.testing.assert_close(q, torch.ones_like(q), atol=1e-5, rtol=0)
    torch.testing.assert_close(log_pdf, torch.zeros(1000), atol=1e-5, rtol=0)


def test_layers_alternate_and_periodic_u() -> None:
    model = SplineFlow(SMALL)
    dims = [layer.transform_dim for layer in model.layers]
    assert dims == [0, 1, 0, 1]
    assert [layer.periodic for layer in model.layers] == [True, False, True, False]
    assert [layer.conditioner.periodic for layer in model.layers] == [False, True, False, True]


@pytest.mark.parametrize("kind", ["one_blob", "fourier", "raw"])
def test_periodic_encoding_wraps(kind: str) -> None:
    enc = Encoding(kind, 8, periodic=True)
    x = torch.tensor([0.0, 1.0, 0.25, 1.25])
    e = enc(x)
    assert e.shape == (4, enc.n_features)
    torch.testing.assert_close(e[0], e[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(e[2], e[3], atol=1e-5, rtol=0)
    aperiodic = Encoding(kind, 8, periodic=False)(x[:2])
    assert (aperiodic[0] - aperiodic[1]).abs().max() > 1e-2


@pytest.mark.parametrize("size", [6, 32, 128])
@pytest.mark.parametrize("periodic", [False, True])
def test_sparse_one_blob_matches_dense(size: int, periodic: bool) -> None:
    torch.manual_seed(size)
    sparse = OneBlobLinear(size, 16, periodic)
    dense = Encoding("one_blob", size, periodic)
    x = torch.cat([torch.rand(3000), torch.tensor([0.0, 1.0, 0.5 / size, 1.0 - 0.5 / size])])
    with torch.no_grad():
        expected = dense(x) @ sparse.weight + sparse.bias
        # Eval mode (embedding_bag) and training mode (scatter + matmul) compute the same.
        torch.testing.assert_close(sparse.eval()(x), expected, atol=3e-4, rtol=0)
        torch.testing.assert_close(sparse.train()(x), expected, atol=3e-4, rtol=0)
        if periodic:
            torch.testing.assert_close(sparse(x[-4:-3]), sparse(x[-3:-2]), atol=1e-6, rtol=0)


def test_periodic_density_is_continuous_across_seam() -> None:
    model = _perturbed(SMALL)
    v = torch.linspace(0.05, 0.95, 19)
    at0 = torch.stack([torch.zeros_like(v), v], 1)
    at1 = torch.stack([torch.ones_like(v), v], 1)
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(at0), model.log_prob(at1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["one_blob", "pixels"])
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = _perturbed(CONFIGS[name], scale=0.1).train()
    x = uniform(2048, seed=5) ** 2  # a non-uniform "data" set
    loss = -model.log_prob(x).mean()
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.all(torch.isfinite(p.grad)), pname
        assert p.grad.abs().max() > 0, pname


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_density_integrates_to_one(name: str) -> None:
    # Perturbed enough to be far from uniform (q from ~0.1 to ~10), smooth enough for the grid.
    model = _perturbed(CONFIGS[name], scale=0.2)
    with torch.no_grad():
        q = torch.exp(model.log_prob(_grid(400)))
    assert abs(float(q.mean()) - 1.0) < 1e-2
    assert float(q.std()) > 0.3  # really not uniform


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_sample_log_pdf_matches_log_prob(name: str) -> None:
    model = _perturbed(CONFIGS[name])
    sample_and_check(model, uniform(4000, seed=2), atol=2e-3, rtol=1e-3)


def test_sample_then_transform_round_trip() -> None:
    model = _perturbed(SMALL)
    u = uniform(4000, seed=3)
    with torch.no_grad():
        x, log_pdf = model.sample(u)
        u2, logdet = model.transform(x)
        torch.testing.assert_close(u2, u, atol=1e-4, rtol=0)
        torch.testing.assert_close(logdet, log_pdf, atol=2e-3, rtol=1e-3)
        x2, _ = model.inverse_transform(u2)
        torch.testing.assert_close(x2, x, atol=1e-4, rtol=0)


def test_mixture_samples_cover_both_components() -> None:
    config = CONFIGS["mixture"]
    model = _perturbed(config)
    u = uniform(4000, seed=4)
    with torch.no_grad():
        x, log_pdf = model.sample(u)
    # The uniform component: u0 < a is stretched onto [0, 1] and returned as is.
    a = config.uniform_weight
    sel = u[:, 0] < a
    torch.testing.assert_close(x[sel, 0], u[sel, 0] / a)
    torch.testing.assert_close(x[sel, 1], u[sel, 1])
    assert torch.all(log_pdf > torch.log(torch.tensor(a)) - 1e-6)  # bounded below by a


def _pixel_mass(model: SplineFlow, pixel: int, points: int) -> float:
    """Mass of a pixel of the 16 x 16 map under ``model``: log_prob on a points x points grid
    of the pixel (midpoint rule)."""
    row, col = divmod(pixel, 16)
    g = (torch.arange(points, dtype=torch.float64) + 0.5) / points
    vv, uu = torch.meshgrid((row + g) / 16, (col + g) / 16, indexing="ij")
    x = torch.stack([uu.reshape(-1), vv.reshape(-1)], 1).float()
    with torch.no_grad():
        return float(torch.exp(model.log_prob(x).double()).mean()) / 256


def test_pixel_components() -> None:
    config = CONFIGS["pixels"]
    a = config.uniform_weight
    # Unperturbed: exactly the weights given, in flat-index order 7, 40, 255; the flow gets the rest.
    model = SplineFlow(config)
    model.set_pixel_components(weights=PIXEL_WEIGHTS, **PIXELS)
    with torch.no_grad():
        w0 = model.mixture_weights().double()
    expected0 = [a, 0.1, 0.2, 0.05, 1.0 - a - 0.35]
    torch.testing.assert_close(w0, torch.tensor(expected0, dtype=torch.float64), rtol=1e-6, atol=1e-7)
    assert model.pixel_index.tolist() == [7, 40, 255]
    # Perturbed: [uniform, pixels, flow] = [a, (1 - a) softmax(mix_logits) reordered], exactly.
    model = _perturbed(config, scale=0.1)
    with torch.no_grad():
        w = model.mixture_weights()
        soft = torch.softmax(model.mix_logits.double(), 0) * (1.0 - a)  # [flow, pixels...]
    assert w.shape == (5,)
    expected = torch.cat([torch.tensor([a], dtype=torch.float64), soft[1:], soft[:1]])
    torch.testing.assert_close(w.double(), expected, rtol=1e-6, atol=1e-7)
    assert float((w[1:4].double() - w0[1:4]).abs().max()) > 1e-3  # the perturbation moved them
    assert model.pixel_index.tolist() == [7, 40, 255]
    # Pixel-component samples lie in their pixel.
    n = 200_000
    u = uniform(n, seed=9)
    with torch.no_grad():
        x, _ = model.sample(u)
    cum = torch.cumsum(w, 0)
    comp = torch.searchsorted(cum, u[:, 0].contiguous(), right=True)
    flat = (x[:, 1] * 16).long().clamp(max=15) * 16 + (x[:, 0] * 16).long().clamp(max=15)
    for k, pixel in zip((1, 2, 3), (7, 40, 255), strict=True):
        assert torch.all(flat[comp == k] == pixel)
    # Where all samples land follows the model's own density: the counts in pixels 7, 40, 255
    # and elsewhere against n times the pixel masses of log_prob (the uniform, the pixel and
    # the flow components together). The 25 x 25 midpoint rule agrees with 50 x 50 to < 1e-5,
    # i.e. < 2 expected samples, against standard errors of 100 to 160 samples. Pearson's
    # chi-square with 3 dof at p >= 1e-3 (a fixed seed: a false alarm is that unlikely).
    masses = torch.tensor([_pixel_mass(model, p, 25) for p in (7, 40, 255)], dtype=torch.float64)
    finer = torch.tensor([_pixel_mass(model, p, 50) for p in (7, 40, 255)], dtype=torch.float64)
    assert float((masses - finer).abs().max()) < 1e-5
    observed = torch.stack([(flat == p).sum() for p in (7, 40, 255)]).double()
    observed = torch.cat([observed, (n - observed.sum()).reshape(1)])
    expected_counts = n * torch.cat([masses, (1.0 - masses.sum()).reshape(1)])
    pooled = pooled_chi2(observed.numpy(), expected_counts.numpy())
    assert pooled.dof == 3
    assert chi2.sf(pooled.statistic, pooled.dof) >= 1e-3, (observed, expected_counts)
    # A pixel component raises the density inside its pixel by weight * H * W.
    inside = torch.tensor([[7.5 / 16, 0.5 / 16]])  # column 7, row 0
    model0 = _perturbed(config, scale=0.1)
    with torch.no_grad():
        model0.mix_logits[1] = -30.0  # remove pixel 7 (logits: flow, then pixels 7, 40, 255)
        assert float(model.log_prob(inside)) > float(model0.log_prob(inside)) + 1.0


def test_set_pixel_components_validates() -> None:
    model = SplineFlow(CONFIGS["pixels"])
    with pytest.raises(ValueError, match="expected 3"):
        model.set_pixel_components(torch.tensor([1, 2]), 4, 4, torch.tensor([0.1, 0.1]))
    with pytest.raises(ValueError, match="distinct"):
        model.set_pixel_components(torch.tensor([1, 1, 2]), 4, 4, torch.full((3,), 0.1))
    with pytest.raises(ValueError, match="outside"):
        model.set_pixel_components(torch.tensor([1, 2, 16]), 4, 4, torch.full((3,), 0.1))
    with pytest.raises(ValueError, match="sum below"):
        model.set_pixel_components(torch.tensor([1, 2, 3]), 4, 4, torch.full((3,), 0.4))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_scripted_equals_eager(name: str) -> None:
    model = _perturbed(CONFIGS[name])
    scripted = torch.jit.script(model)
    assert_same_flow(model, scripted, uniform(1000, seed=6))


def test_count_parameters_and_config() -> None:
    model = SplineFlow(SMALL)
    assert model.count_parameters() == sum(p.numel() for p in model.parameters())
    assert model.config == SMALL
    assert FlowConfig.from_dict(json.loads(json.dumps(SMALL.to_dict()))) == SMALL
    with pytest.raises(ValueError):
        FlowConfig(encoding="nope")
    with pytest.raises(ValueError):
        FlowConfig.from_dict({"n_layers": 2, "bogus": 1})


def test_coupling_inverse() -> None:
    torch.manual_seed(0)
    layer = SplineCoupling(1, n_bins=6, hidden=8, depth=1, encoding_size=4)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.5 * torch.randn_like(p))
        x = uniform(1000, seed=7)
        y, ld = layer(x)
        torch.testing.assert_close(y[:, 0], x[:, 0])  # the conditioning coordinate passes
        x2, ld2 = layer.inverse(y)
        torch.testing.assert_close(x2, x, atol=1e-5, rtol=0)
        torch.testing.assert_close(ld + ld2, torch.zeros(1000), atol=1e-4, rtol=0)


# --- export -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["one_blob", "pixels"])
def test_save_load_round_trip(tmp_path: Path, name: str) -> None:
    model = _perturbed(CONFIGS[name])
    path = tmp_path / "flow.pt"
    h = content_hash(torch.arange(12.0).numpy())
    save_flow(model, path, {"map_hash": h, "kl": 0.0123, "map": "test.exr"})
    loaded, meta = load_flow(path, expected_hash=h)
    assert meta["map_hash"] == h and meta["kl"] == 0.0123 and meta["map"] == "test.exr"
    assert meta["config"] == model.config.to_dict()
    assert meta["n_parameters"] == model.count_parameters()
    assert FlowConfig.from_dict(meta["config"]) == model.config
    u = uniform(1000, seed=8)
    assert_same_flow(model, loaded, u)
    # The eager class can be rebuilt from the metadata and the scripted module's state.
    rebuilt = SplineFlow(FlowConfig.from_dict(meta["config"]))
    rebuilt.load_state_dict(loaded.state_dict())
    assert_same_flow(model, rebuilt.eval(), u)
    # Without an expected hash any map's flow loads.
    load_flow(str(path))


def test_load_refuses_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.pt"
    with pytest.raises(ValueError, match="nope.pt"):
        load_flow(path)


def test_load_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a torchscript archive\x00" * 50)
    with pytest.raises(ValueError, match="garbage.pt"):
        load_flow(path)


def test_load_refuses_truncated_file(tmp_path: Path) -> None:
    good = tmp_path / "good.pt"
    save_flow(_perturbed(SMALL), good, {"map_hash": "x"})
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.pt"):
        load_flow(bad)


def test_load_refuses_module_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "bare.pt"
    torch.jit.save(torch.jit.script(_perturbed(SMALL)), str(path))
    with pytest.raises(ValueError, match="bare.pt.*not a flowtracer flow"):
        load_flow(path)


def test_load_refuses_invalid_metadata(tmp_path: Path) -> None:
    path = tmp_path / "badmeta.pt"
    scripted = torch.jit.script(_perturbed(SMALL))
    torch.jit.save(scripted, str(path), _extra_files={"flowtracer.json": "{not json"})
    with pytest.raises(ValueError, match="badmeta.pt"):
        load_flow(path)
    other = tmp_path / "otherformat.pt"
    torch.jit.save(scripted, str(other), _extra_files={"flowtracer.json": '{"format": "x"}'})
    with pytest.raises(ValueError, match="otherformat.pt"):
        load_flow(other)


def test_load_refuses_other_format_version(tmp_path: Path) -> None:
    path = tmp_path / "v0.pt"
    meta = {"format": "flowtracer.flow", "format_version": 0}
    torch.jit.save(
        torch.jit.script(_perturbed(SMALL)),
        str(path),
        _extra_files={"flowtracer.json": json.dumps(meta)},
    )
    with pytest.raises(ValueError, match="v0.pt.*version"):
        load_flow(path)


def test_load_refuses_module_without_methods(tmp_path: Path) -> None:
    class NotAFlow(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    path = tmp_path / "notaflow.pt"
    meta = {"format": "flowtracer.flow", "format_version": 1}
    torch.jit.save(
        torch.jit.script(NotAFlow()), str(path), _extra_files={"flowtracer.json": json.dumps(meta)}
    )
    with pytest.raises(ValueError, match="notaflow.pt.*sample"):
        load_flow(path)


def test_load_refuses_wrong_hash(tmp_path: Path) -> None:
    path = tmp_path / "flow.pt"
    save_flow(_perturbed(SMALL), path, {"map_hash": content_hash(torch.zeros(3).numpy())})
    with pytest.raises(ValueError, match="flow.pt.*different map"):
        load_flow(path, expected_hash=content_hash(torch.ones(3).numpy()))
    no_hash = tmp_path / "nohash.pt"
    save_flow(_perturbed(SMALL), no_hash, {})
    with pytest.raises(ValueError, match="nohash.pt"):
        load_flow(no_hash, expected_hash="abc")


def test_saved_file_is_a_zip_with_metadata(tmp_path: Path) -> None:
    path = tmp_path / "flow.pt"
    save_flow(_perturbed(SMALL), path, {"map_hash": "h"})
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n.endswith("extra/flowtracer.json")]
        assert len(names) == 1
        assert json.loads(z.read(names[0]))["format"] == "flowtracer.flow"


def test_save_rejects_reserved_or_bad_metadata(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="reserved"):
        save_flow(_perturbed(SMALL), tmp_path / "a.pt", {"config": {}})
    with pytest.raises(ValueError, match="JSON"):
        save_flow(_perturbed(SMALL), tmp_path / "b.pt", {"x": object()})
