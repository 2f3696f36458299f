"""One render job: scene file + options -> EXR, PNG and a JSON log."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tracer.backend import make_backend
from tracer.checkpoint import (
    checkpoint_path,
    library_versions,
    load_checkpoint,
    render_key,
    save_checkpoint,
)
from tracer.envmap import EnvMap, load_envmap, require_light
from tracer.errors import TracerError
from tracer.film import Film, save_png
from tracer.hdr_io import write_exr
from tracer.integrator import StageTimes, render
from tracer.outputs import check_output_path, publish_set, remove_stale_temps
from tracer.progress import progress_bar
from tracer.samplers import MODEL_SAMPLERS, SHADOW_RR, check_compensate, make_strategy
from tracer.scene import EnvSpec, Scene
from tracer.scene_data import scene_data


@dataclass
class RenderOptions:
    """Everything the command line can set; ``None`` keeps the scene file's value."""

    scene: Path
    sampler: str | None = None
    light: str = "piecewise"
    heuristic: str = "power"
    compensate: bool | None = None  # the light density under mis: None -> compensated
    envmap: Path | None = None
    env_scale: float | None = None
    env_rotation: float | None = None
    spp: int | None = None
    resolution: tuple[int, int] | None = None
    max_depth: int | None = None
    seed: int | None = None
    sequence: str = "independent"  # the sample sequence: independent or sobol
    shadow_rr: float = SHADOW_RR  # shadow-ray roulette's threshold (0: off)
    out: Path | None = None
    exposure: float = 0.0
    tonemap: str = "filmic"
    progress: bool = True
    reference: Path | None = None
    flow_model: Path | None = None
    device: str = "cpu"
    resume: bool = False  # continue from the checkpoint beside --out
    checkpoint_every: float = 60.0  # seconds between checkpoints (0: after every chunk)
    keep_checkpoint: bool = False  # keep the checkpoint after the render is written
    chunk_spp: int | None = None  # samples per pixel per chunk (default: one wavefront batch)
    ray: str | None = None  # "local" or a Ray cluster address: farm chunks to Ray workers


def _check_positive(name: str, value: int) -> None:
    if value <= 0:
        raise TracerError(f"{name} must be positive, got {value}")


def tool_versions() -> dict[str, str]:
    """Versions of the tools a render depends on (for the log)."""
    import tracer

    return {"flowtracer": tracer.__version__, "python": platform.python_version(), **library_versions()}


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


def check_flags(sampler: str, opts: RenderOptions) -> None:
    """Refuse options that the chosen sampler would silently ignore."""
    uses_light = sampler == "mis"
    if opts.light != "piecewise" and not uses_light:
        raise TracerError(f"--light {opts.light} chooses the light sampler of --sampler mis; "
                          f"the sampler is {sampler}")
    check_compensate(sampler, opts.light, opts.compensate)  # (before the map loads)
    used = (sampler, opts.light if uses_light else None)
    if opts.flow_model is not None and not any(m in used for m in MODEL_SAMPLERS):
        raise TracerError(f"--flow-model {opts.flow_model} is used by --sampler flow/product or "
                          f"--light flow/product only; the sampler is {sampler}"
                          + (f" with --light {opts.light}" if uses_light else ""))


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
    check_flags(sampler, opts)
    # everything that can be refused cheaply is, before a map is loaded or a flow fitted
    be = make_backend(opts.device)
    if opts.ray is not None and be.name != "cpu":
        raise TracerError("--ray renders on the workers' CPUs; leave out --device")
    out = check_output_path(
        Path(opts.out) if opts.out else Path("renders") / f"{Path(opts.scene).stem}_{sampler}.exr")
    reference = load_reference(opts.reference, width, height) if opts.reference else None
    env = resolve_env(scene, opts)
    flow_opts: dict = {"progress": opts.progress}
    if opts.flow_model is not None:
        flow_opts["model_path"] = opts.flow_model
    strategy = make_strategy(sampler, env, opts.light, opts.heuristic, opts.compensate,
                             sequence=opts.sequence, shadow_rr=opts.shadow_rr, **flow_opts)
    data = scene_data(scene, width, height)

    # ---- where to start: afresh, or from the checkpoint of this very render
    ckpt = checkpoint_path(out)
    for f in (out, out.with_suffix(".png"), out.with_suffix(".json"), ckpt):
        remove_stale_temps(f)
    key = render_key(data, env, strategy, width, height, max_depth, seed,
                     device="ray" if opts.ray is not None else be.name)
    film, done, times = Film(width, height), 0, StageTimes()
    if not opts.resume and ckpt.exists():
        raise TracerError(
            f"{ckpt}: a checkpoint of an unfinished render is there; --resume continues it "
            "(if it is of these settings), or delete it to start afresh"
        )
    if opts.resume and not ckpt.exists():
        print(f"tracer: no checkpoint at {ckpt}; rendering from the first sample", file=sys.stderr)
    if opts.resume and ckpt.exists():
        film, done, prior = load_checkpoint(ckpt, key, width, height)
        times = StageTimes(**{f: prior.get(n, 0.0) for f, n in
                              (("light", "light_sampling"), ("trace", "tracing"), ("shade", "shading"))})
        if done > spp:
            raise TracerError(f"{ckpt}: the checkpoint holds {done} spp, more than the {spp} asked for")
    spp_start = done
    if opts.chunk_spp:
        chunk = opts.chunk_spp
    elif opts.ray is not None:
        from tracer.distributed import default_chunk

        chunk = default_chunk(opts.ray, spp - done)
    else:
        chunk = max(1, be.batch_paths // (width * height))
    if opts.ray is None:
        # compile (or load cached) kernels on a tiny image so compile time is not sample time
        render(scene_data(scene, 2, 2), env, strategy, 2, 2, 1, max_depth, seed, be=be)
    setup_s = time.perf_counter() - t_setup

    last_save = time.monotonic()

    def checkpoint(film: Film, done: int) -> None:
        nonlocal last_save
        if done < spp and time.monotonic() - last_save >= opts.checkpoint_every:
            save_checkpoint(ckpt, film, done, key, times.as_dict())
            last_save = time.monotonic()

    bar = None
    if opts.progress:
        bar = progress_bar(spp, f"render {sampler}", "spp", initial=done)
    t0 = time.perf_counter()
    try:
        if opts.ray is not None:
            from tracer.distributed import ray_render

            ray_render(opts.ray, data, env, strategy, width, height, spp, max_depth, seed, chunk,
                       film, done, times, on_chunk=lambda f, d, n: (checkpoint(f, d),
                                                                    bar.update(n) if bar else None))
        else:
            while done < spp:
                n = min(chunk, spp - done)
                render(data, env, strategy, width, height, n, max_depth, seed, spp_start=done,
                       film=film, times=times, be=be)
                done += n
                if bar is not None:
                    bar.update(n)
                checkpoint(film, done)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    paths = width * height * (spp - spp_start)

    img = film.image().astype(np.float32).astype(np.float64)  # what the EXR holds
    png = out.with_suffix(".png")
    log_path = out.with_suffix(".json")
    log: dict[str, Any] = {
        "scene": str(opts.scene),
        "sampler": sampler,
        "light": strategy.light_name,
        "heuristic": opts.heuristic if sampler == "mis" else None,
        "envmap": env.name,
        "envmap_clamped_negative_pixels": env.clamped_pixels,
        "spp": spp,
        "resumed_from_spp": spp_start,
        "resolution": [width, height],
        "max_depth": max_depth,
        "seed": seed,
        "sequence": strategy.sequence,
        "shadow_rr": strategy.shadow_rr,
        "device": "ray" if opts.ray is not None else be.name,
        "time_s": {"setup_compile": setup_s, "render": seconds, **times.as_dict()},
        "paths": paths,
        "paths_per_second": paths / seconds if seconds > 0 else None,
        "mean_pixel_variance": film.mean_variance(),
        "mean_radiance": float(img.mean()),
        "nan_inf_samples": int(film.bad.sum()),
        "render_key": key,
        "outputs": {"exr": str(out), "png": str(png), "log": str(log_path)},
        "versions": tool_versions(),
    }
    if reference is not None:
        log.update(error_metrics(img, reference))
    image = film.image().astype(np.float32)
    publish_set([(out, lambda p: write_exr(p, image)),
                 (png, lambda p: save_png(p, image, opts.exposure, opts.tonemap))], log_path, log)
    if opts.keep_checkpoint:
        save_checkpoint(ckpt, film, spp, key, times.as_dict())  # a later --resume adds samples
    else:
        ckpt.unlink(missing_ok=True)
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
