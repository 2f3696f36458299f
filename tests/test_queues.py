"""Queue bookkeeping of the CPU back-end: the escaped/hit split and compaction, against NumPy."""

from __future__ import annotations

import numpy as np

from tracer import kernels as K


def test_split_escaped_keeps_queue_order_and_hit_records() -> None:
    rng = np.random.default_rng(3)
    n = 10_001
    idx = np.sort(rng.choice(50_000, n, replace=False))
    prim = np.where(rng.random(n) < 0.45, -1, rng.integers(0, 100, n))
    prim[:7] = -1  # runs of each kind at the start and the end
    prim[-5:] = 3
    t, b = rng.random(n), rng.random((n, 2))
    esc, hits = np.empty(n, np.int64), np.empty(n, np.int64)
    t_out, prim_out, b_out = np.empty(n), np.empty(n, np.int64), np.empty((n, 2))
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
    idx = np.sort(rng.choice(20_000, 9_999, replace=False))
    out = np.empty(idx.shape[0], np.int64)
    m = K.compact(idx, alive, out)
    assert np.array_equal(out[:m], idx[alive[idx]])
