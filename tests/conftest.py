"""Shared test helpers: where the real environment maps are."""

from __future__ import annotations

from pathlib import Path

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
