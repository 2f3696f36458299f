"""Where the wavefront runs: the array operations the integrator needs, per device.

The integrator (:mod:`tracer.integrator`) is written once against the :class:`Backend`
protocol and is handed the back-end to run on. :class:`CpuBackend` is NumPy arrays and the
``prange`` kernels of :mod:`tracer.kernels`; the CUDA back-end
(:class:`tracer.backend_cuda.CudaBackend`) is device arrays and the kernels of
:mod:`tracer.kernels_cuda`. Both run the per-entry stages of :mod:`tracer.stages` and the
per-entry light samplers registered with :mod:`tracer.light_dispatch`, so neither the
rendering maths nor a sampler is written twice.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from tracer import kernels
from tracer.envmap import env_eval_into
from tracer.errors import TracerError
from tracer.light_dispatch import cacheable, has_square, has_square_pdf, registered
from tracer.pool import INDEX, Pooling

if TYPE_CHECKING:
    import torch

    from tracer.envmap import EnvMap
    from tracer.samplers.base import LightSampler
    from tracer.scene_data import SceneData

DEVICES = ("cpu", "cuda", "auto")


class Backend(Protocol):
    """The operations the integrator and the samplers run on a device's arrays."""

    name: str
    #: the stage kernels (:mod:`tracer.kernels` or :mod:`tracer.kernels_cuda`)
    k: ModuleType
    #: where Torch models run for this back-end ("cpu" or "cuda")
    torch_device: str
    #: paths per wavefront batch when the caller names none: what keeps this device busy
    #: without growing memory with the image
    batch_paths: int

    # ---- queues
    def empty(self, shape: Any, dtype: Any = np.float64) -> Any: ...
    def zeros(self, shape: Any, dtype: Any = np.float64) -> Any: ...
    def out(self, key: str, shape: Any, dtype: Any = np.float64) -> Any: ...
    def pooled(self) -> Backend: ...
    def paths(self, n: int, pix0: int, nslab: int, sample0: int, seed: int,
              sampling: int) -> tuple[Any, Any]: ...
    def split_escaped(self, idx: Any, hit_t: Any, hit_prim: Any, hit_b: Any) -> tuple[Any, ...]: ...
    def gather(self, a: Any, idx: Any) -> Any:
        """Rows ``a[idx]`` in float64 (the path state's float32 widened: what the light
        samplers and the map lookups take)."""
        ...
    def compact(self, idx: Any, alive: Any) -> Any: ...
    def sync(self) -> None: ...

    # ---- scene, film, environment (host objects -> what the kernels take)
    def scene(self, scene: SceneData) -> SceneData: ...
    def film(self, film: Any) -> tuple[Any, Any, Any, Any]: ...
    def sync_film(self, film: Any) -> None: ...
    def env_eval(self, env: EnvMap, dirs: Any) -> Any: ...
    def escaped(self, env: EnvMap, light: BoundLight | None, idx: Any, depth: int, mode: int,
                power: float, q: Any, cond: Any = None) -> bool: ...

    # ---- light sampling (the dispatcher's kernels) and the Torch hand-over
    def light_sample(self, tables: NamedTuple, env: EnvMap, u: Any) -> tuple[Any, Any, Any]: ...
    def light_pdf(self, tables: NamedTuple, env: EnvMap, wi: Any) -> Any: ...
    def tables(self, tables: NamedTuple) -> NamedTuple: ...
    def map_uv(self, env: EnvMap, dirs: Any) -> Any: ...
    def to_torch(self, a: Any) -> torch.Tensor: ...
    def from_torch(self, t: torch.Tensor) -> Any: ...


class BoundLight:
    """A light sampler bound to a back-end: what the integrator calls on its queues."""

    def __init__(self, light: LightSampler, be: Backend) -> None:
        self.light = light
        self.be = be
        self.name = light.name
        #: the sampler takes the queue's shading condition (a product sampler,
        #: tracer.samplers.base.ConditionalLightSampler)
        self.conditional = bool(getattr(light, "conditional", False))

    def sample(self, u: Any, cond: Any = None) -> tuple[Any, Any, Any]:
        if self.conditional:
            return self.light.sample(u, cond, self.be)
        return self.light.sample(u, self.be)

    def pdf(self, wi: Any, cond: Any = None) -> Any:
        if self.conditional:
            return self.light.pdf(wi, cond, self.be)
        return self.light.pdf(wi, self.be)

    def pdf_tables(self, cond: Any = None) -> NamedTuple | None:
        """The tables whose registered density is the sampler's ``pdf`` (for a conditional
        sampler, of the queue whose condition is ``cond``), or None where the sampler has no
        such tables (:meth:`tracer.samplers.base.TabulatedSampler.pdf_tables`)."""
        f = getattr(self.light, "pdf_tables", None)
        if f is None or (self.conditional and cond is None):
            return None
        return f(cond, self.be) if self.conditional else f()


def bind_light(light: LightSampler | None, be: Backend) -> BoundLight | None:
    """``light`` running on ``be`` (None stays None: BSDF sampling alone)."""
    return None if light is None else BoundLight(light, be)


def _f64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float64)


class CpuBackend(Pooling):
    """NumPy arrays, parallel Numba kernels."""

    name = "cpu"
    k: ModuleType = kernels
    torch_device = "cpu"
    #: a batch's queues: about 230 bytes a path, 29 MiB, what this CPU's third-level cache
    #: holds. Since the path state is float32, 2^17 paths renders 1-13% faster than 2^18
    #: (the README's nineteenth round); 2^16 is slower on the knot, 2^20 was slower still
    batch_paths = 1 << 17

    def empty(self, shape: Any, dtype: Any = np.float64) -> np.ndarray:
        return np.empty(shape, dtype)

    def zeros(self, shape: Any, dtype: Any = np.float64) -> np.ndarray:
        return np.zeros(shape, dtype)

    def paths(self, n: int, pix0: int, nslab: int, sample0: int, seed: int,
              sampling: int) -> tuple[np.ndarray, np.ndarray]:
        """All path ids of a batch over pixels pix0 .. pix0 + nslab - 1 and each path's key
        to its random numbers (:func:`tracer.rng.path_key`)."""
        idx = self.out("paths.idx", n, INDEX)
        key_of = self.out("paths.key", n, np.int64)
        kernels.paths(pix0, nslab, sample0, seed, sampling, key_of, idx)
        return idx, key_of

    def split_escaped(
        self, idx: np.ndarray, hit_t: np.ndarray, hit_prim: np.ndarray, hit_b: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """(escaped path ids, hit path ids and their hit records), both in queue order."""
        esc, hits, t_out, prim_out, b_out = self.split_outputs(idx.shape[0])
        ne, nh = kernels.split_escaped(idx, hit_t, hit_prim, hit_b, esc, hits, t_out, prim_out, b_out)
        return esc[:ne], hits[:nh], t_out[:nh], prim_out[:nh], b_out[:nh]

    def gather(self, a: np.ndarray, idx: np.ndarray) -> np.ndarray:
        out = self.out("gather", (idx.shape[0], a.shape[1]))
        kernels.gather_rows(a, idx, out)
        return out

    def compact(self, idx: np.ndarray, alive: np.ndarray) -> np.ndarray:
        """The queue entries whose path is still alive, in queue order."""
        out = self.out("compact", idx.shape[0], INDEX)
        return out[: kernels.compact(idx, alive, out)]

    def sync(self) -> None:
        pass

    def scene(self, scene: SceneData) -> SceneData:
        return scene

    def film(self, film: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return film.mean, film.m2, film.count, film.bad

    def sync_film(self, film: Any) -> None:
        pass

    def env_eval(self, env: EnvMap, dirs: np.ndarray) -> np.ndarray:
        out = self.out("env_eval", (dirs.shape[0], 3))
        env_eval_into(env.rgb, env.rot_u, _f64(dirs), out)
        return out

    def escaped(self, env: EnvMap, light: BoundLight | None, idx: np.ndarray, depth: int,
                mode: int, power: float, q: Any, cond: Any = None) -> bool:
        """The escaped rays' stage as one kernel (:func:`tracer.kernels.escaped_rays`): the
        map's radiance, the light's density where MIS reads it, and the weighted radiance
        added to the paths. Where MIS reads a density that kernel does not compute, False
        and nothing done: the integrator then runs the steps one by one, the sampler's own
        ``pdf`` among them. The kernel computes the density of a sampler whose ``pdf`` is
        :class:`~tracer.samplers.base.TabulatedSampler`'s or the product sampler's own (their
        ``pdf_tables``: the project's tables, with a density on the map's square, the
        product's joined with the escaped queue's condition ``cond``, and the render's map
        rotation, which is all of the map that density reads); not of flows, ``uniform`` or a
        subclass that overrides ``pdf``. Fused, the stage took 16-20% less time (the README's
        fourteenth round)."""
        n = idx.shape[0]
        tables = None
        if mode == kernels.MIS and depth > 0:
            # the rotation first: a product's queue tables are built only for a density used
            s = None if light is None else light.light
            if s is not None and getattr(s, "env", None) is not None and s.env.rot_u == env.rot_u:
                tables = light.pdf_tables(cond)
            if not (registered(tables) and has_square_pdf(tables) and cacheable(tables)):
                return False
        kernels.escaped_rays(tables, env.rgb, env.rot_u, idx, depth, mode, power, q.rd, q.beta,
                             q.radiance, q.alive, q.prev_pdf, q.prev_delta,
                             self.out("escaped.lpdf", n))
        return True

    def light_sample(self, tables: NamedTuple, env: EnvMap, u: np.ndarray) -> tuple[Any, Any, Any]:
        n = u.shape[0]
        wi = self.out("light_sample.wi", (n, 3))
        pdf = self.out("light_sample.pdf", n)
        le = self.out("light_sample.le", (n, 3))
        sample, _, grouped, _ = kernels.light_kernels(tables)
        # a sampler that draws on the square runs in groups (see tracer.light_dispatch)
        (grouped if has_square(tables) else sample)(tables, env.rgb, env.rot_u, _f64(u), wi, pdf, le)
        return wi, pdf, le

    def light_pdf(self, tables: NamedTuple, env: EnvMap, wi: np.ndarray) -> np.ndarray:
        out = self.out("light_pdf", wi.shape[0])
        _, pdf, _, grouped = kernels.light_kernels(tables)
        (grouped if has_square_pdf(tables) else pdf)(tables, env.rot_u, _f64(wi), out)
        return out

    def tables(self, tables: NamedTuple) -> NamedTuple:
        """A sampler's tables where the kernels read them: on the CPU, as they are."""
        return tables

    def map_uv(self, env: EnvMap, dirs: np.ndarray) -> np.ndarray:
        out = self.out("map_uv", (dirs.shape[0], 2))
        kernels.map_uv(env.rot_u, _f64(dirs), out)
        return out

    def to_torch(self, a: np.ndarray) -> torch.Tensor:
        import torch

        return torch.from_numpy(np.ascontiguousarray(a))

    def from_torch(self, t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().cpu().numpy())


#: the CPU back-end (it holds no state)
CPU = CpuBackend()


def cuda_available() -> bool:
    """Is there a usable CUDA GPU (or the CUDA simulator)?"""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - any failure to load the driver means no GPU
        return False


def make_backend(device: str = "cpu") -> Backend:
    """The back-end for ``--device`` (cpu, cuda, or auto: the GPU when there is one)."""
    if device not in DEVICES:
        raise TracerError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if device == "cpu":
        return CPU
    if not cuda_available():
        raise TracerError(
            "--device cuda: no CUDA GPU is available here (numba.cuda found no device); "
            "use --device cpu or --device auto"
        )
    from tracer.backend_cuda import CudaBackend  # numba.cuda is loaded only when asked for

    return CudaBackend()
