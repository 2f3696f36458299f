r"""``flow``: light sampling by a normalizing flow fitted to the environment map.

The flow (:mod:`flows`) is a bijection of the unit square with a uniform base density, fitted
to the map's own piecewise-constant density :math:`f_{ij} = Y_{ij} \sin\theta_i`
(:meth:`tracer.envmap.EnvMap.sampling_density`) by minimising KL(target || flow), as NEnv
(Rodriguez-Pardo et al., "NEnv: Neural Environment Maps for Global Illumination", EGSR 2023)
does by maximum likelihood. The default, :class:`flows.pixel_flow.PixelFlow`, is an
autoregressive flow of piecewise-linear couplings (Müller et al., "Neural Importance
Sampling", 2019) at the map's pixel resolution, fitted on the exact pixel KL;
``fit-flow --model spline`` gives :class:`flows.model.SplineFlow`, rational-quadratic spline
couplings fitted on samples, and ``--model nice|realnvp|glow|maf|iaf`` the real-line
families of :mod:`flows.families`; the sampler only calls the file's ``sample`` and
``log_prob``, so it takes any of them. The tracer's own uniforms drive the flow directly:
``module.sample(u)`` gives the point :math:`x` of the map's square and :math:`\log p_{uv}(x)`;
the density becomes solid angle by the same Jacobian as ``piecewise``
(:func:`tracer.sphere_map.uv_to_solid_angle_pdf`) and the radiance is still read from the map.
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
from typing import TYPE_CHECKING, Any

import torch

from flows.base import ConfigDict
from tracer.envmap import EnvMap
from tracer.errors import TracerError
from tracer.outputs import write_atomic
from tracer.samplers.base import LightSamples, cpu_if_none
from tracer.samplers.square import SquareDensities, SquareSamples

if TYPE_CHECKING:
    from tracer.backend import Backend

DEFAULT_CACHE = Path("renders") / "flows"


def cache_dir() -> Path:
    """Where fitted flows are cached."""
    return Path(os.environ.get("FLOWTRACER_FLOW_CACHE", DEFAULT_CACHE))


def cache_path(env: EnvMap, folder: Path | None = None, model: str = "pixel") -> Path:
    """The cache file of the ``model`` flow (a family of :mod:`flows.families`) for ``env``'s pixels."""
    return (folder or cache_dir()) / f"{env.content_hash()[:24]}-{model}.pt"


def fit_map_flow(
    env: EnvMap, out: Path, *, seed: int = 0, progress: bool = True,
    config: ConfigDict | None = None, **fit_kw: Any,
) -> dict[str, Any]:
    """Fit a flow to ``env``'s sampling density and save it to ``out``; return its metadata.

    ``config`` is any family's configuration (:mod:`flows.families`; default
    :class:`flows.pixel_flow.PixelFlowConfig`).
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
    # atomically: a killed fit never leaves a truncated model (or cache entry) behind
    write_atomic(Path(out), lambda tmp: save_flow(res.model, tmp, meta))
    return meta


def fit_map_flow_bytes(
    env: EnvMap, seed: int, config: ConfigDict | None, fit_kw: dict[str, Any],
    progress: bool = False,
) -> tuple[bytes, dict[str, Any]]:
    """:func:`fit_map_flow`, returning the saved model's bytes and metadata (for Ray workers,
    whose files the driver does not see)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "flow.pt"
        meta = fit_map_flow(env, path, seed=seed, progress=progress, config=config, **fit_kw)
        return path.read_bytes(), meta


def load_map_flow(env: EnvMap | None, path: Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load a fitted flow, refusing a corrupt file or one fitted to another map."""
    from flows.export import load_flow

    try:
        module, meta = load_flow(path, expected_hash=None if env is None else env.content_hash())
    except ValueError as e:
        raise TracerError(str(e)) from None
    return module, meta


class FlowSampler:
    """Batched sampling of the map with a scripted flow, on either back-end.

    The Torch calls are made here alone: the back-end hands the queue to Torch
    (``be.to_torch``, zero-copy on a GPU) and takes the model's output back
    (``be.from_torch``); the rest is the per-entry functions of
    :mod:`tracer.samplers.square`.
    """

    name = "flow"

    def __init__(self, env: EnvMap, module: torch.jit.ScriptModule, meta: dict[str, Any]) -> None:
        self.env = env
        self.module = module.eval()
        self.meta = meta
        self._device = "cpu"

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (for Ray workers): the scripted module travels as its saved bytes."""
        import io

        buf = io.BytesIO()
        torch.jit.save(self.module, buf)  # loaded onto the CPU by __setstate__
        state = {k: v for k, v in self.__dict__.items() if k != "module"}
        state["module_bytes"] = buf.getvalue()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import io

        module = torch.jit.load(io.BytesIO(state.pop("module_bytes")), map_location="cpu")
        self.__dict__.update(state, module=module.eval(), _device="cpu")

    def _module(self, device: str) -> torch.jit.ScriptModule:
        """The model, on ``device`` (moved there in place when the back-end changes)."""
        if device != self._device:
            self.module.to(device)
            self._device = device
        return self.module

    def sample(self, u: Any, be: Backend | None = None) -> LightSamples:
        be = cpu_if_none(be)
        module = self._module(be.torch_device)
        with torch.inference_mode():
            x, log_p = module.sample(be.to_torch(u).double())
            tables = SquareSamples(be.from_torch(x.double()), be.from_torch(torch.exp(log_p.double())))
        return LightSamples(*be.light_sample(tables, self.env, u))

    def pdf(self, wi: Any, be: Backend | None = None) -> Any:
        be = cpu_if_none(be)
        module = self._module(be.torch_device)
        uv = be.map_uv(self.env, wi)
        with torch.inference_mode():
            log_p = module.log_prob(be.to_torch(uv).double())
            tables = SquareDensities(be.from_torch(torch.exp(log_p.double())))
        return be.light_pdf(tables, self.env, wi)


def make_flow_sampler(
    env: EnvMap, model_path: Path | None = None, progress: bool = True, **fit_kw: Any,
) -> FlowSampler:
    """The flow sampler for ``env``: from ``model_path``, else the cache, else a new fit.

    A new fit is a :class:`flows.pixel_flow.PixelFlow` unless ``fit_kw`` holds another
    ``config``; it is cached under :func:`cache_path` for that model. The cache holds *the*
    flow of a map (``tracer fit-flow`` writes there by default): a cached fit is used
    whatever configuration it was fitted with, and ``fit_kw`` applies only when there is none.
    """
    if model_path is not None:
        module, meta = load_map_flow(env, Path(model_path))
        return FlowSampler(env, module, meta)
    config = fit_kw.get("config")
    path = cache_path(env, model="pixel" if config is None else config.kind)
    if path.exists():
        try:
            module, meta = load_map_flow(env, path)
            return FlowSampler(env, module, meta)
        except TracerError as e:  # a cache entry is ours to replace: refit rather than fail
            print(f"tracer: the cached flow {path} is unusable ({e}); fitting it again", file=sys.stderr)
    print(f"fitting a flow to {env.name} (cached as {path})", file=sys.stderr)
    t0 = time.perf_counter()
    meta = fit_map_flow(env, path, progress=progress, **fit_kw)
    print(f"fitted in {time.perf_counter() - t0:.1f} s, KL {meta['kl']:.4f} nats", file=sys.stderr)
    module, meta = load_map_flow(env, path)
    return FlowSampler(env, module, meta)
