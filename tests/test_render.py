"""Whole renders: furnace tests with analytic answers, and every sampler converging to the
same image (per-pixel z-tests with the logged variances)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm
from scipy.stats import t as t_dist

from tests.conftest import directional_albedo
from tracer.bsdf import CONDUCTOR
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

# ("mis", {}) is the MIS-compensated light density (the default), ("mis", {"compensate": False})
# the plain one; every sampler plays shadow-ray roulette at its default threshold but
# ("mis", {"shadow_rr": 0.0}), which traces every shadow ray
ALL = [("uniform", {}), ("piecewise", {}), ("bsdf", {}), ("mis", {}),
       ("mis", {"heuristic": "balance"}), ("mis", {"compensate": False}), ("mis", {"light": "uniform"}),
       ("product", {}), ("mis", {"light": "product"}), ("alias", {}), ("mis", {"light": "alias"}),
       ("mis", {"sequence": "sobol"}), ("mis", {"shadow_rr": 0.0})]


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


FURNACE_CASES = [case for case in ALL if "compensate" not in case[1]]


def image_mean_se(var: np.ndarray) -> float:
    """Standard error of an image's mean from its pixels' variances, (H, W[, 3]). A pixel's
    channels come from the same paths, so they are taken as fully correlated (its channel
    mean's standard deviation the mean of theirs): exact for a grey scene, whose channels
    are identical, and an upper bound otherwise. (Summing the channels' variances as if
    independent would make the error of a grey image sqrt(3) too small.)"""
    sd = np.sqrt(var)
    if sd.ndim == 3:
        sd = sd.mean(axis=-1)
    return math.sqrt(float(np.sum(sd**2))) / sd.size


def sphere_hits(cam: np.ndarray, w: int, h: int, sub: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the camera rays of a ``sub`` x ``sub`` grid of points in every pixel hit the
    FURNACE sphere (centre 0, radius 1): (h, w, sub * sub) arrays of cos(theta_o) = -d.n and of
    n_y. Independent of the renderer's kernels: the film-plane convention of
    :func:`tracer.camera.camera_frame` and an analytic ray-sphere intersection."""
    off = (np.arange(sub) + 0.5) / sub
    x = (np.arange(w)[:, None] + off[None, :]).reshape(-1)  # w * sub film columns
    y = (np.arange(h)[:, None] + off[None, :]).reshape(-1)
    sx = 2.0 * x / w - 1.0
    sy = 1.0 - 2.0 * y / h
    d = cam[1][None, None, :] + sx[None, :, None] * cam[2] + sy[:, None, None] * cam[3]
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = cam[0]
    b = d @ o
    disc = b * b - (o @ o - 1.0)
    assert np.all(disc > 0), "every camera ray must hit the sphere"
    t = -b - np.sqrt(disc)
    n = o + t[..., None] * d  # unit normal of the unit sphere at the hit
    cos_o = -np.sum(d * n, axis=-1)

    def per_pixel(a: np.ndarray) -> np.ndarray:
        return a.reshape(h, sub, w, sub).transpose(0, 2, 1, 3).reshape(h, w, sub * sub)

    return per_pixel(cos_o), per_pixel(n[..., 1])


def two_level_sky(h: int = 8, w: int = 16, sky: float = 2.0, ground: float = 0.25) -> np.ndarray:
    """Radiance ``sky`` over the upper hemisphere (rows above the equator), ``ground`` below."""
    rgb = np.full((h, w, 3), ground, np.float32)
    rgb[: h // 2] = sky
    return rgb


@pytest.mark.parametrize("sampler,kw", FURNACE_CASES, ids=ids(FURNACE_CASES))
def test_diffuse_furnace(tmp_path: Path, sampler: str, kw: dict) -> None:
    """A diffuse sphere of albedo a under a constant white sky renders exactly a.

    (On a constant map the MIS-compensated density, ``mis``'s default, falls back to the
    plain one, so the two are told apart on a map where they differ:
    test_diffuse_sphere_under_two_level_sky.)
    """
    albedo = 0.5
    scene = load(tmp_path, FURNACE.format(material=f'type = "diffuse"\nalbedo = [{albedo}, {albedo}, {albedo}]'))
    env = load_envmap(scene.env)
    spp = 256
    res = run(scene, env, sampler, 12, 12, spp, **kw)
    img = res.film.image()
    var = res.film.variance()
    se = image_mean_se(var)
    assert abs(img.mean() - albedo) <= 4 * se + 1e-9, (img.mean(), se)
    # and pixel by pixel, with each pixel's estimated variance: Student t with spp - 1 degrees
    # of freedom, Bonferroni over the 144 pixels (channels are identical here) at alpha = 0.01
    z = (img - albedo) / np.sqrt(np.maximum(var, 1e-30))
    assert np.all(np.abs(z[var > 0]) < t_dist.isf(0.01 / (2 * 144), spp - 1)), np.abs(z).max()
    assert res.film.bad.sum() == 0


@pytest.mark.parametrize("sampler,kw", [("mis", {}), ("mis", {"heuristic": "balance"}), ("uniform", {})])
def test_heavy_shadow_roulette_in_the_furnace(tmp_path: Path, sampler: str, kw: dict) -> None:
    """Shadow-ray roulette at a threshold of 8 x the map's radiance, above every next-event
    term here: on a constant map every light sampler's density is 1 / 4 pi, so a term is at
    most 4 x albedo x cos(theta) <= 2. Every term is rouletted, kept with probability at most
    1/4, and weighs 8 when kept. The image mean is still the albedo (the estimate is
    unbiased), within 5 standard errors, and the variance is several times that of no
    roulette, so it did act. (Not pixel by pixel: at 256 spp a pixel's handful of kept terms
    is far from normal.)"""
    albedo = 0.5
    scene = load(tmp_path, FURNACE.format(material=f'type = "diffuse"\nalbedo = [{albedo}, {albedo}, {albedo}]'))
    env = load_envmap(scene.env)
    heavy = run(scene, env, sampler, 12, 12, 256, seed=3, shadow_rr=8.0, **kw)
    none = run(scene, env, sampler, 12, 12, 256, seed=3, shadow_rr=0.0, **kw)
    img, var = heavy.film.image(), heavy.film.variance()
    se = image_mean_se(var)
    assert abs(img.mean() - albedo) <= 5 * se, (img.mean(), se)
    assert var.mean() > 3 * none.film.variance().mean(), (var.mean(), none.film.variance().mean())
    assert heavy.film.bad.sum() == 0


@pytest.mark.parametrize("sequence", ["independent", "sobol"])
def test_dielectric_furnace(tmp_path: Path, sequence: str) -> None:
    """A glass sphere (no absorption) in a constant white sky renders exactly 1.

    Radiance is divided by eta^2 on the way in and multiplied back on the way out, so every
    path that leaves the sphere carries weight 1; only Russian roulette (from depth 2, on
    the paths reflected inside) reweights them. Roulette reads the throughput times the
    eta^2 of the refractions so far: such a path goes on with probability 0.95 (the cap), a
    per-sample variance of at most a few (1/0.95 - 1) ~ 0.05 on the few percent of paths
    reflected inside. Read as if a path inside were as dim as its throughput (1/2.25), it
    would go on with probability 0.44 and each survivor would weigh 2.27: a variance of
    1.27 on those paths. Depth 64 loses under 1e-9 (internal reflection at these angles is
    below 0.1 per hit, and a sphere has no total internal reflection for rays from outside).
    """
    scene = load(tmp_path, FURNACE.format(material='type = "dielectric"\nior = 1.5'))
    env = load_envmap(scene.env)
    spp = 256
    res = run(scene, env, "bsdf", 8, 8, spp, depth=64, sequence=sequence)
    img, var = res.film.image(), res.film.variance()
    se = image_mean_se(var)
    assert abs(img.mean() - 1.0) <= 4 * se + 1e-9, (img.mean(), se)
    per_sample = var.mean() * spp  # the film's variance is of the pixel mean
    assert per_sample < 0.02, per_sample
    assert res.film.bad.sum() == 0


TWO_LEVEL_CASES = [("mis", {"compensate": False}), ("mis", {}), ("piecewise", {}), ("bsdf", {}),
                   ("product", {}), ("mis", {"light": "product"})]


@pytest.mark.parametrize("sampler,kw", TWO_LEVEL_CASES, ids=ids(TWO_LEVEL_CASES))
def test_diffuse_sphere_under_two_level_sky(tmp_path: Path, sampler: str, kw: dict) -> None:
    """A diffuse sphere under a sky of radiance L1 above the horizon and L0 below.

    A Lambertian point with normal n sees the upper hemisphere with view factor
    (1 + n_y) / 2, so it reflects a (L0 + (L1 - L0) (1 + n_y) / 2) (one bounce: the sphere is
    convex); linear in n_y, so a pixel's expectation is that at the pixel's mean n_y. The
    compensated light density is 0 on the whole lower hemisphere here, which only MIS with
    BSDF sampling covers.
    """
    albedo, sky, ground = 0.5, 2.0, 0.25
    scene = load(tmp_path, FURNACE.format(material=f'type = "diffuse"\nalbedo = [{albedo}, {albedo}, {albedo}]'))
    env = EnvMap(two_level_sky(sky=sky, ground=ground))
    plain, comp = env.sampling_density(), env.sampling_density(compensate=True)
    assert np.all(comp[4:] == 0.0) and np.all(comp[:4] > 0.0) and np.all(plain > 0.0)
    w = h = 12
    spp = 256
    res = run(scene, env, sampler, w, h, spp, **kw)
    img, var = res.film.image(), res.film.variance()
    assert res.film.bad.sum() == 0
    cam = scene_data(scene, w, h).camera
    ny = sphere_hits(cam, w, h, 16)[1].mean(axis=-1)
    quad_err = float(np.abs(ny - sphere_hits(cam, w, h, 8)[1].mean(axis=-1)).max())
    assert quad_err < 1e-4
    ref = albedo * (ground + (sky - ground) * (1.0 + ny) / 2.0)
    assert ref.max() - ref.min() > 0.3  # really not constant over the image
    se = image_mean_se(var)
    assert abs(img.mean() - ref.mean()) <= 5 * se + albedo * (sky - ground) * quad_err, (
        img.mean(), ref.mean(), se)
    t = t_dist.isf(0.01 / (2 * w * h * 3), spp - 1)  # Bonferroni over pixels and channels
    dev = np.abs(img - ref[..., None]) - albedo * (sky - ground) * quad_err
    assert np.all(dev <= t * np.sqrt(var)), np.max(dev / np.sqrt(var))


@pytest.mark.parametrize("sampler,kw", ALL[:4], ids=ids(ALL[:4]))
def test_conductor_white_furnace(tmp_path: Path, sampler: str, kw: dict) -> None:
    """A rough conductor sphere with F0 = 1 under a constant white sky.

    The sphere is convex, so a camera ray's expected radiance is the directional albedo
    rho(cos theta_o) at its hit point; rho comes from quadrature of tracer.bsdf's eval
    (:func:`tests.conftest.directional_albedo`, about 0.59 to 0.61 here: single-scattering GGX
    at alpha 0.6 loses ~40%), interpolated in cos theta_o, and is averaged over each pixel on a
    16 x 16 grid of film points.

    Tolerance: 5 standard errors (from the film's per-pixel variances) plus the quadrature
    errors, for the image mean and for the means of four rings of 64 pixels grouped by view
    angle. Not pixel by pixel: at this sample count the uniform sampler's estimates of the
    GGX lobe are too skewed for a per-pixel Student t (max |z| 4.4 over 256 pixels happens).
    """
    alpha = 0.6
    scene = load(tmp_path, FURNACE.format(material=f'type = "conductor"\nspecular = [1, 1, 1]\nroughness = {alpha}'))
    env = load_envmap(scene.env)
    w = h = 16
    res = run(scene, env, sampler, w, h, 128, **kw)
    img, var = res.film.image(), res.film.variance()
    assert res.film.bad.sum() == 0
    np.testing.assert_array_equal(img[..., 1:], img[..., :1].repeat(2, axis=-1))  # white
    img, var = img[..., 0], var[..., 0]

    cam = scene_data(scene, w, h).camera
    cos_fine, cos_coarse = sphere_hits(cam, w, h, 16)[0], sphere_hits(cam, w, h, 8)[0]
    lo = float(cos_fine.min()) - 1e-3
    prm = np.array([1.0, 1.0, 1.0, alpha, 1.5, 0.0, 0.0, 0.0])

    def rho_interpolant(n_nodes: int) -> tuple[np.polynomial.Chebyshev, float]:
        """rho(cos theta_o) interpolated at Chebyshev nodes on [lo, 1]; its quadrature error."""
        mu = np.polynomial.chebyshev.chebpts1(n_nodes) * (1.0 - lo) / 2 + (1.0 + lo) / 2
        rho, errs = [], []
        for m in mu:
            r, e = directional_albedo(CONDUCTOR, prm, np.array([math.sqrt(1 - m * m), 0.0, m]), 64)
            rho.append(r[0])
            errs.append(e)
        return np.polynomial.Chebyshev.fit(mu, rho, n_nodes - 1, domain=[lo, 1.0]), max(errs)

    rho, quad_err = rho_interpolant(17)
    rho_coarse, _ = rho_interpolant(9)
    ref = rho(cos_fine).mean(axis=-1)
    err = (quad_err  # the albedo integrals
           + float(np.abs(rho(cos_fine) - rho_coarse(cos_fine)).max())  # interpolation in mu
           + float(np.abs(ref - rho(cos_coarse).mean(axis=-1)).max()))  # the film-point grid
    assert err < 1e-4
    assert 0.5 < ref.min() and ref.max() < 0.7  # energy loss only, and not more than this

    se = image_mean_se(var)
    assert abs(img.mean() - ref.mean()) <= 5 * se + err, (img.mean(), ref.mean(), se)
    for ring in np.array_split(np.argsort(ref, axis=None), 4):
        got, want = img.reshape(-1)[ring].mean(), ref.reshape(-1)[ring].mean()
        ring_se = math.sqrt(var.reshape(-1)[ring].sum()) / ring.size
        assert abs(got - want) <= 5 * ring_se + err, (want, got, ring_se)


@pytest.fixture(scope="module")
def sphere_renders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    scene = load(tmp_path_factory.mktemp("spheres"), SPHERES)
    env = load_envmap(scene.env)
    out = {}
    for seed, ((sampler, kw), name) in enumerate(zip(ALL, ids(ALL), strict=True)):
        # independent seeds: the z-test assumes independent images
        # the reference (uniform) takes 8x the samples: its sun-lit pixels are heavy-tailed at
        # 512 spp, and an estimate of their variance that runs low flags the others' pixels
        spp = 4096 if name == "uniform" else 512
        res = run(scene, env, sampler, 16, 12, spp, seed=100 + seed, depth=6, **kw)
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
    se = math.hypot(image_mean_se(va), image_mean_se(vb))
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


@pytest.mark.parametrize("sequence", ["independent", "sobol"])
def test_batching_does_not_change_the_image(tmp_path: Path, sequence: str) -> None:
    """Samples are keyed by (pixel, sample index): one big batch == many small ones."""
    scene = load(tmp_path, SPHERES)
    env = load_envmap(scene.env)
    strategy = make_strategy("mis", env, sequence=sequence)
    data = scene_data(scene, 8, 8)
    a = render(data, env, strategy, 8, 8, 8, 5, 1).film
    for batch_paths in (64, 20, 7):  # one sample of all pixels, then slabs of 20 and 7 pixels
        b = render(data, env, strategy, 8, 8, 8, 5, 1, batch_paths=batch_paths).film
        # each pixel adds its samples in the same order: bit for bit
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.m2, b.m2)
        np.testing.assert_array_equal(a.count, b.count)


def test_max_depth_zero_sees_only_the_environment(tmp_path: Path) -> None:
    scene = load(tmp_path, FURNACE.format(material='type = "diffuse"\nalbedo = [0.5, 0.5, 0.5]'))
    env = load_envmap(scene.env)
    img = run(scene, env, "mis", 4, 4, 2, depth=0).film.image()
    np.testing.assert_array_equal(img, 0.0)  # every camera ray hits the sphere; no bounce allowed
