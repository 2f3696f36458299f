"""flowtracer: a wavefront Numba path tracer lit by HDR environment maps.

Numba's on-disk cache keys a compiled kernel on its own file alone, while the kernels here
inline device functions from many files (the stages, the BSDFs, every light sampler): an
edit to one of those would leave the cached kernels stale. So the cache lives in a folder
named by a digest of the package's source (``$XDG_CACHE_HOME/flowtracer/numba/<digest>``,
``~/.cache`` by default): any edit compiles afresh, and an unchanged tree reuses its kernels.
``NUMBA_CACHE_DIR`` set by the user wins.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__version__ = "0.1.0"


def source_digest(root: Path | None = None) -> str:
    """SHA-256 (hex) of the package's Python source files, paths included."""
    root = Path(__file__).resolve().parent if root is None else root
    h = hashlib.sha256(__version__.encode())
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def numba_cache_dir(root: Path | None = None) -> Path:
    """Where compiled kernels of this exact source are cached."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "flowtracer" / "numba" / source_digest(root)[:20]


def _use_source_keyed_cache() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    import numba

    numba.config.CACHE_DIR = str(numba_cache_dir())


_use_source_keyed_cache()
