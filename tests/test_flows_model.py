"""Tests for flows.coupling, flows.model and flows.export."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch

from flows.coupling import Encoding, SplineCoupling
from flows.export import content_hash, load_flow, save_flow
from flows.model import FlowConfig, SplineFlow

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

SMALL = FlowConfig(n_layers=4, n_bins=8, hidden=16, depth=2, encoding="one_blob", encoding_size=8)
CONFIGS = {
    "one_blob": SMALL,
    "fourier": FlowConfig(
        n_layers=3, n_bins=6, hidden=12, depth=1, encoding="fourier", encoding_size=4
    ),
    "raw_aperiodic": FlowConfig(
        n_layers=2, n_bins=5, hidden=8, depth=3, encoding="raw", periodic_u=False
    ),
    "mixture": FlowConfig(n_layers=4, n_bins=8, hidden=16, encoding_size=8, uniform_weight=0.1),
}


def _perturbed(config: FlowConfig, seed: int = 0, scale: float = 0.3) -> SplineFlow:
    """A model whose zero-initialised last layers are perturbed (so it is not the identity)."""
    torch.manual_seed(seed)
    model = SplineFlow(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


def _uniform(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(seed))


def _grid(n: int) -> torch.Tensor:
    c = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    vv, uu = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([uu.reshape(-1), vv.reshape(-1)], dim=1)


def test_initial_model_is_identity() -> None:
    model = SplineFlow(SMALL).eval()
    u = _uniform(500)
    with torch.no_grad():
        x, log_pdf = model.sample(u)
        torch.testing.assert_close(x, u, atol=1e-6, rtol=0)
        torch.testing.assert_close(log_pdf, torch.zeros(500), atol=1e-5, rtol=0)
        torch.testing.assert_close(model.log_prob(u), torch.zeros(500), atol=1e-5, rtol=0)


def test_layers_alternate_and_periodic_u() -> None:
    model = SplineFlow(SMALL)
    dims = [layer.transform_dim for layer in model.layers]
    assert dims == [0, 1, 0, 1]
    assert [layer.periodic for layer in model.layers] == [True, False, True, False]
    assert [layer.encoding.periodic for layer in model.layers] == [False, True, False, True]


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


def test_periodic_density_is_continuous_across_seam() -> None:
    model = _perturbed(SMALL)
    v = torch.linspace(0.05, 0.95, 19)
    at0 = torch.stack([torch.zeros_like(v), v], 1)
    at1 = torch.stack([torch.ones_like(v), v], 1)
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(at0), model.log_prob(at1), atol=1e-4, rtol=0)


def test_every_parameter_gets_a_gradient() -> None:
    model = _perturbed(SMALL, scale=0.1).train()
    x = _uniform(2048, seed=5) ** 2  # a non-uniform "data" set
    loss = -model.log_prob(x).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.all(torch.isfinite(p.grad)), name
        assert p.grad.abs().max() > 0, name


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
    u = _uniform(4000, seed=2)
    with torch.no_grad():
        x, log_pdf = model.sample(u)
        assert x.shape == (4000, 2) and log_pdf.shape == (4000,)
        assert torch.all((x >= 0) & (x <= 1))
        torch.testing.assert_close(model.log_prob(x), log_pdf, atol=2e-3, rtol=1e-3)


def test_sample_then_transform_round_trip() -> None:
    model = _perturbed(SMALL)
    u = _uniform(4000, seed=3)
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
    u = _uniform(4000, seed=4)
    with torch.no_grad():
        x, log_pdf = model.sample(u)
    # The uniform component: u0 < a is stretched onto [0, 1] and returned as is.
    a = config.uniform_weight
    sel = u[:, 0] < a
    torch.testing.assert_close(x[sel, 0], u[sel, 0] / a)
    torch.testing.assert_close(x[sel, 1], u[sel, 1])
    assert torch.all(log_pdf > torch.log(torch.tensor(a)) - 1e-6)  # bounded below by a


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_scripted_equals_eager(name: str) -> None:
    model = _perturbed(CONFIGS[name])
    scripted = torch.jit.script(model)
    u = _uniform(1000, seed=6)
    with torch.no_grad():
        xe, le = model.sample(u)
        xs, ls = scripted.sample(u)
        torch.testing.assert_close(xs, xe)
        torch.testing.assert_close(ls, le)
        torch.testing.assert_close(scripted.log_prob(u), model.log_prob(u))


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
        x = _uniform(1000, seed=7)
        y, ld = layer(x)
        torch.testing.assert_close(y[:, 0], x[:, 0])  # the conditioning coordinate passes
        x2, ld2 = layer.inverse(y)
        torch.testing.assert_close(x2, x, atol=1e-5, rtol=0)
        torch.testing.assert_close(ld + ld2, torch.zeros(1000), atol=1e-4, rtol=0)


# --- export -------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    model = _perturbed(CONFIGS["mixture"])
    path = tmp_path / "flow.pt"
    h = content_hash(torch.arange(12.0).numpy())
    save_flow(model, path, {"map_hash": h, "kl": 0.0123, "map": "test.exr"})
    loaded, meta = load_flow(path, expected_hash=h)
    assert meta["map_hash"] == h and meta["kl"] == 0.0123 and meta["map"] == "test.exr"
    assert meta["config"] == model.config.to_dict()
    assert meta["n_parameters"] == model.count_parameters()
    assert FlowConfig.from_dict(meta["config"]) == model.config
    u = _uniform(1000, seed=8)
    with torch.no_grad():
        xe, le = model.sample(u)
        xl, ll = loaded.sample(u)
        torch.testing.assert_close(xl, xe)
        torch.testing.assert_close(ll, le)
        torch.testing.assert_close(loaded.log_prob(u), model.log_prob(u))
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
