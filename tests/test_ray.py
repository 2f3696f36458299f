"""Sample chunks on a local two-worker Ray: the same image as one process, even when a worker dies."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tracer.distributed import KILL_ONCE_ENV, import_ray, ray_render
from tracer.envmap import load_envmap
from tracer.errors import TracerError
from tracer.film import Film
from tracer.integrator import StageTimes, render
from tracer.samplers import make_strategy
from tracer.scene import load_scene
from tracer.scene_data import scene_data

ROOT = Path(__file__).resolve().parents[1]
W, H, SPP, DEPTH, SEED = 24, 16, 12, 5, 4


@pytest.fixture(scope="module")
def setup() -> tuple:
    scene = load_scene(ROOT / "scenes" / "spheres.toml")
    env = load_envmap(scene.env)
    return scene_data(scene, W, H), env, make_strategy("mis", env)


def single(setup: tuple) -> Film:
    data, env, st = setup
    return render(data, env, st, W, H, SPP, DEPTH, SEED).film


def distributed(setup: tuple, **kw: object) -> Film:
    data, env, st = setup
    film = Film(W, H)
    ray_render("local", data, env, st, W, H, SPP, DEPTH, SEED, 3, film, 0, StageTimes(), **kw)
    return film


def assert_same(a: Film, b: Film) -> None:
    np.testing.assert_array_equal(a.count, b.count)
    np.testing.assert_array_equal(a.bad, b.bad)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a.m2, b.m2, rtol=1e-9, atol=1e-15)


def test_distributed_render_equals_single_process(setup: tuple) -> None:
    merged: list[int] = []
    film = distributed(setup, on_chunk=lambda f, done, n: merged.append(done))
    assert merged == [3, 6, 9, 12]  # merged in sample order, whatever order the tasks finished in
    assert_same(film, single(setup))


def test_a_worker_killed_mid_task_is_retried(setup: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "killed"
    monkeypatch.setenv(KILL_ONCE_ENV, str(marker))
    film = distributed(setup)
    assert marker.exists(), "no worker was killed"
    assert_same(film, single(setup))


def test_without_ray_the_flag_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(TracerError, match=r"--ray needs Ray: pip install 'flowtracer\[ray\]'"):
        import_ray()


def test_fit_flow_fits_several_maps_on_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`tracer fit-flow A B --ray`: each map fitted in a task, the models written to the cache."""
    from tracer.cli import main
    from tracer.envmap import sky_map
    from tracer.hdr_io import write_exr
    from tracer.samplers.flow import cache_path, load_map_flow
    from tracer.scene import EnvSpec

    monkeypatch.setenv("FLOWTRACER_FLOW_CACHE", str(tmp_path / "cache"))
    maps = []
    for i, sun in enumerate((10.0, 30.0)):
        p = tmp_path / f"sky{i}.exr"
        write_exr(p, sky_map(np.array([0.5, 0.6, 0.8]), np.array([0.3, 0.6, 0.4]), sun, np.array([20.0] * 3), 8, 16, 2))
        maps.append(p)
    args = ["fit-flow", *map(str, maps), "--max-steps", "30", "--hidden", "8", "--no-progress"]
    assert main([*args, "--ray"]) == 0
    out = capsys.readouterr().out
    for p in maps:
        env = load_envmap(EnvSpec(kind="file", path=p))
        _, meta = load_map_flow(env, cache_path(env))  # refuses a model of another map
        assert meta["map_hash"] == env.content_hash() and str(p) in out
    assert main([*args, "--out", str(tmp_path / "one.pt")]) == 2  # one --out for two maps: refused
