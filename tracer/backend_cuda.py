"""The CUDA back-end: queues, film and light tables as device arrays for the whole render.

Every stage is a kernel of :mod:`tracer.kernels_cuda`. Only queue lengths (one small copy
per split or compaction) and, once per batch (each progress update), the film statistics
travel to the host. A sampler's tables go to the device once; the light kernels run the
sampler's registered per-entry functions (:mod:`tracer.light_dispatch`). A Torch model
(the ``flow`` sampler) runs on the same GPU and reads and writes the queues without copies
(``torch.as_tensor(device_array, device="cuda")`` and ``numba.cuda.as_cuda_array(tensor)``),
the two libraries' streams synchronised explicitly; without Torch CUDA (the CUDA simulator)
the hand-over goes through host copies.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numba import config, cuda

from tracer import kernels_cuda as KC
from tracer.errors import TracerError
from tracer.pool import INDEX, Pooling
from tracer.scene_data import SceneData

if TYPE_CHECKING:
    import torch

    from tracer.envmap import EnvMap


def _dev(a: np.ndarray) -> Any:
    return cuda.to_device(np.ascontiguousarray(a))


class DeviceEnv(NamedTuple):
    """An environment map held on the device."""

    rgb: Any
    rot_u: float


def require_numpy_support() -> None:
    """Refuse, in one line, a NumPy that the installed numba-cuda cannot compile against.

    numba-cuda loads its NumPy support at the first kernel compile; one that registers a
    NumPy function the installed NumPy no longer has fails there, deep inside the compile
    (numba-cuda 0.30 registers ``np.row_stack``, which NumPy 2.5 removed: seen on a GPU
    machine with NumPy 2.5.2). Loading that support now turns it into a clear error.
    """
    if config.ENABLE_CUDASIM:  # the simulator has no such module: kernels run as Python
        return
    try:
        import numba.cuda.np.arrayobj  # noqa: F401 - loaded for its registrations
    except ModuleNotFoundError:  # a numba-cuda laid out otherwise: nothing known to check
        return
    except AttributeError as e:
        raise TracerError(
            f"--device cuda: numba-cuda {version('numba-cuda')} cannot compile kernels with NumPy "
            f"{np.__version__} ({e}); install a NumPy it supports (numba-cuda 0.30: numpy<2.5) "
            "or a newer numba-cuda"
        ) from None


class CudaBackend(Pooling):
    """Device arrays and the kernels of :mod:`tracer.kernels_cuda`."""

    name = "cuda"
    k = KC
    #: 4M paths (about 1 GB of queues since the path state is float32, by the CPU's bytes a
    #: path; 1.8 GB before): a GPU needs millions of threads in flight, and every
    #: stage call costs a launch and, for splits and compactions, a copy of a count to the
    #: host. On an H200, spheres.toml at 1024x1024 16 spp with ``mis``: 14 Mpaths/s in
    #: batches of 2^18 paths, 101 in batches of 2^22 (benchmarks/profile_stages.py --device
    #: cuda --batch, with a device sync around every call)
    batch_paths = 1 << 22

    def __init__(self) -> None:
        require_numpy_support()
        import torch

        self.torch_device = "cuda" if torch.cuda.is_available() else "cpu"
        # host object id -> (host object, device copy): the host object is kept alive with its key
        self._copies: dict[int, tuple[Any, Any]] = {}

    def _cached(self, host: Any, make: Any) -> Any:
        key = id(host)
        if key not in self._copies:
            self._copies[key] = (host, make(host))
        return self._copies[key][1]

    # ---- queues
    def empty(self, shape: Any, dtype: Any = np.float64) -> Any:
        return cuda.device_array(shape, dtype)

    def zeros(self, shape: Any, dtype: Any = np.float64) -> Any:
        return _dev(np.zeros(shape, dtype))

    def paths(self, n: int, pix0: int, nslab: int, sample0: int, seed: int,
              sampling: int) -> tuple[Any, Any]:
        idx = self.out("paths.idx", n, INDEX)
        key_of = self.out("paths.key", n, np.int64)
        KC.paths[KC.grid(n)](pix0, nslab, sample0, seed, sampling, key_of, idx)
        return idx, key_of

    def split_escaped(self, idx: Any, hit_t: Any, hit_prim: Any, hit_b: Any) -> tuple[Any, ...]:
        n = idx.shape[0]
        esc, hits, t_out, prim_out, b_out = self.split_outputs(n)
        counts = _dev(np.zeros(2, np.int64))
        KC.split_escaped[KC.grid(n)](idx, hit_t, hit_prim, hit_b, esc, hits, t_out, prim_out, b_out, counts)
        ne, nh = (int(c) for c in counts.copy_to_host())
        return esc[:ne], hits[:nh], t_out[:nh], prim_out[:nh], b_out[:nh]

    def gather(self, a: Any, idx: Any) -> Any:
        out = self.out("gather", (idx.shape[0], a.shape[1]))
        KC.gather_rows[KC.grid(idx.shape[0])](a, idx, out)
        return out

    def compact(self, idx: Any, alive: Any) -> Any:
        out = self.out("compact", idx.shape[0], INDEX)
        count = _dev(np.zeros(1, np.int64))
        KC.compact[KC.grid(idx.shape[0])](idx, alive, out, count)
        return out[: int(count.copy_to_host()[0])]

    def sync(self) -> None:
        cuda.synchronize()

    # ---- scene, film, environment
    def scene(self, scene: SceneData) -> SceneData:
        return self._cached(scene, lambda s: SceneData(
            geom=type(s.geom)(*(_dev(a) for a in s.geom)),
            tri_normals=_dev(s.tri_normals), sphere_mat=_dev(s.sphere_mat),
            tri_mat=_dev(s.tri_mat), mat_kind=_dev(s.mat_kind),
            mat_prm=_dev(s.mat_prm), camera=_dev(s.camera),
        ))

    def film(self, film: Any) -> tuple[Any, ...]:
        return self._cached(film, lambda f: tuple(_dev(a) for a in (f.mean, f.m2, f.count, f.bad)))

    def sync_film(self, film: Any) -> None:
        """Copy the film's statistics back to the host (once per batch)."""
        for host, dev in zip((film.mean, film.m2, film.count, film.bad), self.film(film), strict=True):
            dev.copy_to_host(host)

    def _env(self, env: EnvMap) -> DeviceEnv:
        return self._cached(env, lambda e: DeviceEnv(_dev(e.rgb), float(e.rot_u)))

    def env_eval(self, env: EnvMap, dirs: Any) -> Any:
        d = self._env(env)
        out = self.out("env_eval", (dirs.shape[0], 3))
        KC.env_eval[KC.grid(dirs.shape[0])](d.rgb, d.rot_u, dirs, out)
        return out

    # ---- light sampling
    def _tables(self, tables: NamedTuple) -> NamedTuple:
        """A sampler's tables on the device: copied once; arrays already there pass through."""
        if not any(isinstance(a, np.ndarray) for a in tables):
            return tables  # a table made on the device this call (the flow's output)
        return self._cached(tables, lambda t: type(t)(
            *(_dev(a) if isinstance(a, np.ndarray) else a for a in t)))

    def tables(self, tables: NamedTuple) -> NamedTuple:
        """A sampler's static tables on the device (copied once)."""
        return self._tables(tables)

    def escaped(self, env: EnvMap, light: Any, idx: Any, depth: int, mode: int, power: float,
                q: Any, cond: Any = None) -> bool:
        """No fused escaped-ray stage on the GPU (its steps run one by one)."""
        return False

    def light_sample(self, tables: NamedTuple, env: EnvMap, u: Any) -> tuple[Any, Any, Any]:
        n = u.shape[0]
        d = self._env(env)
        wi = self.out("light_sample.wi", (n, 3))
        pdf = self.out("light_sample.pdf", n)
        le = self.out("light_sample.le", (n, 3))
        KC.light_sample(self._tables(tables), d.rgb, d.rot_u, u, wi, pdf, le)
        return wi, pdf, le

    def light_pdf(self, tables: NamedTuple, env: EnvMap, wi: Any) -> Any:
        out = self.out("light_pdf", wi.shape[0])
        KC.light_pdf(self._tables(tables), float(env.rot_u), wi, out)
        return out

    def map_uv(self, env: EnvMap, dirs: Any) -> Any:
        out = self.out("map_uv", (dirs.shape[0], 2))
        KC.map_uv(float(env.rot_u), dirs, out)
        return out

    # ---- Torch hand-over: zero-copy on a GPU, host copies under the simulator
    def to_torch(self, a: Any) -> torch.Tensor:
        import torch

        if self.torch_device == "cuda":
            cuda.synchronize()  # numba's kernels are done with a
            return torch.as_tensor(a, device="cuda")
        return torch.as_tensor(a.copy_to_host())

    def from_torch(self, t: torch.Tensor) -> Any:
        if self.torch_device == "cuda":
            import torch

            t = t.contiguous()
            torch.cuda.synchronize()  # Torch is done before numba reads
            return cuda.as_cuda_array(t)
        return _dev(t.numpy())
