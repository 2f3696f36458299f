r"""Scene description: the TOML scene format, its validating loader and the flat arrays.

:func:`load_scene` reads a TOML file into a :class:`Scene`: a :class:`Camera`, a list of
:class:`Material`\ s, spheres and triangles as flat numpy arrays (what the Numba kernels
consume), an :class:`EnvSpec` describing the environment light and the
:class:`RenderSettings`. Everything is validated; any problem raises
:class:`~tracer.errors.TracerError` with a one-line message that names the scene file and
the offending key, e.g.::

    scenes/x.toml: shapes[2].radius must be a positive number, got -1

Format
======

All tables are optional except ``[camera]`` and ``[envmap]``. Unknown keys and tables are
errors (to catch typos). Vectors are arrays of exactly 3 numbers (integers or floats);
all numbers must be finite, and positions, lengths and the components of vectors at most
``1e12`` in magnitude (:data:`MAX_COORD`; so must be every mesh vertex once transformed).
Relative file paths resolve against the folder that holds the scene file. The scene file
(at most 16 MiB) and mesh files must be regular files, not devices or FIFOs.

``[render]`` (optional; every key optional)
    ``resolution = [width, height]`` positive integers, default ``[256, 256]``, whose film
    (72 bytes a pixel) must fit in the memory available;
    ``spp`` samples per pixel, positive integer, default 64;
    ``max_depth`` maximum path length in bounces, positive integer, default 5;
    ``sampler`` environment-sampling strategy name, a string, default ``"mis"`` (checked
    by the command line, not here); ``seed`` integer in ``[0, 2**32)``, default 0 (the
    random numbers hash 32 bits of it, so larger seeds would repeat smaller ones).

``[camera]`` (required)
    ``eye`` (required) and ``look_at`` (required) 3-vectors, distinct;
    ``up`` 3-vector, default ``[0, 1, 0]``, not parallel to the view direction;
    ``fov`` (required) vertical field of view in degrees, ``0 < fov < 180``.

``[envmap]`` (required): exactly one of ``file`` or ``type``
    ``file = "envmaps/sunset.exr"`` an equirectangular image (``type = "file"`` may be
    given too, but is implied). The path is stored resolved against the scene folder;
    the image itself is read (and checked) by the environment-map loader, not here.

    ``type = "constant"`` uniform radiance ``radiance`` (3-vector, >= 0, default
    ``[1, 1, 1]``).

    ``type = "sky"`` a procedural sky of colour ``radiance`` (default ``[1, 1, 1]``) plus
    a sun disc: ``sun_direction`` (3-vector towards the sun, non-zero, normalised on
    load, default ``[0.5, 0.7, 0.3]``), ``sun_angle`` (angular *radius* in degrees,
    ``0 < sun_angle <= 90``, default 1.5), ``sun_radiance`` (3-vector >= 0, default
    ``[5000, 4500, 4000]``).

    Common keys: ``rotation`` degrees about +y (default 0); ``scale`` intensity
    multiplier > 0 (default 1; the loader refuses a scale that overflows or blackens the
    map in float32). ``constant`` and ``sky`` also take
    ``resolution = [width, height]`` (positive integers, default ``[512, 256]``) of the
    map they are rasterised to (refused when rasterising it cannot fit in memory); note
    :attr:`EnvSpec.resolution` stores it as ``(height, width)``. Keys of another type (e.g. ``sun_angle`` with ``file``) are errors.

``[materials.NAME]`` (any number; ``NAME`` is what shapes refer to)
    ``type`` (required) is one of

    * ``"diffuse"``: ``albedo`` 3-vector in [0, 1], default ``[0.8, 0.8, 0.8]``;
    * ``"conductor"``: ``specular`` F0 colour (Schlick) 3-vector in [0, 1], default
      ``[0.95, 0.95, 0.95]``; ``roughness`` GGX alpha in [0.001, 1], default 0.2;
    * ``"dielectric"``: ``ior`` index of refraction > 0 and != 1, default 1.5.

    Materials are numbered in the order they appear in the file.

``[[shapes]]`` (any number, including none: the camera then sees only the environment)
    Every shape has ``type`` and ``material`` (the name of a ``[materials.NAME]`` table).

    * ``type = "sphere"``: ``center`` 3-vector, ``radius`` > 0.
    * ``type = "quad"``: ``corner``, ``edge1``, ``edge2`` 3-vectors (edges not parallel);
      becomes the two triangles ``(c, c+e1, c+e1+e2)`` and ``(c, c+e1+e2, c+e2)`` with
      normal ``normalize(edge1 x edge2)``.
    * ``type = "mesh"``: ``file`` (``.obj`` or ``.ply``, see :mod:`tracer.meshio`);
      ``scale`` a positive number or a 3-vector of positive numbers (default 1);
      ``rotate`` 3-vector of degrees about x, then y, then z (default ``[0, 0, 0]``);
      ``translate`` 3-vector (default ``[0, 0, 0]``). Vertices are scaled, then rotated,
      then translated: ``p' = Rz Ry Rx S p + t``. Normals from the file are transformed
      by the inverse transpose ``Rz Ry Rx S^-1`` and renormalised; meshes without normals
      get the geometric normal ``normalize((p1 - p0) x (p2 - p0))`` at every corner.

    Error messages number shapes from 0 in file order (``shapes[0]`` is the first).

Example::

    [render]
    resolution = [256, 256]
    spp = 64

    [camera]
    eye = [0, 1, 5]
    look_at = [0, 0.5, 0]
    fov = 40

    [envmap]
    file = "envmaps/sunset.exr"

    [materials.copper]
    type = "conductor"
    specular = [0.95, 0.64, 0.54]
    roughness = 0.2

    [[shapes]]
    type = "sphere"
    center = [0, 1, 0]
    radius = 1.0
    material = "copper"

``scenes/FORMAT.md`` holds the same reference in Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tracer.errors import FILM_BYTES_PER_PIXEL, TracerError, memory_problem, read_regular_file
from tracer.hdr_io import LOAD_BYTES_PER_PIXEL
from tracer.meshio import Mesh, load_mesh

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "Camera",
    "EnvSpec",
    "Material",
    "RenderSettings",
    "Scene",
    "load_scene",
    "rotation_matrix",
]

#: Largest magnitude of a scene coordinate or length (scene units). The kernels square
#: distances and treat 1e30 as "no hit"; anything near that is a unit slip, not a scene.
MAX_COORD = 1e12
#: Seeds are hashed as 32-bit numbers (tracer.rng): larger ones would repeat smaller ones.
SEED_LIMIT = 1 << 32
#: Largest scene file read: settings and a few shapes (geometry belongs in mesh files).
MAX_SCENE_BYTES = 16 << 20
#: Memory per pixel of a procedural sky while it is rasterised: 16 sub-pixel directions,
#: five float64 arrays of them and a mask, plus the loaded map (tracer.envmap.sky_map).
SKY_BYTES_PER_PIXEL = 16 * (5 * 8 + 1) + LOAD_BYTES_PER_PIXEL

MATERIAL_KINDS = ("diffuse", "conductor", "dielectric")
SHAPE_KINDS = ("sphere", "quad", "mesh")
ENV_KINDS = ("file", "constant", "sky")


@dataclass
class Camera:
    """Pinhole camera.

    Attributes:
        eye: ``(3,)`` float64 position.
        look_at: ``(3,)`` float64 point looked at.
        up: ``(3,)`` float64 up hint, default (0, 1, 0).
        fov_deg: vertical field of view in degrees, ``0 < fov < 180``.
    """

    eye: np.ndarray
    look_at: np.ndarray
    up: np.ndarray
    fov_deg: float


@dataclass
class Material:
    """One material; only the fields of its ``kind`` matter, the others hold defaults.

    Attributes:
        name: the ``NAME`` of ``[materials.NAME]``.
        kind: ``"diffuse"``, ``"conductor"`` or ``"dielectric"``.
        albedo: ``(3,)`` diffuse reflectance in [0, 1].
        specular: ``(3,)`` conductor F0 colour (Schlick) in [0, 1].
        roughness: conductor GGX alpha in [0.001, 1].
        ior: dielectric index of refraction (> 0, != 1).
    """

    name: str
    kind: str
    albedo: np.ndarray = field(default_factory=lambda: np.full(3, 0.8))
    specular: np.ndarray = field(default_factory=lambda: np.full(3, 0.95))
    roughness: float = 0.2
    ior: float = 1.5


@dataclass
class EnvSpec:
    """What lights the scene from infinitely far away.

    Attributes:
        kind: ``"file"``, ``"constant"`` or ``"sky"``.
        path: for ``"file"``, the image path resolved against the scene folder; else None.
        radiance: ``(3,)`` constant colour (``"constant"``) or sky colour (``"sky"``).
        rotation_deg: rotation about +y in degrees.
        scale: intensity multiplier (> 0).
        sun_direction: ``(3,)`` unit vector towards the sun (``"sky"`` only).
        sun_angle_deg: sun angular radius in degrees (``"sky"`` only).
        sun_radiance: ``(3,)`` sun radiance (``"sky"`` only).
        resolution: ``(height, width)`` of procedurally generated maps.
    """

    kind: str
    path: Path | None = None
    radiance: np.ndarray = field(default_factory=lambda: np.ones(3))
    rotation_deg: float = 0.0
    scale: float = 1.0
    sun_direction: np.ndarray = field(
        default_factory=lambda: np.array([0.5, 0.7, 0.3]) / np.linalg.norm([0.5, 0.7, 0.3])
    )
    sun_angle_deg: float = 1.5
    sun_radiance: np.ndarray = field(default_factory=lambda: np.array([5000.0, 4500.0, 4000.0]))
    resolution: tuple[int, int] = (256, 512)


@dataclass
class RenderSettings:
    """Image and sampling settings from ``[render]`` (the CLI may override them)."""

    width: int = 256
    height: int = 256
    spp: int = 64
    max_depth: int = 5
    sampler: str = "mis"
    seed: int = 0


@dataclass
class Scene:
    """A loaded scene, geometry flattened into arrays.

    Attributes:
        path: the scene file.
        camera: the camera.
        materials: materials in file order; shapes refer to them by index.
        sphere_centers: ``(S, 3)`` float64.
        sphere_radii: ``(S,)`` float64.
        sphere_materials: ``(S,)`` int32 indices into ``materials``.
        tri_vertices: ``(T, 3, 3)`` float64: triangle, corner, xyz.
        tri_normals: ``(T, 3, 3)`` float64 unit per-corner shading normals.
        tri_materials: ``(T,)`` int32 indices into ``materials``.
        env: the environment light.
        render: render settings.
    """

    path: Path
    camera: Camera
    materials: list[Material]
    sphere_centers: np.ndarray
    sphere_radii: np.ndarray
    sphere_materials: np.ndarray
    tri_vertices: np.ndarray
    tri_normals: np.ndarray
    tri_materials: np.ndarray
    env: EnvSpec
    render: RenderSettings

    @property
    def num_spheres(self) -> int:
        """Number of spheres."""
        return int(self.sphere_radii.shape[0])

    @property
    def num_triangles(self) -> int:
        """Number of triangles."""
        return int(self.tri_materials.shape[0])

    def material_index(self, name: str) -> int:
        """Index of the material called ``name`` (``KeyError`` if there is none)."""
        for i, m in enumerate(self.materials):
            if m.name == name:
                return i
        raise KeyError(name)


# --------------------------------------------------------------------------------------
# geometry helpers


def rotation_matrix(degrees_xyz: np.ndarray | tuple[float, float, float]) -> np.ndarray:
    """``Rz @ Ry @ Rx`` for angles in degrees: rotate about x first, then y, then z."""
    ax, ay, az = np.radians(np.asarray(degrees_xyz, dtype=np.float64))
    cx, sx = math.cos(ax), math.sin(ax)
    cy, sy = math.cos(ay), math.sin(ay)
    cz, sz = math.cos(az), math.sin(az)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]])
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rz = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    return rz @ ry @ rx


def _normalize_rows(v: np.ndarray) -> np.ndarray:
    """Unit rows; rows of (near) zero length stay zero."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    out = np.zeros_like(v)
    np.divide(v, n, out=out, where=n > 1e-300)
    return out


def _mesh_triangles(
    mesh: Mesh, scale: np.ndarray, rot_deg: np.ndarray, translate: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Transformed ``(T, 3, 3)`` corner positions and unit shading normals of a mesh."""
    r = rotation_matrix(rot_deg)
    verts = (mesh.vertices * scale) @ r.T + translate
    tv = verts[mesh.faces]
    geo = _normalize_rows(np.cross(tv[:, 1] - tv[:, 0], tv[:, 2] - tv[:, 0]))
    if mesh.normals is None:
        tn = np.repeat(geo[:, None, :], 3, axis=1)
    else:
        normals = _normalize_rows((mesh.normals / scale) @ r.T)
        tn = normals[mesh.faces]
        # A zero-length normal in the file falls back to the geometric normal.
        zero = np.all(tn == 0.0, axis=2)
        if zero.any():
            tn = np.where(zero[:, :, None], geo[:, None, :], tn)
    return np.ascontiguousarray(tv), np.ascontiguousarray(tn)


# --------------------------------------------------------------------------------------
# validation


def _fmt(value: Any) -> str:
    """A short TOML-like rendering of a value for error messages."""
    if isinstance(value, bool):
        s = "true" if value else "false"
    elif isinstance(value, str):
        s = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    elif isinstance(value, Mapping):
        s = "a table"
    elif isinstance(value, list):
        s = "[" + ", ".join(_fmt(v) for v in value) + "]"
    else:
        s = repr(value)
    s = " ".join(s.split())
    return s if len(s) <= 60 else s[:57] + "..."


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Checker:
    """Typed getters that raise ``TracerError`` naming the scene file and the key."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, msg: str) -> TracerError:
        return TracerError(f"{self.path}: {msg}")

    def table(self, doc: Mapping[str, Any], key: str, where: str, required: bool) -> dict | None:
        if key not in doc:
            if required:
                raise self.fail(f"missing required table [{where}]")
            return None
        v = doc[key]
        if not isinstance(v, Mapping):
            raise self.fail(f"{where} must be a table, got {_fmt(v)}")
        return dict(v)

    def keys(self, tbl: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
        for k in tbl:
            if k not in allowed:
                name = f"{where}.{k}" if where else k
                raise self.fail(
                    f"unknown key {name} (allowed: {', '.join(allowed)})"
                    if allowed
                    else f"unknown key {name}"
                )

    def require(self, tbl: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in tbl:
            raise self.fail(f"missing required key {where}.{key}")
        return tbl[key]

    def number(
        self,
        tbl: Mapping[str, Any],
        key: str,
        where: str,
        default: float | None = None,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        hi_open: bool = False,
        what: str = "a number",
        limit: float | None = None,
    ) -> float:
        if key not in tbl and default is not None:
            return float(default)
        v = self.require(tbl, key, where)
        ok = _is_number(v) and math.isfinite(v)
        if ok and limit is not None and abs(v) > limit:
            raise self.fail(f"{where}.{key} must be at most {limit:g} in magnitude, got {_fmt(v)}")
        if ok and lo is not None:
            ok = v > lo if lo_open else v >= lo
        if ok and hi is not None:
            ok = v < hi if hi_open else v <= hi
        if not ok:
            raise self.fail(f"{where}.{key} must be {what}, got {_fmt(v)}")
        return float(v)

    def integer(
        self, tbl: Mapping[str, Any], key: str, where: str, default: int, lo: int, what: str,
        hi: int | None = None,
    ) -> int:
        if key not in tbl:
            return default
        v = tbl[key]
        ok = isinstance(v, int) and not isinstance(v, bool) and v >= lo
        if not (ok and (hi is None or v <= hi)):
            raise self.fail(f"{where}.{key} must be {what}, got {_fmt(v)}")
        return int(v)

    def string(
        self, tbl: Mapping[str, Any], key: str, where: str, default: str | None = None
    ) -> str:
        if key not in tbl and default is not None:
            return default
        v = self.require(tbl, key, where)
        if not isinstance(v, str) or not v:
            raise self.fail(f"{where}.{key} must be a non-empty string, got {_fmt(v)}")
        return v

    def choice(self, tbl: Mapping[str, Any], key: str, where: str, options: tuple[str, ...]) -> str:
        v = self.require(tbl, key, where)
        if v not in options:
            opts = ", ".join(f'"{o}"' for o in options)
            raise self.fail(f"{where}.{key} must be one of {opts}, got {_fmt(v)}")
        return str(v)

    def vec3(
        self,
        tbl: Mapping[str, Any],
        key: str,
        where: str,
        default: tuple[float, float, float] | None = None,
        *,
        lo: float | None = None,
        hi: float | None = None,
        lo_open: bool = False,
        what: str = "an array of 3 numbers",
        limit: float | None = MAX_COORD,
    ) -> np.ndarray:
        if key not in tbl and default is not None:
            return np.array(default, dtype=np.float64)
        v = self.require(tbl, key, where)
        ok = (
            isinstance(v, list)
            and len(v) == 3
            and all(_is_number(c) and math.isfinite(c) for c in v)
        )
        if ok and limit is not None and any(abs(c) > limit for c in v):
            raise self.fail(
                f"{where}.{key} must hold numbers at most {limit:g} in magnitude, got {_fmt(v)}"
            )
        if ok and lo is not None:
            ok = all(c > lo if lo_open else c >= lo for c in v)
        if ok and hi is not None:
            ok = all(c <= hi for c in v)
        if not ok:
            raise self.fail(f"{where}.{key} must be {what}, got {_fmt(v)}")
        return np.array(v, dtype=np.float64)

    def pair(
        self, tbl: Mapping[str, Any], key: str, where: str, default: tuple[int, int],
        bytes_per_pixel: float, use: str,
    ) -> tuple[int, int]:
        """``[width, height]``, refused when ``bytes_per_pixel`` times its pixels (what the
        ``use`` takes) cannot fit in memory."""
        if key not in tbl:
            return default
        v = tbl[key]
        ok = (
            isinstance(v, list)
            and len(v) == 2
            and all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in v)
        )
        if not ok:
            raise self.fail(
                f"{where}.{key} must be [width, height] (2 positive integers), got {_fmt(v)}"
            )
        problem = memory_problem(float(v[0]) * float(v[1]) * bytes_per_pixel)
        if problem:
            raise self.fail(f"{where}.{key} = {_fmt(v)} is too large: the {use} {problem}")
        return int(v[0]), int(v[1])


# --------------------------------------------------------------------------------------
# sections


def _parse_render(c: _Checker, doc: Mapping[str, Any]) -> RenderSettings:
    tbl = c.table(doc, "render", "render", required=False)
    rs = RenderSettings()
    if tbl is None:
        return rs
    c.keys(tbl, ("resolution", "spp", "max_depth", "sampler", "seed"), "render")
    rs.width, rs.height = c.pair(
        tbl, "resolution", "render", (rs.width, rs.height), FILM_BYTES_PER_PIXEL, "film"
    )
    rs.spp = c.integer(tbl, "spp", "render", rs.spp, 1, "a positive integer")
    rs.max_depth = c.integer(tbl, "max_depth", "render", rs.max_depth, 1, "a positive integer")
    rs.sampler = c.string(tbl, "sampler", "render", rs.sampler)
    rs.seed = c.integer(
        tbl, "seed", "render", rs.seed, 0,
        f"an integer from 0 to {SEED_LIMIT - 1} (the random numbers hash 32 bits of it)",
        hi=SEED_LIMIT - 1,
    )
    return rs


def _parse_camera(c: _Checker, doc: Mapping[str, Any]) -> Camera:
    tbl = c.table(doc, "camera", "camera", required=True)
    assert tbl is not None
    c.keys(tbl, ("eye", "look_at", "up", "fov"), "camera")
    eye = c.vec3(tbl, "eye", "camera")
    look_at = c.vec3(tbl, "look_at", "camera")
    up = c.vec3(tbl, "up", "camera", (0.0, 1.0, 0.0))
    fov = c.number(
        tbl,
        "fov",
        "camera",
        lo=0.0,
        hi=180.0,
        lo_open=True,
        hi_open=True,
        what="a number of degrees between 0 and 180 (exclusive)",
    )
    view = look_at - eye
    vn = float(np.linalg.norm(view))
    if vn == 0.0:
        raise c.fail("camera.look_at must differ from camera.eye")
    un = float(np.linalg.norm(up))
    if un == 0.0 or float(np.linalg.norm(np.cross(view / vn, up / un))) < 1e-6:
        raise c.fail(
            f"camera.up must not be zero or parallel to the view direction, got {_fmt(up.tolist())}"
        )
    return Camera(eye=eye, look_at=look_at, up=up, fov_deg=fov)


def _parse_envmap(c: _Checker, doc: Mapping[str, Any], folder: Path) -> EnvSpec:
    tbl = c.table(doc, "envmap", "envmap", required=True)
    assert tbl is not None
    w = "envmap"
    if "type" in tbl:
        kind = c.choice(tbl, "type", w, ENV_KINDS)
    elif "file" in tbl:
        kind = "file"
    else:
        raise c.fail('envmap needs either file = "..." or type = "constant" / "sky"')
    common = ("type", "rotation", "scale")
    allowed = {
        "file": (*common, "file"),
        "constant": (*common, "radiance", "resolution"),
        "sky": (
            *common,
            "radiance",
            "resolution",
            "sun_direction",
            "sun_angle",
            "sun_radiance",
        ),
    }[kind]
    for k in tbl:
        if k not in allowed:
            every = set(allowed) | {
                "file",
                "radiance",
                "resolution",
                "sun_direction",
                "sun_angle",
                "sun_radiance",
            }
            if k in every:
                raise c.fail(f'envmap.{k} does not apply to an envmap of type "{kind}"')
            c.keys({k: None}, allowed, w)
    env = EnvSpec(kind=kind)
    env.rotation_deg = c.number(tbl, "rotation", w, 0.0, what="a number of degrees")
    env.scale = c.number(tbl, "scale", w, 1.0, lo=0.0, lo_open=True, what="a positive number")
    if kind == "file":
        f = c.string(tbl, "file", w)
        env.path = folder / f
        return env
    env.radiance = c.vec3(
        tbl, "radiance", w, (1.0, 1.0, 1.0), lo=0.0, what="an array of 3 non-negative numbers"
    )
    per_pixel = SKY_BYTES_PER_PIXEL if kind == "sky" else LOAD_BYTES_PER_PIXEL
    wh = c.pair(
        tbl, "resolution", w, (env.resolution[1], env.resolution[0]), per_pixel, "map"
    )
    env.resolution = (wh[1], wh[0])
    if kind == "sky":
        d = c.vec3(tbl, "sun_direction", w, tuple(env.sun_direction))
        n = float(np.linalg.norm(d))
        if n == 0.0:
            raise c.fail(
                f"envmap.sun_direction must be a non-zero vector, got {_fmt(tbl['sun_direction'])}"
            )
        env.sun_direction = d / n
        env.sun_angle_deg = c.number(
            tbl,
            "sun_angle",
            w,
            1.5,
            lo=0.0,
            hi=90.0,
            lo_open=True,
            what="a number of degrees in (0, 90]",
        )
        env.sun_radiance = c.vec3(
            tbl,
            "sun_radiance",
            w,
            (5000.0, 4500.0, 4000.0),
            lo=0.0,
            what="an array of 3 non-negative numbers",
        )
    return env


def _parse_materials(c: _Checker, doc: Mapping[str, Any]) -> list[Material]:
    tbl = c.table(doc, "materials", "materials", required=False)
    if tbl is None:
        return []
    out: list[Material] = []
    for name, mt in tbl.items():
        w = f"materials.{name}"
        if not isinstance(mt, Mapping):
            raise c.fail(f"{w} must be a table, got {_fmt(mt)}")
        kind = c.choice(mt, "type", w, MATERIAL_KINDS)
        m = Material(name=name, kind=kind)
        unit = "an array of 3 numbers in [0, 1]"
        if kind == "diffuse":
            c.keys(mt, ("type", "albedo"), w)
            m.albedo = c.vec3(mt, "albedo", w, (0.8, 0.8, 0.8), lo=0.0, hi=1.0, what=unit)
        elif kind == "conductor":
            c.keys(mt, ("type", "specular", "roughness"), w)
            m.specular = c.vec3(mt, "specular", w, (0.95, 0.95, 0.95), lo=0.0, hi=1.0, what=unit)
            m.roughness = c.number(
                mt, "roughness", w, 0.2, lo=0.001, hi=1.0, what="a number in [0.001, 1]"
            )
        else:
            c.keys(mt, ("type", "ior"), w)
            # bounded so that a refraction's eta^2 stays far inside float32, the path state's
            # type (tracer.pool.STATE); real materials lie between 1 and about 4
            m.ior = c.number(mt, "ior", w, 1.5, lo=0.01, hi=100.0, what="a number in [0.01, 100], != 1")
            if m.ior == 1.0:
                raise c.fail(f"{w}.ior must be a number in [0.01, 100], != 1, got {_fmt(mt['ior'])}")
        out.append(m)
    return out


@dataclass
class _Geometry:
    """Accumulates shapes before they are concatenated into the scene arrays."""

    centers: list[np.ndarray] = field(default_factory=list)
    radii: list[float] = field(default_factory=list)
    sphere_mats: list[int] = field(default_factory=list)
    tri_v: list[np.ndarray] = field(default_factory=list)
    tri_n: list[np.ndarray] = field(default_factory=list)
    tri_m: list[np.ndarray] = field(default_factory=list)


def _parse_shapes(
    c: _Checker, doc: Mapping[str, Any], folder: Path, materials: list[Material]
) -> _Geometry:
    geo = _Geometry()
    if "shapes" not in doc:
        return geo
    shapes = doc["shapes"]
    if not isinstance(shapes, list) or not all(isinstance(s, Mapping) for s in shapes):
        raise c.fail("shapes must be an array of tables ([[shapes]])")
    mat_index = {m.name: i for i, m in enumerate(materials)}
    meshes: dict[Path, Mesh] = {}
    for i, sh in enumerate(shapes):
        w = f"shapes[{i}]"
        kind = c.choice(sh, "type", w, SHAPE_KINDS)
        allowed = {
            "sphere": ("type", "material", "center", "radius"),
            "quad": ("type", "material", "corner", "edge1", "edge2"),
            "mesh": ("type", "material", "file", "scale", "rotate", "translate"),
        }[kind]
        c.keys(sh, allowed, w)
        mname = c.string(sh, "material", w)
        if mname not in mat_index:
            known = ", ".join(mat_index) if mat_index else "none defined"
            raise c.fail(f'{w}.material: unknown material "{mname}" (known: {known})')
        mi = mat_index[mname]
        if kind == "sphere":
            geo.centers.append(c.vec3(sh, "center", w))
            geo.radii.append(
                c.number(
                    sh, "radius", w, lo=0.0, lo_open=True, what="a positive number",
                    limit=MAX_COORD,
                )
            )
            geo.sphere_mats.append(mi)
        elif kind == "quad":
            p = c.vec3(sh, "corner", w)
            e1 = c.vec3(sh, "edge1", w)
            e2 = c.vec3(sh, "edge2", w)
            n = np.cross(e1, e2)
            nn = float(np.linalg.norm(n))
            if nn <= 1e-12 * max(float(np.linalg.norm(e1) * np.linalg.norm(e2)), 1e-300):
                raise c.fail(f"{w}.edge1 and {w}.edge2 must be non-zero and not parallel")
            n = n / nn
            v = np.array([[p, p + e1, p + e1 + e2], [p, p + e1 + e2, p + e2]])
            geo.tri_v.append(v)
            geo.tri_n.append(np.broadcast_to(n, (2, 3, 3)).copy())
            geo.tri_m.append(np.full(2, mi, dtype=np.int32))
        else:
            fname = c.string(sh, "file", w)
            fpath = folder / fname
            if "scale" in sh and _is_number(sh["scale"]):
                s = c.number(
                    sh, "scale", w, lo=0.0, lo_open=True, what="a positive number",
                    limit=MAX_COORD,
                )
                scale = np.full(3, s)
            else:
                scale = c.vec3(
                    sh,
                    "scale",
                    w,
                    (1.0, 1.0, 1.0),
                    lo=0.0,
                    lo_open=True,
                    what="a positive number or an array of 3 positive numbers",
                )
            rot = c.vec3(sh, "rotate", w, (0.0, 0.0, 0.0))
            trans = c.vec3(sh, "translate", w, (0.0, 0.0, 0.0))
            if fpath not in meshes:
                if not fpath.exists():
                    raise c.fail(f'{w}.file: no such mesh file "{fname}" (looked for {fpath})')
                try:
                    meshes[fpath] = load_mesh(fpath)
                except TracerError as e:
                    raise c.fail(f"{w}.file: {e}") from e
            with np.errstate(over="ignore", invalid="ignore"):
                tv, tn = _mesh_triangles(meshes[fpath], scale, rot, trans)
            far = np.flatnonzero(~(np.abs(tv) <= MAX_COORD).all(axis=(1, 2)))
            if far.size:
                raise c.fail(
                    f"{w}: triangle {int(far[0])} of {fname} lies beyond {MAX_COORD:g} in "
                    f"some coordinate once scaled and moved (scene coordinates must stay within "
                    f"{MAX_COORD:g})"
                )
            geo.tri_v.append(tv)
            geo.tri_n.append(tn)
            geo.tri_m.append(np.full(len(tv), mi, dtype=np.int32))
    return geo


# --------------------------------------------------------------------------------------
# entry point


def load_scene(path: str | Path) -> Scene:
    """Read and validate a TOML scene file (format: see the module docstring).

    Raises:
        TracerError: the file is missing, not valid TOML, or breaks any rule of the format.
    """
    path = Path(path)
    try:
        raw = read_regular_file(path, str(path), "scene file", max_bytes=MAX_SCENE_BYTES)
    except FileNotFoundError:
        raise TracerError(f"{path}: no such scene file") from None
    except IsADirectoryError:
        raise TracerError(f"{path}: is a directory, not a scene file") from None
    except OSError as e:
        raise TracerError(f"{path}: cannot read scene file: {e.strerror or e}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise TracerError(f"{path}: scene file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        msg = " ".join(str(e).split())
        raise TracerError(f"{path}: invalid TOML: {msg}") from None
    except RecursionError:
        raise TracerError(f"{path}: invalid TOML: arrays or tables nested too deeply") from None

    c = _Checker(path)
    c.keys(doc, ("render", "camera", "envmap", "materials", "shapes"), "")
    folder = path.parent
    render = _parse_render(c, doc)
    camera = _parse_camera(c, doc)
    env = _parse_envmap(c, doc, folder)
    materials = _parse_materials(c, doc)
    geo = _parse_shapes(c, doc, folder, materials)

    if geo.tri_v:
        tri_v = np.ascontiguousarray(np.concatenate(geo.tri_v), dtype=np.float64)
        tri_n = np.ascontiguousarray(np.concatenate(geo.tri_n), dtype=np.float64)
        tri_m = np.ascontiguousarray(np.concatenate(geo.tri_m), dtype=np.int32)
    else:
        tri_v = np.zeros((0, 3, 3), dtype=np.float64)
        tri_n = np.zeros((0, 3, 3), dtype=np.float64)
        tri_m = np.zeros(0, dtype=np.int32)
    return Scene(
        path=path,
        camera=camera,
        materials=materials,
        sphere_centers=np.array(geo.centers, dtype=np.float64).reshape(-1, 3),
        sphere_radii=np.array(geo.radii, dtype=np.float64).reshape(-1),
        sphere_materials=np.array(geo.sphere_mats, dtype=np.int32).reshape(-1),
        tri_vertices=tri_v,
        tri_normals=tri_n,
        tri_materials=tri_m,
        env=env,
        render=render,
    )
