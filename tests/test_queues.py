"""Queue bookkeeping of the CPU back-end: the escaped/hit split and compaction, against NumPy,
on the render's queue types (:data:`tracer.pool.INDEX` ids, :data:`tracer.pool.STATE` state)."""

from __future__ import annotations

import numpy as np

from tracer import kernels as K
from tracer.pool import INDEX, STATE
from tracer.rng import INDEPENDENT, SOBOL, path_keys


def test_split_escaped_keeps_queue_order_and_hit_records() -> None:
    rng = np.random.default_rng(3)
    n = 10_001
    idx = np.sort(rng.choice(50_000, n, replace=False)).astype(INDEX)
    prim = np.where(rng.random(n) < 0.45, -1, rng.integers(0, 100, n)).astype(INDEX)
    prim[:7] = -1  # runs of each kind at the start and the end
    prim[-5:] = 3
    t, b = rng.random(n), rng.random((n, 2)).astype(STATE)
    esc, hits = np.empty(n, INDEX), np.empty(n, INDEX)
    t_out, prim_out, b_out = np.empty(n), np.empty(n, INDEX), np.empty((n, 2), STATE)
    ne, nh = K.split_escaped(idx, t, prim, b, esc, hits, t_out, prim_out, b_out)
    miss = prim < 0
    assert (ne, nh) == (miss.sum(), n - miss.sum())
    assert np.array_equal(esc[:ne], idx[miss])
    assert np.array_equal(hits[:nh], idx[~miss])
    assert np.array_equal(t_out[:nh], t[~miss])
    assert np.array_equal(prim_out[:nh], prim[~miss])
    assert np.array_equal(b_out[:nh], b[~miss])


def test_compact_keeps_the_living_paths_in_order() -> None:
    rng = np.random.default_rng(4)
    alive = rng.random(20_000) < 0.6
    idx = np.sort(rng.choice(20_000, 9_999, replace=False)).astype(INDEX)
    out = np.empty(idx.shape[0], INDEX)
    m = K.compact(idx, alive, out)
    assert np.array_equal(out[:m], idx[alive[idx]])


def test_paths_and_camera_rays_count_on_across_chunks_slabs_and_samples() -> None:
    """The CPU kernels find a chunk's first pixel and sample by division and count on from
    there; every path's key to its numbers (of its pixel and sample), ray and fresh state
    must be the per-path functions' (tracer.rng.path_keys, tracer.stages.generate_camera_rays_at,
    what the GPU runs), bit for bit. A slab of 300
    pixels starting at pixel 100 of a 37-wide image (rows wrap inside a chunk, and the slab's
    end wraps to the next sample inside one), three samples from sample 5."""
    from numba import njit

    from tracer.camera import camera_frame
    from tracer.stages import generate_camera_rays_at

    @njit
    def one_by_one(cam, width, height, pix0, nslab, sample0, seed, key_of, ro, rd, beta,
                   radiance, alive, prev_pdf, prev_delta, eta_scale):
        for p in range(ro.shape[0]):
            generate_camera_rays_at(p, cam, width, height, pix0, nslab, sample0, seed, 0, key_of,
                                    ro, rd, beta, radiance, alive, prev_pdf, prev_delta, eta_scale)

    width, height, pix0, nslab, sample0, seed = 37, 11, 100, 300, 5, 3
    n = 3 * nslab
    p = np.arange(n)
    for sampling in (INDEPENDENT, SOBOL):
        idx, key_of = np.empty(n, INDEX), np.empty(n, np.int64)
        K.paths(pix0, nslab, sample0, seed, sampling, key_of, idx)
        assert np.array_equal(idx, p)
        want_keys = path_keys(sampling, seed, pix0 + p % nslab, sample0 + p // nslab)
        assert np.array_equal(key_of, want_keys)
    # the camera below draws the independent numbers
    K.paths(pix0, nslab, sample0, seed, INDEPENDENT, key_of, idx)
    cam = camera_frame(np.array([0.0, 1.0, 4.0]), np.zeros(3), np.array([0.0, 1.0, 0.0]), 40.0,
                       width, height)

    def state() -> list[np.ndarray]:
        return [np.full((n, 3), np.nan), np.full((n, 3), np.nan, STATE), np.full((n, 3), np.nan, STATE),
                np.full((n, 3), np.nan, STATE), np.zeros(n, np.bool_), np.full(n, np.nan, STATE),
                np.ones(n, np.bool_), np.full(n, np.nan, STATE)]

    got, want = state(), state()
    K.generate_camera_rays(cam, width, height, pix0, nslab, sample0, seed, INDEPENDENT, key_of,
                           *got)
    one_by_one(cam, width, height, pix0, nslab, sample0, seed, key_of, *want)
    for g, w in zip(got, want, strict=True):
        assert np.array_equal(g, w)
