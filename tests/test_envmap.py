"""Tests of tracer.envmap: the direction convention, validation, power, sky, densities, hash."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracer.envmap import (
    EnvMap,
    check_map,
    constant_map,
    load_envmap,
    one_hot_map,
    require_light,
    row_sin_theta,
    sky_map,
)
from tracer.errors import TracerError
from tracer.scene import EnvSpec
from tracer.sphere_map import dir_to_uv, uv_to_dir

H, W = 8, 16


def pixel_centre_dir(i: int, j: int, h: int = H, w: int = W) -> np.ndarray:
    """Direction of the centre of pixel [i, j] by sphere_map's convention."""
    return np.array(uv_to_dir((j + 0.5) / w, (i + 0.5) / h))


def all_centre_dirs(h: int = H, w: int = W) -> np.ndarray:
    """(h * w, 3) directions of every pixel centre, in row-major pixel order."""
    return np.array([pixel_centre_dir(i, j, h, w) for i in range(h) for j in range(w)])


def index_map(h: int = H, w: int = W) -> np.ndarray:
    """A map whose pixel [i, j] holds (i, j, 1 + i * w + j): tells which pixel a lookup read."""
    ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([ii, jj, 1 + ii * w + jj], -1).astype(np.float32)


def exact_pixel_solid_angle(h: int, w: int) -> np.ndarray:
    """(h, 1) solid angle of one pixel of each row: 2 pi / w * (cos theta_i - cos theta_i+1)."""
    th = np.pi * np.arange(h + 1) / h
    return ((np.cos(th[:-1]) - np.cos(th[1:])) * 2 * np.pi / w)[:, None]


# ---------------------------------------------------------------- direction convention


@pytest.mark.parametrize("i,j", [(0, 0), (3, 5), (H - 1, W - 1), (4, W // 2), (2, W - 3)])
def test_one_lit_pixel_is_seen_from_its_centre_direction(i: int, j: int) -> None:
    env = EnvMap(one_hot_map(H, W, i, j, 7.0))
    seen = env.eval(all_centre_dirs())[:, 0].reshape(H, W)
    expected = np.zeros((H, W))
    expected[i, j] = 7.0
    np.testing.assert_array_equal(seen, expected)


def test_every_pixel_centre_reads_its_own_pixel() -> None:
    env = EnvMap(index_map())
    seen = env.eval(all_centre_dirs())
    np.testing.assert_array_equal(seen, index_map().reshape(-1, 3))


def test_up_sees_row_zero_and_down_the_last_row() -> None:
    env = EnvMap(index_map())
    up, down = env.eval(np.array([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]))
    assert up[0] == 0
    assert down[0] == H - 1
    # a slightly tilted +y still sees row 0, whatever the azimuth
    tilt = np.array([[math.sin(a) * 0.01, 1.0, math.cos(a) * 0.01] for a in np.linspace(0, 6, 9)])
    assert np.all(env.eval(tilt)[:, 0] == 0)


def test_axes_see_the_documented_columns() -> None:
    env = EnvMap(index_map())
    dirs = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    seen = env.eval(dirs)
    assert dir_to_uv(0.0, 0.0, 1.0) == pytest.approx((0.5, 0.5))
    assert seen[0, 1] == W // 2  # +z: u = 1/2, the middle column
    assert seen[1, 1] == 0  # -z: u = 0, the first column
    assert seen[2, 1] == W // 4  # +x: u = 1/4
    assert seen[3, 1] == 3 * W // 4  # -x: u = 3/4
    assert np.all(seen[:, 0] == H // 2)  # the horizon is the middle row (v = 1/2)


def test_sphere_map_round_trip() -> None:
    rng = np.random.default_rng(0)
    for u, v in rng.uniform(0.001, 0.999, (200, 2)):
        d = uv_to_dir(u, v)
        assert np.linalg.norm(d) == pytest.approx(1.0)
        assert dir_to_uv(*d) == pytest.approx((u, v), abs=1e-12)


@pytest.mark.parametrize("i,j", [(3, 1), (5, W - 2)])
def test_rotation_by_90_degrees_shifts_a_quarter_turn(i: int, j: int) -> None:
    # documented: a world direction with square coordinate u reads map column
    # (u - rotation_deg / 360) mod 1, so the lit column appears at world u + 1/4
    rgb = one_hot_map(H, W, i, j, 5.0)
    spec = EnvSpec(kind="constant", rotation_deg=90.0)
    rot = EnvMap(rgb, spec.rotation_deg / 360.0)
    seen = rot.eval(all_centre_dirs())[:, 0].reshape(H, W)
    expected = np.zeros((H, W))
    expected[i, (j + W // 4) % W] = 5.0
    np.testing.assert_array_equal(seen, expected)
    # and -90 degrees the other way
    back = EnvMap(rgb, -0.25).eval(all_centre_dirs())[:, 0].reshape(H, W)
    assert back[i, (j - W // 4) % W] == 5.0 and back.sum() == 5.0


def test_load_envmap_applies_rotation_and_scale() -> None:
    env = load_envmap(EnvSpec(kind="constant", radiance=np.array([1.0, 2.0, 3.0]), scale=2.0))
    np.testing.assert_allclose(env.eval(np.array([[0.0, 1.0, 0.0]])), [[2.0, 4.0, 6.0]])
    assert env.rot_u == 0.0
    # right-handed about +y: +90 degrees is a shift of -1/4 turn of the map's azimuth
    assert load_envmap(EnvSpec(kind="constant", rotation_deg=90.0)).rot_u == pytest.approx(-0.25)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pixels_are_refused_naming_the_map(bad: float) -> None:
    rgb = constant_map((1.0, 1.0, 1.0), H, W)
    rgb[2, 3, 1] = bad
    with pytest.raises(TracerError, match=r"^studio\.exr: 1 pixels are NaN or infinite") as e:
        EnvMap(rgb, name="studio.exr")
    assert "row 2, column 3" in str(e.value)
    with pytest.raises(TracerError, match="studio.exr"):
        check_map(rgb, "studio.exr")


def test_negative_pixels_are_clamped_and_counted_whatever_the_mean() -> None:
    rgb = constant_map((0.5, 0.5, 0.5), H, W)
    rgb[0, 0, 0] = -1e-4
    rgb[3, 7] = (-0.5, -0.2, 0.1)  # one pixel, two channels, far below 1% of the mean
    rgb[5, 1, 2] = -1e-6
    check_map(rgb, "m")  # passes: only non-finite values are refused
    env = EnvMap(rgb, name="m")
    assert env.clamped_pixels == 3
    assert env.rgb.min() == 0.0
    assert env.rgb[3, 7, 2] == pytest.approx(0.1)
    assert env.rgb[0, 0, 1] == 0.5


def test_a_dim_night_map_with_ringing_is_clamped_not_refused() -> None:
    # mean ~1e-3: the old rule (refuse below -1% of the mean) refused this real-world case
    rgb = constant_map((1e-3, 1e-3, 1e-3), H, W)
    rgb[2, 2, 1] = -5e-4
    env = EnvMap(rgb, name="night.exr")
    assert env.clamped_pixels == 1 and env.rgb.min() == 0.0


def test_wrong_shape_is_refused() -> None:
    with pytest.raises(TracerError, match="expected an"):
        EnvMap(np.ones((4, 8)), name="flat")
    with pytest.raises(TracerError, match="flat"):
        check_map(np.ones((4, 8, 4), np.float32), "flat")


def test_require_light_refuses_a_black_map() -> None:
    with pytest.raises(TracerError, match=r"^night\.exr: .*black"):
        require_light(EnvMap(np.zeros((H, W, 3)), name="night.exr"))
    # a map of negatives only is black once clamped
    with pytest.raises(TracerError, match="black"):
        require_light(EnvMap(np.full((H, W, 3), -1e-9), name="night.exr"))
    require_light(EnvMap(one_hot_map(H, W, 7, 15, 1e-6)))  # one dim pixel is enough


# ---------------------------------------------------------------- power, sky


@pytest.mark.parametrize("radiance", [(1.0, 1.0, 1.0), (0.5, 2.0, 3.0)])
def test_power_of_a_constant_map(radiance: tuple[float, float, float]) -> None:
    lum = float(np.dot(radiance, [0.2126, 0.7152, 0.0722]))
    env = EnvMap(constant_map(radiance, 64, 128))
    assert env.power() == pytest.approx(4 * math.pi * lum, rel=1e-3)
    assert float(env.luminance().mean()) == pytest.approx(lum, rel=1e-6)


def test_power_of_a_black_map_is_zero() -> None:
    assert EnvMap(np.zeros((4, 8, 3))).power() == 0.0


@pytest.mark.parametrize(
    "sun", [(0.5, 0.7, 0.3), (1.0, 0.0, 0.0), (0.0, -0.3, -1.0), (-0.2, 0.4, 0.9), (0.7, -0.7, 0.1)]
)
def test_sky_sun_power_matches_the_disc(sun: tuple[float, float, float]) -> None:
    h, w, ang, rad = 512, 1024, 1.5, 5000.0  # the sky_map defaults
    rgb = sky_map(np.zeros(3), np.array(sun), ang, np.full(3, rad), h, w)
    power = float((rgb[..., 1] * exact_pixel_solid_angle(h, w)).sum())
    disc = rad * 2 * math.pi * (1 - math.cos(math.radians(ang)))
    assert power == pytest.approx(disc, rel=0.02)
    # and the sun is where it was put: the brightest pixel's centre is inside the disc
    i, j = np.unravel_index(np.argmax(rgb[..., 0]), rgb.shape[:2])
    d = pixel_centre_dir(int(i), int(j), h, w)
    assert float(np.dot(d, np.array(sun) / np.linalg.norm(sun))) > math.cos(math.radians(1.5 * ang))
    # EnvMap.power (row-centre sin) agrees for the sun part too
    assert EnvMap(rgb).power() == pytest.approx(disc, rel=0.02)


def test_sky_sun_power_at_the_zenith() -> None:
    h, w, ang = 256, 512, 1.5  # the [envmap] type = "sky" defaults
    rgb = sky_map(np.zeros(3), np.array([0.0, 1.0, 0.0]), ang, np.ones(3), h, w)
    power = float((rgb[..., 0] * exact_pixel_solid_angle(h, w)).sum())
    assert power == pytest.approx(2 * math.pi * (1 - math.cos(math.radians(ang))), rel=0.03)


def test_sky_gradient_and_ground() -> None:
    h, w = 32, 64
    rgb = sky_map(np.array([1.0, 0.5, 0.25]), np.array([0.0, 1.0, 0.0]), 1.0, np.zeros(3), h, w)
    yc = np.cos(np.pi * (np.arange(h) + 0.5) / h)
    np.testing.assert_allclose(rgb[h // 2 :, :, 0], 0.2, rtol=1e-6)  # the ground
    np.testing.assert_allclose(rgb[2 : h // 2, 5, 0], 0.4 + 0.6 * yc[2 : h // 2], rtol=1e-6)
    np.testing.assert_allclose(rgb[h // 2 :, :, 2], 0.05, rtol=1e-6)


# ---------------------------------------------------------------- densities, hash


def test_sampling_density_plain_and_compensated() -> None:
    rng = np.random.default_rng(3)
    rgb = rng.gamma(0.5, 1.0, (16, 32, 3)).astype(np.float32)
    env = EnvMap(rgb)
    lum = rgb.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])
    sin_t = row_sin_theta(16)[:, None]
    np.testing.assert_allclose(env.sampling_density(), lum * sin_t, rtol=1e-12)
    avg = float((lum * sin_t).sum() / (sin_t.sum() * 32))  # the solid-angle average
    comp = env.sampling_density(compensate=True)
    dim = lum <= avg
    assert 0 < dim.sum() < dim.size
    assert np.all(comp[dim] == 0.0)
    np.testing.assert_allclose(comp[~dim], ((lum - avg) * sin_t)[~dim], rtol=1e-9)
    assert np.all(comp >= 0)


def test_compensated_density_of_a_constant_map_falls_back_to_plain() -> None:
    env = EnvMap(constant_map((0.3, 0.6, 0.9), 16, 32))
    plain = env.sampling_density()
    assert np.all(plain > 0)
    np.testing.assert_array_equal(env.sampling_density(compensate=True), plain)


def test_content_hash() -> None:
    rgb = np.random.default_rng(4).uniform(0, 1, (H, W, 3)).astype(np.float32)
    base = EnvMap(rgb).content_hash()
    assert base == EnvMap(rgb.copy(), name="other name").content_hash()  # pixels, not names
    assert len(base) == 64
    changed = rgb.copy()
    changed[3, 4, 1] = np.nextafter(changed[3, 4, 1], np.float32(2))
    assert EnvMap(changed).content_hash() != base
    # flows live in the map's own square: rotation does not change the key
    assert EnvMap(rgb, rot_u=0.25).content_hash() == base
    # same bytes, other shape
    assert EnvMap(rgb.reshape(W, H, 3)).content_hash() != base
