"""`tracer converge` keeps each finished sampler's sweep: a rerun resumes, and --ray gives the same rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tracer import converge
from tracer.converge import run_converge
from tracer.job import RenderOptions

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "scenes" / "spheres.toml"
SAMPLERS = ["bsdf", "piecewise", "mis"]
SPP = [1, 2, 4]
METRICS = ("sampler", "spp", "mse", "relmse", "mean_pixel_variance")
REAL_RUN_SWEEP = converge.run_sweep


def opts() -> RenderOptions:
    return RenderOptions(scene=SCENE, resolution=(12, 8), max_depth=3)


def rows(summary: dict) -> list[tuple]:
    return [tuple(p[k] for k in METRICS) for p in summary["points"]]


class Interrupted(Exception):
    """Stands for a kill between two samplers."""


def counting(monkeypatch: pytest.MonkeyPatch, fail_on: str | None = None) -> list[str]:
    """Count (and optionally kill, as an interruption would) the sweeps actually rendered."""
    calls: list[str] = []

    def run(job: converge.SweepJob, *a: object, **k: object) -> converge.SweepResult:
        calls.append(job.name)
        if job.name == fail_on:
            raise Interrupted
        return REAL_RUN_SWEEP(job, *a, **k)

    monkeypatch.setattr(converge, "run_sweep", run)
    return calls


def test_an_interrupted_experiment_resumes_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "conv"
    calls = counting(monkeypatch, fail_on="mis")
    with pytest.raises(Interrupted):
        run_converge(opts(), SAMPLERS, SPP, out, ref_spp=16, progress=False)
    assert calls == ["bsdf", "piecewise", "mis"]
    assert sorted(p.name for p in (out / "sweeps").iterdir()) == ["bsdf.npz", "piecewise.npz"]

    calls = counting(monkeypatch)
    resumed = run_converge(opts(), SAMPLERS, SPP, out, ref_spp=16, progress=False)
    assert calls == ["mis"]  # the finished sweeps are kept, not rendered again
    calls = counting(monkeypatch)
    again = run_converge(opts(), SAMPLERS, SPP, out, ref_spp=16, progress=False)
    assert calls == [] and rows(again) == rows(resumed)

    fresh = run_converge(opts(), SAMPLERS, SPP, tmp_path / "fresh", ref_spp=16, progress=False)
    assert rows(resumed) == rows(fresh)  # a resumed experiment measures what a fresh one does


def test_other_settings_are_not_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "conv"
    run_converge(opts(), SAMPLERS, SPP, out, ref_spp=16, progress=False)
    calls = counting(monkeypatch)
    run_converge(RenderOptions(scene=SCENE, resolution=(12, 8), max_depth=3, seed=9), SAMPLERS, SPP, out,
                 ref_spp=16, progress=False)
    assert calls == SAMPLERS
    calls = counting(monkeypatch)
    run_converge(RenderOptions(scene=SCENE, resolution=(12, 8), max_depth=3, seed=9), SAMPLERS, [1, 2, 4, 8],
                 out, ref_spp=16, progress=False)
    assert calls == SAMPLERS  # another spp list is another sweep


def test_converge_on_ray_gives_the_same_rows(tmp_path: Path) -> None:
    local = run_converge(opts(), SAMPLERS, SPP, tmp_path / "local", ref_spp=16, progress=False)
    on_ray = run_converge(opts(), SAMPLERS, SPP, tmp_path / "ray", ref_spp=16, progress=False, ray="local")
    assert rows(on_ray) == rows(local)
