"""The wavefront stages as CUDA kernels (numba-cuda), one queue entry per thread.

Twins of :mod:`tracer.kernels`, with the same call signatures (all but the CPU-only grouped
light kernels, ``light_sample_grouped`` / ``light_pdf_grouped``: here one thread runs
``sample_at`` or ``pdf_at`` whole, the GPU hides table latency by its warps): each launcher
sizes the grid and runs the same per-entry function of :mod:`tracer.stages` (and the same
per-entry functions of the light samplers, :mod:`tracer.light_dispatch`) as the CPU kernel
does. The BVH stack is a per-thread local
array. Geometry is passed as its arrays and rebuilt as a :class:`Geometry` inside the kernel.
Queue compaction uses atomic counters: the order of entries in a queue changes from run to
run, but every path's random numbers are keyed by (pixel, sample, dimension), so the image
does not.
"""

from __future__ import annotations

from numba import cuda, float64, int64

from tracer.envmap import env_lookup, world_dir_to_map_uv
from tracer.geometry import STACK_SHAPE, Geometry
from tracer.light_dispatch import cacheable, light_pdf_at, light_sample_at
from tracer.stages import (
    BSDF_ONLY,
    MIS,
    NEE_ONLY,
    SHADE_F,
    SHADE_I,
    accumulate_at,
    generate_camera_rays_at,
    handle_escaped_at,
    intersect_closest_at,
    light_uniforms_at,
    path_place,
    paths_at,
    record_condition_at,
    shade_at,
    shade_gather_at,
    shade_scatter_at,
    surface_interaction_at,
    trace_shadow_rays_at,
)

#: threads per block
TPB = 128

__all__ = ["BSDF_ONLY", "MIS", "NEE_ONLY"]


def grid(n: int) -> tuple[int, int]:
    """Blocks and threads per block for n entries."""
    return max(1, (n + TPB - 1) // TPB), TPB


# ------------------------------------------------------------------------------ stages


@cuda.jit(cache=True)
def _generate_camera_rays(cam, width, height, pix0, nslab, sample0, seed, sampling, key_of, ro,
                          rd, beta, radiance, alive, prev_pdf, prev_delta, eta_scale):
    p = cuda.grid(1)
    if p < ro.shape[0]:
        generate_camera_rays_at(p, cam, width, height, pix0, nslab, sample0, seed, sampling,
                                key_of, ro, rd, beta, radiance, alive, prev_pdf, prev_delta,
                                eta_scale)


def generate_camera_rays(cam, width, height, pix0, nslab, sample0, seed, sampling, key_of, ro,
                         *queues):
    _generate_camera_rays[grid(ro.shape[0])](cam, width, height, pix0, nslab, sample0, seed,
                                             sampling, key_of, ro, *queues)


@cuda.jit(cache=True)
def _intersect_closest(sc, sr, tv, nbox, nchild, order, t4v, t4id, idx, ro, rd,
                       hit_t, hit_prim, hit_b):
    k = cuda.grid(1)
    if k < idx.shape[0]:
        stack = cuda.local.array(STACK_SHAPE, float64)
        g = Geometry(sc, sr, tv, nbox, nchild, order, t4v, t4id)
        intersect_closest_at(k, g, idx, ro, rd, hit_t, hit_prim, hit_b, stack)


def intersect_closest(g, idx, ro, rd, hit_t, hit_prim, hit_b):
    _intersect_closest[grid(idx.shape[0])](*g, idx, ro, rd, hit_t, hit_prim, hit_b)


@cuda.jit(cache=True)
def _surface_interaction(sc, sr, tv, nbox, nchild, order, t4v, t4id, tri_n, sphere_mat,
                         tri_mat, idx, ro, rd, hit_t, hit_prim, hit_b, pos, ng, ns, mat):
    k = cuda.grid(1)
    if k < idx.shape[0]:
        g = Geometry(sc, sr, tv, nbox, nchild, order, t4v, t4id)
        surface_interaction_at(k, g, tri_n, sphere_mat, tri_mat, idx, ro, rd, hit_t, hit_prim,
                               hit_b, pos, ng, ns, mat)


def surface_interaction(g, tri_n, sphere_mat, tri_mat, idx, ro, rd, hit_t, hit_prim, hit_b,
                        pos, ng, ns, mat):
    _surface_interaction[grid(idx.shape[0])](*g, tri_n, sphere_mat, tri_mat, idx, ro, rd, hit_t,
                                             hit_prim, hit_b, pos, ng, ns, mat)


@cuda.jit(cache=True)
def _handle_escaped(idx, depth, mode, power, le, light_pdf, beta, radiance, alive, prev_pdf,
                    prev_delta):
    k = cuda.grid(1)
    if k < idx.shape[0]:
        handle_escaped_at(k, idx, depth, mode, power, le, light_pdf, beta, radiance, alive,
                          prev_pdf, prev_delta)


def handle_escaped(idx, depth, mode, power, le, light_pdf, beta, radiance, alive, prev_pdf,
                   prev_delta):
    _handle_escaped[grid(idx.shape[0])](idx, depth, mode, power, le, light_pdf, beta, radiance,
                                        alive, prev_pdf, prev_delta)


@cuda.jit(cache=True)
def _trace_shadow_rays(sc, sr, tv, nbox, nchild, order, t4v, t4id, idx, pos, ng, wi, nee,
                       radiance):
    k = cuda.grid(1)
    if k < pos.shape[0]:
        stack = cuda.local.array(STACK_SHAPE, float64)
        g = Geometry(sc, sr, tv, nbox, nchild, order, t4v, t4id)
        trace_shadow_rays_at(k, g, idx, pos, ng, wi, nee, radiance, stack)


def trace_shadow_rays(g, idx, pos, ng, wi, nee, radiance):
    _trace_shadow_rays[grid(pos.shape[0])](*g, idx, pos, ng, wi, nee, radiance)


@cuda.jit(cache=True)
def _shade_and_scatter(idx, depth, seed, sampling, key_of, mode, power, rr_depth,
                       rr_cap, rr_shadow, pos, ng, ns, mat, mat_kind, mat_prm, light_wi,
                       light_pdf, light_le, nee, ro, rd, beta, alive, prev_pdf, prev_delta,
                       eta_scale):
    k = cuda.grid(1)
    if k < idx.shape[0]:
        # the CPU's block steps for a block of one entry, in a per-thread scratch
        sf = cuda.local.array((SHADE_F, 1), float64)
        si = cuda.local.array((SHADE_I, 1), int64)
        shade_gather_at(k, 0, sf, si, mode, idx, key_of, pos, ng, ns, mat, mat_kind,
                        mat_prm, light_wi, light_pdf, light_le, rd, beta, eta_scale)
        shade_at(0, sf, si, depth, seed, sampling, mode, power, rr_depth, rr_cap, rr_shadow)
        shade_scatter_at(k, 0, sf, mode, nee, idx, ro, rd, beta, alive, prev_pdf, prev_delta,
                         eta_scale)


def shade_and_scatter(idx, *args):
    _shade_and_scatter[grid(idx.shape[0])](idx, *args)


@cuda.jit(cache=True)
def _record_condition(idx, ns, rd, mat, cond_n, cond_wo, cond_mat):
    k = cuda.grid(1)
    if k < idx.shape[0]:
        record_condition_at(k, idx, ns, rd, mat, cond_n, cond_wo, cond_mat)


def record_condition(idx, ns, rd, mat, cond_n, cond_wo, cond_mat):
    _record_condition[grid(idx.shape[0])](idx, ns, rd, mat, cond_n, cond_wo, cond_mat)


@cuda.jit(cache=True)
def _light_uniforms(idx, depth, seed, sampling, key_of, out):
    k = cuda.grid(1)
    if k < idx.shape[0]:
        light_uniforms_at(k, idx, depth, seed, sampling, key_of, out)


def light_uniforms(idx, depth, seed, sampling, key_of, out):
    _light_uniforms[grid(idx.shape[0])](idx, depth, seed, sampling, key_of, out)


@cuda.jit(cache=True)
def _accumulate(radiance, n_pix, mean, m2, count, bad):
    pix = cuda.grid(1)
    if pix < n_pix:
        accumulate_at(pix, radiance, n_pix, mean, m2, count, bad)


def accumulate(radiance, n_pix, mean, m2, count, bad):
    _accumulate[grid(n_pix)](radiance, n_pix, mean, m2, count, bad)


# ----------------------------------------------------------------- queues on the device


@cuda.jit(cache=True)
def paths(pix0, nslab, sample0, seed, sampling, key_of, idx):
    """Path ids of a batch and each path's key to its numbers."""
    p = cuda.grid(1)
    if p < idx.shape[0]:
        pix, s = path_place(p, pix0, nslab, sample0)
        paths_at(p, pix, s, seed, sampling, key_of, idx)


@cuda.jit(cache=True)
def split_escaped(idx, hit_t, hit_prim, hit_b, esc, hits, t_out, prim_out, b_out, counts):
    """Append each entry to the escaped queue or (with its hit record) to the hit queue."""
    k = cuda.grid(1)
    if k < idx.shape[0]:
        if hit_prim[k] < 0:
            j = cuda.atomic.add(counts, 0, 1)
            esc[j] = idx[k]
        else:
            j = cuda.atomic.add(counts, 1, 1)
            hits[j] = idx[k]
            t_out[j] = hit_t[k]
            prim_out[j] = hit_prim[k]
            b_out[j, 0] = hit_b[k, 0]
            b_out[j, 1] = hit_b[k, 1]


@cuda.jit(cache=True)
def compact(idx, alive, out, count):
    """The entries of idx whose path is alive."""
    k = cuda.grid(1)
    if k < idx.shape[0] and alive[idx[k]]:
        out[cuda.atomic.add(count, 0, 1)] = idx[k]


@cuda.jit(cache=True)
def gather_rows(a, idx, out):
    k = cuda.grid(1)
    if k < idx.shape[0]:
        for c in range(a.shape[1]):
            out[k, c] = a[idx[k], c]


# ------------------------------------------------------------------------ light on device


@cuda.jit(cache=True)
def env_eval(rgb, rot_u, dirs, out):
    k = cuda.grid(1)
    if k < dirs.shape[0]:
        u, v = world_dir_to_map_uv(dirs[k, 0], dirs[k, 1], dirs[k, 2], rot_u)
        out[k, 0], out[k, 1], out[k, 2] = env_lookup(rgb, u, v)


@cuda.jit(cache=True)
def _light_sample(tables, rgb, rot_u, u, wi, pdf, le):
    k = cuda.grid(1)
    if k < u.shape[0]:
        light_sample_at(k, tables, rgb, rot_u, u, wi, pdf, le)


def light_sample(tables, rgb, rot_u, u, wi, pdf, le):
    """Light samples by the sampler that owns ``tables`` (:mod:`tracer.light_dispatch`)."""
    kernel = _light_sample if cacheable(tables) else _light_sample_nocache
    kernel[grid(u.shape[0])](tables, rgb, rot_u, u, wi, pdf, le)


@cuda.jit(cache=True)
def _light_pdf(tables, rot_u, wi, out):
    k = cuda.grid(1)
    if k < wi.shape[0]:
        light_pdf_at(k, tables, rot_u, wi, out)


def light_pdf(tables, rot_u, wi, out):
    """Solid-angle densities by the sampler that owns ``tables``."""
    kernel = _light_pdf if cacheable(tables) else _light_pdf_nocache
    kernel[grid(wi.shape[0])](tables, rot_u, wi, out)


#: the same kernels without the on-disk cache, for samplers from outside the project
_light_sample_nocache = cuda.jit(getattr(_light_sample, "py_func", getattr(_light_sample, "fn", None)))
_light_pdf_nocache = cuda.jit(getattr(_light_pdf, "py_func", getattr(_light_pdf, "fn", None)))


@cuda.jit(cache=True)
def _map_uv(rot_u, dirs, out):
    k = cuda.grid(1)
    if k < dirs.shape[0]:
        out[k, 0], out[k, 1] = world_dir_to_map_uv(dirs[k, 0], dirs[k, 1], dirs[k, 2], rot_u)


def map_uv(rot_u, dirs, out):
    """The point of the map's square each world direction sees (for models on the square)."""
    _map_uv[grid(dirs.shape[0])](rot_u, dirs, out)


#: the GPU traces the camera rays as every other queue, one ray a thread (no packets)
intersect_coherent = intersect_closest
