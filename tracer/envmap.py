r"""Equirectangular HDR environment maps: loading, validation, procedural maps, lookup.

The map is an (H, W, 3) linear RGB image laid over the unit square by the convention of
:mod:`tracer.sphere_map` (+y up, top row = zenith, u = phi / 2 pi from -z towards +x).
A scene's ``rotation`` (degrees) turns the environment about +y in the right-handed sense
(+90 takes what the unrotated map shows towards -z to -x). Internally it is a shift
``rot_u = -rotation / 360`` of the azimuth: a world direction with square coordinate u reads
map column ``(u - rot_u) mod 1``. Rotation preserves solid angle, so it changes no density,
and the samplers work in the map's own square.

Radiance lookup is nearest-pixel: :math:`L_e` is constant on each pixel, which is exactly
what the piecewise-constant sampler's density assumes, so :math:`L_e / p` is bounded by
:math:`2 \pi^2 \bar f \cdot \max_{\text{pixel}} \sin\theta / \sin\theta_c` for every map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from numba import njit, prange

from tracer.distribution import cell
from tracer.errors import TracerError, warn
from tracer.sphere_map import dir_to_uv, uv_to_dir, uv_to_solid_angle_pdf

LUMINANCE = np.array([0.2126, 0.7152, 0.0722])
#: the largest finite float32: the map, and what it puts into the image, must stay below it
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: entries per group of the CPU's grouped lookups (:func:`env_eval_into`): the group's
#: arithmetic runs first, then its table reads, all of which are then in flight at once
GROUP = 16
#: entries per parallel task of a grouped kernel (its scratch is allocated once per task)
TASK = 1024
#: columns of a group's scratch rows in the grouped light kernels (floats, then integers):
#: what a sampler's group schedule may use beyond its outputs (tracer.light_dispatch)
GROUP_F = 32
GROUP_I = 24
#: the smallest normal float32: a map whose brightest value is below it renders black
FLOAT32_TINY = float(np.finfo(np.float32).tiny)


@njit(cache=True, inline="always")
def world_to_map_u(u: float, rot_u: float) -> float:
    """Map column coordinate for a world azimuth coordinate."""
    m = u - rot_u
    m -= math.floor(m)
    return m if m < 1.0 else 0.0


@njit(cache=True, inline="always")
def map_uv_to_world_dir(u: float, v: float, rot_u: float) -> tuple[float, float, float]:
    """World direction of a point (u, v) of the map's own square."""
    uw = u + rot_u
    uw -= math.floor(uw)
    return uv_to_dir(uw, v)


@njit(cache=True, inline="always")
def world_dir_to_map_uv(x: float, y: float, z: float, rot_u: float) -> tuple[float, float]:
    """Point of the map's square that a world direction sees."""
    u, v = dir_to_uv(x, y, z)
    return world_to_map_u(u, rot_u), v


@njit(cache=True, inline="always")
def env_lookup(rgb: np.ndarray, u: float, v: float) -> tuple[float, float, float]:
    """Nearest-pixel radiance at map coordinates (u, v)."""
    h, w, _ = rgb.shape
    i = cell(h, v)
    j = cell(w, u)
    return rgb[i, j, 0], rgb[i, j, 1], rgb[i, j, 2]


@njit(cache=True, inline="always")
def env_lookup_group(
    rgb: np.ndarray, rot_u: float, dirs: np.ndarray, k0: int, m: int, out: np.ndarray, o0: int,
    uv: np.ndarray, pix: np.ndarray,
) -> None:
    """:func:`env_lookup` of :func:`world_dir_to_map_uv` for a group: the radiance seen by
    directions ``dirs[k0 .. k0 + m - 1]`` into ``out[o0 .. o0 + m - 1]``, their map
    coordinates into ``uv`` (scratch ``pix``: the pixels). First every entry's pixel
    (branch-free arithmetic, which the compiler vectorises), then the group's reads of the
    map, independent of each other and so in flight together. Entry by entry, the
    trigonometry of one entry kept the next one's read from starting early: 3x slower on
    random directions. ``dirs`` and ``out`` may be one array: every direction is read before
    any radiance is written."""
    h, w, _ = rgb.shape
    for e in range(m):
        u, v = world_dir_to_map_uv(dirs[k0 + e, 0], dirs[k0 + e, 1], dirs[k0 + e, 2], rot_u)
        uv[e, 0] = u
        uv[e, 1] = v
        pix[e, 0] = cell(h, v)
        pix[e, 1] = cell(w, u)
    for e in range(m):
        i, j = pix[e, 0], pix[e, 1]
        out[o0 + e, 0], out[o0 + e, 1], out[o0 + e, 2] = rgb[i, j, 0], rgb[i, j, 1], rgb[i, j, 2]


@njit(cache=True, parallel=True)
def env_eval_into(rgb: np.ndarray, rot_u: float, dirs: np.ndarray, out: np.ndarray) -> None:
    """Radiance arriving from each world direction, (N, 3) into ``out`` (N, 3), in groups of
    :data:`GROUP` entries (:func:`env_lookup_group`)."""
    n = dirs.shape[0]
    for task in prange((n + TASK - 1) // TASK):
        uv = np.empty((GROUP, 2))
        pix = np.empty((GROUP, 2), np.int64)
        end = min(n, (task + 1) * TASK)
        for k0 in range(task * TASK, end, GROUP):
            env_lookup_group(rgb, rot_u, dirs, k0, min(GROUP, end - k0), out, k0, uv, pix)


def env_eval_batch(rgb: np.ndarray, rot_u: float, dirs: np.ndarray) -> np.ndarray:
    """Radiance arriving from each world direction: (N, 3) -> (N, 3)."""
    out = np.empty((dirs.shape[0], 3))
    env_eval_into(rgb, rot_u, dirs, out)
    return out


@njit(cache=True, inline="always")
def square_sample_to_light(
    rgb: np.ndarray, rot_u: float, u: float, v: float, p_uv: float
) -> tuple[float, float, float, float, float, float, float]:
    """A sample (u, v) of the map's square with density p_uv -> (wi xyz, solid-angle pdf, Le rgb)."""
    wx, wy, wz = map_uv_to_world_dir(u, v, rot_u)
    r, g, b = env_lookup(rgb, u, v)
    return wx, wy, wz, uv_to_solid_angle_pdf(p_uv, v), r, g, b


@njit(cache=True, inline="always")
def square_group_to_light(
    rgb: np.ndarray, rot_u: float, sq: np.ndarray, k0: int, wi: np.ndarray, pdf: np.ndarray,
    le: np.ndarray, pix: np.ndarray,
) -> None:
    """:func:`square_sample_to_light` of a group of square samples ``sq`` (rows of u, v,
    p_uv) into entries ``k0 ..`` of wi, pdf, le: the arithmetic of the whole group first,
    then its map reads (``pix``: scratch of at least len(sq) rows of 2)."""
    h, w, _ = rgb.shape
    for e in range(sq.shape[0]):  # in place: sq's row becomes the direction, then the pdf
        u, v, p_uv = sq[e, 0], sq[e, 1], sq[e, 2]
        pix[e, 0] = cell(h, v)
        pix[e, 1] = cell(w, u)
        sq[e, 0], sq[e, 1], sq[e, 2] = map_uv_to_world_dir(u, v, rot_u)
        sq[e, 3] = uv_to_solid_angle_pdf(p_uv, v)
    for e in range(sq.shape[0]):
        k = k0 + e
        wi[k, 0], wi[k, 1], wi[k, 2], pdf[k] = sq[e, 0], sq[e, 1], sq[e, 2], sq[e, 3]
        i, j = pix[e, 0], pix[e, 1]
        le[k, 0], le[k, 1], le[k, 2] = rgb[i, j, 0], rgb[i, j, 1], rgb[i, j, 2]


def row_sin_theta(h: int) -> np.ndarray:
    """sin(theta) at the centre of each of h rows."""
    return np.sin(np.pi * (np.arange(h) + 0.5) / h)


@dataclass
class EnvMap:
    """An environment map ready for rendering.

    ``rgb`` already includes the intensity scale; ``rot_u`` is the rotation as a fraction
    of a turn; ``name`` is what error messages and logs call it (a file name or a kind).
    """

    rgb: np.ndarray
    rot_u: float = 0.0
    name: str = "envmap"
    clamped_pixels: int = 0  # negative pixels set to 0 (see clamp_negligible_negatives)

    def __post_init__(self) -> None:
        self.rgb = np.array(self.rgb, dtype=np.float32, order="C")
        check_map(self.rgb, self.name)
        self.clamped_pixels += clamp_negligible_negatives(self.rgb)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    def eval(self, dirs: np.ndarray) -> np.ndarray:
        """Radiance from world directions (N, 3)."""
        return env_eval_batch(self.rgb, self.rot_u, np.ascontiguousarray(dirs, np.float64))

    def luminance(self) -> np.ndarray:
        """(H, W) luminance (Rec. 709 weights)."""
        return self.rgb.astype(np.float64) @ LUMINANCE

    def sampling_density(self, compensate: bool = False) -> np.ndarray:
        r"""The (H, W) function that the piecewise sampler and the flow fit follow on the square.

        :math:`f_{ij} = Y_{ij} \sin\theta_i` (luminance times the lat-long Jacobian at the row
        centre). With ``compensate``, pbrt-v4's MIS compensation (Karlik et al. 2019):
        :math:`f_{ij} = \max(Y_{ij} - \bar Y, 0) \sin\theta_i` with :math:`\bar Y` the
        solid-angle average, which leaves the low-radiance regions to BSDF sampling; a map
        that is constant gets the plain density back.
        """
        lum = self.luminance()
        sin_t = row_sin_theta(lum.shape[0])[:, None]
        if compensate:
            avg = float(np.sum(lum * sin_t) / (np.sum(sin_t) * lum.shape[1]))
            comp = np.maximum(lum - avg, 0.0)
            if np.any(comp > 0):
                lum = comp
        return lum * sin_t

    def content_hash(self) -> str:
        """SHA-256 of the (scaled) pixels: the key of fitted flows.

        Rotation is not part of it: flows live in the map's own square.
        """
        from flows.export import content_hash

        return content_hash(self.rgb)

    @cached_property
    def mean_luminance(self) -> float:
        """The luminance averaged over the sphere's solid angle, power / 4 pi."""
        return self.power() / (4.0 * np.pi)

    def power(self) -> float:
        """Integral of luminance over the sphere (W/m^2/sr * sr), used to refuse black maps."""
        lum = self.luminance()
        h, w = lum.shape
        return float(np.sum(lum * row_sin_theta(h)[:, None]) * 2 * np.pi**2 / (h * w))


def check_map(rgb: np.ndarray, name: str) -> None:
    """Refuse maps the renderer cannot use, naming the map and the problem.

    A map must be an (H, W, 3) image of finite values. Negative values are not refused here:
    :func:`clamp_negligible_negatives` sets them to 0 (and the loader warns).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise TracerError(f"{name}: expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    bad = ~np.isfinite(rgb)
    if bad.any():
        i, j, _ = np.argwhere(bad)[0]
        raise TracerError(
            f"{name}: {int(bad.any(axis=2).sum())} pixels are NaN or infinite "
            f"(first at row {i}, column {j})"
        )


def clamp_negligible_negatives(rgb: np.ndarray) -> int:
    """Set to 0 the negative values lossy HDR pipelines leave; return how many pixels.

    Real maps carry values like -1e-4 (ringing from resampling or compression), and a dim
    night-time map may carry them next to a mean of 1e-3: no tolerance relative to the mean
    tells them from real data, and radiance cannot be negative, so every finite negative
    value is clamped, in place, counted, reported in the render log and warned about by
    :func:`load_envmap`. Only non-finite values are refused (:func:`check_map`).
    """
    neg = rgb < 0
    n = int(neg.any(axis=2).sum())
    rgb[neg] = 0.0
    return n


def require_light(env: EnvMap) -> None:
    """Refuse an all-black map for rendering: it would silently give a black image."""
    if not np.any(env.rgb > 0):
        raise TracerError(f"{env.name}: the environment map is black everywhere; nothing lights the scene")


# ---------------------------------------------------------------- procedural maps


def constant_map(radiance: tuple[float, float, float] = (1.0, 1.0, 1.0), h: int = 8, w: int = 16) -> np.ndarray:
    """A map of one radiance everywhere."""
    return np.broadcast_to(np.asarray(radiance, np.float32), (h, w, 3)).copy()


def one_hot_map(h: int, w: int, i: int, j: int, value: float = 1.0) -> np.ndarray:
    """A black map with one lit pixel: the hardest case for a sampler's support."""
    rgb = np.zeros((h, w, 3), np.float32)
    rgb[i, j] = value
    return rgb


def sky_map(
    sky: np.ndarray,
    sun_direction: np.ndarray,
    sun_angle_deg: float,
    sun_radiance: np.ndarray,
    h: int = 512,
    w: int = 1024,
    supersample: int = 4,
) -> np.ndarray:
    """A sky with a small bright sun disc.

    The sky brightens from the horizon to the zenith (``sky * (0.4 + 0.6 y)`` above the
    horizon) and is a dim ground (``0.2 sky``) below it. The sun is a disc of angular
    radius ``sun_angle_deg``; each pixel gets the fraction of its ``supersample**2``
    sub-pixel directions inside the disc, so the sun's power does not depend on where the
    disc falls on the pixel grid.
    """
    s = supersample
    vv = (np.arange(h * s) + 0.5) / (h * s)
    uu = (np.arange(w * s) + 0.5) / (w * s)
    theta = np.pi * vv[:, None]
    phi = 2 * np.pi * uu[None, :]
    x = np.sin(phi) * np.sin(theta)
    y = np.cos(theta) * np.ones_like(phi)
    z = -np.cos(phi) * np.sin(theta)
    sd = np.asarray(sun_direction, np.float64)
    sd = sd / np.linalg.norm(sd)
    in_sun = (x * sd[0] + y * sd[1] + z * sd[2]) >= math.cos(math.radians(sun_angle_deg))
    frac = in_sun.reshape(h, s, w, s).mean(axis=(1, 3))
    # the supersampled coverage is quantised; rescale it so the disc's solid angle is exact,
    # 2 pi (1 - cos r), wherever the disc falls on the grid (a pole is the worst case)
    t_edges = np.pi * np.arange(h + 1) / h
    pix_sa = (2 * np.pi / w) * (np.cos(t_edges[:-1]) - np.cos(t_edges[1:]))
    covered = float((frac * pix_sa[:, None]).sum())
    if covered > 0:
        frac = np.minimum(frac * (2 * np.pi * (1 - math.cos(math.radians(sun_angle_deg))) / covered), 1.0)
    yc = np.cos(np.pi * (np.arange(h) + 0.5) / h)[:, None]
    grad = np.where(yc > 0, 0.4 + 0.6 * yc, 0.2)
    rgb = grad[..., None] * np.asarray(sky, np.float64)[None, None, :]
    rgb = rgb * (1 - frac[..., None]) + frac[..., None] * np.asarray(sun_radiance)[None, None, :]
    return rgb.astype(np.float32)


def load_envmap(spec: object) -> EnvMap:
    """Build the map an :class:`tracer.scene.EnvSpec` describes (file or procedural)."""
    from tracer.hdr_io import read_image

    kind = spec.kind  # type: ignore[attr-defined]
    if kind == "file":
        path = Path(spec.path)  # type: ignore[attr-defined]
        rgb = read_image(path)
        name = str(path)
    elif kind == "constant":
        rgb = constant_map(tuple(spec.radiance))  # type: ignore[attr-defined]
        name = "constant envmap"
    elif kind == "sky":
        h, w = spec.resolution  # type: ignore[attr-defined]
        rgb = sky_map(spec.radiance, spec.sun_direction, spec.sun_angle_deg, spec.sun_radiance, h, w)  # type: ignore[attr-defined]
        name = "sky envmap"
    else:
        raise TracerError(f"unknown environment kind {kind!r}")
    rgb = np.asarray(rgb, np.float32)
    check_map(rgb, name)
    scale = float(spec.scale)  # type: ignore[attr-defined]
    rotation = float(spec.rotation_deg)  # type: ignore[attr-defined]
    if not (math.isfinite(scale) and scale > 0):
        raise TracerError(f"{name}: the environment scale must be a positive finite number, got {scale:g}")
    if not math.isfinite(rotation):
        raise TracerError(f"{name}: the environment rotation must be a finite number of degrees, got {rotation:g}")
    lowest = float(rgb.min())
    clamped = clamp_negligible_negatives(rgb)  # before scaling: -x * scale must not overflow
    if clamped:
        warn(f"{name}: {clamped} pixels have negative values (lowest {lowest:g}); clamped to 0")
    peak = float(rgb.max())
    if peak * scale > FLOAT32_MAX:
        raise TracerError(
            f"{name}: scaled by {scale:g}, the brightest value {peak:g} becomes {peak * scale:.3g}, "
            f"beyond float32 (largest {FLOAT32_MAX:.3g}); lower the scale"
        )
    if 0 < peak and peak * scale < FLOAT32_TINY:
        raise TracerError(
            f"{name}: scaled by {scale:g}, the brightest value {peak:g} becomes {peak * scale:.3g}, "
            f"below float32's normal range ({FLOAT32_TINY:.3g}): the render would be black; "
            "raise the scale"
        )
    lit = int(np.count_nonzero((rgb > 0).any(axis=2)))
    with np.errstate(over="ignore", under="ignore"):
        s32 = np.float32(scale)
    if np.isfinite(s32) and s32 >= FLOAT32_TINY:
        scaled = rgb * s32
    else:  # a scale float32 cannot hold, for a map whose values can take it
        scaled = (rgb.astype(np.float64) * scale).astype(np.float32)
    env = EnvMap(scaled, -rotation / 360.0, name, clamped_pixels=clamped)
    lost = lit - int(np.count_nonzero((env.rgb > 0).any(axis=2)))
    if lost > 0:
        warn(f"{name}: scaled by {scale:g}, {lost} of its {lit} lit pixels underflow to 0")
    power = env.power()
    if not (math.isfinite(power) and power <= FLOAT32_MAX):
        raise TracerError(
            f"{name}: its power over the sphere, {power:.3g} (scale {scale:g}), is beyond "
            f"float32 (largest {FLOAT32_MAX:.3g}): rendered values would overflow; lower the scale"
        )
    return env
