"""The wavefront stages, one queue entry at a time: the device code both backends run.

Each ``<stage>_at(k, ...)`` does the work of one entry ``k`` of a stage's queue. The CPU
kernels (:mod:`tracer.kernels`) call them in ``prange`` loops, the CUDA kernels
(:mod:`tracer.kernels_cuda`) once per thread, so the two backends share every line of
rendering maths (as STUMPY's ``stump.py``/``gpu_stump.py`` share their core). The functions
are inlined into each kernel. Path state is struct-of-arrays, indexed by the path id
``p = idx[k]``; per-queue arrays (hits, light samples) are indexed by ``k``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tracer.bsdf import DIELECTRIC, bsdf_eval, bsdf_sample
from tracer.fsqrt import fsqrt
from tracer.geometry import Geometry, trace
from tracer.rng import bounce_dim, draw2, path_key

#: Integrator strategies (how escaped rays and light samples are weighted)
NEE_ONLY = 0
BSDF_ONLY = 1
MIS = 2


@njit(cache=True, inline="always")
def row3(a: np.ndarray, p: int) -> tuple[float, float, float]:
    """Row ``p`` of an (N, 3) array as three float64: a row of the float32 path state
    (:data:`tracer.pool.STATE`) widened exactly, so that the maths after it runs in float64
    on every target alike (the CUDA simulator's NumPy would keep float32 where a Python float
    meets it, and Numba keeps float32 between two float32 values)."""
    return np.float64(a[p, 0]), np.float64(a[p, 1]), np.float64(a[p, 2])


@njit(cache=True, inline="always")
def offset_origin(
    px: float, py: float, pz: float, nx: float, ny: float, nz: float, dx: float, dy: float, dz: float
) -> tuple[float, float, float]:
    """Move a ray origin off the surface, to the side the ray leaves towards."""
    eps = 1e-7 * (1.0 + max(abs(px), max(abs(py), abs(pz))))
    if nx * dx + ny * dy + nz * dz < 0.0:
        eps = -eps
    return px + eps * nx, py + eps * ny, pz + eps * nz


@njit(cache=True, inline="always")
def onb(nx: float, ny: float, nz: float) -> tuple[float, float, float, float, float, float]:
    """Two tangents completing an orthonormal basis with n (Duff et al. 2017, JCGT 6(1))."""
    sign = 1.0 if nz >= 0.0 else -1.0
    a = -1.0 / (sign + nz)
    b = nx * ny * a
    return 1.0 + sign * nx * nx * a, sign * b, -sign * nx, b, sign + ny * ny * a, -ny


@njit(cache=True, inline="always")
def mis_weight(pa: float, pb: float, power: float) -> float:
    """Balance (power 1) or power (power 2) heuristic weight of strategy a (Veach 1997, §9.2)."""
    if power == 2.0:
        pa *= pa
        pb *= pb
    s = pa + pb
    return pa / s if s > 0.0 else 0.0


# ------------------------------------------------------------------ per-entry stages


@njit(cache=True, inline="always")
def path_place(p: int, pix0: int, nslab: int, sample0: int) -> tuple[int, int]:
    """Path ``p`` of a batch over the pixels ``pix0 .. pix0 + nslab - 1``: its pixel
    ``pix0 + p % nslab`` and its sample ``sample0 + p // nslab`` (two divisions)."""
    return pix0 + p % nslab, sample0 + p // nslab


@njit(cache=True, inline="always")
def next_path_place(pix: int, s: int, pix0: int, nslab: int) -> tuple[int, int, bool]:
    """The pixel and sample of the path after one at (``pix``, ``s``), counted on without a
    division: the next pixel, or after the slab's last pixel the next sample's first; and
    whether it started the next sample (the CPU kernels, a chunk of paths at a time)."""
    if pix + 1 == pix0 + nslab:
        return pix0, s + 1, True
    return pix + 1, s, False


@njit(cache=True, inline="always")
def paths_at(
    p: int, pix: int, s: int, seed: int, sampling: int, key_of: np.ndarray, idx: np.ndarray
) -> None:
    """Path ``p`` of a batch, sample ``s`` of pixel ``pix``: its id in the first queue and its
    numbers' key (:func:`tracer.rng.path_key`), which every stage draws from."""
    idx[p] = p
    key_of[p] = path_key(sampling, seed, pix, s)


@njit(cache=True, inline="always")
def generate_camera_rays_at(
    p: int,
    cam: np.ndarray, width: int, height: int, pix0: int, nslab: int, sample0: int, seed: int,
    sampling: int, key_of: np.ndarray, ro: np.ndarray, rd: np.ndarray, beta: np.ndarray,
    radiance: np.ndarray, alive: np.ndarray, prev_pdf: np.ndarray, prev_delta: np.ndarray,
    eta_scale: np.ndarray,
) -> None:
    """Primary rays for every path of a batch over the pixels ``pix0 .. pix0 + nslab - 1``:
    path p is pixel ``pix0 + p % nslab``, sample ``sample0 + p // nslab``, its numbers'
    key ``key_of[p]`` (:func:`paths_at`)."""
    pix, _ = path_place(p, pix0, nslab, sample0)
    camera_ray_at(p, pix % width, pix // width, key_of[p], cam, width, height,
                  seed, sampling, ro, rd, beta, radiance, alive, prev_pdf, prev_delta, eta_scale)


@njit(cache=True, inline="always")
def camera_ray_at(
    p: int, x: int, y: int, key: int,
    cam: np.ndarray, width: int, height: int, seed: int,
    sampling: int, ro: np.ndarray, rd: np.ndarray, beta: np.ndarray, radiance: np.ndarray,
    alive: np.ndarray, prev_pdf: np.ndarray, prev_delta: np.ndarray, eta_scale: np.ndarray,
) -> None:
    """Path p's primary ray and fresh state: a sample of pixel (x, y), whose numbers' key
    is ``key`` (:func:`tracer.rng.path_key`)."""
    jx, jy = draw2(sampling, seed, key, 0)
    sx = 2.0 * (x + jx) / width - 1.0
    sy = 1.0 - 2.0 * (y + jy) / height
    dx = cam[1, 0] + sx * cam[2, 0] + sy * cam[3, 0]
    dy = cam[1, 1] + sx * cam[2, 1] + sy * cam[3, 1]
    dz = cam[1, 2] + sx * cam[2, 2] + sy * cam[3, 2]
    inv = 1.0 / fsqrt(dx * dx + dy * dy + dz * dz)
    ro[p, 0], ro[p, 1], ro[p, 2] = cam[0, 0], cam[0, 1], cam[0, 2]
    rd[p, 0], rd[p, 1], rd[p, 2] = dx * inv, dy * inv, dz * inv
    for c in range(3):
        beta[p, c] = 1.0
        radiance[p, c] = 0.0
    alive[p] = True
    prev_pdf[p] = 0.0
    prev_delta[p] = False
    eta_scale[p] = 1.0


@njit(cache=True, inline="always")
def intersect_closest_at(
    k: int,
    g: Geometry, idx: np.ndarray, ro: np.ndarray, rd: np.ndarray,
    hit_t: np.ndarray, hit_prim: np.ndarray, hit_b: np.ndarray, stack: np.ndarray,
) -> None:
    """Closest hit of each queued ray through the BVH; hit_prim = -1 where it escapes."""
    p = idx[k]
    dx, dy, dz = row3(rd, p)
    t, prim, b1, b2 = trace(g, ro[p, 0], ro[p, 1], ro[p, 2], dx, dy, dz, math.inf, False, stack)
    hit_t[k] = t
    hit_prim[k] = prim
    hit_b[k, 0] = b1
    hit_b[k, 1] = b2


@njit(cache=True, inline="always")
def surface_interaction_at(
    k: int,
    g: Geometry, tri_n: np.ndarray, sphere_mat: np.ndarray, tri_mat: np.ndarray,
    idx: np.ndarray, ro: np.ndarray, rd: np.ndarray,
    hit_t: np.ndarray, hit_prim: np.ndarray, hit_b: np.ndarray,
    pos: np.ndarray, ng: np.ndarray, ns: np.ndarray, mat: np.ndarray,
) -> None:
    """Hit point, geometric and shading normals (same hemisphere) and material per hit."""
    n_sph = g.sphere_r.shape[0]
    p = idx[k]
    prim = hit_prim[k]
    t = hit_t[k]
    dx, dy, dz = row3(rd, p)
    px = ro[p, 0] + t * dx
    py = ro[p, 1] + t * dy
    pz = ro[p, 2] + t * dz
    if prim < n_sph:
        inv_r = 1.0 / g.sphere_r[prim]
        gx = (px - g.sphere_c[prim, 0]) * inv_r
        gy = (py - g.sphere_c[prim, 1]) * inv_r
        gz = (pz - g.sphere_c[prim, 2]) * inv_r
        sx, sy, sz = gx, gy, gz
        mat[k] = sphere_mat[prim]
    else:
        tri = prim - n_sph
        # the triangle's vertex normals and (row 3) its geometric normal, one row of the
        # scene's table (tracer.scene_data.triangle_frames): the vertices are not read
        nrm = tri_n[tri]
        gx, gy, gz = nrm[3, 0], nrm[3, 1], nrm[3, 2]
        b1 = np.float64(hit_b[k, 0])
        b2 = np.float64(hit_b[k, 1])
        b0 = 1.0 - b1 - b2
        sx = b0 * nrm[0, 0] + b1 * nrm[1, 0] + b2 * nrm[2, 0]
        sy = b0 * nrm[0, 1] + b1 * nrm[1, 1] + b2 * nrm[2, 1]
        sz = b0 * nrm[0, 2] + b1 * nrm[1, 2] + b2 * nrm[2, 2]
        sl = fsqrt(sx * sx + sy * sy + sz * sz)
        if sl > 0.0:
            sx, sy, sz = sx / sl, sy / sl, sz / sl
        else:
            sx, sy, sz = gx, gy, gz
        if sx * gx + sy * gy + sz * gz < 0.0:  # shading normal on the geometric side
            sx, sy, sz = -sx, -sy, -sz
        mat[k] = tri_mat[tri]
    pos[k, 0], pos[k, 1], pos[k, 2] = px, py, pz
    ng[k, 0], ng[k, 1], ng[k, 2] = gx, gy, gz
    ns[k, 0], ns[k, 1], ns[k, 2] = sx, sy, sz


@njit(cache=True, inline="always")
def handle_escaped_at(
    k: int,
    idx: np.ndarray, depth: int, mode: int, power: float, le: np.ndarray, light_pdf: np.ndarray,
    beta: np.ndarray, radiance: np.ndarray, alive: np.ndarray,
    prev_pdf: np.ndarray, prev_delta: np.ndarray,
) -> None:
    """Add the environment's radiance to rays that left the scene, MIS-weighted, and end them.

    Camera rays and rays after a delta bounce always count; after a non-delta bounce a ray
    counts fully with BSDF sampling alone, not at all with light sampling alone (the light
    sample already covered that direction), and with the MIS weight of BSDF sampling under MIS.
    """
    p = idx[k]
    if depth == 0 or prev_delta[p] or mode == BSDF_ONLY:
        w = 1.0
    elif mode == NEE_ONLY:
        w = 0.0
    else:
        w = mis_weight(np.float64(prev_pdf[p]), light_pdf[k], power)
    if w > 0.0:
        for c in range(3):
            radiance[p, c] = np.float64(radiance[p, c]) + np.float64(beta[p, c]) * le[k, c] * w
    alive[p] = False


@njit(cache=True, inline="always")
def light_sample_counts(light_pdf: float, kind: int, side_i: float, side_o: float) -> bool:
    """Can a light sample count at all, if visible? Not through glass (a delta BSDF), not of
    zero density, and not from the other side of the geometric surface than the outgoing
    direction (``side_i`` and ``side_o``: the light's and the outgoing direction's cosines
    with the geometric normal; the light would arrive from behind the surface it is to
    reflect from). The one place this is decided (:func:`shade_maths`)."""
    return not (light_pdf <= 0.0 or kind == DIELECTRIC or not side_i * side_o > 0.0)


@njit(cache=True, inline="always")
def trace_shadow_rays_at(
    k: int,
    g: Geometry, idx: np.ndarray, pos: np.ndarray, ng: np.ndarray, wi: np.ndarray,
    nee: np.ndarray, radiance: np.ndarray, stack: np.ndarray,
) -> None:
    """Add each light sample's next-event term ``nee[k]`` (:func:`shade_at`: already MIS
    weighted and divided by its shadow-ray roulette's probability) to its path's radiance if
    the environment is visible along it (an any-hit ray to infinity). A term of zero (a
    sample that cannot count, of zero BSDF value, or rouletted away) is not traced; a NaN
    one is, so that the film drops the sample as it drops any NaN."""
    if nee[k, 0] == 0.0 and nee[k, 1] == 0.0 and nee[k, 2] == 0.0:
        return
    gx, gy, gz = row3(ng, k)
    ox, oy, oz = offset_origin(pos[k, 0], pos[k, 1], pos[k, 2], gx, gy, gz, wi[k, 0], wi[k, 1], wi[k, 2])
    _, prim, _, _ = trace(g, ox, oy, oz, wi[k, 0], wi[k, 1], wi[k, 2], math.inf, True, stack)
    if prim < 0:
        p = idx[k]
        for c in range(3):
            radiance[p, c] = np.float64(radiance[p, c]) + np.float64(nee[k, c])


# The shading stage in steps over scratch columns, so that the CPU runs its maths over a run
# of entries of one material at once (tracer.kernels.shade_and_scatter: the gathers and
# numbers of a block, then each material's run through shade_columns, which reads and writes
# the scratch alone and compiles to vector code, tracer.shade_vector, then the writes) and
# the GPU for one entry (column 0 of a per-thread scratch, shade_at). Rows of the float
# scratch ``sf`` (inputs, some updated in place, then outputs) and of the integer scratch
# ``si``:
S_PRM = 0  # the material's r, g, b, alpha, ior
S_WO = 5  # the outgoing direction -rd
S_NG = 8  # geometric normal
S_NS = 11  # shading normal
S_LWI = 14  # the light sample's direction
S_LPDF = 17  # its pdf
S_LLE = 18  # its radiance
S_BETA = 21  # throughput (updated)
S_ETA = 24  # eta_scale (updated)
S_POS = 25  # hit point
S_DEAD = 28  # 1 where the path ends here
S_PDF = 29  # the BSDF sample's pdf
S_DELTA = 30  # 1 where it is a delta lobe's
S_RO = 31  # the continuation ray's origin
S_RD = 34  # and direction
S_NEE = 37  # the next-event term, for trace_shadow_rays_at to add if the light is visible
S_U = 40  # the bounce's numbers: shadow-ray roulette's, bsdf_sample's three, the roulette's
SHADE_F = 45
S_KIND = 0  # material kind
S_KEY = 1  # the path's key to its random numbers (tracer.rng.path_key)
SHADE_I = 2


@njit(cache=True, inline="always")
def shade_gather_at(
    k: int, e: int, sf: np.ndarray, si: np.ndarray, mode: int,
    idx: np.ndarray, key_of: np.ndarray,
    pos: np.ndarray, ng: np.ndarray, ns: np.ndarray, mat: np.ndarray,
    mat_kind: np.ndarray, mat_prm: np.ndarray,
    light_wi: np.ndarray, light_pdf: np.ndarray, light_le: np.ndarray,
    rd: np.ndarray, beta: np.ndarray, eta_scale: np.ndarray,
) -> None:
    """Queue entry k's inputs of :func:`shade_at` into scratch column e (the light sample's
    only where there is one: not with BSDF sampling alone)."""
    p = idx[k]
    m = mat[k]
    si[S_KIND, e] = mat_kind[m]
    si[S_KEY, e] = key_of[p]
    for c in range(5):
        sf[S_PRM + c, e] = mat_prm[m, c]
    for c in range(3):
        sf[S_WO + c, e] = -rd[p, c]
        sf[S_NG + c, e] = ng[k, c]
        sf[S_NS + c, e] = ns[k, c]
        sf[S_BETA + c, e] = beta[p, c]
        sf[S_POS + c, e] = pos[k, c]
    sf[S_ETA, e] = eta_scale[p]
    if mode != BSDF_ONLY:
        for c in range(3):
            sf[S_LWI + c, e] = light_wi[k, c]
            sf[S_LLE + c, e] = light_le[k, c]
        sf[S_LPDF, e] = light_pdf[k]


@njit(cache=True, inline="always")
def shade_at(
    e: int, sf: np.ndarray, si: np.ndarray,
    depth: int, seed: int, sampling: int, mode: int, power: float, rr_depth: int, rr_cap: float,
    rr_shadow: float,
) -> None:
    """Next-event estimation's term with the light sample and its shadow-ray roulette, then
    BSDF sampling and Russian roulette, for the entry in scratch column e (reads and writes
    the scratch alone).

    The next-event term :math:`\beta f L_e w / p` (w the MIS weight) is left in ``S_NEE``
    for :func:`trace_shadow_rays_at`, which adds it if the light is visible. Shadow-ray
    roulette (Arvo and Kirk 1990, on the shadow ray rather than the path): a term whose
    largest component c is below ``rr_shadow`` = tau (in the image's units: the integrator
    passes a fraction of the map's mean luminance) is kept with probability c / tau and then
    divided by it (so its largest component is tau), else set to zero and its shadow ray not
    traced. The estimate stays unbiased (up to the 2^-24 grid of the uniform numbers, as
    for the path's roulette), a kept term is bounded by tau, and the variance
    added is c (tau - c) <= (tau / 2)^2 a term; the rays it saves are those that carry
    little (a light sample outside a glossy lobe, or one that MIS gives to BSDF sampling).
    One tau for every term, not one scaled by the path's throughput: the terms already
    carry the throughput, and what a skipped ray costs the image is the variance it adds to
    the pixel. ``rr_shadow`` = 0 turns it off.

    Russian roulette (pbrt-v4 ``PathIntegrator``, Mitsuba 3 ``path.cpp``) from depth
    ``rr_depth`` on: the path goes on with probability ``c = min(max(beta) * eta_scale,
    rr_cap)`` when that is below 1, and is divided by c. ``eta_scale`` is the product of the
    eta^2 of the refractions so far: radiance that enters glass is divided by eta^2, which is
    not a loss of energy, so without it roulette would kill paths inside glass as if they
    were dim. ``rr_cap`` < 1 (Mitsuba's 0.95) also ends bright paths now and then.

    Every step is computed whatever the branch taken before it (a path that ends still
    gets a direction, which nobody reads), so that the compiler can turn the branches into
    selects across a run of entries (:func:`shade_columns`). Here, for one entry: its numbers
    (:func:`shade_numbers_at`), then its maths.
    """
    shade_numbers_at(e, sf, si, depth, seed, sampling, mode, rr_shadow)
    shade_columns(si[S_KIND, e], e, e + 1, sf, depth, mode, power, rr_depth, rr_cap, rr_shadow)


@njit(cache=True, inline="always")
def shade_numbers_at(
    e: int, sf: np.ndarray, si: np.ndarray, depth: int, seed: int, sampling: int, mode: int,
    rr_shadow: float,
) -> None:
    """The bounce's numbers of the entry in scratch column e into rows ``S_U``: the shadow-ray
    roulette's (drawn only where it is played, else 0), then the direction's pair
    (stratified, under Sobol) and the dielectric's lobe choice's and the roulette's."""
    key = si[S_KEY, e]
    u_sh = 0.0
    if mode != BSDF_ONLY and rr_shadow > 0.0:
        u_sh, _ = draw2(sampling, seed, key, bounce_dim(depth, 6))
    u1, u2 = draw2(sampling, seed, key, bounce_dim(depth, 2))
    u0, u_rr = draw2(sampling, seed, key, bounce_dim(depth, 4))
    sf[S_U, e], sf[S_U + 1, e], sf[S_U + 2, e], sf[S_U + 3, e], sf[S_U + 4, e] = u_sh, u0, u1, u2, u_rr


@njit(cache=True, inline="always")
def shade_columns(
    kind: int, j0: int, j1: int, sf: np.ndarray, depth: int, mode: int, power: float,
    rr_depth: int, rr_cap: float, rr_shadow: float,
) -> None:
    """:func:`shade_maths` for scratch columns ``j0`` to ``j1`` (their numbers in rows
    ``S_U``, gathered by :func:`shade_gather_at` and :func:`shade_numbers_at`), all of
    material ``kind``: the inputs read from each column, the results written to it.

    One loop, whose body calls no function with arrays (those would bring reference counting
    into it): compiled in a function of its own with the kind a constant
    (:mod:`tracer.shade_vector`), LLVM can make it vector code; the GPU runs it for one
    column (:func:`shade_at`)."""
    # an unsigned column, which Numba indexes without the wrap-around of negative indices
    # (with it, a run that starts at j0 > 0 has addresses LLVM cannot follow, and no vector
    # code)
    for e in range(np.uint64(j0), np.uint64(j1)):
        # the light sample's rows, only where there is one (not with BSDF sampling alone)
        wx = wy = wz = lp = le0 = le1 = le2 = 0.0
        if mode != BSDF_ONLY:
            wx, wy, wz = sf[S_LWI, e], sf[S_LWI + 1, e], sf[S_LWI + 2, e]
            lp = sf[S_LPDF, e]
            le0, le1, le2 = sf[S_LLE, e], sf[S_LLE + 1, e], sf[S_LLE + 2, e]
        prm = (sf[S_PRM, e], sf[S_PRM + 1, e], sf[S_PRM + 2, e], sf[S_PRM + 3, e], sf[S_PRM + 4, e])
        u = (sf[S_U, e], sf[S_U + 1, e], sf[S_U + 2, e], sf[S_U + 3, e], sf[S_U + 4, e])
        r = shade_maths(
            kind, prm, (sf[S_WO, e], sf[S_WO + 1, e], sf[S_WO + 2, e]),
            (sf[S_NG, e], sf[S_NG + 1, e], sf[S_NG + 2, e]), (sf[S_NS, e], sf[S_NS + 1, e], sf[S_NS + 2, e]),
            (wx, wy, wz), lp, (le0, le1, le2), (sf[S_BETA, e], sf[S_BETA + 1, e], sf[S_BETA + 2, e]),
            sf[S_ETA, e], (sf[S_POS, e], sf[S_POS + 1, e], sf[S_POS + 2, e]), u, depth, mode, power,
            rr_depth, rr_cap, rr_shadow)
        sf[S_NEE, e], sf[S_NEE + 1, e], sf[S_NEE + 2, e] = r[0], r[1], r[2]
        sf[S_BETA, e], sf[S_BETA + 1, e], sf[S_BETA + 2, e] = r[3], r[4], r[5]
        sf[S_ETA, e] = r[6]
        sf[S_DEAD, e] = r[7]
        sf[S_PDF, e] = r[8]
        sf[S_DELTA, e] = r[9]
        sf[S_RO, e], sf[S_RO + 1, e], sf[S_RO + 2, e] = r[10], r[11], r[12]
        sf[S_RD, e], sf[S_RD + 1, e], sf[S_RD + 2, e] = r[13], r[14], r[15]


@njit(cache=True, inline="always")
def shade_maths(
    kind: int, prm: tuple, wo: tuple, ng: tuple, ns: tuple, lwi: tuple, lp: float, lle: tuple,
    beta: tuple, es: float, pos: tuple, u: tuple, depth: int, mode: int, power: float,
    rr_depth: int, rr_cap: float, rr_shadow: float,
) -> tuple:
    """:func:`shade_at`'s maths on plain numbers, given the material's ``kind`` and its
    parameters ``prm`` (:func:`tracer.bsdf.material_params`), the outgoing direction, the
    geometric and shading normals, the light sample (direction, pdf, radiance), the
    throughput, ``eta_scale``, the hit point (3-tuples), and the bounce's numbers ``u`` (the
    shadow-ray roulette's, bsdf_sample's three, the roulette's). Returns the next-event term
    (3), the new throughput (3) and ``eta_scale``, 1.0 where the path ends (else 0.0), the
    BSDF sample's pdf, 1.0 where it is a delta lobe's, and the continuation ray's origin (3)
    and direction (3).

    It takes and returns numbers, no arrays: a loop that calls it over one material's
    entries (the kind a constant, which prunes the other materials' branches) is one LLVM
    loop body, which the loop vectoriser can take (an inlined function with array arguments
    brings reference counting into the loop, which it cannot). Tuples, not single numbers,
    keep its arguments under 31, above which CPython 3.11 passes them as ``*args``, which
    Numba's inliner rejects."""
    wox, woy, woz = wo
    gx, gy, gz = ng
    nx, ny, nz = ns
    wx, wy, wz = lwi
    le0, le1, le2 = lle
    b0, b1, b2 = beta
    px, py, pz = pos
    u_sh, u0, u1, u2, u_rr = u
    side_o = wox * gx + woy * gy + woz * gz
    # local shading frame (t, b, n)
    tx, ty, tz, bx, by, bz = onb(nx, ny, nz)
    lox = wox * tx + woy * ty + woz * tz
    loy = wox * bx + woy * by + woz * bz
    loz = wox * nx + woy * ny + woz * nz
    # ---- next-event estimation: the light sample's term, if it can count
    n0 = n1 = n2 = 0.0
    if mode != BSDF_ONLY:
        if light_sample_counts(lp, kind, wx * gx + wy * gy + wz * gz, side_o):
            lix = wx * tx + wy * ty + wz * tz
            liy = wx * bx + wy * by + wz * bz
            liz = wx * nx + wy * ny + wz * nz
            fr, fg, fb, bpdf = bsdf_eval(kind, prm, lox, loy, loz, lix, liy, liz)
            w = mis_weight(lp, bpdf, power) if mode == MIS else 1.0
            s = w / lp
            n0 = b0 * fr * le0 * s
            n1 = b1 * fg * le1 * s
            n2 = b2 * fb * le2 * s
        # shadow-ray roulette: keep a term below tau with probability c / tau (the test is
        # false for a term with a NaN, which is kept for the film to drop)
        if rr_shadow > 0.0:
            tau = rr_shadow
            if n0 < tau and n1 < tau and n2 < tau:
                c = max(n0, max(n1, n2))
                if u_sh * tau < c:
                    # divided by q = c / tau, as n / c * tau: n / c <= 1 cannot overflow
                    n0, n1, n2 = n0 / c * tau, n1 / c * tau, n2 / c * tau
                else:
                    n0 = n1 = n2 = 0.0
    # ---- BSDF sampling: the continuation of the path (bsdf_sample draws a direction from
    # (u1, u2) and the dielectric's reflect-or-refract choice from u0)
    lix, liy, liz, wr, wg, wb, bpdf, delta, ok = bsdf_sample(kind, prm, lox, loy, loz, u0, u1, u2)
    wx = lix * tx + liy * bx + liz * nx
    wy = lix * ty + liy * by + liz * ny
    wz = lix * tz + liy * bz + liz * nz
    wl = fsqrt(wx * wx + wy * wy + wz * wz)
    wx, wy, wz = wx / wl, wy / wl, wz / wl
    side_i = wx * gx + wy * gy + wz * gz
    transmits = liz * loz < 0.0
    # no sample, or one on the wrong geometric side (shading-normal light leaks): the end
    dead = not ok or side_i == 0.0 or (side_i * side_o > 0.0) == transmits
    b0 *= wr
    b1 *= wg
    b2 *= wb
    if transmits and kind == DIELECTRIC:
        eta = prm[4] if loz >= 0.0 else 1.0 / prm[4]  # entering or leaving (as bsdf_sample)
        es *= eta * eta
    # Russian roulette: go on with probability c = min(max(beta) eta_scale, rr_cap)
    if depth >= rr_depth:
        c = min(max(b0, max(b1, b2)) * es, rr_cap)
        if c < 1.0:
            dead = dead or u_rr >= c
            # c = 0 only for a path with no throughput, which ends above (u_rr >= 0): divide
            # it by 1, not by zero, which would raise in Python (the CUDA simulator)
            c = c if c > 0.0 else 1.0
            b0 /= c
            b1 /= c
            b2 /= c
    ox, oy, oz = offset_origin(px, py, pz, gx, gy, gz, wx, wy, wz)
    return (n0, n1, n2, b0, b1, b2, es, 1.0 if dead else 0.0, bpdf, 1.0 if delta else 0.0,
            ox, oy, oz, wx, wy, wz)


@njit(cache=True, inline="always")
def shade_scatter_at(
    k: int, e: int, sf: np.ndarray, mode: int, nee: np.ndarray,
    idx: np.ndarray, ro: np.ndarray, rd: np.ndarray, beta: np.ndarray,
    alive: np.ndarray, prev_pdf: np.ndarray, prev_delta: np.ndarray, eta_scale: np.ndarray,
) -> None:
    """Scratch column e's results of :func:`shade_at` into entry k's next-event term (not
    with BSDF sampling alone) and the state of its path: either its end or its next ray,
    throughput and BSDF pdf. (The radiance is the shadow rays' to add to.)"""
    p = idx[k]
    if mode != BSDF_ONLY:
        for c in range(3):
            nee[k, c] = sf[S_NEE + c, e]
    if sf[S_DEAD, e] != 0.0:
        alive[p] = False
        return
    for c in range(3):
        beta[p, c] = sf[S_BETA + c, e]
        ro[p, c] = sf[S_RO + c, e]
        rd[p, c] = sf[S_RD + c, e]
    eta_scale[p] = sf[S_ETA, e]
    prev_pdf[p] = sf[S_PDF, e]
    prev_delta[p] = sf[S_DELTA, e] != 0.0


@njit(cache=True, inline="always")
def record_condition_at(
    k: int,
    idx: np.ndarray, ns: np.ndarray, rd: np.ndarray, mat: np.ndarray,
    cond_n: np.ndarray, cond_wo: np.ndarray, cond_mat: np.ndarray,
) -> None:
    """The shading condition of each hit, kept per path for conditional light samplers: the
    light sample at this vertex and, at the next depth, the pdf of an escaped BSDF sample."""
    p = idx[k]
    for c in range(3):
        cond_n[p, c] = ns[k, c]
        cond_wo[p, c] = -rd[p, c]
    cond_mat[p] = mat[k]


@njit(cache=True, inline="always")
def light_uniforms_at(
    k: int,
    idx: np.ndarray, depth: int, seed: int, sampling: int, key_of: np.ndarray, out: np.ndarray,
) -> None:
    """The (M, 2) uniforms that drive the light sampler at this bounce."""
    out[k, 0], out[k, 1] = draw2(sampling, seed, key_of[idx[k]], bounce_dim(depth, 0))


@njit(cache=True, inline="always")
def accumulate_at(
    pix: int,
    radiance: np.ndarray, n_pix: int, mean: np.ndarray, m2: np.ndarray, count: np.ndarray,
    bad: np.ndarray,
) -> None:
    """Welford's running mean and M2 per pixel over the batch's samples.

    A sample with a NaN or infinite component is dropped and counted in ``bad[pixel]``; it
    never reaches the film.
    """
    spp = radiance.shape[0] // n_pix
    for s in range(spp):
        p = s * n_pix + pix
        r0, r1, r2 = row3(radiance, p)
        if not (math.isfinite(r0) and math.isfinite(r1) and math.isfinite(r2)):
            bad[pix] += 1
            continue
        count[pix] += 1
        n = count[pix]
        for c in range(3):
            x = np.float64(radiance[p, c])
            d = x - mean[pix, c]
            mean[pix, c] += d / n
            m2[pix, c] += d * (x - mean[pix, c])
