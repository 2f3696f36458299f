"""Generate the bundled meshes: ``scenes/meshes/knot.ply``, a smooth trefoil torus knot.

The knot is a tube of constant radius swept along the (2, 3) torus-knot curve

    c(t) = ((2 + cos 3t) cos 2t, (2 + cos 3t) sin 2t, -sin 3t),   t in [0, 2 pi),

using its Frenet frame (the trefoil's curvature never vanishes, and the frame is periodic,
so the tube closes without a seam). The exact tube normal ``cos(a) N + sin(a) B`` is
stored per vertex. The result is scaled so the curve's centre-line fits in a box about 2
units wide, and centred on the origin: in a scene, translate it up by ~1.2 to rest it on
the ground plane (the knot lies in the xy plane, facing +z).

Run from anywhere: ``python scenes/make_meshes.py`` (writes binary little-endian PLY).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tracer.meshio import Mesh, save_ply

#: Samples along the curve and around the tube: 2 * 192 * 16 = 6144 triangles.
N_ALONG = 192
N_AROUND = 16
TUBE_RADIUS = 0.45
#: Uniform scale applied to the whole knot (centre-line extends to |xy| <= 3 before it).
SCALE = 1.0 / 3.0


def _curve(t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point, first and second derivative of the trefoil curve at parameters ``t``."""
    r = 2.0 + np.cos(3 * t)
    dr = -3.0 * np.sin(3 * t)
    ddr = -9.0 * np.cos(3 * t)
    c2, s2 = np.cos(2 * t), np.sin(2 * t)
    p = np.stack([r * c2, r * s2, -np.sin(3 * t)], axis=1)
    d1 = np.stack([dr * c2 - 2 * r * s2, dr * s2 + 2 * r * c2, -3 * np.cos(3 * t)], axis=1)
    d2 = np.stack(
        [
            ddr * c2 - 4 * dr * s2 - 4 * r * c2,
            ddr * s2 + 4 * dr * c2 - 4 * r * s2,
            9 * np.sin(3 * t),
        ],
        axis=1,
    )
    return p, d1, d2


def trefoil_knot(
    n_along: int = N_ALONG, n_around: int = N_AROUND, tube_radius: float = TUBE_RADIUS
) -> Mesh:
    """A closed tube around the trefoil, ``2 * n_along * n_around`` triangles, with normals."""
    t = np.linspace(0.0, 2.0 * np.pi, n_along, endpoint=False)
    p, d1, d2 = _curve(t)
    tangent = d1 / np.linalg.norm(d1, axis=1, keepdims=True)
    binormal = np.cross(d1, d2)
    binormal /= np.linalg.norm(binormal, axis=1, keepdims=True)
    normal = np.cross(binormal, tangent)

    a = np.linspace(0.0, 2.0 * np.pi, n_around, endpoint=False)
    ca, sa = np.cos(a)[None, :, None], np.sin(a)[None, :, None]
    nrm = ca * normal[:, None, :] + sa * binormal[:, None, :]  # (n_along, n_around, 3)
    pos = p[:, None, :] + tube_radius * nrm

    i = np.arange(n_along)[:, None]
    j = np.arange(n_around)[None, :]
    i1 = (i + 1) % n_along
    j1 = (j + 1) % n_around
    v00 = (i * n_around + j).ravel()
    v10 = (i1 * n_around + j).ravel()
    v01 = (i * n_around + j1).ravel()
    v11 = (i1 * n_around + j1).ravel()
    # Winding chosen so (p1 - p0) x (p2 - p0) points along the outward normal.
    faces = np.concatenate([np.stack([v00, v10, v11], 1), np.stack([v00, v11, v01], 1)])

    verts = pos.reshape(-1, 3) * SCALE
    norms = nrm.reshape(-1, 3)
    tri = verts[faces]
    geo = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    if np.mean(np.sum(geo * norms[faces[:, 0]], axis=1)) < 0:
        faces = faces[:, ::-1].copy()
    return Mesh(vertices=verts, faces=faces.astype(np.int64), normals=norms)


def main() -> None:
    """Write ``scenes/meshes/knot.ply`` next to this script."""
    out = Path(__file__).resolve().parent / "meshes" / "knot.ply"
    out.parent.mkdir(parents=True, exist_ok=True)
    mesh = trefoil_knot()
    save_ply(out, mesh, binary=True)
    lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    print(
        f"wrote {out} ({out.stat().st_size // 1024} KiB): {len(mesh.vertices)} vertices, "
        f"{len(mesh.faces)} triangles, bounds {np.round(lo, 3)} .. {np.round(hi, 3)}"
    )


if __name__ == "__main__":
    main()
