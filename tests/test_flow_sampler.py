"""The ``flow`` light sampler: its own pdf (chi-square), pdf(sample) == pdf, the cache, the
same image as ``piecewise``, and bad model files."""

from __future__ import annotations

import inspect
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch

from flows.model import FlowConfig
from flows.pixel_flow import PixelFlowConfig
from tests.chi2 import chi2_test
from tests.flow_helpers import FAR_FLOWS, far_flow
from tracer.envmap import EnvMap, sky_map
from tracer.errors import TracerError
from tracer.integrator import render
from tracer.job import scene_data
from tracer.samplers import make_strategy
from tracer.samplers.flow import (
    FlowSampler,
    cache_path,
    fit_map_flow,
    load_map_flow,
    make_flow_sampler,
)
from tracer.samplers.piecewise import PiecewiseSampler

if TYPE_CHECKING:
    from tracer.samplers.base import LightSamples

SMALL = FlowConfig(n_layers=2, n_bins=16, hidden=16, encoding_size=16)
#: brief fits of each model
FITS = {
    "pixel": {"config": PixelFlowConfig(hidden=16), "max_steps": 300, "eval_every": 100},
    "spline": {"config": SMALL, "max_steps": 300, "batch_size": 2048, "eval_every": 100},
}


def n_chi2_tests() -> int:
    """How many chi-square tests this file runs (their Sidak correction): every test function
    that calls ``chi2_test`` counts once per fitted flow when it takes ``fitted``, and once per
    case of each of its ``parametrize`` marks."""
    count = 0
    for name, fn in vars(sys.modules[__name__]).items():
        if not (name.startswith("test_") and callable(fn) and "chi2_test" in fn.__code__.co_names):
            continue
        runs = len(FITS) if "fitted" in inspect.signature(fn).parameters else 1
        for mark in getattr(fn, "pytestmark", []):
            if mark.name == "parametrize":
                runs *= len(mark.args[1])
        count += runs
    return count


def sky() -> EnvMap:
    rgb = sky_map(np.array([0.5, 0.6, 0.8]), np.array([0.3, 0.6, 0.4]), 12.0, np.array([20.0, 18.0, 15.0]), 16, 32, 2)
    return EnvMap(rgb, rot_u=0.125)  # a whole number of pixel columns (4 of 32)


@pytest.fixture(scope="module", params=sorted(FITS))
def fitted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[EnvMap, Path]:
    env = sky()
    path = tmp_path_factory.mktemp("flows") / "sky.pt"
    meta = fit_map_flow(env, path, progress=False, **FITS[request.param])
    assert meta["map_hash"] == env.content_hash()
    return env, path


def test_flow_chi2_against_its_own_pdf(fitted: tuple[EnvMap, Path]) -> None:
    env, path = fitted
    s = make_flow_sampler(env, path)
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        ls = s.sample(rng.random((n, 2)))
        return ls.wi, ls.pdf > 0

    # both flows are discontinuous at the pixel edges (the pixel flow is constant per pixel,
    # the spline flow's mixture has single-pixel components): cells aligned with the
    # 16 x 32 map's pixels, each integrated on 4 x 4 sub-cells
    res = chi2_test(sample, s.pdf, n_samples=300_000, theta_edges=np.pi * np.arange(17) / 16, n_phi=32,
                    sub=4, quad_order=3, n_tests=n_chi2_tests())
    assert res.passed, res.message


def test_chi2_tests_are_counted() -> None:
    assert n_chi2_tests() >= len(FITS)  # at least the one above, for each fitted flow


def test_flow_pdf_of_sample_and_radiance(fitted: tuple[EnvMap, Path]) -> None:
    env, path = fitted
    s = make_flow_sampler(env, path)
    ls = s.sample(np.random.default_rng(1).random((20_000, 2)))
    assert_pdf_of_sample(s, ls)
    np.testing.assert_array_equal(env.eval(ls.wi), ls.le)


#: Relative agreement of pdf(sample(u).wi) with sample(u).pdf: a sample's density is the flow's
#: log_prob at the returned point (exactly for the spline flow, to float32 rounding, ~1e-6,
#: for the pixel flow), and the direction's round trip to the map's square is exact at float32.
#: 1e-3 (MIS weights summing to 1 +- 1e-3) fails.
PDF_RTOL = 1e-5


def assert_pdf_of_sample(s: FlowSampler, ls: LightSamples) -> None:
    """``s.pdf`` of the sampled directions is their sampled pdf, in the batch they came in and
    in the renderer's other batches (one direction, a few)."""
    ok = ls.pdf > 0
    assert ok.mean() > 0.999
    pdf = s.pdf(ls.wi)
    np.testing.assert_allclose(pdf[ok], ls.pdf[ok], rtol=PDF_RTOL)
    one = np.concatenate([s.pdf(ls.wi[i : i + 1]) for i in range(32)])
    few = np.concatenate([s.pdf(ls.wi[i : i + 7]) for i in range(0, 700, 7)])
    np.testing.assert_allclose(one, pdf[:32], rtol=PDF_RTOL)
    np.testing.assert_allclose(few, pdf[:700], rtol=PDF_RTOL)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
@pytest.mark.parametrize("name", sorted(FAR_FLOWS))
def test_pdf_of_sample_of_flows_far_from_uniform(name: str) -> None:
    """The same through flows far from uniform (a briefly fitted one is too smooth to show
    where float32 arithmetic inside the flow went wrong)."""
    s = FlowSampler(sky(), torch.jit.script(far_flow(name)), {})
    assert_pdf_of_sample(s, s.sample(np.random.default_rng(5).random((20_000, 2))))


def test_flow_beats_uniform_and_approaches_piecewise(fitted: tuple[EnvMap, Path]) -> None:
    """Estimating the map's power: a briefly fitted flow already has far less variance than
    uniform sampling (1/4pi), and is unbiased."""
    env, path = fitted
    u = np.random.default_rng(2).random((200_000, 2))
    lum = np.array([0.2126, 0.7152, 0.0722])
    out = {}
    for s in (make_flow_sampler(env, path), PiecewiseSampler(env)):
        ls = s.sample(u)
        y = (ls.le @ lum) / np.where(ls.pdf > 0, ls.pdf, np.inf)
        out[s.name] = (y.mean(), y.var())
    # the exact integral of luminance over the sphere (pixel solid angles, not row centres)
    h, w = env.shape
    t = np.pi * np.arange(h + 1) / h
    power = float(((env.rgb.astype(np.float64) @ lum) * ((np.cos(t[:-1]) - np.cos(t[1:])) * 2 * np.pi / w)[:, None]).sum())
    assert abs(out["flow"][0] - power) < 4 * math.sqrt(out["flow"][1] / 200_000)
    uniform_var = np.var((env.eval(_uniform_dirs(200_000)) @ lum) * 4 * math.pi)
    assert out["flow"][1] < uniform_var / 5


def _uniform_dirs(n: int) -> np.ndarray:
    d = np.random.default_rng(4).normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1)[:, None]


def test_cache_is_used(fitted: tuple[EnvMap, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env, path = fitted
    monkeypatch.setenv("FLOWTRACER_FLOW_CACHE", str(tmp_path))
    target = cache_path(env)
    assert target.name.endswith("-pixel.pt") and cache_path(env, model="spline") != target
    target.write_bytes(path.read_bytes())
    s = make_flow_sampler(env)  # must load, not fit: fitting would print and take time
    assert isinstance(s, FlowSampler) and s.meta["map_hash"] == env.content_hash()


def test_mismatched_and_corrupt_models_are_refused(fitted: tuple[EnvMap, Path], tmp_path: Path) -> None:
    env, path = fitted
    other = EnvMap(env.rgb * 2)
    with pytest.raises(TracerError, match="sky.pt"):
        load_map_flow(other, path)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(TracerError, match="bad.pt"):
        load_map_flow(env, bad)
    with pytest.raises(TracerError, match="missing.pt"):
        load_map_flow(env, tmp_path / "missing.pt")


@pytest.mark.parametrize("kind", sorted(FITS))
def test_fitting_an_all_black_map_fails_clearly(kind: str, tmp_path: Path) -> None:
    rgb = np.zeros((4, 8, 3), np.float32)
    with pytest.raises(TracerError, match="black.exr: cannot fit a flow"):
        fit_map_flow(EnvMap(rgb, name="black.exr"), tmp_path / "x.pt", progress=False, **FITS[kind])
    assert not (tmp_path / "x.pt").exists()


def test_flow_converges_to_the_piecewise_image(fitted: tuple[EnvMap, Path], tmp_path: Path) -> None:
    """Per-pixel z-test between flow and piecewise renders (NEE) and flow under MIS."""
    from tests.test_render import SPHERES, load

    env, path = fitted
    scene = load(tmp_path, SPHERES)
    data = scene_data(scene, 12, 10)
    imgs = {}
    for i, (name, kw) in enumerate([("piecewise", {}), ("flow", {}), ("mis", {"light": "flow"})]):
        st = make_strategy(name, env, **kw, model_path=path) if "flow" in (name, kw.get("light")) else make_strategy(name, env)
        # the reference (piecewise) takes 8x the samples, as in test_render: at 512 spp its
        # sun-lit pixels are heavy-tailed, and a variance estimate that runs low there flags
        # the others' pixels (against an 8192-spp mis image, 1 seed in 10 of a 512-spp
        # piecewise render exceeded this threshold, none of 10 at 4096 spp)
        spp = 4096 if name == "piecewise" else 512
        res = render(data, env, st, 12, 10, spp, 5, 50 + i)
        assert res.film.bad.sum() == 0
        imgs[name] = (res.film.image(), res.film.variance())
    from scipy.stats import norm

    a, va = imgs["piecewise"]
    for name in ("flow", "mis"):
        b, vb = imgs[name]
        z = (a - b) / np.sqrt(va + vb + 1e-20)
        assert np.all(np.abs(z) < norm.isf(0.01 / (2 * z.size * 2))), (name, np.abs(z).max())
        se = math.sqrt(va.sum() + vb.sum()) / a.size
        assert abs(a.mean() - b.mean()) < 4 * se
