"""Saving fitted flows as self-contained TorchScript files, and loading them back safely.

A flow file is what :func:`torch.jit.save` writes for ``torch.jit.script(model)``: a zip
archive holding the TorchScript code and weights, so :func:`load_flow` needs neither this
package's classes nor pickle. Next to the code the archive carries one extra file,
``flowtracer.json`` (``_extra_files``), with

* ``format`` = ``"flowtracer.flow"`` and ``format_version`` (:data:`FORMAT_VERSION`),
* ``model``: the flow's family (``config.kind``, a name of :mod:`flows.families`, e.g.
  ``"pixel"``, ``"spline"``, ``"realnvp"``), and ``config``: the ``to_dict()`` of its
  configuration (:func:`flows.families.config_from_dict` rebuilds it),
* ``n_parameters``,
* everything the caller passed as ``metadata`` (for instance ``map_hash``, the content hash
  of the environment map the flow was fitted to, see :func:`content_hash`, and ``kl``).

:func:`load_flow` turns every way a file can be unusable into a :class:`ValueError` whose
message names the file, so a caller can report it as a user error.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flows.base import UnitSquareFlow

FORMAT_NAME = "flowtracer.flow"
FORMAT_VERSION = 1
METADATA_FILE = "flowtracer.json"
#: Methods a loaded module must have.
REQUIRED_METHODS = ("sample", "log_prob")
#: Metadata keys that :func:`save_flow` owns.
RESERVED_KEYS = ("format", "format_version", "model", "config", "n_parameters")


def content_hash(array: np.ndarray) -> str:
    """SHA-256 (hex) of an array's shape, dtype and bytes: identifies the map a flow fits."""
    a = np.ascontiguousarray(array)
    h = hashlib.sha256()
    h.update(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def save_flow(model: UnitSquareFlow, path: str | os.PathLike[str], metadata: dict[str, Any]) -> None:
    """Script ``model`` and write it with its metadata to ``path`` (see the module docstring).

    Args:
        model: the flow (eager, of any family of :mod:`flows.families`).
        path: the output file; its parent folder must exist.
        metadata: JSON-serialisable extras (``map_hash``, ``kl``, ...); must not use the keys
            in :data:`RESERVED_KEYS`.

    Raises:
        ValueError: ``metadata`` is not JSON-serialisable or uses a reserved key.
    """
    clash = sorted(set(metadata) & set(RESERVED_KEYS))
    if clash:
        raise ValueError(f"metadata keys {clash} are reserved by save_flow")
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": model.config.kind,
        "config": model.config.to_dict(),
        "n_parameters": model.count_parameters(),
    }
    meta.update(metadata)
    try:
        text = json.dumps(meta, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"flow metadata for {os.fspath(path)} is not JSON-serialisable: {e}"
        ) from e
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            # TorchScript is deprecated upstream but is this file format (see module docstring).
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(model)
            torch.jit.save(scripted, os.fspath(path), _extra_files={METADATA_FILE: text})
    finally:
        model.train(was_training)


def load_flow(
    path: str | os.PathLike[str], expected_hash: str | None = None
) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load a flow written by :func:`save_flow`; no Python class is needed.

    Args:
        path: the flow file.
        expected_hash: when given, the file's ``map_hash`` must equal it.

    Returns:
        ``(module, metadata)``: the scripted module (eval mode, on the CPU, parameters not
        requiring gradients) with ``sample`` and ``log_prob``, and the metadata dict.

    Raises:
        ValueError: naming the file, when it is missing, unreadable or corrupt, not a
            flowtracer flow (no or invalid metadata), of another format version, lacks
            ``sample``/``log_prob``, or (``expected_hash``) was fitted to another map.
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"flow file {p} does not exist")
    if not p.is_file():
        raise ValueError(f"flow file {p} is not a regular file")
    extra = {METADATA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(os.fspath(p), map_location="cpu", _extra_files=extra)
    except Exception as e:  # torch raises RuntimeError or others for garbage input
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"flow file {p} is corrupt or not a TorchScript archive: {first}") from e

    raw = extra[METADATA_FILE]
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if not raw:
        raise ValueError(f"{p} is not a flowtracer flow: it has no {METADATA_FILE} metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{p} is not a flowtracer flow: invalid {METADATA_FILE}: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{p} is not a flowtracer flow (metadata format is not {FORMAT_NAME!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"flow file {p} has format version {version!r}; this flowtracer reads version "
            f"{FORMAT_VERSION} (refit the flow)"
        )
    missing = [m for m in REQUIRED_METHODS if not hasattr(module, m)]
    if missing:
        raise ValueError(f"flow file {p} lacks the method(s) {', '.join(missing)}")
    if expected_hash is not None:
        got = meta.get("map_hash")
        if got is None:
            raise ValueError(f"flow file {p} records no map_hash, cannot check it against the map")
        if got != expected_hash:
            raise ValueError(
                f"flow file {p} was fitted to a different map (map_hash {str(got)[:12]}..., "
                f"expected {expected_hash[:12]}...)"
            )
    module.eval()
    for param in module.parameters():
        param.requires_grad_(False)  # an inference artefact: no autograd bookkeeping
    return module, meta
