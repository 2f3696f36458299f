"""The CUDA backend: queues, film and light tables as device arrays for the whole render.

Every stage is a kernel of :mod:`tracer.kernels_cuda`. Only queue lengths (one small copy
per split or compaction) and, once per batch (each progress update), the film statistics
travel to the host. The ``flow`` sampler runs its TorchScript module on the same GPU and
reads and writes the queues without copies (``torch.as_tensor(device_array,
device="cuda")`` and ``numba.cuda.as_cuda_array(tensor)``), synchronising the two libraries'
streams explicitly; without Torch CUDA (the CUDA simulator) it goes through host copies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import cuda

from tracer import kernels_cuda as KC
from tracer.integrator import SceneData
from tracer.samplers.base import LightSamples


def _dev(a: np.ndarray) -> Any:
    return cuda.to_device(np.ascontiguousarray(a))


class DeviceEnv:
    """Radiance lookup of an environment map held on the device."""

    def __init__(self, env: Any) -> None:
        self.host = env
        self.rgb = _dev(env.rgb)
        self.rot_u = float(env.rot_u)

    def eval(self, dirs: Any) -> Any:
        out = cuda.device_array((dirs.shape[0], 3))
        KC.env_eval[KC.grid(dirs.shape[0])](self.rgb, self.rot_u, dirs, out)
        return out


class DeviceSampler:
    """A light sampler whose tables live on the device (uniform, piecewise, flow)."""

    def __init__(self, light: Any, env: DeviceEnv) -> None:
        self.host = light
        self.name = light.name
        self.env = env
        if self.name.startswith("piecewise"):
            d = light.dist
            self.tables = (_dev(d.cond_cdf), _dev(d.cond_guide), _dev(d.marg_cdf))
            self.func = _dev(d.func)
            self.integral = float(d.integral)

    def _outputs(self, n: int) -> tuple[Any, Any, Any]:
        return cuda.device_array((n, 3)), cuda.device_array(n), cuda.device_array((n, 3))

    def sample(self, u: Any) -> LightSamples:
        n = u.shape[0]
        wi, pdf, le = self._outputs(n)
        if self.name.startswith("piecewise"):
            KC.piecewise_sample[KC.grid(n)](*self.tables, self.env.rgb, self.env.rot_u, u, wi, pdf, le)
        elif self.name == "uniform":
            KC.uniform_sphere[KC.grid(n)](u, wi)
            pdf = _dev(np.full(n, 1.0 / (4.0 * np.pi)))
            le = self.env.eval(wi)
        else:  # the flow: Torch on the same device
            uv, p_uv = self._flow(u)
            KC.square_to_light[KC.grid(n)](self.env.rgb, self.env.rot_u, uv, p_uv, wi, pdf, le)
        return LightSamples(wi, pdf, le)

    def pdf(self, wi: Any) -> Any:
        n = wi.shape[0]
        out = cuda.device_array(n)
        if self.name.startswith("piecewise"):
            KC.piecewise_pdf[KC.grid(n)](self.func, self.integral, self.env.rot_u, wi, out)
        elif self.name == "uniform":
            out = _dev(np.full(n, 1.0 / (4.0 * np.pi)))
        else:
            uv = cuda.device_array((n, 2))
            KC.dirs_to_map_uv[KC.grid(n)](self.env.rot_u, wi, uv)
            p_uv = self._flow_pdf(uv)
            KC.uv_pdf_to_solid_angle[KC.grid(n)](p_uv, uv, out)
        return out

    # ---- the flow, zero-copy when Torch sees the GPU
    def _flow(self, u: Any) -> tuple[Any, Any]:
        import torch

        module = self.host.module
        if torch.cuda.is_available():
            cuda.synchronize()  # numba's kernels are done with u
            t = torch.as_tensor(u, device="cuda").float()
            with torch.inference_mode():
                x, log_p = module.to("cuda").sample(t)
            uv, p = x.double().contiguous(), torch.exp(log_p.double()).contiguous()
            torch.cuda.synchronize()  # Torch is done before numba reads
            return cuda.as_cuda_array(uv), cuda.as_cuda_array(p)
        with torch.inference_mode():
            x, log_p = module.sample(torch.as_tensor(u.copy_to_host(), dtype=torch.float32))
        return _dev(x.double().numpy()), _dev(torch.exp(log_p.double()).numpy())

    def _flow_pdf(self, uv: Any) -> Any:
        import torch

        module = self.host.module
        if torch.cuda.is_available():
            cuda.synchronize()
            with torch.inference_mode():
                p = torch.exp(module.to("cuda").log_prob(torch.as_tensor(uv, device="cuda").float()).double())
            p = p.contiguous()
            torch.cuda.synchronize()
            return cuda.as_cuda_array(p)
        with torch.inference_mode():
            p = torch.exp(module.log_prob(torch.as_tensor(uv.copy_to_host(), dtype=torch.float32)).double())
        return _dev(p.numpy())


class CudaBackend:
    """Device arrays and the kernels of :mod:`tracer.kernels_cuda`."""

    name = "cuda"
    k = KC

    def __init__(self) -> None:
        self._scenes: dict[int, tuple[Any, SceneData]] = {}
        self._films: dict[int, tuple[Any, tuple[Any, ...]]] = {}
        self._envs: dict[int, tuple[Any, DeviceEnv]] = {}
        self._lights: dict[int, tuple[Any, DeviceSampler]] = {}

    def empty(self, shape: Any, dtype: Any = np.float64) -> Any:
        return cuda.device_array(shape, dtype)

    def zeros(self, shape: Any, dtype: Any = np.float64) -> Any:
        return _dev(np.zeros(shape, dtype))

    def paths(self, n: int, npix: int, sample0: int) -> tuple[Any, Any, Any]:
        idx = cuda.device_array(n, np.int64)
        pixel_of = cuda.device_array(n, np.int64)
        sample_of = cuda.device_array(n, np.int64)
        KC.paths[KC.grid(n)](npix, sample0, pixel_of, sample_of, idx)
        return idx, pixel_of, sample_of

    def split_escaped(self, idx: Any, hit_t: Any, hit_prim: Any, hit_b: Any) -> tuple[Any, ...]:
        n = idx.shape[0]
        esc = cuda.device_array(n, np.int64)
        hits = cuda.device_array(n, np.int64)
        t_out = cuda.device_array(n)
        prim_out = cuda.device_array(n, np.int64)
        b_out = cuda.device_array((n, 2))
        counts = _dev(np.zeros(2, np.int64))
        KC.split_escaped[KC.grid(n)](idx, hit_t, hit_prim, hit_b, esc, hits, t_out, prim_out, b_out, counts)
        ne, nh = (int(c) for c in counts.copy_to_host())
        return esc[:ne], hits[:nh], t_out[:nh], prim_out[:nh], b_out[:nh]

    def gather(self, a: Any, idx: Any) -> Any:
        out = cuda.device_array((idx.shape[0], a.shape[1]), a.dtype)
        KC.gather_rows[KC.grid(idx.shape[0])](a, idx, out)
        return out

    def compact(self, idx: Any, alive: Any) -> Any:
        out = cuda.device_array(idx.shape[0], np.int64)
        count = _dev(np.zeros(1, np.int64))
        KC.compact[KC.grid(idx.shape[0])](idx, alive, out, count)
        return out[: int(count.copy_to_host()[0])]

    def scene(self, scene: SceneData) -> SceneData:
        key = id(scene)
        if key not in self._scenes:
            dev = SceneData(
                geom=type(scene.geom)(*(_dev(a) for a in scene.geom)),
                tri_normals=_dev(scene.tri_normals), sphere_mat=_dev(scene.sphere_mat),
                tri_mat=_dev(scene.tri_mat), mat_kind=_dev(scene.mat_kind),
                mat_prm=_dev(scene.mat_prm), camera=_dev(scene.camera),
            )
            self._scenes[key] = (scene, dev)  # keep the host object alive with its key
        return self._scenes[key][1]

    def film(self, film: Any) -> tuple[Any, ...]:
        key = id(film)
        if key not in self._films:
            self._films[key] = (film, tuple(_dev(a) for a in (film.mean, film.m2, film.count, film.bad)))
        return self._films[key][1]

    def sync_film(self, film: Any) -> None:
        """Copy the film's statistics back to the host (once per batch)."""
        for host, dev in zip((film.mean, film.m2, film.count, film.bad), self.film(film), strict=True):
            dev.copy_to_host(host)

    def env(self, env: Any) -> DeviceEnv:
        key = id(env)
        if key not in self._envs:
            self._envs[key] = (env, DeviceEnv(env))
        return self._envs[key][1]

    def light(self, light: Any) -> DeviceSampler | None:
        if light is None:
            return None
        key = id(light)
        if key not in self._lights:
            self._lights[key] = (light, DeviceSampler(light, self.env(light.env)))
        return self._lights[key][1]

    def sync(self) -> None:
        cuda.synchronize()
