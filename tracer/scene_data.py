"""A parsed scene packed into the arrays the kernels take (both back-ends)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from tracer.bsdf import CONDUCTOR, DIELECTRIC, DIFFUSE, N_PARAMS
from tracer.camera import camera_frame
from tracer.geometry import Geometry, build_geometry, triangle_normal
from tracer.scene import Scene

KINDS = {"diffuse": DIFFUSE, "conductor": CONDUCTOR, "dielectric": DIELECTRIC}


@dataclass
class SceneData:
    """What the kernels need of a scene: geometry + BVH, shading normals, materials, camera."""

    geom: Geometry
    #: (T, 4, 3): per triangle its three vertex normals, then its unit geometric normal
    #: (:func:`triangle_frames`), what a surface interaction reads of the triangle
    tri_normals: np.ndarray
    sphere_mat: np.ndarray  # (S,) int64
    tri_mat: np.ndarray  # (T,) int64
    mat_kind: np.ndarray  # (K,) int64
    mat_prm: np.ndarray  # (K, 8) float64
    camera: np.ndarray  # (5, 3) from tracer.camera.camera_frame


@njit(cache=True)
def triangle_frames(tri_v: np.ndarray, tri_n: np.ndarray) -> np.ndarray:
    """(T, 4, 3): each triangle's vertex normals ``tri_n`` and, as row 3, its unit geometric
    normal from its vertices ``tri_v`` (:func:`tracer.geometry.triangle_normal`, the
    arithmetic a surface interaction did per hit before, so the same numbers bit for bit):
    one table row a hit reads, instead of the vertex normals and the three vertices."""
    out = np.empty((tri_v.shape[0], 4, 3))
    for t in range(tri_v.shape[0]):
        out[t, :3] = tri_n[t]
        out[t, 3, 0], out[t, 3, 1], out[t, 3, 2] = triangle_normal(tri_v[t])
    return out


def scene_data(scene: Scene, width: int, height: int) -> SceneData:
    """Pack a parsed scene into the arrays the kernels take, building the BVH."""
    geom = build_geometry(scene.sphere_centers, scene.sphere_radii, scene.tri_vertices)
    kinds = np.array([KINDS[m.kind] for m in scene.materials] or [0], np.int64)
    prm = np.zeros((max(1, len(scene.materials)), N_PARAMS))
    for i, m in enumerate(scene.materials):
        prm[i, :3] = m.specular if m.kind == "conductor" else m.albedo
        prm[i, 3] = m.roughness
        prm[i, 4] = m.ior
    cam = scene.camera
    return SceneData(
        geom=geom,
        tri_normals=triangle_frames(geom.tri_v, np.ascontiguousarray(scene.tri_normals, np.float64).reshape(-1, 3, 3)),
        sphere_mat=np.asarray(scene.sphere_materials, np.int64),
        tri_mat=np.asarray(scene.tri_materials, np.int64),
        mat_kind=kinds,
        mat_prm=prm,
        camera=camera_frame(cam.eye, cam.look_at, cam.up, cam.fov_deg, width, height),
    )
