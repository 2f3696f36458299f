"""The wavefront stages as parallel Numba kernels over struct-of-arrays queues (CPU).

Each kernel runs its stage's per-entry function from :mod:`tracer.stages` over a queue of
path indices (``idx``) in a ``prange`` loop; :mod:`tracer.kernels_cuda` runs the same
functions one entry per GPU thread. The light-sampling kernels run whichever sampler's
per-entry functions its tables select (:mod:`tracer.light_dispatch`); for samplers that draw
and tabulate on the map's square, the grouped light kernels run those functions a group of
entries at a time (a step for the whole group, then the next), which keeps the group's table
reads in flight together. The shading kernel works in blocks: a block's entries put in
order of material, gathered into a scratch of a row per quantity, then each material's run
shaded by vector code of its own (:mod:`tracer.shade_vector`), then the results written
back. The traversal stages work in chunks so that each thread allocates its BVH stack once.
See :mod:`tracer.integrator` for the order of stages.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from tracer.bsdf import N_KINDS
from tracer.envmap import (
    GROUP,
    GROUP_F,
    GROUP_I,
    TASK,
    env_lookup_group,
    square_group_to_light,
    world_dir_to_map_uv,
)
from tracer.geometry import STACK_SHAPE, Geometry
from tracer.light_dispatch import (
    cacheable,
    light_pdf_at,
    light_sample_at,
    light_square_group,
    light_square_pdf_group,
)
from tracer.packet import HIT, PACKET, PACKET_SHAPE, PACKET_STACK_SHAPE, set_ray, trace_packet
from tracer.shade_vector import shade_run
from tracer.stages import (
    BSDF_ONLY,
    MIS,
    NEE_ONLY,
    SHADE_F,
    SHADE_I,
    accumulate_at,
    camera_ray_at,
    handle_escaped_at,
    intersect_closest_at,
    light_uniforms_at,
    next_path_place,
    path_place,
    paths_at,
    record_condition_at,
    row3,
    shade_gather_at,
    shade_numbers_at,
    shade_scatter_at,
    surface_interaction_at,
    trace_shadow_rays_at,
)

#: rays per chunk of a traversal kernel (one stack allocation per chunk)
CHUNK = 256
#: entries per block of the shading kernel, and its scratch's row length: padded, so that
#: the scratch's rows (2112 bytes apart) do not all fall in the same sets of the L1 cache
SHADE_BLOCK = 256
SHADE_ROW = SHADE_BLOCK + 8

__all__ = ["BSDF_ONLY", "MIS", "NEE_ONLY"]


@njit(cache=True, parallel=True)
def generate_camera_rays(
    cam: np.ndarray, width: int, height: int, pix0: int, nslab: int, sample0: int, seed: int,
    sampling: int, key_of: np.ndarray, ro: np.ndarray, rd: np.ndarray, beta: np.ndarray,
    radiance: np.ndarray, alive: np.ndarray, prev_pdf: np.ndarray, prev_delta: np.ndarray,
    eta_scale: np.ndarray,
) -> None:
    """Primary rays: path p is pixel pix0 + p % nslab, sample sample0 + p // nslab
    (:func:`tracer.stages.generate_camera_rays_at`). In chunks: a chunk's first path finds
    its pixel, row and column by division, the next ones by counting on (64-bit divisions
    cost tens of cycles, about what the rest of a camera ray does)."""
    n = ro.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        p0 = c * CHUNK
        pix, s = path_place(p0, pix0, nslab, sample0)
        x = pix % width
        y = pix // width
        for p in range(p0, min(n, p0 + CHUNK)):
            camera_ray_at(p, x, y, key_of[p], cam, width, height, seed, sampling, ro, rd, beta,
                          radiance, alive, prev_pdf, prev_delta, eta_scale)
            pix, s, wrapped = next_path_place(pix, s, pix0, nslab)
            # the pixel's column and row counted on with it
            x += 1
            if x == width:
                x = 0
                y += 1
            if wrapped:
                x = pix0 % width
                y = pix0 // width


@njit(cache=True, parallel=True)
def intersect_closest(
    g: Geometry, idx: np.ndarray, ro: np.ndarray, rd: np.ndarray,
    hit_t: np.ndarray, hit_prim: np.ndarray, hit_b: np.ndarray,
) -> None:
    """Closest hit of each queued ray through the BVH; hit_prim = -1 where it escapes."""
    n = idx.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        stack = np.empty(STACK_SHAPE)
        for k in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            intersect_closest_at(k, g, idx, ro, rd, hit_t, hit_prim, hit_b, stack)


@njit(cache=True, parallel=True)
def intersect_coherent(
    g: Geometry, idx: np.ndarray, ro: np.ndarray, rd: np.ndarray,
    hit_t: np.ndarray, hit_prim: np.ndarray, hit_b: np.ndarray,
) -> None:
    """:func:`intersect_closest` for a queue whose neighbouring rays are coherent (the camera
    rays: adjacent pixels of a row): packets of :data:`PACKET` neighbours traced together
    (:func:`tracer.packet.trace_packet`), the queue's last few rays one by one."""
    n = idx.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        stack = np.empty(PACKET_STACK_SHAPE)
        ray = np.empty(PACKET_SHAPE)
        a = c * CHUNK
        b = min(n, a + CHUNK)
        k = a
        while k + PACKET <= b:
            for i in range(PACKET):
                p = idx[k + i]
                dx, dy, dz = row3(rd, p)
                set_ray(ray, i, ro[p, 0], ro[p, 1], ro[p, 2], dx, dy, dz)
            trace_packet(g, ray, stack)
            for i in range(PACKET):
                hit_t[k + i] = ray[HIT, i]
                hit_prim[k + i] = int(ray[HIT + 1, i])
                hit_b[k + i, 0] = ray[HIT + 2, i]
                hit_b[k + i, 1] = ray[HIT + 3, i]
            k += PACKET
        for r in range(k, b):
            intersect_closest_at(r, g, idx, ro, rd, hit_t, hit_prim, hit_b, stack)


@njit(cache=True, parallel=True)
def escaped_rays(
    tables: tuple | None, rgb: np.ndarray, rot_u: float, idx: np.ndarray, depth: int, mode: int,
    power: float, rd: np.ndarray, beta: np.ndarray, radiance: np.ndarray, alive: np.ndarray,
    prev_pdf: np.ndarray, prev_delta: np.ndarray, lpdf: np.ndarray,
) -> None:
    """The escaped rays' stage in one pass, in groups of :data:`GROUP` entries: the group's
    directions copied together, their map coordinates and the map's radiance there
    (:func:`tracer.envmap.env_lookup_group`), with ``tables``
    the light's density of each direction into ``lpdf`` (one a queue entry: the sampler's
    ``square_pdf_group`` on those coordinates, told the group's place in the queue as the
    dispatcher's contract says; MIS after the first bounce reads it), and
    :func:`handle_escaped_at`. What the backend's ``gather``, ``env_eval``, ``light_pdf`` and
    :func:`handle_escaped` do one after the other, the same numbers bit for bit; ``tables``
    None where no density is read (``lpdf`` is then neither written nor read:
    :func:`handle_escaped_at` reads a density only under MIS after the first bounce)."""
    n = idx.shape[0]
    for task in prange((n + TASK - 1) // TASK):
        uv = np.empty((GROUP, 2))
        pix = np.empty((GROUP, 2), np.int64)
        le = np.empty((GROUP, 3))
        f = np.empty((GROUP, GROUP_F))
        js = np.empty((GROUP, GROUP_I), np.int64)
        end = min(n, (task + 1) * TASK)
        for k0 in range(task * TASK, end, GROUP):
            m = min(GROUP, end - k0)
            q = idx[k0:k0 + m]
            # the directions side by side (in le, which the radiance overwrites), so that the
            # coordinates' arithmetic runs over contiguous rows
            for e in range(m):
                le[e, 0], le[e, 1], le[e, 2] = rd[q[e], 0], rd[q[e], 1], rd[q[e], 2]
            env_lookup_group(rgb, rot_u, le, 0, m, le, 0, uv, pix)
            if tables is not None:
                light_square_pdf_group(tables, k0, m, rot_u, uv, lpdf, f, js)
            lq = lpdf[k0:k0 + m]
            for e in range(m):
                handle_escaped_at(e, q, depth, mode, power, le, lq, beta, radiance, alive,
                                  prev_pdf, prev_delta)


@njit(cache=True, parallel=True)
def surface_interaction(
    g: Geometry, tri_n: np.ndarray, sphere_mat: np.ndarray, tri_mat: np.ndarray,
    idx: np.ndarray, ro: np.ndarray, rd: np.ndarray,
    hit_t: np.ndarray, hit_prim: np.ndarray, hit_b: np.ndarray,
    pos: np.ndarray, ng: np.ndarray, ns: np.ndarray, mat: np.ndarray,
) -> None:
    """Hit point, geometric and shading normals (same hemisphere) and material per hit."""
    for k in prange(idx.shape[0]):
        surface_interaction_at(k, g, tri_n, sphere_mat, tri_mat, idx, ro, rd, hit_t, hit_prim,
                               hit_b, pos, ng, ns, mat)


@njit(cache=True, parallel=True)
def handle_escaped(
    idx: np.ndarray, depth: int, mode: int, power: float, le: np.ndarray, light_pdf: np.ndarray,
    beta: np.ndarray, radiance: np.ndarray, alive: np.ndarray,
    prev_pdf: np.ndarray, prev_delta: np.ndarray,
) -> None:
    """Environment radiance for rays that left the scene, MIS-weighted; they end here."""
    for k in prange(idx.shape[0]):
        handle_escaped_at(k, idx, depth, mode, power, le, light_pdf, beta, radiance, alive,
                          prev_pdf, prev_delta)


@njit(cache=True, parallel=True)
def trace_shadow_rays(
    g: Geometry, idx: np.ndarray, pos: np.ndarray, ng: np.ndarray, wi: np.ndarray,
    nee: np.ndarray, radiance: np.ndarray,
) -> None:
    """The next-event terms whose light is visible (any-hit rays to infinity), added to the
    paths' radiance (:func:`tracer.stages.trace_shadow_rays_at`)."""
    n = pos.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        stack = np.empty(STACK_SHAPE)
        for k in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            trace_shadow_rays_at(k, g, idx, pos, ng, wi, nee, radiance, stack)


@njit(cache=True, parallel=True)
def shade_and_scatter(
    idx: np.ndarray, depth: int, seed: int, sampling: int, key_of: np.ndarray,
    mode: int, power: float, rr_depth: int, rr_cap: float,
    rr_shadow: float, pos: np.ndarray, ng: np.ndarray, ns: np.ndarray, mat: np.ndarray,
    mat_kind: np.ndarray, mat_prm: np.ndarray,
    light_wi: np.ndarray, light_pdf: np.ndarray, light_le: np.ndarray, nee: np.ndarray,
    ro: np.ndarray, rd: np.ndarray, beta: np.ndarray, alive: np.ndarray,
    prev_pdf: np.ndarray, prev_delta: np.ndarray, eta_scale: np.ndarray,
) -> None:
    """Next-event estimation's term with the light sample (left in ``nee`` for
    :func:`trace_shadow_rays`), then BSDF sampling and Russian roulette
    (the maths of :func:`tracer.stages.shade_at`), in blocks of :data:`SHADE_BLOCK` entries. A block's
    entries are given columns in order of material (a counting sort), read in queue order
    into those columns of a scratch of a row per quantity, given their numbers; then each material's run of
    columns is shaded by that material's vector code (:mod:`tracer.shade_vector`), and the
    results are written to the paths. The numbers are those of one entry at a time (the
    GPU's schedule, :func:`tracer.stages.shade_at`) bit for bit (tests/test_shade.py)."""
    n = idx.shape[0]
    for block in prange((n + SHADE_BLOCK - 1) // SHADE_BLOCK):
        k0 = block * SHADE_BLOCK
        m = min(n, k0 + SHADE_BLOCK) - k0
        # the block's entries in order of material kind: starts[kind] .. starts[kind + 1]
        starts = np.zeros(N_KINDS + 1, np.int64)
        for k in range(k0, k0 + m):
            starts[mat_kind[mat[k]] + 1] += 1
        for c in range(N_KINDS):
            starts[c + 1] += starts[c]
        # each entry's column: its kind's run, in queue order within the run
        fill = starts[:N_KINDS].copy()
        col = np.empty(m, np.int64)
        for k in range(k0, k0 + m):
            c = mat_kind[mat[k]]
            col[k - k0] = fill[c]
            fill[c] += 1
        sf = np.empty((SHADE_F, SHADE_ROW))
        si = np.empty((SHADE_I, SHADE_ROW), np.int64)
        # the queue read in its own order (sequential streams), the scratch written in columns
        for k in range(k0, k0 + m):
            j = col[k - k0]
            shade_gather_at(k, j, sf, si, mode, idx, key_of, pos, ng, ns, mat,
                            mat_kind, mat_prm, light_wi, light_pdf, light_le, rd, beta, eta_scale)
            shade_numbers_at(j, sf, si, depth, seed, sampling, mode, rr_shadow)
        for c in range(N_KINDS):
            if starts[c + 1] > starts[c]:
                shade_run(c, starts[c], starts[c + 1], sf, depth, mode, power, rr_depth, rr_cap,
                          rr_shadow)
        for k in range(k0, k0 + m):
            shade_scatter_at(k, col[k - k0], sf, mode, nee, idx, ro, rd, beta, alive, prev_pdf,
                             prev_delta, eta_scale)


@njit(cache=True, parallel=True)
def record_condition(
    idx: np.ndarray, ns: np.ndarray, rd: np.ndarray, mat: np.ndarray,
    cond_n: np.ndarray, cond_wo: np.ndarray, cond_mat: np.ndarray,
) -> None:
    """Each hit's shading condition, kept per path (for conditional light samplers)."""
    for k in prange(idx.shape[0]):
        record_condition_at(k, idx, ns, rd, mat, cond_n, cond_wo, cond_mat)


@njit(cache=True, parallel=True)
def light_uniforms(
    idx: np.ndarray, depth: int, seed: int, sampling: int, key_of: np.ndarray, out: np.ndarray,
) -> None:
    """The (M, 2) uniforms that drive the light sampler at this bounce."""
    for k in prange(idx.shape[0]):
        light_uniforms_at(k, idx, depth, seed, sampling, key_of, out)


@njit(cache=True, parallel=True)
def accumulate(
    radiance: np.ndarray, n_pix: int, mean: np.ndarray, m2: np.ndarray, count: np.ndarray,
    bad: np.ndarray,
) -> None:
    """Welford's running mean and M2 per pixel; NaN/Inf samples are dropped and counted."""
    for pix in prange(n_pix):
        accumulate_at(pix, radiance, n_pix, mean, m2, count, bad)


# ------------------------------------------------------------------------ queue handling


@njit(cache=True, parallel=True)
def paths(
    pix0: int, nslab: int, sample0: int, seed: int, sampling: int, key_of: np.ndarray,
    idx: np.ndarray,
) -> None:
    """Path ids of a batch and each path's key to its numbers (:func:`tracer.stages.paths_at`;
    path p is pixel ``pix0 + p % nslab``, sample ``sample0 + p // nslab``, counted on within
    chunks as in :func:`generate_camera_rays`)."""
    n = idx.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        p0 = c * CHUNK
        pix, s = path_place(p0, pix0, nslab, sample0)
        for p in range(p0, min(n, p0 + CHUNK)):
            paths_at(p, pix, s, seed, sampling, key_of, idx)
            pix, s, _ = next_path_place(pix, s, pix0, nslab)


@njit(cache=True)
def split_escaped(
    idx: np.ndarray, hit_t: np.ndarray, hit_prim: np.ndarray, hit_b: np.ndarray,
    esc: np.ndarray, hits: np.ndarray, t_out: np.ndarray, prim_out: np.ndarray, b_out: np.ndarray,
) -> tuple[int, int]:
    """Append each entry to the escaped queue or, with its hit record, to the hit queue
    (serial and order-preserving: one pass of a few ns per entry). Returns both lengths.

    Branch-free: every entry is written to both queues' next slots and only the counter of
    its own queue moves on (the other slot is overwritten later; the queues have room for
    every entry), as escaped and hit rays come in no order a predictor could learn."""
    ne = 0
    nh = 0
    for k in range(idx.shape[0]):
        escaped = hit_prim[k] < 0
        esc[ne] = idx[k]
        hits[nh] = idx[k]
        t_out[nh] = hit_t[k]
        prim_out[nh] = hit_prim[k]
        b_out[nh, 0] = hit_b[k, 0]
        b_out[nh, 1] = hit_b[k, 1]
        ne += escaped
        nh += 1 - escaped
    return ne, nh


@njit(cache=True)
def compact(idx: np.ndarray, alive: np.ndarray, out: np.ndarray) -> int:
    """Write the entries of idx whose path is alive to out, in order; returns how many
    (branch-free, as :func:`split_escaped`)."""
    n = 0
    for k in range(idx.shape[0]):
        out[n] = idx[k]
        n += alive[idx[k]]
    return n


@njit(cache=True, parallel=True)
def gather_rows(a: np.ndarray, idx: np.ndarray, out: np.ndarray) -> None:
    """out[k] = a[idx[k]]."""
    for k in prange(idx.shape[0]):
        for c in range(a.shape[1]):
            out[k, c] = a[idx[k], c]


# ------------------------------------------------------------------------- light sampling


@njit(cache=True, parallel=True)
def light_sample(
    tables: tuple, rgb: np.ndarray, rot_u: float, u: np.ndarray,
    wi: np.ndarray, pdf: np.ndarray, le: np.ndarray,
) -> None:
    """Light samples by the sampler that owns ``tables`` (:mod:`tracer.light_dispatch`)."""
    for k in prange(u.shape[0]):
        light_sample_at(k, tables, rgb, rot_u, u, wi, pdf, le)


@njit(cache=True, parallel=True)
def light_pdf(tables: tuple, rot_u: float, wi: np.ndarray, out: np.ndarray) -> None:
    """Solid-angle densities by the sampler that owns ``tables``."""
    for k in prange(wi.shape[0]):
        light_pdf_at(k, tables, rot_u, wi, out)


@njit(cache=True, parallel=True)
def light_sample_grouped(
    tables: tuple, rgb: np.ndarray, rot_u: float, u: np.ndarray,
    wi: np.ndarray, pdf: np.ndarray, le: np.ndarray,
) -> None:
    """:func:`light_sample` for samplers that draw on the map's square (``square_at`` or
    ``square_group``), in groups of :data:`tracer.envmap.GROUP` entries: the group's square
    samples (the sampler's ``square_group`` schedule where it has one), then their directions
    and pdfs, then their map reads. The same numbers as :func:`light_sample`, bit for bit
    (tests/test_dispatch.py, tests/test_product.py)."""
    n = u.shape[0]
    for task in prange((n + TASK - 1) // TASK):
        sq = np.empty((GROUP, 4))
        ij = np.empty((GROUP, 2), np.int64)
        f = np.empty((GROUP, GROUP_F))
        js = np.empty((GROUP, GROUP_I), np.int64)
        end = min(n, (task + 1) * TASK)
        for k0 in range(task * TASK, end, GROUP):
            m = min(GROUP, end - k0)
            light_square_group(tables, k0, rot_u, u[k0:k0 + m], sq, ij, f, js)
            square_group_to_light(rgb, rot_u, sq[:m], k0, wi, pdf, le, ij)


@njit(cache=True, parallel=True)
def light_pdf_grouped(tables: tuple, rot_u: float, wi: np.ndarray, out: np.ndarray) -> None:
    """:func:`light_pdf` for samplers with a density on the square (``square_pdf`` or
    ``square_pdf_group``), in groups: the group's map coordinates (vectorised arithmetic),
    then its densities (the sampler's ``square_pdf_group`` schedule where it has one)."""
    n = wi.shape[0]
    for task in prange((n + TASK - 1) // TASK):
        uv = np.empty((GROUP, 2))
        f = np.empty((GROUP, GROUP_F))
        js = np.empty((GROUP, GROUP_I), np.int64)
        end = min(n, (task + 1) * TASK)
        for k0 in range(task * TASK, end, GROUP):
            m = min(GROUP, end - k0)
            for e in range(m):
                k = k0 + e
                uv[e, 0], uv[e, 1] = world_dir_to_map_uv(wi[k, 0], wi[k, 1], wi[k, 2], rot_u)
            light_square_pdf_group(tables, k0, m, rot_u, uv, out, f, js)


#: the same kernels without the on-disk cache, for samplers from outside the project
_light_sample_nocache = njit(parallel=True)(getattr(light_sample, "py_func", light_sample))
_light_pdf_nocache = njit(parallel=True)(getattr(light_pdf, "py_func", light_pdf))
_light_sample_grouped_nocache = njit(parallel=True)(getattr(light_sample_grouped, "py_func", light_sample_grouped))
_light_pdf_grouped_nocache = njit(parallel=True)(getattr(light_pdf_grouped, "py_func", light_pdf_grouped))


def light_kernels(tables: tuple) -> tuple:
    """(light_sample, light_pdf, light_sample_grouped, light_pdf_grouped) for a sampler's
    tables: cached for the project's samplers. The grouped ones serve only samplers that
    register ``square_at`` or ``square_group`` / ``square_pdf`` or ``square_pdf_group``
    (:mod:`tracer.light_dispatch`)."""
    if cacheable(tables):
        return light_sample, light_pdf, light_sample_grouped, light_pdf_grouped
    return _light_sample_nocache, _light_pdf_nocache, _light_sample_grouped_nocache, _light_pdf_grouped_nocache


@njit(cache=True, parallel=True)
def map_uv(rot_u: float, dirs: np.ndarray, out: np.ndarray) -> None:
    """The point of the map's square each world direction sees (for models on the square)."""
    for k in prange(dirs.shape[0]):
        out[k, 0], out[k, 1] = world_dir_to_map_uv(dirs[k, 0], dirs[k, 1], dirs[k, 2], rot_u)
