"""One render job: scene file + options -> EXR, PNG and a JSON log."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tracer.backend import make_backend
from tracer.envmap import EnvMap, load_envmap, require_light
from tracer.errors import TracerError
from tracer.integrator import render
from tracer.samplers import make_strategy
from tracer.scene import EnvSpec, Scene
from tracer.scene_data import scene_data


@dataclass
class RenderOptions:
    """Everything the command line can set; ``None`` keeps the scene file's value."""

    scene: Path
    sampler: str | None = None
    light: str = "piecewise"
    heuristic: str = "power"
    compensate: bool = False
    envmap: Path | None = None
    env_scale: float | None = None
    env_rotation: float | None = None
    spp: int | None = None
    resolution: tuple[int, int] | None = None
    max_depth: int | None = None
    seed: int | None = None
    out: Path | None = None
    exposure: float = 0.0
    tonemap: str = "filmic"
    progress: bool = True
    reference: Path | None = None
    flow_model: Path | None = None
    device: str = "cpu"


def _check_positive(name: str, value: int) -> None:
    if value <= 0:
        raise TracerError(f"{name} must be positive, got {value}")


def tool_versions() -> dict[str, str]:
    """Versions of the tools a render depends on (for the log)."""
    import numba
    import torch

    import tracer

    return {
        "flowtracer": tracer.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "torch": torch.__version__,
    }


def resolve_env(scene: Scene, opts: RenderOptions) -> EnvMap:
    """The environment map: the scene's, or ``--envmap`` with its scale and rotation."""
    spec: EnvSpec = scene.env
    if opts.envmap is not None:
        spec = EnvSpec(kind="file", path=Path(opts.envmap), rotation_deg=spec.rotation_deg, scale=spec.scale)
    if opts.env_scale is not None:
        if not opts.env_scale > 0:
            raise TracerError(f"--env-scale must be positive, got {opts.env_scale}")
        spec.scale = opts.env_scale
    if opts.env_rotation is not None:
        spec.rotation_deg = opts.env_rotation
    env = load_envmap(spec)
    require_light(env)
    return env


def run_render(opts: RenderOptions) -> dict[str, Any]:
    """Render a scene as the options say; write EXR, PNG and JSON log; return the log."""
    from tracer.scene import load_scene

    t_setup = time.perf_counter()
    scene = load_scene(opts.scene)
    rs = scene.render
    sampler = opts.sampler or rs.sampler
    spp = rs.spp if opts.spp is None else opts.spp
    width, height = (rs.width, rs.height) if opts.resolution is None else opts.resolution
    max_depth = rs.max_depth if opts.max_depth is None else opts.max_depth
    seed = rs.seed if opts.seed is None else opts.seed
    _check_positive("spp", spp)
    _check_positive("resolution width", width)
    _check_positive("resolution height", height)
    if max_depth < 0:
        raise TracerError(f"max depth must be >= 0, got {max_depth}")
    env = resolve_env(scene, opts)
    flow_opts: dict = {"progress": opts.progress}
    if opts.flow_model is not None:
        flow_opts["model_path"] = opts.flow_model
    strategy = make_strategy(sampler, env, opts.light, opts.heuristic, opts.compensate, **flow_opts)
    reference = load_reference(opts.reference, width, height) if opts.reference else None
    data = scene_data(scene, width, height)
    be = make_backend(opts.device)
    # compile (or load cached) kernels on a tiny image so compile time is not sample time
    render(scene_data(scene, 2, 2), env, strategy, 2, 2, 1, max_depth, seed, be=be)
    setup_s = time.perf_counter() - t_setup

    bar = None
    if opts.progress:
        from tqdm import tqdm

        bar = tqdm(total=spp, unit="spp", desc=f"render {sampler}", leave=False)
    try:
        res = render(data, env, strategy, width, height, spp, max_depth, seed,
                     progress=bar.update if bar is not None else None, be=be)
    finally:
        if bar is not None:
            bar.close()

    out = Path(opts.out) if opts.out else Path("renders") / f"{Path(opts.scene).stem}_{sampler}.exr"
    exr, png = res.film.write(out, opts.exposure, opts.tonemap)
    img = res.film.image().astype(np.float32).astype(np.float64)  # what the EXR holds
    log: dict[str, Any] = {
        "scene": str(opts.scene),
        "sampler": sampler,
        "light": strategy.light_name,
        "heuristic": opts.heuristic if sampler == "mis" else None,
        "envmap": env.name,
        "envmap_clamped_negative_pixels": env.clamped_pixels,
        "spp": spp,
        "resolution": [width, height],
        "max_depth": max_depth,
        "seed": seed,
        "device": be.name,
        "time_s": {"setup_compile": setup_s, "render": res.seconds, **res.times.as_dict()},
        "paths": res.paths,
        "paths_per_second": res.paths / res.seconds if res.seconds > 0 else None,
        "mean_pixel_variance": res.film.mean_variance(),
        "mean_radiance": float(img.mean()),
        "nan_inf_samples": int(res.film.bad.sum()),
        "outputs": {"exr": str(exr), "png": str(png), "log": str(out.with_suffix(".json"))},
        "versions": tool_versions(),
    }
    if reference is not None:
        log.update(error_metrics(img, reference))
    Path(log["outputs"]["log"]).write_text(json.dumps(log, indent=2))
    return log


def load_reference(path: Path, width: int, height: int) -> np.ndarray:
    """A reference image for error metrics, checked for size and finiteness."""
    from tracer.hdr_io import read_image

    ref = read_image(path)
    if ref.shape[:2] != (height, width):
        raise TracerError(
            f"{path}: reference is {ref.shape[1]}x{ref.shape[0]}, the render is {width}x{height}"
        )
    if not np.all(np.isfinite(ref)):
        raise TracerError(f"{path}: reference has {int((~np.isfinite(ref)).any(axis=2).sum())} non-finite pixels")
    return ref.astype(np.float64)


def error_metrics(img: np.ndarray, ref: np.ndarray, eps: float = 1e-2) -> dict[str, float]:
    """MSE and relMSE (mean of (x - r)^2 / (r^2 + eps), Rousselle et al. 2011) over pixels and channels."""
    d2 = (img - ref) ** 2
    return {"mse": float(d2.mean()), "relmse": float((d2 / (ref**2 + eps)).mean())}
