r"""``flow``: light sampling by a normalizing flow fitted to the environment map.

The flow (:mod:`flows`) is a bijection of the unit square with a uniform base density, fitted
to the map's own piecewise-constant density :math:`f_{ij} = Y_{ij} \sin\theta_i`
(:meth:`tracer.envmap.EnvMap.sampling_density`) by minimising KL(target || flow), as NEnv
(Rodriguez-Pardo et al., "NEnv: Neural Environment Maps for Global Illumination", EGSR 2023)
does by maximum likelihood. The default, :class:`flows.pixel_flow.PixelFlow`, is an
autoregressive flow of piecewise-linear couplings (Müller et al., "Neural Importance
Sampling", 2019) at the map's pixel resolution, fitted on the exact pixel KL;
``fit-flow --model spline`` gives :class:`flows.model.SplineFlow`, rational-quadratic spline
couplings fitted on samples. The tracer's own uniforms drive the flow directly:
``module.sample(u)`` gives the point :math:`x` of the map's square and :math:`\log p_{uv}(x)`;
the density becomes solid angle by the same Jacobian as ``piecewise``
(:func:`tracer.sphere_map.uv_pdfs_to_solid_angle`) and the radiance is still read from the map.
Only the sampling density is learned, so the estimator stays unbiased whatever the fit's
quality (the flow's density is positive on the whole square); a poor fit costs variance, not
correctness.

The TorchScript module runs on whole wavefront queues: one ``sample`` batch before shading
and one ``log_prob`` batch on escaped rays per bounce.

Fitted flows are cached by the map's content hash and the model
(``renders/flows/<hash>-pixel.pt``, or the folder in ``$FLOWTRACER_FLOW_CACHE``), so only the
first render of a map fits one.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flows.model import FlowConfig
from flows.pixel_flow import PixelFlowConfig
from tracer.envmap import EnvMap, square_samples_to_light, world_dirs_to_map_uv
from tracer.errors import TracerError
from tracer.samplers.base import LightSamples
from tracer.sphere_map import uv_pdfs_to_solid_angle

DEFAULT_CACHE = Path("renders") / "flows"


def cache_dir() -> Path:
    """Where fitted flows are cached."""
    return Path(os.environ.get("FLOWTRACER_FLOW_CACHE", DEFAULT_CACHE))


def cache_path(env: EnvMap, folder: Path | None = None, model: str = "pixel") -> Path:
    """The cache file of the ``model`` flow (``"pixel"`` or ``"spline"``) for ``env``'s pixels."""
    return (folder or cache_dir()) / f"{env.content_hash()[:24]}-{model}.pt"


def fit_map_flow(
    env: EnvMap, out: Path, *, seed: int = 0, progress: bool = True,
    config: FlowConfig | PixelFlowConfig | None = None, **fit_kw: Any,
) -> dict[str, Any]:
    """Fit a flow to ``env``'s sampling density and save it to ``out``; return its metadata.

    ``config`` is a :class:`flows.pixel_flow.PixelFlowConfig` (the default) or a
    :class:`flows.model.FlowConfig`.
    """
    from flows.export import save_flow
    from flows.train import fit_flow

    density = env.sampling_density()
    try:
        res = fit_flow(density, config, seed=seed, progress=progress, **fit_kw)
    except ValueError as e:
        raise TracerError(f"{env.name}: cannot fit a flow: {e}") from None
    meta = {
        "map_hash": env.content_hash(),
        "map": env.name,
        "map_shape": list(env.shape),
        "kl": float(res.kl),
        "fit_seconds": float(res.seconds),
        "steps": int(res.steps),
        "seed": seed,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_flow(res.model, out, meta)
    return meta


def load_map_flow(env: EnvMap | None, path: Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load a fitted flow, refusing a corrupt file or one fitted to another map."""
    from flows.export import load_flow

    try:
        module, meta = load_flow(path, expected_hash=None if env is None else env.content_hash())
    except ValueError as e:
        raise TracerError(str(e)) from None
    return module, meta


class FlowSampler:
    """Batched sampling of the map with a scripted flow (CPU or CUDA)."""

    name = "flow"

    def __init__(self, env: EnvMap, module: torch.jit.ScriptModule, meta: dict[str, Any],
                 device: str = "cpu") -> None:
        self.env = env
        self.module = module.to(device).eval()
        self.meta = meta
        self.device = torch.device(device)

    def sample(self, u: np.ndarray) -> LightSamples:
        t = torch.as_tensor(np.asarray(u, np.float32), device=self.device)
        with torch.inference_mode():
            x, log_p = self.module.sample(t)
        uv = x.double().cpu().numpy()
        p_uv = torch.exp(log_p.double()).cpu().numpy()
        wi, pdf, le = square_samples_to_light(self.env.rgb, self.env.rot_u, uv, p_uv)
        return LightSamples(wi, pdf, le)

    def pdf(self, wi: np.ndarray) -> np.ndarray:
        uv = world_dirs_to_map_uv(self.env.rot_u, np.ascontiguousarray(wi, np.float64))
        t = torch.as_tensor(uv.astype(np.float32), device=self.device)
        with torch.inference_mode():
            log_p = self.module.log_prob(t)
        p_uv = torch.exp(log_p.double()).cpu().numpy()
        return uv_pdfs_to_solid_angle(p_uv, np.ascontiguousarray(uv[:, 1]))


def make_flow_sampler(
    env: EnvMap, model_path: Path | None = None, progress: bool = True, device: str = "cpu",
    **fit_kw: Any,
) -> FlowSampler:
    """The flow sampler for ``env``: from ``model_path``, else the cache, else a new fit.

    A new fit is a :class:`flows.pixel_flow.PixelFlow` unless ``fit_kw`` holds another
    ``config``; it is cached under :func:`cache_path` for that model. The cache holds *the*
    flow of a map (``tracer fit-flow`` writes there by default): a cached fit is used
    whatever configuration it was fitted with, and ``fit_kw`` applies only when there is none.
    """
    if model_path is not None:
        module, meta = load_map_flow(env, Path(model_path))
        return FlowSampler(env, module, meta, device)
    config = fit_kw.get("config")
    path = cache_path(env, model="pixel" if config is None else config.kind)
    if not path.exists():
        print(f"fitting a flow to {env.name} (cached as {path})", file=sys.stderr)
        t0 = time.perf_counter()
        meta = fit_map_flow(env, path, progress=progress, **fit_kw)
        print(f"fitted in {time.perf_counter() - t0:.1f} s, KL {meta['kl']:.4f} nats", file=sys.stderr)
    module, meta = load_map_flow(env, path)
    return FlowSampler(env, module, meta, device)
