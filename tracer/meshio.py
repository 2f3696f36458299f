"""Triangle-mesh loading (Wavefront OBJ and Stanford PLY) and a small PLY writer.

:func:`load_mesh` returns a :class:`Mesh` of float64 vertices, int64 triangle indices and,
when the file has them, float64 per-vertex normals. Polygons are fan-triangulated
(``(c0, c1, c2), (c0, c2, c3), ...``), keeping the winding of the file.

OBJ
    ``v x y z [w]`` (extra components such as ``w`` or vertex colours are ignored),
    ``vn x y z`` and ``f`` lines whose corners take any of the forms ``i``, ``i/j``,
    ``i//k`` and ``i/j/k``; indices are 1-based and negative indices count back from the
    last vertex (normal) defined *before* the face line. Texture indices ``j`` are checked
    to be integers and otherwise ignored. ``#`` starts a comment; every other statement
    (``vt``, ``g``, ``o``, ``s``, ``usemtl``, ``mtllib``, ``l``, ...) is ignored.

    Normals are kept only if *every* face corner names one. OBJ indexes positions and
    normals separately, so the mesh is then *de-indexed*: if each corner's normal index
    equals its position index (the common case of files written with one normal per
    vertex) the vertex arrays are used as they are; otherwise every distinct
    (position, normal) pair becomes one output vertex (in order of first appearance),
    and unreferenced positions are dropped. Without normals the vertices are kept as in
    the file, referenced or not.

PLY
    ``format ascii 1.0``, ``binary_little_endian 1.0`` and ``binary_big_endian 1.0``.
    The ``vertex`` element must have ``x``, ``y``, ``z`` properties; ``nx``, ``ny``, ``nz``
    are used when all three are present; any other property (colours, texture
    coordinates, ...) and any other element is skipped. The ``face`` element needs a list
    property ``vertex_indices`` (or ``vertex_index``). Binary files are read with
    :func:`numpy.frombuffer` and structured dtypes; when the faces have differently sized
    lists, only the list lengths are walked in Python and the indices are gathered with
    numpy.

Every problem with the input (missing file, unknown extension, malformed line, index out
of range, truncated data, no faces) raises :class:`~tracer.errors.TracerError` with a
one-line message that starts with the file name (and, for OBJ, the line number).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracer.errors import TracerError, read_regular_file

__all__ = ["Mesh", "load_mesh", "load_obj", "load_ply", "save_ply"]


@dataclass
class Mesh:
    """An indexed triangle mesh.

    Attributes:
        vertices: ``(V, 3)`` float64 positions.
        faces: ``(F, 3)`` int64 vertex indices of each triangle, ``0 <= index < V``.
        normals: ``(V, 3)`` float64 per-vertex normals as stored in the file (not
            renormalised), or ``None`` when the file has none.
    """

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None = None

    @property
    def num_triangles(self) -> int:
        """Number of triangles."""
        return int(self.faces.shape[0])


def load_mesh(path: str | Path) -> Mesh:
    """Load a triangle mesh from an ``.obj`` or ``.ply`` file (chosen by extension).

    Raises:
        TracerError: the file is missing, has an unknown extension, or is malformed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".obj", ".ply"):
        raise TracerError(
            f"{path}: unknown mesh file extension {path.suffix!r} (expected .obj or .ply)"
        )
    data = _read_bytes(path)
    return load_obj(path, data) if suffix == ".obj" else load_ply(path, data)


#: Memory that parsing takes per byte of a mesh file, at most (Python lists of the numbers
#: and tokens of an OBJ or ASCII PLY file while it is parsed).
PARSE_BYTES_PER_BYTE = 16
#: Largest index a face may name (int64 arithmetic, with room to spare).
_MAX_INDEX = 1 << 62


def _read_bytes(path: Path) -> bytes:
    """A regular file's bytes (links followed); devices, FIFOs and files too large to parse
    in the memory there is are refused."""
    try:
        return read_regular_file(
            path, str(path), "mesh file", bytes_per_byte=PARSE_BYTES_PER_BYTE
        )
    except FileNotFoundError:
        raise TracerError(f"{path}: no such mesh file") from None
    except IsADirectoryError:
        raise TracerError(f"{path}: is a directory, not a mesh file") from None
    except OSError as e:
        raise TracerError(f"{path}: cannot read mesh file: {e.strerror or e}") from None


# --------------------------------------------------------------------------------------
# shared helpers


def _fan_triangulate(counts: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Fan-triangulate polygons given as sizes ``counts`` and flattened ``indices``.

    Every count must be >= 3. Returns ``(sum(counts - 2), 3)`` int64.
    """
    counts = counts.astype(np.int64, copy=False)
    indices = indices.astype(np.int64, copy=False)
    if counts.size and bool(np.all(counts == 3)):
        return indices.reshape(-1, 3).copy()
    starts = np.cumsum(counts) - counts
    ntri = counts - 2
    total = int(ntri.sum())
    face_of_tri = np.repeat(np.arange(counts.size), ntri)
    first_tri = np.cumsum(ntri) - ntri
    j = np.arange(total) - np.repeat(first_tri, ntri) + 1
    s = starts[face_of_tri]
    return np.stack([indices[s], indices[s + j], indices[s + j + 1]], axis=1)


def _check_vertices(path: Path, vertices: np.ndarray, normals: np.ndarray | None) -> None:
    if not np.all(np.isfinite(vertices)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(vertices), axis=1))[0])
        raise TracerError(f"{path}: vertex {bad} has a non-finite coordinate")
    if normals is not None and not np.all(np.isfinite(normals)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(normals), axis=1))[0])
        raise TracerError(f"{path}: normal {bad} has a non-finite component")


# --------------------------------------------------------------------------------------
# OBJ


def _obj_index(token: str, count: int, what: str, path: Path, lineno: int) -> int:
    """Resolve one 1-based (or negative) OBJ index to a 0-based one; range checked later."""
    try:
        i = int(token)
    except ValueError:
        raise TracerError(f"{path}:{lineno}: malformed {what} index {token!r}") from None
    if i == 0:
        raise TracerError(f"{path}:{lineno}: {what} index 0 is invalid (OBJ indices start at 1)")
    if abs(i) > _MAX_INDEX:
        raise TracerError(
            f"{path}:{lineno}: {what} index {token} is out of range "
            f"({count} defined before this line)"
        )
    if i < 0:
        r = count + i
        if r < 0:
            raise TracerError(
                f"{path}:{lineno}: {what} index {i} is out of range "
                f"(only {count} defined before this line)"
            )
        return r
    return i - 1


def load_obj(path: str | Path, data: bytes | None = None) -> Mesh:
    """Parse a Wavefront OBJ file (see the module docstring); ``data`` overrides reading."""
    path = Path(path)
    if data is None:
        data = _read_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")

    verts: list[tuple[float, float, float]] = []
    norms: list[tuple[float, float, float]] = []
    counts: list[int] = []
    vidx: list[int] = []
    nidx: list[int] = []
    corner_line: list[int] = []
    all_have_normals = True

    for lineno, raw in enumerate(text.splitlines(), start=1):
        hash_pos = raw.find("#")
        line = raw if hash_pos < 0 else raw[:hash_pos]
        parts = line.split()
        if not parts:
            continue
        tag = parts[0]
        if tag == "v" or tag == "vn":
            what = "vertex" if tag == "v" else "normal"
            if len(parts) < 4 or (tag == "vn" and len(parts) != 4):
                raise TracerError(
                    f"{path}:{lineno}: malformed {what} line (expected 3 numbers): {line.strip()!r}"
                )
            try:
                xyz = (float(parts[1]), float(parts[2]), float(parts[3]))
            except ValueError:
                raise TracerError(
                    f"{path}:{lineno}: malformed {what} line (expected 3 numbers): {line.strip()!r}"
                ) from None
            if not all(math.isfinite(c) for c in xyz):
                raise TracerError(f"{path}:{lineno}: non-finite {what} coordinate")
            (verts if tag == "v" else norms).append(xyz)
        elif tag == "f":
            corners = parts[1:]
            if len(corners) < 3:
                raise TracerError(
                    f"{path}:{lineno}: face needs at least 3 vertices, got {len(corners)}"
                )
            for c in corners:
                fields = c.split("/")
                if len(fields) > 3 or fields[0] == "":
                    raise TracerError(f"{path}:{lineno}: malformed face vertex {c!r}")
                vidx.append(_obj_index(fields[0], len(verts), "vertex", path, lineno))
                if len(fields) >= 2 and fields[1] != "":
                    try:
                        int(fields[1])
                    except ValueError:
                        raise TracerError(
                            f"{path}:{lineno}: malformed texture index {fields[1]!r}"
                        ) from None
                if len(fields) == 3 and fields[2] != "":
                    nidx.append(_obj_index(fields[2], len(norms), "normal", path, lineno))
                else:
                    all_have_normals = False
                    nidx.append(-1)
                corner_line.append(lineno)
            counts.append(len(corners))
        # every other statement is ignored

    if not counts:
        raise TracerError(f"{path}: mesh has no faces")
    vertices = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    vi = np.asarray(vidx, dtype=np.int64)
    bad = np.flatnonzero(vi >= len(verts))
    if bad.size:
        k = int(bad[0])
        raise TracerError(
            f"{path}:{corner_line[k]}: vertex index {vi[k] + 1} is out of range "
            f"(the file has {len(verts)} vertices)"
        )

    ni = np.asarray(nidx, dtype=np.int64)
    bad = np.flatnonzero(ni >= len(norms))
    if bad.size:
        k = int(bad[0])
        raise TracerError(
            f"{path}:{corner_line[k]}: normal index {ni[k] + 1} is out of range "
            f"(the file has {len(norms)} normals)"
        )
    normals: np.ndarray | None = None
    if all_have_normals:
        normal_table = np.asarray(norms, dtype=np.float64).reshape(-1, 3)
        if len(norms) == len(verts) and np.array_equal(ni, vi):
            normals = normal_table
        else:
            # One output vertex per distinct (position, normal) pair, first-appearance order.
            keys = vi * len(norms) + ni
            _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            order = np.argsort(first, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            first_sorted = first[order]
            vertices = vertices[vi[first_sorted]]
            normals = normal_table[ni[first_sorted]]
            vi = rank[inverse.reshape(-1)]

    faces = _fan_triangulate(np.asarray(counts, dtype=np.int64), vi)
    return Mesh(np.ascontiguousarray(vertices), np.ascontiguousarray(faces), normals)


# --------------------------------------------------------------------------------------
# PLY

_PLY_TYPES: dict[str, str] = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}
_INDEX_NAMES = ("vertex_indices", "vertex_index")


@dataclass
class _Prop:
    name: str
    dtype: str  # numpy type code without byte order, e.g. "f4"
    count_dtype: str | None = None  # set for list properties


@dataclass
class _Element:
    name: str
    count: int
    props: list[_Prop]


def _parse_ply_header(path: Path, data: bytes) -> tuple[str, list[_Element], int]:
    """Return (format, elements, byte offset of the body)."""
    if not data.startswith(b"ply"):
        raise TracerError(f"{path}: not a PLY file (missing 'ply' magic)")
    lines: list[bytes] = []
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise TracerError(f"{path}: PLY header has no end_header line")
        line = data[pos:nl]
        pos = nl + 1
        if line.strip() == b"end_header":
            break
        lines.append(line)
    body = pos
    try:
        header = b"\n".join(lines).decode("ascii")
    except UnicodeDecodeError:
        raise TracerError(f"{path}: PLY header is not ASCII text") from None

    fmt: str | None = None
    elements: list[_Element] = []
    for lineno, raw in enumerate(header.splitlines()[1:], start=2):
        parts = raw.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        tag = parts[0]
        if tag == "format":
            if len(parts) != 3 or parts[1] not in (
                "ascii",
                "binary_little_endian",
                "binary_big_endian",
            ):
                raise TracerError(f"{path}:{lineno}: unsupported PLY format line {raw.strip()!r}")
            fmt = parts[1]
        elif tag == "element":
            if len(parts) != 3:
                raise TracerError(f"{path}:{lineno}: malformed element line {raw.strip()!r}")
            try:
                n = int(parts[2])
            except ValueError:
                n = -1
            if n < 0:
                raise TracerError(f"{path}:{lineno}: bad element count {parts[2]!r}")
            elements.append(_Element(parts[1], n, []))
        elif tag == "property":
            if not elements:
                raise TracerError(f"{path}:{lineno}: property before any element")
            if len(parts) == 3 and parts[1] in _PLY_TYPES:
                elements[-1].props.append(_Prop(parts[2], _PLY_TYPES[parts[1]]))
            elif (
                len(parts) == 5
                and parts[1] == "list"
                and parts[2] in _PLY_TYPES
                and parts[3] in _PLY_TYPES
                and _PLY_TYPES[parts[2]][0] in "iu"
            ):
                elements[-1].props.append(
                    _Prop(parts[4], _PLY_TYPES[parts[3]], _PLY_TYPES[parts[2]])
                )
            else:
                raise TracerError(f"{path}:{lineno}: malformed property line {raw.strip()!r}")
        else:
            raise TracerError(f"{path}:{lineno}: unknown PLY header line {raw.strip()!r}")
    if fmt is None:
        raise TracerError(f"{path}: PLY header has no format line")
    return fmt, elements, body


def _ply_binary_element(
    path: Path, data: bytes, offset: int, el: _Element, bo: str
) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """Read one element of a binary PLY body.

    Returns (scalar columns, list columns as (counts, flat items), new offset).
    """
    n = el.count
    truncated = TracerError(f"{path}: truncated binary PLY (element {el.name!r})")
    if not any(p.count_dtype for p in el.props):
        dt = np.dtype([(f"p{i}", bo + p.dtype) for i, p in enumerate(el.props)])
        nbytes = dt.itemsize * n
        if offset + nbytes > len(data):
            raise truncated
        arr = np.frombuffer(data, dtype=dt, count=n, offset=offset)
        cols = {p.name: arr[f"p{i}"] for i, p in enumerate(el.props)}
        return cols, {}, offset + nbytes
    if n == 0:
        return {}, {p.name: (np.zeros(0, np.int64), np.zeros(0)) for p in el.props}, offset

    # Fast path: every list in every row as long as in the first row.
    first_counts: list[int] = []
    pos = offset
    for p in el.props:
        if p.count_dtype:
            cdt = np.dtype(bo + p.count_dtype)
            if pos + cdt.itemsize > len(data):
                raise truncated
            k = int(np.frombuffer(data, dtype=cdt, count=1, offset=pos)[0])
            if k < 0:
                raise TracerError(f"{path}: negative list length in element {el.name!r}")
            first_counts.append(k)
            pos += cdt.itemsize + k * np.dtype(p.dtype).itemsize
            if pos > len(data):
                raise truncated
        else:
            pos += np.dtype(p.dtype).itemsize
    if pos > len(data):
        raise truncated
    fields: list[tuple] = []
    li = 0
    for i, p in enumerate(el.props):
        if p.count_dtype:
            fields.append((f"c{i}", bo + p.count_dtype))
            fields.append((f"p{i}", bo + p.dtype, (first_counts[li],)))
            li += 1
        else:
            fields.append((f"p{i}", bo + p.dtype))
    dt = np.dtype(fields)
    if offset + dt.itemsize * n <= len(data):
        arr = np.frombuffer(data, dtype=dt, count=n, offset=offset)
        uniform = all(
            bool(np.all(arr[f"c{i}"] == arr[f"c{i}"][0]))
            for i, p in enumerate(el.props)
            if p.count_dtype
        )
        if uniform:
            cols: dict[str, np.ndarray] = {}
            lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for i, p in enumerate(el.props):
                if p.count_dtype:
                    items = arr[f"p{i}"].reshape(n, -1)
                    lists[p.name] = (
                        np.full(n, items.shape[1], dtype=np.int64),
                        items.reshape(-1),
                    )
                else:
                    cols[p.name] = arr[f"p{i}"]
            return cols, lists, offset + dt.itemsize * n

    # General path: walk the rows to find where each list starts, then gather with numpy.
    sizes = [np.dtype(p.dtype).itemsize for p in el.props]
    cdts = [np.dtype(bo + p.count_dtype) if p.count_dtype else None for p in el.props]
    scalar_pos: dict[int, list[int]] = {i: [] for i, p in enumerate(el.props) if not p.count_dtype}
    list_start: dict[int, list[int]] = {i: [] for i, p in enumerate(el.props) if p.count_dtype}
    list_count: dict[int, list[int]] = {i: [] for i in list_start}
    mv = memoryview(data)
    order = "little" if bo == "<" else "big"
    pos = offset
    size = len(data)
    for _ in range(n):
        for i in range(len(el.props)):
            cdt = cdts[i]
            if cdt is None:
                scalar_pos[i].append(pos)
                pos += sizes[i]
            else:
                cs = cdt.itemsize
                if pos + cs > size:
                    raise truncated
                k = int.from_bytes(mv[pos : pos + cs], order, signed=cdt.kind == "i")
                if k < 0:
                    raise TracerError(f"{path}: negative list length in element {el.name!r}")
                list_start[i].append(pos + cs)
                list_count[i].append(k)
                pos += cs + k * sizes[i]
        if pos > size:
            raise truncated
    buf = np.frombuffer(data, dtype=np.uint8)
    cols = {}
    lists = {}
    for i, p in enumerate(el.props):
        dt1 = np.dtype(bo + p.dtype)
        if i in scalar_pos:
            idx = np.asarray(scalar_pos[i], dtype=np.int64)[:, None] + np.arange(dt1.itemsize)
            cols[p.name] = buf[idx].copy().view(dt1).reshape(-1)
        else:
            counts = np.asarray(list_count[i], dtype=np.int64)
            starts = np.asarray(list_start[i], dtype=np.int64)
            total = int(counts.sum())
            within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            item_pos = np.repeat(starts, counts) + within * dt1.itemsize
            idx = item_pos[:, None] + np.arange(dt1.itemsize)
            lists[p.name] = (counts, buf[idx].copy().view(dt1).reshape(-1))
    return cols, lists, pos


def _ply_ascii_element(
    path: Path, tokens: list[str], t: int, el: _Element
) -> tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """Read one element from the whitespace-separated tokens of an ASCII PLY body."""
    n = el.count
    truncated = TracerError(f"{path}: PLY data ends early (element {el.name!r})")

    def numbers(a: int, b: int) -> np.ndarray:
        if b > len(tokens):
            raise truncated
        try:
            return np.asarray(tokens[a:b], dtype=np.float64)
        except ValueError:
            raise TracerError(f"{path}: malformed number in element {el.name!r}") from None

    nprops = len(el.props)
    if n == 0:
        return {}, {p.name: (np.zeros(0, np.int64), np.zeros(0)) for p in el.props}, t
    has_list = any(p.count_dtype for p in el.props)
    # Row layout from the first row; used directly when every row has the same layout.
    layout: list[int] = []  # for each prop: -1 scalar, else list length
    pos = t
    for p in el.props:
        if p.count_dtype:
            k = numbers(pos, pos + 1)[0]
            if not (0 <= k <= len(tokens)) or k != int(k):
                raise TracerError(f"{path}: bad list length in element {el.name!r}")
            layout.append(int(k))
            pos += 1 + int(k)
        else:
            layout.append(-1)
            pos += 1
    row = pos - t
    if t + row * n <= len(tokens):
        table = numbers(t, t + row * n).reshape(n, row)
        ok = True
        c = 0
        cols: dict[str, np.ndarray] = {}
        lists: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for p, k in zip(el.props, layout, strict=True):
            if k < 0:
                cols[p.name] = table[:, c]
                c += 1
            else:
                if not np.all(table[:, c] == k):
                    ok = False
                    break
                lists[p.name] = (np.full(n, k, np.int64), table[:, c + 1 : c + 1 + k].reshape(-1))
                c += 1 + k
        if ok:
            return cols, lists, t + row * n
    if not has_list:
        raise truncated
    # General path: walk the rows.
    scal: list[list[float]] = [[] for _ in range(nprops)]
    cnts: list[list[int]] = [[] for _ in range(nprops)]
    items: list[list[str]] = [[] for _ in range(nprops)]
    pos = t
    for _ in range(n):
        for i, p in enumerate(el.props):
            if pos >= len(tokens):
                raise truncated
            if p.count_dtype:
                try:
                    k = int(tokens[pos])
                except ValueError:
                    raise TracerError(f"{path}: bad list length in element {el.name!r}") from None
                if k < 0:
                    raise TracerError(f"{path}: bad list length in element {el.name!r}")
                if pos + 1 + k > len(tokens):
                    raise truncated
                cnts[i].append(k)
                items[i].extend(tokens[pos + 1 : pos + 1 + k])
                pos += 1 + k
            else:
                try:
                    scal[i].append(float(tokens[pos]))
                except ValueError:
                    raise TracerError(f"{path}: malformed number in element {el.name!r}") from None
                pos += 1
    cols = {}
    lists = {}
    for i, p in enumerate(el.props):
        if p.count_dtype:
            try:
                flat = np.asarray(items[i], dtype=np.float64)
            except ValueError:
                raise TracerError(f"{path}: malformed number in element {el.name!r}") from None
            lists[p.name] = (np.asarray(cnts[i], dtype=np.int64), flat)
        else:
            cols[p.name] = np.asarray(scal[i], dtype=np.float64)
    return cols, lists, pos


def load_ply(path: str | Path, data: bytes | None = None) -> Mesh:
    """Parse a PLY file (see the module docstring); ``data`` overrides reading the file."""
    path = Path(path)
    if data is None:
        data = _read_bytes(path)
    fmt, elements, body = _parse_ply_header(path, data)

    vertex_cols: dict[str, np.ndarray] | None = None
    face_lists: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    face_el: _Element | None = None
    n_vertex = 0
    if fmt == "ascii":
        try:
            tokens = data[body:].decode("ascii").split()
        except UnicodeDecodeError:
            raise TracerError(f"{path}: ASCII PLY body is not ASCII text") from None
        t = 0
        for el in elements:
            cols, lists, t = _ply_ascii_element(path, tokens, t, el)
            if el.name == "vertex" and vertex_cols is None:
                vertex_cols, n_vertex = cols, el.count
            elif el.name == "face" and face_lists is None:
                face_lists, face_el = lists, el
    else:
        bo = "<" if fmt == "binary_little_endian" else ">"
        offset = body
        for el in elements:
            # Elements after the faces are not needed: stop early (and don't fail on them).
            if vertex_cols is not None and face_lists is not None:
                break
            cols, lists, offset = _ply_binary_element(path, data, offset, el, bo)
            if el.name == "vertex" and vertex_cols is None:
                vertex_cols, n_vertex = cols, el.count
            elif el.name == "face" and face_lists is None:
                face_lists, face_el = lists, el

    if vertex_cols is None:
        raise TracerError(f"{path}: PLY file has no 'vertex' element")
    missing = [c for c in "xyz" if c not in vertex_cols]
    if missing:
        raise TracerError(f"{path}: PLY vertex element lacks property {missing[0]!r}")
    vertices = np.stack([vertex_cols[c].astype(np.float64) for c in "xyz"], axis=1)
    normals = None
    if all(c in vertex_cols for c in ("nx", "ny", "nz")):
        normals = np.stack([vertex_cols[c].astype(np.float64) for c in ("nx", "ny", "nz")], axis=1)
    _check_vertices(path, vertices, normals)

    if face_lists is None or face_el is None or face_el.count == 0:
        raise TracerError(f"{path}: mesh has no faces")
    name = next((nm for nm in _INDEX_NAMES if nm in face_lists), None)
    if name is None:
        raise TracerError(
            f"{path}: PLY face element has no list property 'vertex_indices' or 'vertex_index'"
        )
    counts, flat = face_lists[name]
    if counts.size and int(counts.min()) < 3:
        k = int(np.flatnonzero(counts < 3)[0])
        raise TracerError(f"{path}: face {k} has {int(counts[k])} vertices (need at least 3)")
    if flat.dtype.kind == "f" and not np.all(flat == np.floor(flat)):
        raise TracerError(f"{path}: non-integer vertex index in face list")
    if flat.dtype.kind == "f" and flat.size and not bool(np.all(np.abs(flat) <= _MAX_INDEX)):
        k = int(np.flatnonzero(~(np.abs(flat) <= _MAX_INDEX))[0])
        face = int(np.searchsorted(np.cumsum(counts), k, side="right"))
        raise TracerError(
            f"{path}: face {face} has vertex index {flat[k]:g} out of range "
            f"(the file has {n_vertex} vertices)"
        )
    idx = flat.astype(np.int64)
    bad = np.flatnonzero((idx < 0) | (idx >= n_vertex))
    if bad.size:
        face = int(np.searchsorted(np.cumsum(counts), bad[0], side="right"))
        raise TracerError(
            f"{path}: face {face} has vertex index {int(idx[bad[0]])} out of range "
            f"(the file has {n_vertex} vertices)"
        )
    faces = _fan_triangulate(counts, idx)
    return Mesh(
        np.ascontiguousarray(vertices),
        np.ascontiguousarray(faces),
        None if normals is None else np.ascontiguousarray(normals),
    )


# --------------------------------------------------------------------------------------
# writing


def save_ply(path: str | Path, mesh: Mesh, *, binary: bool = True) -> None:
    """Write ``mesh`` as a PLY file: float32 x,y,z (and nx,ny,nz), ``uchar``/``int`` faces.

    ``binary`` selects ``binary_little_endian`` (default) or ``ascii``.
    """
    path = Path(path)
    v = np.asarray(mesh.vertices, dtype=np.float32)
    f = np.asarray(mesh.faces, dtype=np.int64)
    has_n = mesh.normals is not None
    header = [
        "ply",
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
        "comment written by flowtracer tracer.meshio.save_ply",
        f"element vertex {len(v)}",
        "property float x",
        "property float y",
        "property float z",
    ]
    if has_n:
        header += ["property float nx", "property float ny", "property float nz"]
    header += [
        f"element face {len(f)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    head = ("\n".join(header) + "\n").encode("ascii")
    names = ["x", "y", "z"] + (["nx", "ny", "nz"] if has_n else [])
    vert = np.empty(len(v), dtype=[(nm, "<f4") for nm in names])
    for k, nm in enumerate("xyz"):
        vert[nm] = v[:, k]
    if has_n:
        n = np.asarray(mesh.normals, dtype=np.float32)
        for k, nm in enumerate(("nx", "ny", "nz")):
            vert[nm] = n[:, k]
    if binary:
        face = np.empty(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
        face["n"] = 3
        face["i"] = f
        path.write_bytes(head + vert.tobytes() + face.tobytes())
    else:
        lines = [" ".join(f"{float(c):.9g}" for c in row) for row in vert.tolist()]
        lines += [f"3 {a} {b} {c}" for a, b, c in f.tolist()]
        path.write_bytes(head + ("\n".join(lines) + "\n").encode("ascii"))
