"""Tests for tracer.meshio: OBJ and PLY loading, and every kind of bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tracer.errors import TracerError
from tracer.meshio import Mesh, load_mesh, save_ply

DATA = Path(__file__).parent / "data"
KNOT = Path(__file__).parent.parent / "scenes" / "meshes" / "knot.ply"


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` and return the path."""
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------
# OBJ


def test_tetra_obj() -> None:
    m = load_mesh(DATA / "tetra.obj")
    assert m.vertices.dtype == np.float64 and m.vertices.shape == (4, 3)
    assert m.faces.dtype == np.int64 and m.faces.shape == (4, 3)
    # Not every corner names a normal, so normals are dropped.
    assert m.normals is None
    np.testing.assert_array_equal(m.faces, [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    # Every face is wound outwards (the centroid is inside).
    tri = m.vertices[m.faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    out = tri.mean(axis=1) - m.vertices.mean(axis=0)
    assert np.all(np.sum(n * out, axis=1) > 0)


def test_obj_face_forms_and_comments(tmp_path: Path) -> None:
    p = write(
        tmp_path / "forms.obj",
        "# comment\n"
        "mtllib x.mtl\no thing\ng group\nusemtl red\ns 1\n"
        "v 0 0 0\nv 1 0 0 # trailing comment\nv 1 1 0\nv 0 1 0 1.0\n"
        "vt 0 0\nvt 1 0\nvt 1 1\n"
        "\n"
        "f 1 2 3\n"
        "f 1/1 3/3 4/2\n"
        "f 1//1 2//1 4//1\n"
        "f 2/1/1 3/2/1 4/3/1\n"
        "l 1 2\n"
        "vn 0 0 1\n",
    )
    m = load_mesh(p)
    np.testing.assert_array_equal(m.faces, [[0, 1, 2], [0, 2, 3], [0, 1, 3], [1, 2, 3]])
    np.testing.assert_array_equal(m.vertices[3], [0, 1, 0])
    assert m.normals is None  # the first two faces have no normal indices


def test_obj_negative_indices(tmp_path: Path) -> None:
    p = write(
        tmp_path / "neg.obj",
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nf -3 -2 -1\nv 5 5 5\nf -4 -2 -1\n",
    )
    m = load_mesh(p)
    # -1 is the last vertex defined *before* the face line.
    np.testing.assert_array_equal(m.faces, [[0, 1, 2], [0, 2, 3]])


def test_obj_fan_triangulation(tmp_path: Path) -> None:
    p = write(
        tmp_path / "poly.obj",
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv -1 0.5 0\nf 1 2 3 4\nf 1 2 3 4 5\n",
    )
    m = load_mesh(p)
    np.testing.assert_array_equal(m.faces, [[0, 1, 2], [0, 2, 3], [0, 1, 2], [0, 2, 3], [0, 3, 4]])


def test_obj_normals_same_indices_kept(tmp_path: Path) -> None:
    p = write(
        tmp_path / "n.obj",
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nvn 0 0 1\nvn 0 0.6 0.8\nvn 1 0 0\nf 1//1 2//2 3//3\n",
    )
    m = load_mesh(p)
    assert m.normals is not None
    np.testing.assert_array_equal(m.faces, [[0, 1, 2]])
    np.testing.assert_allclose(m.normals, [[0, 0, 1], [0, 0.6, 0.8], [1, 0, 0]])


def test_obj_normals_deindexed(tmp_path: Path) -> None:
    # Corners shared by two faces with different normals must be split: 6 distinct pairs.
    p = write(
        tmp_path / "split.obj",
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\n"
        "vn 0 0 -1\nvn 0 -1 0\n"
        "f 1/1/1 3/1/1 2/1/1\n"
        "f 1//2 2//2 4//2\n",
    )
    m = load_mesh(p)
    assert m.normals is not None
    assert m.vertices.shape == (6, 3) and m.normals.shape == (6, 3)
    np.testing.assert_array_equal(m.faces, [[0, 1, 2], [3, 4, 5]])
    tri = m.vertices[m.faces]
    np.testing.assert_array_equal(tri[0], [[0, 0, 0], [0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(tri[1], [[0, 0, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(m.normals[m.faces[0]], [[0, 0, -1]] * 3)
    np.testing.assert_array_equal(m.normals[m.faces[1]], [[0, -1, 0]] * 3)


# --------------------------------------------------------------------------------------
# PLY


def test_quad_ascii_ply() -> None:
    m = load_mesh(DATA / "quad_ascii.ply")
    assert m.vertices.shape == (4, 3) and m.faces.shape == (2, 3)
    assert m.normals is not None
    np.testing.assert_array_equal(m.faces, [[0, 1, 2], [0, 2, 3]])
    np.testing.assert_array_equal(m.normals, np.tile([0.0, 1.0, 0.0], (4, 1)))


def test_knot_ply() -> None:
    m = load_mesh(KNOT)
    assert m.normals is not None
    assert m.faces.shape[0] > 1000
    assert m.vertices.shape == m.normals.shape
    np.testing.assert_allclose(np.linalg.norm(m.normals, axis=1), 1.0, atol=1e-5)
    assert 0 <= m.faces.min() and m.faces.max() < len(m.vertices)
    assert KNOT.stat().st_size < 500_000


def _ply_header(fmt: str, nv: int, nf: int, index_name: str = "vertex_indices") -> bytes:
    return (
        "ply\n"
        f"format {fmt} 1.0\n"
        "comment test mesh\n"
        "obj_info generated in a test\n"
        f"element vertex {nv}\n"
        "property double x\nproperty float y\nproperty float z\n"
        "property uchar red\n"
        "property float nx\nproperty float ny\nproperty float nz\n"
        "element extra 2\nproperty short a\nproperty list uchar ushort b\n"
        f"element face {nf}\n"
        "property uchar flags\n"
        f"property list uchar uint {index_name}\n"
        "property float quality\n"
        "end_header\n"
    ).encode("ascii")


SAMPLE_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 2, 0.25]], dtype=np.float64)
SAMPLE_N = np.array([[0, 0, 1], [0, 0.6, 0.8], [1, 0, 0], [0, 1, 0], [0, 0, -1]], dtype=np.float32)
SAMPLE_FACES: list[list[int]] = [[0, 1, 2, 3], [2, 4, 3], [0, 1, 4]]


def _write_sample_ply(path: Path, fmt: str, faces: list[list[int]]) -> Path:
    """The same mesh as ascii or binary PLY, with extra properties and an extra element."""
    head = _ply_header(fmt, len(SAMPLE_V), len(faces))
    if fmt == "ascii":
        lines = [
            f"{v[0]!r} {v[1]!r} {v[2]!r} 7 {n[0]!r} {n[1]!r} {n[2]!r}"
            for v, n in zip(SAMPLE_V.tolist(), SAMPLE_N.tolist(), strict=True)
        ]
        lines += ["1 2 10 11", "-2 0"]
        lines += [f"0 {len(f)} {' '.join(map(str, f))} 0.5" for f in faces]
        path.write_bytes(head + ("\n".join(lines) + "\n").encode("ascii"))
        return path
    bo = "<" if fmt == "binary_little_endian" else ">"
    vdt = np.dtype(
        [
            ("x", bo + "f8"),
            ("y", bo + "f4"),
            ("z", bo + "f4"),
            ("red", "u1"),
            ("nx", bo + "f4"),
            ("ny", bo + "f4"),
            ("nz", bo + "f4"),
        ]
    )
    vert = np.zeros(len(SAMPLE_V), dtype=vdt)
    for k, c in enumerate("xyz"):
        vert[c] = SAMPLE_V[:, k]
    for k, c in enumerate(("nx", "ny", "nz")):
        vert[c] = SAMPLE_N[:, k]
    vert["red"] = 7
    body = vert.tobytes()
    body += (
        np.array([1], bo + "i2").tobytes() + bytes([2]) + np.array([10, 11], bo + "u2").tobytes()
    )
    body += np.array([-2], bo + "i2").tobytes() + bytes([0])
    for f in faces:
        body += bytes([0, len(f)]) + np.array(f, bo + "u4").tobytes()
        body += np.array([0.5], bo + "f4").tobytes()
    path.write_bytes(head + body)
    return path


@pytest.mark.parametrize("faces", [SAMPLE_FACES, [[0, 1, 2], [2, 4, 3], [0, 1, 4]]])
def test_ply_ascii_vs_binary(tmp_path: Path, faces: list[list[int]]) -> None:
    meshes = [
        load_mesh(_write_sample_ply(tmp_path / f"{fmt}.ply", fmt, faces))
        for fmt in ("ascii", "binary_little_endian", "binary_big_endian")
    ]
    ref = meshes[0]
    assert ref.normals is not None
    np.testing.assert_allclose(ref.vertices, SAMPLE_V.astype(np.float32))
    np.testing.assert_allclose(ref.normals, SAMPLE_N, rtol=1e-6)
    n_tri = sum(len(f) - 2 for f in faces)
    assert ref.faces.shape == (n_tri, 3)
    for m in meshes[1:]:
        assert m.vertices.dtype == np.float64 and m.faces.dtype == np.int64
        assert m.normals is not None and m.normals.dtype == np.float64
        np.testing.assert_array_equal(m.vertices, ref.vertices)
        np.testing.assert_array_equal(m.normals, ref.normals)
        np.testing.assert_array_equal(m.faces, ref.faces)
    if faces is SAMPLE_FACES:
        np.testing.assert_array_equal(ref.faces, [[0, 1, 2], [0, 2, 3], [2, 4, 3], [0, 1, 4]])


def test_ply_vertex_index_name_and_no_normals(tmp_path: Path) -> None:
    p = tmp_path / "vi.ply"
    p.write_bytes(
        b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        b"property float z\nelement face 1\nproperty list int int vertex_index\nend_header\n"
        b"0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
    )
    m = load_mesh(p)
    assert m.normals is None
    np.testing.assert_array_equal(m.faces, [[0, 1, 2]])


def test_save_ply_round_trip(tmp_path: Path) -> None:
    mesh = Mesh(
        vertices=SAMPLE_V,
        faces=np.array([[0, 1, 2], [0, 2, 3], [2, 4, 3]], dtype=np.int64),
        normals=SAMPLE_N.astype(np.float64),
    )
    for binary in (True, False):
        p = tmp_path / f"rt{binary}.ply"
        save_ply(p, mesh, binary=binary)
        m = load_mesh(p)
        np.testing.assert_allclose(m.vertices, mesh.vertices)
        np.testing.assert_array_equal(m.faces, mesh.faces)
        assert m.normals is not None
        np.testing.assert_allclose(m.normals, SAMPLE_N, rtol=1e-6)


def test_large_binary_ply(tmp_path: Path) -> None:
    """A 100k-triangle binary PLY loads exactly (its load time: benchmarks/bench_io_and_fit.py)."""
    n = 100_000
    rng = np.random.default_rng(0)
    mesh = Mesh(
        vertices=rng.random((n // 2 + 2, 3)),
        faces=rng.integers(0, n // 2 + 2, size=(n, 3)),
        normals=rng.random((n // 2 + 2, 3)),
    )
    p = tmp_path / "big.ply"
    save_ply(p, mesh)
    m = load_mesh(p)
    np.testing.assert_array_equal(m.faces, mesh.faces)
    np.testing.assert_allclose(m.vertices, mesh.vertices, rtol=1e-6)
    assert m.normals is not None
    np.testing.assert_allclose(m.normals, mesh.normals, rtol=1e-6)


def test_large_mixed_polygon_ply(tmp_path: Path) -> None:
    """Faces of different sizes take the row-walking path (its load time:
    benchmarks/bench_io_and_fit.py)."""
    n = 50_000
    sizes = np.where(np.arange(n) % 2 == 0, 3, 4)
    header = (
        "ply\nformat binary_little_endian 1.0\nelement vertex 8\nproperty float x\n"
        "property float y\nproperty float z\nelement face "
        f"{n}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode()
    verts = np.arange(24, dtype="<f4").tobytes()
    rows = [
        bytes([3]) + np.array([0, 1, 2], "<i4").tobytes(),
        bytes([4]) + np.array([4, 5, 6, 7], "<i4").tobytes(),
    ]
    body = b"".join(rows[0] if s == 3 else rows[1] for s in sizes)
    p = tmp_path / "mixed.ply"
    p.write_bytes(header + verts + body)
    m = load_mesh(p)
    assert m.faces.shape == (n // 2 * 3, 3)
    np.testing.assert_array_equal(m.faces[:3], [[0, 1, 2], [4, 5, 6], [4, 6, 7]])
    # every triangle: the quads fan out into (4, 5, 6) and (4, 6, 7)
    expected = np.tile([[0, 1, 2], [4, 5, 6], [4, 6, 7]], (n // 2, 1))
    np.testing.assert_array_equal(m.faces, expected)


# --------------------------------------------------------------------------------------
# errors

OBJ_ERRORS = [
    ("v 0 0\nf 1 1 1\n", r"bad\.obj:1: malformed vertex line"),
    ("v 0 0 x\n", r"bad\.obj:1: malformed vertex line"),
    ("v 0 0 0\nvn 0 1\n", r"bad\.obj:2: malformed normal line"),
    ("v 0 0 0\nv 1 0 0\nf 1 2\n", r"bad\.obj:3: face needs at least 3 vertices"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 a\n", r"bad\.obj:4: malformed vertex index 'a'"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\n\nf 1 2 4\n", r"bad\.obj:5: vertex index 4 is out of range"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf -4 2 3\n", r"bad\.obj:4: vertex index -4 is out of range"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", r"bad\.obj:4: vertex index 0 is invalid"),
    (
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1//2 2//2 3//2\n",
        r"bad\.obj:4: normal index 2 is out of range",
    ),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1/x 2 3\n", r"bad\.obj:4: malformed texture index"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1/2/3/4 2 3\n", r"bad\.obj:4: malformed face vertex"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", r"bad\.obj: mesh has no faces"),
    ("", r"bad\.obj: mesh has no faces"),
    ("v 0 0 nan\n", r"bad\.obj:1: non-finite vertex"),
]


@pytest.mark.parametrize(("text", "pattern"), OBJ_ERRORS)
def test_obj_errors(tmp_path: Path, text: str, pattern: str) -> None:
    p = write(tmp_path / "bad.obj", text)
    with pytest.raises(TracerError, match=pattern) as info:
        load_mesh(p)
    assert "\n" not in str(info.value)


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(TracerError, match=r"nothere\.obj: no such mesh file"):
        load_mesh(tmp_path / "nothere.obj")
    with pytest.raises(TracerError, match=r"nothere\.ply: no such mesh file"):
        load_mesh(tmp_path / "nothere.ply")
    p = write(tmp_path / "mesh.stl", "solid x\n")
    with pytest.raises(TracerError, match=r"mesh\.stl: unknown mesh file extension '\.stl'"):
        load_mesh(p)


_GOOD_HEAD = (
    "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
    "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
)

PLY_ERRORS = [
    ("solid\n", r"bad\.ply: not a PLY file"),
    ("ply\nformat ascii 1.0\nelement vertex 0\n", r"bad\.ply: PLY header has no end_header"),
    ("ply\nformat binary_middle_endian 1.0\nend_header\n", r"bad\.ply:2: unsupported PLY format"),
    ("ply\nelement vertex 0\nend_header\n", r"bad\.ply: PLY header has no format line"),
    (
        "ply\nformat ascii 1.0\nelement vertex 1\nproperty quad x\nend_header\n",
        r"bad\.ply:4: malformed property",
    ),
    (
        "ply\nformat ascii 1.0\nproperty float x\nend_header\n",
        r"bad\.ply:3: property before any element",
    ),
    ("ply\nformat ascii 1.0\nbogus line\nend_header\n", r"bad\.ply:3: unknown PLY header line"),
    (
        _GOOD_HEAD + "0 0 0\n1 0 0\n0 1 0\n3 0 1 3\n",
        r"bad\.ply: face 0 has vertex index 3 out of range",
    ),
    (_GOOD_HEAD + "0 0 0\n1 0 0\n0 1 0\n2 0 1\n", r"bad\.ply: face 0 has 2 vertices"),
    (_GOOD_HEAD + "0 0 0\n1 0 0\n0 1 0\n", r"bad\.ply: PLY data ends early"),
    (_GOOD_HEAD + "0 0 0\n1 0 zz\n0 1 0\n3 0 1 2\n", r"bad\.ply: malformed number"),
    (
        _GOOD_HEAD.replace("face 1", "face 0") + "0 0 0\n1 0 0\n0 1 0\n",
        r"bad\.ply: mesh has no faces",
    ),
    (
        _GOOD_HEAD.replace("vertex_indices", "corners") + "0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n",
        r"bad\.ply: PLY face element has no list property 'vertex_indices'",
    ),
    (
        _GOOD_HEAD.replace("property float z\n", "") + "0 0\n1 0\n0 1\n3 0 1 2\n",
        r"bad\.ply: PLY vertex element lacks property 'z'",
    ),
    (
        "ply\nformat ascii 1.0\nelement face 0\nend_header\n",
        r"bad\.ply: PLY file has no 'vertex' element",
    ),
]


@pytest.mark.parametrize(("text", "pattern"), PLY_ERRORS)
def test_ply_errors(tmp_path: Path, text: str, pattern: str) -> None:
    p = write(tmp_path / "bad.ply", text)
    with pytest.raises(TracerError, match=pattern) as info:
        load_mesh(p)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian"])
@pytest.mark.parametrize("faces", [SAMPLE_FACES, [[0, 1, 2], [2, 4, 3], [0, 1, 4]]])
@pytest.mark.parametrize("cut", [1, 5, 30])
def test_truncated_binary_ply(tmp_path: Path, fmt: str, faces: list[list[int]], cut: int) -> None:
    p = _write_sample_ply(tmp_path / "bad.ply", fmt, faces)
    p.write_bytes(p.read_bytes()[:-cut])
    with pytest.raises(TracerError, match=r"bad\.ply: truncated binary PLY"):
        load_mesh(p)


def test_truncated_vertex_block(tmp_path: Path) -> None:
    p = _write_sample_ply(tmp_path / "bad.ply", "binary_little_endian", SAMPLE_FACES)
    data = p.read_bytes()
    p.write_bytes(data[: data.index(b"end_header\n") + 11 + 20])
    with pytest.raises(TracerError, match=r"bad\.ply: truncated binary PLY \(element 'vertex'\)"):
        load_mesh(p)
