"""Checkpoints of a render in progress: the film's Welford state after whole chunks of samples.

A checkpoint sits beside the output (``x.exr`` -> ``x.ckpt.npz``) and holds the per-pixel
count, mean, M2 and NaN/Inf counts, the number of samples per pixel taken, the stage times,
and the render's key: a hash of everything the image depends on (the scene's arrays, the
map's pixels and rotation, the sampler and its tables or model weights, resolution, depth,
seed, the back-end, the library versions and the source of the renderer itself), never of
the sample count, so a resumed render may also ask for more samples than the first. Random numbers are keyed by (pixel, sample,
dimension) and the film adds samples in order, so a render resumed from a checkpoint equals
the uninterrupted one bit for bit. Checkpoints are written atomically (:mod:`tracer.outputs`).
"""

from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

import tracer
from tracer.digest import content_key
from tracer.errors import TracerError
from tracer.film import Film
from tracer.outputs import write_atomic

CHECKPOINT_VERSION = 1


def checkpoint_path(out: Path) -> Path:
    """Where the checkpoint of the render written to ``out`` lives."""
    return Path(out).with_suffix(".ckpt.npz")


@functools.cache
def code_digest() -> str:
    """Digest of the renderer's source (``tracer/`` and ``flows/``): a checkpoint is code-bound."""
    root = Path(tracer.__file__).resolve().parent.parent
    return tracer.source_digest(root / "tracer") + tracer.source_digest(root / "flows")


def sampler_fingerprint(light: Any) -> Any:
    """What a light sampler's density depends on: its tables, or its model's weights."""
    if light is None:
        return None
    tables = getattr(light, "tables", None)
    if tables is not None:
        return (light.name, tables)
    module = getattr(light, "module", None)
    if module is not None:
        return (light.name, [t.detach().cpu().numpy() for t in module.state_dict().values()])
    return light.name


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose arithmetic is in the image."""
    import llvmlite
    import numba
    import torch

    return {"numpy": np.__version__, "numba": numba.__version__, "llvmlite": llvmlite.__version__,
            "torch": torch.__version__}


def render_key(data: Any, env: Any, strategy: Any, width: int, height: int, max_depth: int, seed: int,
               device: str = "cpu") -> str:
    """The hash that a checkpoint must match to be resumed.

    The back-end (``cpu``, ``cuda``, ``ray``) and the library versions are part of it: the
    same samples are bit-identical only with the same arithmetic.
    """
    return content_key(
        f"flowtracer-render-v{CHECKPOINT_VERSION}", code_digest(), library_versions(), str(device),
        data, env.rgb, float(env.rot_u),
        strategy.name, int(strategy.mode), float(strategy.power), sampler_fingerprint(strategy.light),
        str(strategy.sequence), float(strategy.shadow_rr),
        int(width), int(height), int(max_depth), int(seed),
    )


def save_checkpoint(path: Path, film: Film, spp_done: int, key: str, times: dict[str, float]) -> None:
    """Write the checkpoint atomically."""
    meta = {"version": CHECKPOINT_VERSION, "key": key, "spp_done": int(spp_done),
            "width": film.width, "height": film.height, "times": times}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **film.state())

    write_atomic(Path(path), write)


def load_checkpoint(path: Path, key: str, width: int, height: int) -> tuple[Film, int, dict[str, float]]:
    """(film, samples per pixel taken, stage times) of a checkpoint of this very render.

    Refuses a checkpoint of other settings (another scene, map, sampler, resolution, seed,
    depth or code) and a corrupt file, naming the file.
    """
    if not zipfile.is_zipfile(path):
        raise TracerError(f"{path}: not a checkpoint (not an .npz archive); delete it to start afresh")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            state = {k: z[k] for k in ("mean", "m2", "count", "bad")}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise TracerError(f"{path}: not a readable checkpoint ({e}); delete it to start afresh") from None
    if meta.get("version") != CHECKPOINT_VERSION or meta.get("key") != key:
        raise TracerError(
            f"{path}: the checkpoint is of another render (scene, map, sampler, settings or code "
            "differ); delete it or render to another --out"
        )
    try:
        film = Film.from_state(width, height, state)
    except ValueError as e:
        raise TracerError(f"{path}: {e}") from None
    return film, int(meta["spp_done"]), {k: float(v) for k, v in meta.get("times", {}).items()}
