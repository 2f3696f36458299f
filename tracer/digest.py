"""Hashes of what a render depends on: its contents (arrays, settings), not file names."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np


def content_key(*parts: Any) -> str:
    """SHA-256 (hex) of ``parts`` fed through :func:`content_digest` in order."""
    h = hashlib.sha256()
    for p in parts:
        content_digest(h, p)
        h.update(b"|")
    return h.hexdigest()


def content_digest(h: Any, obj: Any) -> None:
    """Feed ``obj`` (arrays, dataclasses, named tuples, sequences, scalars) into hash ``h``."""
    if isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"nd{a.shape}{a.dtype.str}|".encode())
        h.update(a.tobytes())
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"{type(obj).__name__}(".encode())
        for f in dataclasses.fields(obj):
            h.update(f"{f.name}=".encode())
            content_digest(h, getattr(obj, f.name))
        h.update(b")")
    elif isinstance(obj, tuple) and hasattr(obj, "_fields"):
        h.update(f"{type(obj).__name__}(".encode())
        for name, v in zip(obj._fields, obj, strict=True):
            h.update(f"{name}=".encode())
            content_digest(h, v)
        h.update(b")")
    elif isinstance(obj, (list, tuple)):
        h.update(f"seq{len(obj)}[".encode())
        for v in obj:
            content_digest(h, v)
        h.update(b"]")
    elif isinstance(obj, dict):
        h.update(f"map{len(obj)}{{".encode())
        for k in sorted(obj, key=repr):
            content_digest(h, k)
            content_digest(h, obj[k])
        h.update(b"}")
    elif obj is None or isinstance(obj, (bool, int, float, str, bytes, np.generic, Path)):
        h.update(f"{type(obj).__name__}:{obj!r}|".encode())  # reprs of these are exact
    elif hasattr(obj, "detach") and hasattr(obj, "numpy"):  # a Torch tensor: its values
        content_digest(h, obj.detach().cpu().numpy())
    else:
        raise TypeError(f"cannot hash a {type(obj).__name__} by its contents")
