"""Tests for tracer.scene: the bundled scenes, transforms, defaults and every error."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tracer.errors import TracerError
from tracer.scene import Scene, load_scene, rotation_matrix

SCENES = Path(__file__).parent.parent / "scenes"

CAMERA = "[camera]\neye = [0, 0, 5]\nlook_at = [0, 0, 0]\nfov = 40\n"
ENV = '[envmap]\ntype = "constant"\n'
MAT = '[materials.m]\ntype = "diffuse"\n'
SPHERE = '[[shapes]]\ntype = "sphere"\ncenter = [0, 0, 0]\nradius = 1\nmaterial = "m"\n'


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` and return the path."""
    path.write_text(text)
    return path


def scene_from(tmp_path: Path, text: str, name: str = "scene.toml") -> Scene:
    """Load a scene written from ``text`` into ``tmp_path``."""
    return load_scene(write(tmp_path / name, text))


def check_layout(s: Scene) -> None:
    """The array shapes and dtypes the renderer relies on."""
    S, T = s.num_spheres, s.num_triangles
    assert s.sphere_centers.shape == (S, 3) and s.sphere_centers.dtype == np.float64
    assert s.sphere_radii.shape == (S,) and s.sphere_radii.dtype == np.float64
    assert s.sphere_materials.shape == (S,) and s.sphere_materials.dtype == np.int32
    assert s.tri_vertices.shape == (T, 3, 3) and s.tri_vertices.dtype == np.float64
    assert s.tri_normals.shape == (T, 3, 3) and s.tri_normals.dtype == np.float64
    assert s.tri_materials.shape == (T,) and s.tri_materials.dtype == np.int32
    for a in (s.sphere_centers, s.tri_vertices, s.tri_normals):
        assert a.flags.c_contiguous
    if T:
        np.testing.assert_allclose(np.linalg.norm(s.tri_normals, axis=2), 1.0, atol=1e-9)
    n = len(s.materials)
    for idx in (s.sphere_materials, s.tri_materials):
        assert np.all((idx >= 0) & (idx < n))
    for v in (s.camera.eye, s.camera.look_at, s.camera.up):
        assert v.shape == (3,) and v.dtype == np.float64


# --------------------------------------------------------------------------------------
# bundled scenes


def test_spheres_scene() -> None:
    s = load_scene(SCENES / "spheres.toml")
    check_layout(s)
    assert (s.num_spheres, s.num_triangles) == (2, 2)
    assert (s.render.width, s.render.height) == (256, 256)
    assert s.env.kind == "file" and s.env.path == SCENES / "envmaps" / "sunset.exr"
    assert s.env.path.is_file()
    kinds = [s.materials[i].kind for i in s.sphere_materials]
    assert sorted(kinds) == ["conductor", "diffuse"]
    metal = s.materials[s.material_index("metal")]
    assert metal.roughness == pytest.approx(0.15)
    assert s.camera.look_at[1] < s.camera.eye[1]  # looking slightly down
    # The floor faces up.
    np.testing.assert_allclose(s.tri_normals.reshape(-1, 3), np.tile([0, 1, 0], (6, 1)))


def test_knot_scene() -> None:
    s = load_scene(SCENES / "knot.toml")
    check_layout(s)
    assert s.num_spheres == 0
    assert s.num_triangles > 1002
    assert s.env.path == SCENES / "envmaps" / "studio.exr"
    assert s.env.path.is_file()
    gold = s.materials[s.material_index("gold")]
    assert gold.kind == "conductor" and gold.roughness == pytest.approx(0.1)
    knot = s.tri_materials == s.material_index("gold")
    assert knot.sum() > 1000
    # The knot rests above the floor (y = 0), and its normals are smooth (not all equal
    # to the geometric normal within a triangle).
    assert s.tri_vertices[knot][..., 1].min() > 0.0
    n = s.tri_normals[knot]
    assert np.abs(n[:, 0] - n[:, 1]).max() > 1e-3


def test_scene_data_holds_each_triangles_normals_and_geometric_normal() -> None:
    """What a surface interaction reads of a triangle is one row of SceneData.tri_normals:
    the three vertex normals as parsed, then the unit normal of the triangle's vertices (in
    the traversal's order of the triangles, that of geom.tri_v)."""
    from tracer.scene_data import scene_data

    s = load_scene(SCENES / "knot.toml")
    d = scene_data(s, 8, 8)
    v = d.geom.tri_v
    assert d.tri_normals.shape == (v.shape[0], 4, 3)
    assert np.array_equal(d.tri_normals[:, :3], np.asarray(s.tri_normals, np.float64).reshape(-1, 3, 3))
    cross = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    want = cross / np.linalg.norm(cross, axis=1, keepdims=True)
    np.testing.assert_allclose(d.tri_normals[:, 3], want, rtol=0, atol=1e-14)


def test_sun_scene() -> None:
    s = load_scene(SCENES / "sun.toml")
    check_layout(s)
    assert s.env.kind == "sky" and s.env.path is None
    assert s.env.sun_angle_deg == pytest.approx(1.0)
    assert np.linalg.norm(s.env.sun_direction) == pytest.approx(1.0)
    assert s.env.sun_direction[1] > 0
    assert np.all(s.env.radiance < 1.0)
    assert (s.num_spheres, s.num_triangles) == (2, 2)
    assert {m.kind for m in s.materials} == {"diffuse", "dielectric"}
    glass = s.materials[s.material_index("glass")]
    assert glass.ior == pytest.approx(1.5)
    h, w = s.env.resolution
    assert w == 2 * h


def test_furnace_scene() -> None:
    s = load_scene(SCENES / "furnace.toml")
    check_layout(s)
    assert (s.num_spheres, s.num_triangles) == (1, 0)
    assert s.env.kind == "constant"
    np.testing.assert_array_equal(s.env.radiance, [1, 1, 1])
    assert s.env.scale == 1.0
    np.testing.assert_array_equal(s.sphere_centers, [[0, 0, 0]])
    np.testing.assert_array_equal(s.sphere_radii, [1.0])
    np.testing.assert_array_equal(s.materials[0].albedo, [0.5, 0.5, 0.5])
    assert (s.render.width, s.render.height) == (64, 64)


# --------------------------------------------------------------------------------------
# defaults, layout, geometry


def test_minimal_scene_defaults(tmp_path: Path) -> None:
    s = scene_from(tmp_path, CAMERA + '[envmap]\nfile = "sky.exr"\n')
    check_layout(s)
    assert (s.num_spheres, s.num_triangles) == (0, 0)
    assert s.materials == []
    assert s.render.width == 256 and s.render.height == 256
    assert s.render.spp == 64 and s.render.max_depth == 5
    assert s.render.sampler == "mis" and s.render.seed == 0
    np.testing.assert_array_equal(s.camera.up, [0, 1, 0])
    assert s.camera.fov_deg == 40.0
    assert s.env.kind == "file" and s.env.path == tmp_path / "sky.exr"
    assert s.env.rotation_deg == 0.0 and s.env.scale == 1.0
    assert s.path == tmp_path / "scene.toml"


def test_sky_defaults_and_resolution_order(tmp_path: Path) -> None:
    s = scene_from(tmp_path, CAMERA + '[envmap]\ntype = "sky"\nresolution = [64, 32]\n')
    assert s.env.resolution == (32, 64)  # (height, width)
    np.testing.assert_allclose(s.env.sun_direction, np.array([0.5, 0.7, 0.3]) / math.sqrt(0.83))
    assert s.env.sun_angle_deg == 1.5
    np.testing.assert_array_equal(s.env.sun_radiance, [5000, 4500, 4000])
    np.testing.assert_array_equal(s.env.radiance, [1, 1, 1])
    s = scene_from(tmp_path, CAMERA + ENV)
    assert s.env.resolution == (256, 512)


def test_render_and_material_values(tmp_path: Path) -> None:
    text = (
        '[render]\nresolution = [320, 200]\nspp = 4\nmax_depth = 2\nsampler = "flow"\nseed = 7\n'
        + CAMERA
        + ENV
        + '[materials.a]\ntype = "conductor"\n'
        + '[materials.b]\ntype = "dielectric"\nior = 1.33\n'
        + '[materials.c]\ntype = "diffuse"\nalbedo = [0.1, 0.2, 0.3]\n'
        + SPHERE.replace('"m"', '"c"')
        + SPHERE.replace('"m"', '"a"')
    )
    s = scene_from(tmp_path, text)
    r = s.render
    assert (r.width, r.height, r.spp, r.max_depth, r.sampler, r.seed) == (
        320,
        200,
        4,
        2,
        "flow",
        7,
    )
    assert [m.name for m in s.materials] == ["a", "b", "c"]
    np.testing.assert_array_equal(s.sphere_materials, [2, 0])
    a, b, c = s.materials
    np.testing.assert_array_equal(a.specular, [0.95] * 3)
    assert a.roughness == 0.2
    assert b.ior == 1.33
    np.testing.assert_array_equal(c.albedo, [0.1, 0.2, 0.3])


def test_quad(tmp_path: Path) -> None:
    text = (
        CAMERA
        + ENV
        + MAT
        + '[[shapes]]\ntype = "quad"\ncorner = [1, 2, 3]\nedge1 = [2, 0, 0]\n'
        + 'edge2 = [0, 3, 0]\nmaterial = "m"\n'
    )
    s = scene_from(tmp_path, text)
    check_layout(s)
    c, e1, e2 = np.array([1, 2, 3.0]), np.array([2, 0, 0.0]), np.array([0, 3, 0.0])
    np.testing.assert_allclose(s.tri_vertices[0], [c, c + e1, c + e1 + e2])
    np.testing.assert_allclose(s.tri_vertices[1], [c, c + e1 + e2, c + e2])
    np.testing.assert_allclose(s.tri_normals.reshape(-1, 3), np.tile([0, 0, 1.0], (6, 1)))
    # The geometric winding agrees with the normal.
    t = s.tri_vertices
    g = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    assert np.all(g[:, 2] > 0)


def test_mesh_transform(tmp_path: Path) -> None:
    (tmp_path / "meshes").mkdir()
    write(tmp_path / "meshes" / "tri.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    text = (
        CAMERA
        + ENV
        + MAT
        + '[[shapes]]\ntype = "mesh"\nfile = "meshes/tri.obj"\nmaterial = "m"\n'
        + "scale = 2\nrotate = [0, 90, 0]\ntranslate = [10, 20, 30]\n"
    )
    s = scene_from(tmp_path, text)
    check_layout(s)
    # Scale 2: (0,0,0) (2,0,0) (0,2,0); Ry(90) maps (x,y,z) -> (z, y, -x);
    # then translate.
    expected = [[10, 20, 30], [10, 20, 28], [10, 22, 30]]
    np.testing.assert_allclose(s.tri_vertices[0], expected, atol=1e-12)
    # Geometric normal +z rotated by Ry(90) -> +x.
    np.testing.assert_allclose(s.tri_normals[0], [[1, 0, 0]] * 3, atol=1e-12)


def test_mesh_rotation_order_and_normals(tmp_path: Path) -> None:
    write(
        tmp_path / "n.obj",
        "v 0 1 0\nv 1 0 0\nv 0 0 1\nvn 1 1 0\nvn 0 0 1\nvn 0 1 0\nf 1//1 2//2 3//3\n",
    )
    text = (
        CAMERA
        + ENV
        + MAT
        + '[[shapes]]\ntype = "mesh"\nfile = "n.obj"\nmaterial = "m"\n'
        + "scale = [2, 1, 1]\nrotate = [90, 90, 0]\n"
    )
    s = scene_from(tmp_path, text)
    r = rotation_matrix([90, 90, 0])
    # x first: Rx(90) takes (0,1,0) to (0,0,1); then Ry(90) takes (0,0,1) to (1,0,0).
    np.testing.assert_allclose(r @ [0, 1, 0], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(s.tri_vertices[0][0], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(s.tri_vertices[0][1], r @ [2, 0, 0], atol=1e-12)
    # Normals use the inverse transpose: n / scale, rotated, renormalised.
    n0 = r @ (np.array([1.0, 1.0, 0.0]) / [2, 1, 1])
    np.testing.assert_allclose(s.tri_normals[0][0], n0 / np.linalg.norm(n0), atol=1e-12)
    np.testing.assert_allclose(s.tri_normals[0][2], r @ [0, 1, 0], atol=1e-12)
    # A normal stays perpendicular to a transformed tangent.
    t_in = np.array([1.0, -1.0, 0.0])  # perpendicular to (1, 1, 0) in the file
    t_out = r @ (t_in * [2, 1, 1])
    assert abs(np.dot(t_out, s.tri_normals[0][0])) < 1e-12


def test_mesh_reused_and_materials(tmp_path: Path) -> None:
    write(tmp_path / "tri.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    text = (
        CAMERA
        + ENV
        + MAT
        + '[materials.n]\ntype = "dielectric"\n'
        + '[[shapes]]\ntype = "mesh"\nfile = "tri.obj"\nmaterial = "n"\n'
        + SPHERE
        + '[[shapes]]\ntype = "mesh"\nfile = "tri.obj"\nmaterial = "m"\ntranslate = [0, 0, 1]\n'
    )
    s = scene_from(tmp_path, text)
    check_layout(s)
    np.testing.assert_array_equal(s.tri_materials, [1, 0])
    np.testing.assert_array_equal(s.sphere_materials, [0])
    np.testing.assert_allclose(s.tri_vertices[1] - s.tri_vertices[0], [[0, 0, 1]] * 3)


def test_knot_mesh_with_scene_transform(tmp_path: Path) -> None:
    write(
        tmp_path / "k.toml",
        CAMERA
        + ENV
        + MAT
        + '[[shapes]]\ntype = "mesh"\nfile = "'
        + (SCENES / "meshes" / "knot.ply").as_posix()
        + '"\nmaterial = "m"\nscale = 0.5\n',
    )
    s = load_scene(tmp_path / "k.toml")  # absolute mesh path
    check_layout(s)
    assert np.abs(s.tri_vertices).max() < 1.0


# --------------------------------------------------------------------------------------
# errors


def shape(body: str) -> str:
    """A scene with material ``m`` and one shape with ``body`` as its keys."""
    return CAMERA + ENV + MAT + "[[shapes]]\n" + body


ERRORS: list[tuple[str, str]] = [
    # syntax, structure, unknown keys
    ("[camera\n", r"scene\.toml: invalid TOML: .*line 1"),
    ("colour = 1\n" + CAMERA + ENV, r"scene\.toml: unknown key colour \(allowed: render,"),
    (CAMERA + ENV + "[lights]\n", r"scene\.toml: unknown key lights"),
    (CAMERA.replace("fov", "fvo") + ENV, r"scene\.toml: unknown key camera\.fvo"),
    (CAMERA + ENV + "[render]\nsamples = 4\n", r"scene\.toml: unknown key render\.samples"),
    (ENV, r"scene\.toml: missing required table \[camera\]"),
    (CAMERA, r"scene\.toml: missing required table \[envmap\]"),
    ("camera = 3\n" + ENV, r"scene\.toml: camera must be a table, got 3"),
    ("shapes = 3\n" + CAMERA + ENV, r"scene\.toml: shapes must be an array of tables"),
    (CAMERA + ENV + "[materials]\nm = 1\n", r"scene\.toml: materials\.m must be a table"),
    # camera
    (CAMERA.replace("eye = [0, 0, 5]\n", "") + ENV, r"missing required key camera\.eye"),
    (CAMERA.replace("fov = 40\n", "") + ENV, r"missing required key camera\.fov"),
    (
        CAMERA.replace("[0, 0, 5]", "[0, 5]") + ENV,
        r"camera\.eye must be an array of 3 numbers, got \[0, 5\]",
    ),
    (
        CAMERA.replace("[0, 0, 5]", '[0, "a", 5]') + ENV,
        r"camera\.eye must be an array of 3 numbers",
    ),
    (
        CAMERA.replace("[0, 0, 5]", "[0, true, 5]") + ENV,
        r"camera\.eye must be an array of 3 numbers",
    ),
    (
        CAMERA.replace("[0, 0, 5]", "[0, nan, 5]") + ENV,
        r"camera\.eye must be an array of 3 numbers",
    ),
    (
        CAMERA.replace("fov = 40", "fov = 180") + ENV,
        r"camera\.fov must be a number of degrees between 0 and 180 \(exclusive\), got 180",
    ),
    (CAMERA.replace("fov = 40", 'fov = "wide"') + ENV, r'camera\.fov must be .*got "wide"'),
    (
        CAMERA.replace("[0, 0, 5]", "[0, 0, 0]") + ENV,
        r"camera\.look_at must differ from camera\.eye",
    ),
    (CAMERA + "up = [0, 0, 2]\n" + ENV, r"camera\.up must not be zero or parallel"),
    # render
    (CAMERA + ENV + "[render]\nspp = 0\n", r"render\.spp must be a positive integer, got 0"),
    (CAMERA + ENV + "[render]\nspp = 4.0\n", r"render\.spp must be a positive integer, got 4\.0"),
    (CAMERA + ENV + "[render]\nseed = -1\n", r"render\.seed must be an integer from 0 to 4294967295"),
    (
        CAMERA + ENV + "[render]\nmax_depth = true\n",
        r"render\.max_depth must be a positive integer, got true",
    ),
    (
        CAMERA + ENV + "[render]\nresolution = [256]\n",
        r"render\.resolution must be \[width, height\]",
    ),
    (
        CAMERA + ENV + "[render]\nresolution = [256, -1]\n",
        r"render\.resolution must be \[width, height\]",
    ),
    (CAMERA + ENV + "[render]\nsampler = 3\n", r"render\.sampler must be a non-empty string"),
    # envmap
    (CAMERA + "[envmap]\n", r'scene\.toml: envmap needs either file = "\.\.\." or type'),
    (
        CAMERA + '[envmap]\ntype = "hdr"\n',
        r'envmap\.type must be one of "file", "constant", "sky", got "hdr"',
    ),
    (
        CAMERA + '[envmap]\nfile = "a.exr"\nsun_angle = 2\n',
        r'envmap\.sun_angle does not apply to an envmap of type "file"',
    ),
    (CAMERA + '[envmap]\nfile = "a.exr"\nrotaton = 2\n', r"unknown key envmap\.rotaton"),
    (
        CAMERA + '[envmap]\nfile = "a.exr"\nscale = 0\n',
        r"envmap\.scale must be a positive number, got 0",
    ),
    (CAMERA + "[envmap]\nfile = 3\n", r"envmap\.file must be a non-empty string, got 3"),
    (CAMERA + '[envmap]\ntype = "file"\n', r"missing required key envmap\.file"),
    (
        CAMERA + '[envmap]\ntype = "constant"\nradiance = [1, -1, 1]\n',
        r"envmap\.radiance must be an array of 3 non-negative numbers",
    ),
    (
        CAMERA + '[envmap]\ntype = "sky"\nsun_direction = [0, 0, 0]\n',
        r"envmap\.sun_direction must be a non-zero vector",
    ),
    (
        CAMERA + '[envmap]\ntype = "sky"\nsun_angle = 0\n',
        r"envmap\.sun_angle must be a number of degrees in \(0, 90\], got 0",
    ),
    (
        CAMERA + '[envmap]\ntype = "sky"\nsun_radiance = [1, 1]\n',
        r"envmap\.sun_radiance must be an array of 3",
    ),
    # materials
    (
        CAMERA + ENV + "[materials.m]\nalbedo = [1, 1, 1]\n",
        r"missing required key materials\.m\.type",
    ),
    (
        CAMERA + ENV + '[materials.m]\ntype = "plastic"\n',
        r'materials\.m\.type must be one of "diffuse", "conductor", "dielectric", got "plastic"',
    ),
    (
        CAMERA + ENV + '[materials.m]\ntype = "diffuse"\nalbedo = [1.2, 1, 1]\n',
        r"materials\.m\.albedo must be an array of 3 numbers in \[0, 1\], got \[1\.2, 1, 1\]",
    ),
    (
        CAMERA + ENV + '[materials.m]\ntype = "diffuse"\nroughness = 0.1\n',
        r"unknown key materials\.m\.roughness \(allowed: type, albedo\)",
    ),
    (
        CAMERA + ENV + '[materials.m]\ntype = "conductor"\nroughness = 0\n',
        r"materials\.m\.roughness must be a number in \[0\.001, 1\], got 0",
    ),
    (
        CAMERA + ENV + '[materials.m]\ntype = "conductor"\nspecular = [1, 1, 1, 1]\n',
        r"materials\.m\.specular must be an array of 3 numbers",
    ),
    (
        CAMERA + ENV + '[materials.m]\ntype = "dielectric"\nior = 1\n',
        r"materials\.m\.ior must be a number in \[0\.01, 100\], != 1, got 1",
    ),
    (
        CAMERA + ENV + '[materials.m]\ntype = "dielectric"\nior = -1.5\n',
        r"materials\.m\.ior must be a number in \[0\.01, 100\], != 1, got -1\.5",
    ),
    (
        CAMERA + ENV + '[materials.m]\ntype = "dielectric"\nior = 1e20\n',
        r"materials\.m\.ior must be a number in \[0\.01, 100\], != 1, got 1e\+20",
    ),
    # shapes
    (
        shape('type = "sphere"\ncenter = [0, 0, 0]\nradius = -1\nmaterial = "m"\n'),
        r"scene\.toml: shapes\[0\]\.radius must be a positive number, got -1$",
    ),
    (
        shape('type = "sphere"\ncenter = [0, 0, 0]\nmaterial = "m"\n'),
        r"missing required key shapes\[0\]\.radius",
    ),
    (
        shape('type = "sphere"\ncenter = [0, 0]\nradius = 1\nmaterial = "m"\n'),
        r"shapes\[0\]\.center must be an array of 3 numbers, got \[0, 0\]",
    ),
    (
        shape('type = "sphere"\ncenter = [0, 0, 0]\nradius = 1\nmaterial = "copper"\n'),
        r'shapes\[0\]\.material: unknown material "copper" \(known: m\)',
    ),
    (
        shape('type = "sphere"\ncenter = [0, 0, 0]\nradius = 1\n'),
        r"missing required key shapes\[0\]\.material",
    ),
    (
        shape('type = "sphere"\ncentre = [0, 0, 0]\nradius = 1\nmaterial = "m"\n'),
        r"unknown key shapes\[0\]\.centre",
    ),
    (
        shape('type = "cube"\nmaterial = "m"\n'),
        r'shapes\[0\]\.type must be one of "sphere", "quad", "mesh", got "cube"',
    ),
    (shape('material = "m"\n'), r"missing required key shapes\[0\]\.type"),
    (
        CAMERA
        + ENV
        + MAT
        + SPHERE
        + '[[shapes]]\ntype = "quad"\ncorner = [0, 0, 0]\nedge1 = [1, 0, 0]\nedge2 = [2, 0, 0]\nmaterial = "m"\n',
        r"shapes\[1\]\.edge1 and shapes\[1\]\.edge2 must be non-zero and not parallel",
    ),
    (
        shape('type = "quad"\ncorner = [0, 0, 0]\nedge1 = [1, 0, 0]\nmaterial = "m"\n'),
        r"missing required key shapes\[0\]\.edge2",
    ),
    (
        shape('type = "mesh"\nfile = "nothere.obj"\nmaterial = "m"\n'),
        r'scene\.toml: shapes\[0\]\.file: no such mesh file "nothere\.obj"',
    ),
    (shape('type = "mesh"\nmaterial = "m"\n'), r"missing required key shapes\[0\]\.file"),
    (
        shape('type = "mesh"\nfile = "bad.obj"\nmaterial = "m"\n'),
        r"scene\.toml: shapes\[0\]\.file: .*bad\.obj:2: malformed vertex line",
    ),
    (
        shape('type = "mesh"\nfile = "tri.obj"\nmaterial = "m"\nscale = -2\n'),
        r"shapes\[0\]\.scale must be a positive number, got -2",
    ),
    (
        shape('type = "mesh"\nfile = "tri.obj"\nmaterial = "m"\nscale = [1, 0, 1]\n'),
        r"shapes\[0\]\.scale must be a positive number or an array of 3 positive numbers",
    ),
    (
        shape('type = "mesh"\nfile = "tri.obj"\nmaterial = "m"\nrotate = [0, 90]\n'),
        r"shapes\[0\]\.rotate must be an array of 3 numbers",
    ),
    (
        shape('type = "mesh"\nfile = "tri.obj"\nmaterial = "m"\ntranslate = 1\n'),
        r"shapes\[0\]\.translate must be an array of 3 numbers, got 1",
    ),
]


@pytest.mark.parametrize(("text", "pattern"), ERRORS, ids=[f"{i}" for i in range(len(ERRORS))])
def test_scene_errors(tmp_path: Path, text: str, pattern: str) -> None:
    write(tmp_path / "tri.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    write(tmp_path / "bad.obj", "v 0 0 0\nv 1 0\nf 1 2 3\n")
    p = write(tmp_path / "scene.toml", text)
    with pytest.raises(TracerError, match=pattern) as info:
        load_scene(p)
    msg = str(info.value)
    assert msg.startswith(str(p) + ": ")
    assert "\n" not in msg


def test_missing_scene_file(tmp_path: Path) -> None:
    with pytest.raises(TracerError, match=r"nothere\.toml: no such scene file"):
        load_scene(tmp_path / "nothere.toml")
    with pytest.raises(TracerError, match=r"is a directory"):
        load_scene(tmp_path)


def test_error_message_example(tmp_path: Path) -> None:
    text = CAMERA + ENV + MAT + SPHERE + SPHERE + SPHERE.replace("radius = 1", "radius = -1")
    p = write(tmp_path / "x.toml", text)
    with pytest.raises(TracerError) as info:
        load_scene(p)
    assert str(info.value) == f"{p}: shapes[2].radius must be a positive number, got -1"
