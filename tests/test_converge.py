"""The convergence experiment: metrics, files, plots, and that it catches a biased sampler."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tracer import converge
from tracer.converge import COLUMNS, parse_spp_list, run_converge
from tracer.errors import TracerError
from tracer.job import RenderOptions, error_metrics
from tracer.samplers import make_strategy as real_make_strategy
from tracer.samplers.base import LightSamples

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "scenes" / "furnace.toml"


def test_error_metrics_closed_forms() -> None:
    rng = np.random.default_rng(0)
    ref = rng.random((8, 8, 3)) + 0.5
    assert error_metrics(ref, ref) == {"mse": 0.0, "relmse": 0.0}
    m = error_metrics(ref + 0.1, ref)
    assert m["mse"] == pytest.approx(0.01)
    assert m["relmse"] == pytest.approx(np.mean(0.01 / (ref**2 + 1e-2)))


def test_parse_spp_list() -> None:
    assert parse_spp_list("1,2,4,...,64") == [1, 2, 4, 8, 16, 32, 64]
    assert parse_spp_list("1,2,4,...,48") == [1, 2, 4, 8, 16, 32, 48]
    assert parse_spp_list("3,5,9") == [3, 5, 9]
    for bad in ("", "0,1", "4,2", "1,...", "a,b"):
        with pytest.raises(TracerError):
            parse_spp_list(bad)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("conv")
    opts = RenderOptions(scene=SCENE, resolution=(12, 12))
    summary = run_converge(opts, ["uniform", "bsdf", "piecewise", "mis"], [1, 2, 4, 8, 16, 32], out,
                           ref_spp=64, progress=False)
    return out, summary


def test_metrics_files_have_every_row_and_column(experiment: tuple[Path, dict]) -> None:
    out, _ = experiment
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS
    assert len(rows) == 4 * 6
    assert {(r["sampler"], int(r["spp"])) for r in rows} == {
        (s, n) for s in ("uniform", "bsdf", "piecewise", "mis") for n in (1, 2, 4, 8, 16, 32)}
    for r in rows:
        for c in COLUMNS[1:]:
            # one sample per pixel has no variance estimate: reported as inf
            if c == "mean_pixel_variance" and r["spp"] == "1":
                assert float(r[c]) == np.inf
                continue
            assert np.isfinite(float(r[c])), (c, r)
    data = json.loads((out / "metrics.json").read_text())
    assert len(data["points"]) == 24 and set(data["bias"]) == {"uniform", "bsdf", "piecewise", "mis"}
    # cumulative time grows with spp
    t = [float(r["time_s"]) for r in rows if r["sampler"] == "mis"]
    assert t == sorted(t)


def test_plots_are_valid_pngs(experiment: tuple[Path, dict]) -> None:
    from PIL import Image

    out, _ = experiment
    for name in ("convergence.png", "crops.png"):
        with Image.open(out / name) as im:
            im.verify()
            assert im.format == "PNG"


def test_furnace_error_falls_and_bsdf_is_exact(experiment: tuple[Path, dict]) -> None:
    """bsdf sampling of a convex diffuse sphere under a constant sky is noise-free: its
    relMSE is the reference's own noise; every sampler's error falls with spp."""
    _, summary = experiment
    pts = summary["points"]
    for s in ("uniform", "piecewise", "mis"):
        rel = [p["relmse"] for p in pts if p["sampler"] == s]
        assert rel[-1] < rel[0]
    assert not any(b["biased"] for b in summary["bias"].values()), summary["bias"]


class HalfPdf:
    """A deliberately wrong light sampler: it reports half the density it samples with."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.name = "half-pdf"

    def sample(self, u: np.ndarray) -> LightSamples:
        s = self.inner.sample(u)  # type: ignore[attr-defined]
        return LightSamples(s.wi, s.pdf * 0.5, s.le)

    def pdf(self, wi: np.ndarray) -> np.ndarray:
        return self.inner.pdf(wi) * 0.5  # type: ignore[attr-defined]


def test_a_biased_sampler_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def rigged(name: str, env: object, **kw: object):
        st = real_make_strategy(name, env, **kw)
        if name == "piecewise":
            st.light = HalfPdf(st.light)
        return st

    monkeypatch.setattr(converge, "make_strategy", rigged)
    opts = RenderOptions(scene=SCENE, resolution=(12, 12))
    summary = run_converge(opts, ["piecewise", "bsdf"], [4, 16, 64], tmp_path, ref_spp=64, progress=False)
    assert summary["bias"]["piecewise"]["biased"], summary["bias"]
    assert not summary["bias"]["bsdf"]["biased"], summary["bias"]


def test_reference_of_wrong_size_or_non_finite_is_refused(tmp_path: Path) -> None:
    from tracer.hdr_io import write_exr

    bad = tmp_path / "ref.exr"
    write_exr(bad, np.ones((5, 7, 3), np.float32))
    opts = RenderOptions(scene=SCENE, resolution=(12, 12))
    with pytest.raises(TracerError, match="ref.exr"):
        run_converge(opts, ["mis"], [1], tmp_path / "o", reference=bad, progress=False)
    img = np.ones((12, 12, 3), np.float32)
    img[3, 3, 1] = np.inf
    write_exr(bad, img)
    with pytest.raises(TracerError, match="non-finite"):
        run_converge(opts, ["mis"], [1], tmp_path / "o", reference=bad, progress=False)
