"""Compiled kernels are cached per source tree, so an edit to an inlined function is never stale."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numba

import tracer


def test_the_cache_folder_follows_the_source(tmp_path: Path) -> None:
    src = Path(tracer.__file__).resolve().parent
    copy = tmp_path / "tracer"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert tracer.numba_cache_dir(copy) == tracer.numba_cache_dir(src)
    bsdf = copy / "bsdf.py"  # inlined into the stage kernels, which live in other files
    bsdf.write_text(bsdf.read_text() + "\n# an edit\n")
    assert tracer.numba_cache_dir(copy) != tracer.numba_cache_dir(src)


def test_numba_uses_the_source_keyed_folder() -> None:
    from tracer import kernels

    expected = os.environ.get("NUMBA_CACHE_DIR") or str(tracer.numba_cache_dir())  # the user's wins
    assert numba.config.CACHE_DIR == expected
    assert Path(kernels.light_sample._cache._cache_path).is_relative_to(expected)
