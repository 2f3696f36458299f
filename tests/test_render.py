"""Whole renders: furnace tests with analytic answers, and every sampler converging to the
same image (per-pixel z-tests with the logged variances)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from scipy.stats import t as t_dist

from tracer.envmap import EnvMap, load_envmap
from tracer.integrator import render
from tracer.job import scene_data
from tracer.samplers import make_strategy
from tracer.scene import load_scene

FURNACE = """
[camera]
eye = [0.0, 0.0, 3.0]
look_at = [0.0, 0.0, 0.0]
fov = 20            # the sphere (half-angle 19.5 deg) covers every pixel
[envmap]
type = "constant"
radiance = [1.0, 1.0, 1.0]
[materials.m]
{material}
[[shapes]]
type = "sphere"
center = [0.0, 0.0, 0.0]
radius = 1.0
material = "m"
"""

SPHERES = """
[camera]
eye = [0.0, 1.4, 4.5]
look_at = [0.0, 0.6, 0.0]
fov = 45
[envmap]
type = "sky"
radiance = [0.4, 0.5, 0.7]
sun_direction = [0.4, 0.6, 0.3]
sun_angle = 20.0
sun_radiance = [6.0, 5.6, 4.8]
resolution = [64, 32]
[materials.floor]
type = "diffuse"
albedo = [0.6, 0.6, 0.6]
[materials.clay]
type = "diffuse"
albedo = [0.7, 0.3, 0.2]
[materials.metal]
type = "conductor"
specular = [0.9, 0.9, 0.85]
roughness = 0.35
[materials.glass]
type = "dielectric"
ior = 1.5
[[shapes]]
type = "sphere"
center = [-1.0, 0.7, 0.0]
radius = 0.7
material = "clay"
[[shapes]]
type = "sphere"
center = [0.8, 0.7, -0.3]
radius = 0.7
material = "metal"
[[shapes]]
type = "sphere"
center = [0.1, 0.35, 1.0]
radius = 0.35
material = "glass"
[[shapes]]
type = "quad"
corner = [-10.0, 0.0, -10.0]
edge1 = [0.0, 0.0, 20.0]
edge2 = [20.0, 0.0, 0.0]
material = "floor"
"""

ALL = [("uniform", {}), ("piecewise", {}), ("bsdf", {}), ("mis", {}),
       ("mis", {"heuristic": "balance"}), ("mis", {"compensate": True}), ("mis", {"light": "uniform"})]


def ids(cases: list[tuple[str, dict]]) -> list[str]:
    return [name + "".join(f"-{v}" for v in kw.values()) for name, kw in cases]


def load(tmp_path: Path, text: str):
    p = tmp_path / "scene.toml"
    p.write_text(text)
    return load_scene(p)


def run(scene, env: EnvMap, sampler: str, w: int, h: int, spp: int, seed: int = 0, depth: int = 5,
        **kw: object):
    strategy = make_strategy(sampler, env, **kw)
    return render(scene_data(scene, w, h), env, strategy, w, h, spp, depth, seed)


@pytest.mark.parametrize("sampler,kw", ALL, ids=ids(ALL))
def test_diffuse_furnace(tmp_path: Path, sampler: str, kw: dict) -> None:
    """A diffuse sphere of albedo a under a constant white sky renders exactly a."""
    albedo = 0.5
    scene = load(tmp_path, FURNACE.format(material=f'type = "diffuse"\nalbedo = [{albedo}, {albedo}, {albedo}]'))
    env = load_envmap(scene.env)
    spp = 256
    res = run(scene, env, sampler, 12, 12, spp, **kw)
    img = res.film.image()
    var = res.film.variance()
    se = math.sqrt(var.sum()) / img.size  # standard error of the image mean
    assert abs(img.mean() - albedo) <= 4 * se + 1e-9, (img.mean(), se)
    # and pixel by pixel, with each pixel's estimated variance: Student t with spp - 1 degrees
    # of freedom, Bonferroni over the 144 pixels (channels are identical here) at alpha = 0.01
    z = (img - albedo) / np.sqrt(np.maximum(var, 1e-30))
    assert np.all(np.abs(z[var > 0]) < t_dist.isf(0.01 / (2 * 144), spp - 1)), np.abs(z).max()
    assert res.film.bad.sum() == 0


@pytest.mark.parametrize("sampler,kw", ALL[:4], ids=ids(ALL[:4]))
def test_conductor_white_furnace(tmp_path: Path, sampler: str, kw: dict) -> None:
    """A closed rough conductor with F0 = 1 reflects at most what arrives (energy loss only)."""
    scene = load(tmp_path, FURNACE.format(material='type = "conductor"\nspecular = [1, 1, 1]\nroughness = 0.6'))
    env = load_envmap(scene.env)
    res = run(scene, env, sampler, 16, 16, 64, **kw)
    img = res.film.image()
    se = math.sqrt(res.film.variance().sum()) / img.size
    assert img.mean() <= 1.0 + 4 * se
    assert img.mean() > 0.5  # GGX at alpha 0.6 loses ~40% at grazing angles


@pytest.fixture(scope="module")
def sphere_renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    scene = load(tmp_path_factory.mktemp("spheres"), SPHERES)
    env = load_envmap(scene.env)
    out = {}
    for seed, ((sampler, kw), name) in enumerate(zip(ALL, ids(ALL), strict=True)):
        # independent seeds: the z-test assumes independent images
        res = run(scene, env, sampler, 16, 12, 512, seed=100 + seed, depth=6, **kw)
        assert res.film.bad.sum() == 0
        out[name] = (res.film.image(), res.film.variance())
    return out


@pytest.mark.parametrize("name", ids(ALL)[1:])
def test_samplers_converge_to_the_same_image(sphere_renders: dict, name: str) -> None:
    """Per-pixel z-test of each sampler's image against ``uniform``'s, with logged variances."""
    a, va = sphere_renders[name]
    b, vb = sphere_renders["uniform"]
    z = (a - b) / np.sqrt(va + vb + 1e-20)
    n = z.size
    # two-sided Bonferroni threshold at alpha = 0.01 over every pixel and channel
    thresh = norm.isf(0.01 / (2 * n))
    assert np.all(np.abs(z) < thresh), np.sort(np.abs(z).ravel())[-10:]
    # the image means must agree tightly (this is where a bias would show)
    se = math.sqrt(va.sum() + vb.sum()) / n
    assert abs(a.mean() - b.mean()) < 4 * se, (a.mean(), b.mean(), se)


def test_importance_sampling_beats_uniform(sphere_renders: dict) -> None:
    """On a sky with a sun, piecewise and MIS have lower variance than uniform and BSDF."""
    v = {k: float(np.mean(var)) for k, (_, var) in sphere_renders.items()}
    assert v["piecewise"] < v["uniform"]
    assert v["mis"] < v["bsdf"]


def test_same_seed_same_image(tmp_path: Path) -> None:
    scene = load(tmp_path, SPHERES)
    env = load_envmap(scene.env)
    a = run(scene, env, "mis", 8, 8, 4, seed=3).film.image()
    b = run(scene, env, "mis", 8, 8, 4, seed=3).film.image()
    c = run(scene, env, "mis", 8, 8, 4, seed=4).film.image()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_batching_does_not_change_the_image(tmp_path: Path) -> None:
    """Samples are keyed by (pixel, sample index): one big batch == many small ones."""
    scene = load(tmp_path, SPHERES)
    env = load_envmap(scene.env)
    strategy = make_strategy("mis", env)
    data = scene_data(scene, 8, 8)
    a = render(data, env, strategy, 8, 8, 8, 5, 1).film
    b = render(data, env, strategy, 8, 8, 8, 5, 1, batch_paths=64).film
    np.testing.assert_allclose(a.image(), b.image(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a.variance(), b.variance(), rtol=1e-9, atol=1e-18)


def test_max_depth_zero_sees_only_the_environment(tmp_path: Path) -> None:
    scene = load(tmp_path, FURNACE.format(material='type = "diffuse"\nalbedo = [0.5, 0.5, 0.5]'))
    env = load_envmap(scene.env)
    img = run(scene, env, "mis", 4, 4, 2, depth=0).film.image()
    np.testing.assert_array_equal(img, 0.0)  # every camera ray hits the sphere; no bounce allowed
