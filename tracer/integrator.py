"""The wavefront path integrator: batched stages over struct-of-arrays queues.

One pass of :func:`render_batch` traces ``spp_batch`` samples of every pixel at once (or of
a slab of pixels, when the image holds more pixels than a batch has paths)::

    generate_camera_rays                       -> every path alive
    for depth in 0 .. max_depth:
        intersect_closest       (BVH kernel)   -> hit queue, escaped queue
                                (intersect_coherent at depth 0: camera rays as packets)
        handle_escaped          env lookup + light.pdf batch (MIS weight); on the CPU one
                                fused kernel where the pdf is a table's (be.escaped)
        (stop at max_depth: the last vertex only receives escaped light)
        surface_interaction     hit point, normals, material
        (record_condition       normal, wo, material per path: for a conditional sampler)
        sample_light            light.sample(u[, cond]) batch -> (wi, pdf, Le)
        shade_and_scatter       BSDF eval/pdf/sample, MIS, next-event terms, roulettes
        trace_shadow_rays       any-hit kernel: the terms whose light is visible
    accumulate                  Welford per pixel, NaN/Inf dropped and counted

The light sampler is called twice per bounce on whole queues (``sample`` before shading,
``pdf`` on escaped rays), so a Torch model slots in between the Numba kernels. A
conditional (product) sampler is also handed the shading condition of the queue
(:class:`tracer.samplers.base.Condition`): the normal, outgoing direction and material the
integrator records per path at each hit, so that the pdf of an escaped ray is evaluated at
the vertex its direction was sampled from. (On the CPU the escaped rays of the project's
tabulated and product samplers get their pdf inside one fused kernel instead,
:meth:`CpuBackend.escaped <tracer.backend.CpuBackend.escaped>`: no Torch call stands between
those steps.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tracer.backend import CPU, Backend, bind_light
from tracer.envmap import EnvMap
from tracer.errors import TracerError
from tracer.film import Film
from tracer.pool import INDEX, STATE
from tracer.rng import SAMPLINGS
from tracer.samplers.base import Condition
from tracer.samplers.strategy import Strategy
from tracer.scene_data import SceneData
from tracer.stages import BSDF_ONLY

#: Russian roulette starts at this depth (pbrt-v4: depth > 1)
RR_DEPTH = 2
#: the most probable continuation under Russian roulette (Mitsuba 3: 0.95; 1 = pbrt-v4)
RR_CAP = 0.95


@dataclass
class StageTimes:
    """Wall time per stage group, seconds."""

    light: float = 0.0  # light sampler calls and environment lookups
    trace: float = 0.0  # closest-hit and shadow-ray traversal
    shade: float = 0.0  # camera rays, interactions, shading, compaction, film

    def as_dict(self) -> dict[str, float]:
        return {"light_sampling": self.light, "tracing": self.trace, "shading": self.shade}


@dataclass
class Queues:
    """Path state, one row per path of the batch (struct of arrays): directions, throughputs,
    radiance, the last BSDF density and eta^2 in :data:`tracer.pool.STATE` (float32), the
    ray origins in float64; the flags bool; the shading condition (for a conditional
    sampler) float64 and int64, :class:`tracer.samplers.base.Condition`'s types."""

    n: int
    be: Backend
    ro: np.ndarray = field(init=False)  # ray origins
    rd: np.ndarray = field(init=False)  # ray directions
    beta: np.ndarray = field(init=False)  # path throughput weight
    radiance: np.ndarray = field(init=False)  # radiance gathered so far
    alive: np.ndarray = field(init=False)
    prev_pdf: np.ndarray = field(init=False)  # BSDF pdf of the last sampled direction (MIS)
    prev_delta: np.ndarray = field(init=False)  # the last bounce was a delta lobe
    eta_scale: np.ndarray = field(init=False)  # product of eta^2 over refractions (roulette)
    conditional: bool = False  # keep the shading condition per path (a product sampler)
    cond_n: np.ndarray | None = field(init=False, default=None)  # shading normal at the last hit
    cond_wo: np.ndarray | None = field(init=False, default=None)  # outgoing direction there
    cond_mat: np.ndarray | None = field(init=False, default=None)  # material there

    def __post_init__(self) -> None:
        n, out = self.n, self.be.out  # from the render's pool: allocated once per render
        if self.conditional:
            self.cond_n = out("q.cond_n", (n, 3))
            self.cond_wo = out("q.cond_wo", (n, 3))
            self.cond_mat = out("q.cond_mat", n, np.int64)
        self.ro = out("q.ro", (n, 3))
        self.rd = out("q.rd", (n, 3), STATE)
        self.beta = out("q.beta", (n, 3), STATE)
        self.radiance = out("q.radiance", (n, 3), STATE)
        self.alive = out("q.alive", n, np.bool_)
        self.prev_pdf = out("q.prev_pdf", n, STATE)
        self.prev_delta = out("q.prev_delta", n, np.bool_)
        self.eta_scale = out("q.eta_scale", n, STATE)


def render_batch(
    scene: SceneData, env: EnvMap, strategy: Strategy, width: int, height: int,
    sample0: int, spp_batch: int, max_depth: int, seed: int, film: Film, times: StageTimes,
    be: Backend = CPU, pix0: int = 0, nslab: int | None = None,
) -> None:
    """Trace samples ``sample0 .. sample0 + spp_batch - 1`` of the pixels ``pix0 .. pix0 +
    nslab - 1`` (row-major; all of them by default) into ``film``.

    Every queue and per-bounce array comes from ``be.out`` under a stage's key: with a
    pooled back-end (:meth:`tracer.pool.Pooling.pooled`, as :func:`render` passes) they are
    allocated once per render and reused at every depth of every batch.
    """
    K = be.k
    out = be.out
    nslab = width * height - pix0 if nslab is None else nslab
    scene = be.scene(scene)
    light = bind_light(strategy.light, be)
    conditional = light is not None and light.conditional
    q = Queues(nslab * spp_batch, be, conditional)

    def condition(queue: np.ndarray) -> Condition | None:
        """The shading condition of a queue's paths, for a conditional light sampler."""
        if not conditional:
            return None
        return Condition(queue, q.cond_n, q.cond_wo, q.cond_mat, scene.mat_kind, scene.mat_prm)

    mode = strategy.mode
    nee_on = mode != K.BSDF_ONLY  # next-event estimation (render refuses it without a light)
    sampling = SAMPLINGS[strategy.sequence]
    g = scene.geom
    rr_shadow = strategy.shadow_rr * env.mean_luminance  # shadow-ray roulette's threshold
    clock = Clock(be, times)

    # every path's id and the one key it draws its numbers from (tracer.rng.path_key)
    idx, key_of = be.paths(q.n, pix0, nslab, sample0, seed, sampling)
    K.generate_camera_rays(scene.camera, width, height, pix0, nslab, sample0, seed, sampling,
                           key_of, q.ro, q.rd, q.beta, q.radiance, q.alive, q.prev_pdf,
                           q.prev_delta, q.eta_scale)
    clock.lap("shade")

    for depth in range(max_depth + 1):
        if idx.shape[0] == 0:
            break
        # ---- intersect_closest
        m = idx.shape[0]
        hit_t = out("hit_t", m)
        hit_prim = out("hit_prim", m, INDEX)
        hit_b = out("hit_b", (m, 2), STATE)
        # the camera rays of neighbouring pixels, side by side in the queue, are traced as
        # packets; the scattered rays of later bounces one by one
        trace_closest = K.intersect_coherent if depth == 0 else K.intersect_closest
        trace_closest(g, idx, q.ro, q.rd, hit_t, hit_prim, hit_b)
        clock.lap("trace")
        esc_idx, idx, hit_t, hit_prim, hit_b = be.split_escaped(idx, hit_t, hit_prim, hit_b)
        clock.lap("shade")
        # ---- handle_escaped: environment radiance and (under MIS) the light pdf, in one
        # kernel where the back-end can run the light's pdf inside it, else step by step
        esc_cond = condition(esc_idx)  # for a conditional sampler's density, either way
        if esc_idx.shape[0] and be.escaped(env, light, esc_idx, depth, mode, strategy.power, q,
                                           esc_cond):
            clock.lap("light")
        elif esc_idx.shape[0]:
            dirs = be.gather(q.rd, esc_idx)
            le = be.env_eval(env, dirs)
            # (the light pdf is read only under MIS after the first bounce)
            lpdf = light.pdf(dirs, esc_cond) if mode == K.MIS and depth > 0 else out("no_pdf", esc_idx.shape[0])
            clock.lap("light")
            K.handle_escaped(esc_idx, depth, mode, strategy.power, le, lpdf, q.beta, q.radiance,
                             q.alive, q.prev_pdf, q.prev_delta)
            clock.lap("shade")
        m = idx.shape[0]
        if depth == max_depth or m == 0:
            break
        # ---- surface_interaction
        pos = out("pos", (m, 3))
        ng = out("ng", (m, 3), STATE)
        ns = out("ns", (m, 3), STATE)
        mat = out("mat", m, INDEX)
        K.surface_interaction(g, scene.tri_normals, scene.sphere_mat, scene.tri_mat, idx, q.ro, q.rd,
                              hit_t, hit_prim, hit_b, pos, ng, ns, mat)
        if conditional:
            K.record_condition(idx, ns, q.rd, mat, q.cond_n, q.cond_wo, q.cond_mat)
        clock.lap("shade")
        # ---- sample_light
        nee = out("nee", (m, 3), STATE)  # next-event terms: shade_and_scatter's, for the shadow rays
        if nee_on:
            u = out("light_u", (m, 2))
            K.light_uniforms(idx, depth, seed, sampling, key_of, u)
            ls = light.sample(u, condition(idx))
            lwi, lpdf, lle = ls.wi, ls.pdf, ls.le
            clock.lap("light")
        else:  # BSDF sampling alone: shade_and_scatter reads no light sample
            lwi = out("no_light.wi", (m, 3))
            lpdf = out("no_light.pdf", m)
            lle = out("no_light.le", (m, 3))
        # ---- shade_and_scatter
        K.shade_and_scatter(idx, depth, seed, sampling, key_of, mode, strategy.power,
                            RR_DEPTH, RR_CAP, rr_shadow, pos, ng, ns, mat, scene.mat_kind,
                            scene.mat_prm, lwi, lpdf, lle, nee, q.ro, q.rd, q.beta, q.alive,
                            q.prev_pdf, q.prev_delta, q.eta_scale)
        clock.lap("shade")
        # ---- trace_shadow_rays
        if nee_on:
            K.trace_shadow_rays(g, idx, pos, ng, lwi, nee, q.radiance)
            clock.lap("trace")
        idx = be.compact(idx, q.alive)
        clock.lap("shade")

    # ---- accumulate
    K.accumulate(q.radiance, nslab, *(a[pix0:pix0 + nslab] for a in be.film(film)))
    clock.lap("shade")


class Clock:
    """Charges the wall time since the last lap to a stage group (after a device sync)."""

    def __init__(self, be: Backend, times: StageTimes) -> None:
        self.be = be
        self.times = times
        self.t = time.perf_counter()

    def lap(self, group: str) -> None:
        self.be.sync()
        now = time.perf_counter()
        setattr(self.times, group, getattr(self.times, group) + now - self.t)
        self.t = now


@dataclass
class RenderResult:
    film: Film
    times: StageTimes
    seconds: float  # wall time of the sample passes (no compile)
    paths: int
    buffer_bytes: int = 0  # the render's queues and per-bounce arrays (tracer.pool.Pool)


def render(
    scene: SceneData, env: EnvMap, strategy: Strategy, width: int, height: int, spp: int,
    max_depth: int, seed: int, batch_paths: int | None = None,
    progress: Callable[[int], None] | None = None, spp_start: int = 0,
    film: Film | None = None, times: StageTimes | None = None, be: Backend = CPU,
) -> RenderResult:
    """Render ``spp`` samples per pixel; ``progress(n)`` is told after every batch of n spp.

    To continue a render, pass its ``film`` and ``times`` and ``spp_start`` = the samples
    already taken: the sample indices (and so the random numbers) carry on where it stopped.
    ``be`` is the back-end to run on (:func:`tracer.backend.make_backend`); the CPU by default.
    A batch is at most ``batch_paths`` paths (the back-end's ``batch_paths`` by default). With
    the table samplers the image does not depend on it, bit for bit; a Torch model's (``flow``)
    float32 calls round differently with the batch's size (about 1e-7 relative).
    """
    if strategy.light is None and strategy.mode != BSDF_ONLY:
        raise TracerError(f"strategy {strategy.name!r} estimates direct light but has no light sampler")
    batch_paths = be.batch_paths if batch_paths is None else batch_paths
    if batch_paths >= 2**31:
        raise TracerError(f"a batch of {batch_paths} paths: at most 2^31 - 1, since path ids are int32 (tracer.pool.INDEX)")
    if width * height > 2**32:
        raise TracerError(f"an image of {width}x{height} pixels: at most 2^32, since a path's key "
                          "to its numbers holds the pixel in 32 bits (tracer.rng.path_key)")
    film = Film(width, height) if film is None else film
    times = StageTimes() if times is None else times
    be = be.pooled()  # queues and per-bounce arrays allocated once for the whole render
    npix = width * height
    # a batch is at most batch_paths paths: several samples of every pixel, or one sample of
    # a slab of pixels (so memory stays bounded whatever the resolution)
    per_batch = max(1, min(spp, batch_paths // npix))
    slab = min(npix, max(1, batch_paths))
    t0 = time.perf_counter()
    s = 0
    while s < spp:
        n = min(per_batch, spp - s)
        for pix0 in range(0, npix, slab):
            render_batch(scene, env, strategy, width, height, spp_start + s, n, max_depth, seed,
                         film, times, be, pix0, min(slab, npix - pix0))
        be.sync_film(film)
        s += n
        if progress is not None:
            progress(n)
    return RenderResult(film, times, time.perf_counter() - t0, npix * spp, be.pool.nbytes())
