"""Shared test helpers: where the real environment maps are."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the five CC0 maps beside the repository (CI has them); the scenes bundle two of them
SHARED_ENVMAPS = ROOT.parent / "shared" / "envmaps"
BUNDLED_ENVMAPS = ROOT / "scenes" / "envmaps"


def real_envmaps() -> list[Path]:
    """Every real map at hand: the shared five when present, else the bundled copies."""
    folder = SHARED_ENVMAPS if SHARED_ENVMAPS.is_dir() else BUNDLED_ENVMAPS
    maps = sorted(folder.glob("*.exr"))
    assert maps, f"no real environment maps in {folder}"
    return maps


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
