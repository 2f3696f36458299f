"""Where the wavefront runs: the array operations the integrator needs, per device.

The integrator (:mod:`tracer.integrator`) is written once against this small interface; the
CPU backend is NumPy arrays and the ``prange`` kernels of :mod:`tracer.kernels`, the CUDA
backend (:mod:`tracer.backend_cuda`) device arrays and the kernels of
:mod:`tracer.kernels_cuda`, both running the per-entry stages of :mod:`tracer.stages`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from tracer import kernels
from tracer.errors import TracerError

DEVICES = ("cpu", "cuda", "auto")


class CpuBackend:
    """NumPy arrays, parallel Numba kernels."""

    name = "cpu"
    k: ModuleType = kernels

    def empty(self, shape: Any, dtype: Any = np.float64) -> np.ndarray:
        return np.empty(shape, dtype)

    def zeros(self, shape: Any, dtype: Any = np.float64) -> np.ndarray:
        return np.zeros(shape, dtype)

    def arange(self, n: int) -> np.ndarray:
        return np.arange(n)

    def paths(self, n: int, npix: int, sample0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All path ids of a batch, and each path's pixel and sample index."""
        p = np.arange(n)
        return p, p % npix, sample0 + p // npix

    def split_escaped(
        self, idx: np.ndarray, hit_t: np.ndarray, hit_prim: np.ndarray, hit_b: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """(escaped path ids, hit path ids and their hit records)."""
        esc = hit_prim < 0
        hit = ~esc
        return idx[esc], idx[hit], hit_t[hit], hit_prim[hit], hit_b[hit]

    def gather(self, a: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return a[idx]

    def compact(self, idx: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """The queue entries whose path is still alive."""
        return idx[alive[idx]]

    def scene(self, scene: Any) -> Any:
        return scene

    def film(self, film: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return film.mean, film.m2, film.count, film.bad

    def sync_film(self, film: Any) -> None:
        pass

    def env(self, env: Any) -> Any:
        return env

    def light(self, light: Any) -> Any:
        return light

    def sync(self) -> None:
        pass


def cuda_available() -> bool:
    """Is there a usable CUDA GPU (or the CUDA simulator)?"""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - any failure to load the driver means no GPU
        return False


def make_backend(device: str = "cpu") -> CpuBackend:
    """The backend for ``--device`` (cpu, cuda, or auto: the GPU when there is one)."""
    if device not in DEVICES:
        raise TracerError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if device == "cpu":
        return CpuBackend()
    if not cuda_available():
        raise TracerError(
            "--device cuda: no CUDA GPU is available here (numba.cuda found no device); "
            "use --device cpu or --device auto"
        )
    from tracer.backend_cuda import CudaBackend

    return CudaBackend()
