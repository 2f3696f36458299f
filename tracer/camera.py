"""A pinhole camera: the look-at frame and the film plane's extent."""

from __future__ import annotations

import math

import numpy as np

from tracer.errors import TracerError


def camera_frame(
    eye: np.ndarray, look_at: np.ndarray, up: np.ndarray, fov_deg: float, width: int, height: int
) -> np.ndarray:
    """(5, 3) array: eye, forward, right * tan(fov/2) * aspect, up * tan(fov/2), and unused.

    A pixel at normalised film coordinates (sx, sy) in [-1, 1]^2 (sy up) looks along
    ``forward + sx * right' + sy * up'``; ``fov_deg`` is the vertical field of view.
    """
    eye = np.asarray(eye, np.float64)
    fwd = np.asarray(look_at, np.float64) - eye
    if np.linalg.norm(fwd) == 0:
        raise TracerError("camera: eye and look_at are the same point")
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, np.asarray(up, np.float64))
    if np.linalg.norm(right) < 1e-9:
        raise TracerError("camera: up is parallel to the viewing direction")
    right /= np.linalg.norm(right)
    true_up = np.cross(right, fwd)
    t = math.tan(math.radians(fov_deg) / 2)
    return np.stack([eye, fwd, right * t * width / height, true_up * t, np.zeros(3)])
