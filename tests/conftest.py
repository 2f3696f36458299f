"""Shared test helpers: where the real environment maps are, and a BSDF's directional albedo
by quadrature."""

from __future__ import annotations

import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# models built by tests (a product sampler with no model file) go to a scratch cache, never
# to the repository's renders/flows
os.environ.setdefault("FLOWTRACER_FLOW_CACHE", tempfile.mkdtemp(prefix="flowtracer-test-cache-"))
#: the five CC0 maps beside the repository (CI has them); the scenes bundle two of them
SHARED_ENVMAPS = ROOT.parent / "shared" / "envmaps"
BUNDLED_ENVMAPS = ROOT / "scenes" / "envmaps"


class RealEnvmapsFallback(UserWarning):
    """The shared maps are absent: the real-map tests run on the bundled maps only."""


def real_envmap_folder() -> Path:
    """The shared folder when present, else the bundled copies."""
    return SHARED_ENVMAPS if SHARED_ENVMAPS.is_dir() else BUNDLED_ENVMAPS


def real_envmaps() -> list[Path]:
    """Every real map at hand: the shared five when present, else the bundled copies (with a
    :class:`RealEnvmapsFallback` warning, so that a run on fewer maps says so)."""
    folder = real_envmap_folder()
    maps = sorted(folder.glob("*.exr"))
    assert maps, f"no real environment maps in {folder}"
    if folder != SHARED_ENVMAPS:
        warnings.warn(
            f"{SHARED_ENVMAPS} is absent: the real-map tests use the {len(maps)} bundled maps "
            f"in {folder} instead of the shared five",
            RealEnvmapsFallback,
            stacklevel=2,
        )
    return maps


def pytest_report_header(config: object) -> str:
    """Name the real maps' folder and count in the header of every run."""
    folder = real_envmap_folder()
    n = len(list(folder.glob("*.exr")))
    if folder == SHARED_ENVMAPS:
        return f"real environment maps: {n} in {folder}"
    return (
        f"real environment maps: {SHARED_ENVMAPS} is ABSENT; the real-map tests run on the "
        f"{n} bundled maps in {folder} only"
    )


def pytest_configure(config: object) -> None:
    """Under pytest-xdist each worker takes one core: two workers with two Torch and two Numba
    threads each would oversubscribe the 2-core CI machine (OpenMP spin-waits make Torch
    20x slower then)."""
    import os

    if os.environ.get("PYTEST_XDIST_WORKER"):
        import numba
        import torch

        torch.set_num_threads(1)
        numba.set_num_threads(1)


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """One Torch intra-op thread for a module of small-batch tests (pytest -n 2 runs two workers)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _albedo_at_order(kind: int, prm: np.ndarray, wo: np.ndarray, n: int) -> np.ndarray:
    from tracer.bsdf import eval_batch

    x, w = np.polynomial.legendre.leggauss(n)
    phi = 2.0 * math.pi * (np.arange(2 * n) + 0.5) / (2 * n)  # periodic: midpoint rule
    total = np.zeros(3)
    for lo, hi in ((0.0, 1.0), (-1.0, 0.0)):  # each hemisphere (the integrand jumps at mu = 0)
        mu = lo + (hi - lo) * 0.5 * (x + 1.0)
        st = np.sqrt(1.0 - mu * mu)
        wi = np.stack(
            np.broadcast_arrays(
                st[:, None] * np.cos(phi)[None, :], st[:, None] * np.sin(phi)[None, :], mu[:, None]
            ),
            axis=-1,
        ).reshape(-1, 3)
        e = eval_batch(kind, prm, np.asarray(wo, np.float64), np.ascontiguousarray(wi))[:, :3]
        wmu = (hi - lo) * 0.5 * w
        total += np.einsum("ijc,i->c", e.reshape(n, 2 * n, 3), wmu) * (2.0 * math.pi / (2 * n))
    return total


def directional_albedo(kind: int, prm: np.ndarray, wo: np.ndarray, n: int = 128) -> tuple[np.ndarray, float]:
    r"""Directional albedo :math:`\rho(\omega_o) = \int f\,|\cos\theta_i|\,d\omega_i` of a
    BSDF of :mod:`tracer.bsdf` (rgb), by deterministic quadrature of ``eval_batch`` over the
    sphere of incident directions (local frame, normal +z): Gauss-Legendre of order ``n`` in
    :math:`\cos\theta_i` on each hemisphere, the midpoint rule with ``2n`` nodes in
    :math:`\phi` (spectrally accurate for a periodic integrand).

    Returns the albedo at order ``n`` and an error estimate: its largest difference to the
    albedo at order ``n // 2``.
    """
    fine = _albedo_at_order(kind, prm, wo, n)
    coarse = _albedo_at_order(kind, prm, wo, n // 2)
    return fine, float(np.abs(fine - coarse).max())
