"""Buffers reused across the stages, bounces and batches of one render (both back-ends)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

#: The number type of the path state and of the vectors one stage hands the next: ray
#: directions, throughputs, radiance, the last BSDF density, the roulette's eta^2, normals,
#: barycentrics and next-event terms. Mitsuba 3 and pbrt-v4 keep all of their path state in
#: float32 (their default ``Float``); here the arithmetic inside every kernel stays float64
#: (a float32 load widens) and only what a stage stores for a later one is rounded, once.
#: Stored in float64, because precision needs it: ray origins and hit points (the ray
#: offset, :func:`tracer.stages.offset_origin`, is 1e-7 of the coordinates, about one
#: float32 ulp), hit distances (the hit point is o + t d), the light samplers' outputs (their
#: contract, :class:`tracer.samplers.base.LightSamples`) and the film's running sums.
#: Halving those bytes pays because the stages stream their queues through memory
#: (the README's nineteenth round: with the int32 ids and smaller batches, 8-14% faster
#: under ``mis`` on the bundled scenes, more under ``bsdf``).
STATE = np.float32
#: The integer type of the queues' entries (path ids) and of the hits' primitive and
#: material ids: a batch holds at most a few million paths and a scene fewer primitives
#: than 2^31. A path's key to its random numbers (:func:`tracer.rng.path_key`) stays int64.
INDEX = np.int32


class Pool:
    """Buffers that live as long as one render, reused by every bounce of every batch.

    A stage's output is ``take(key, shape)``: a view of the first ``shape[0]`` rows of the
    buffer named ``key``, allocated on first use with as many rows as asked (a buffer grows
    only if a later call asks for more rows). So a render allocates (and the OS maps and
    zero-fills) its queues once, not at every depth of every batch: on the CPU that page
    faulting was a third of a render's time. A key's contents are valid until the next
    ``take`` of the same key; each stage writes its own keys, so a bounce never reads a
    buffer that the same bounce has overwritten.
    """

    def __init__(self, alloc: Any) -> None:
        self.alloc = alloc
        self.bufs: dict[str, Any] = {}

    def take(self, key: str, shape: Any, dtype: Any = np.float64) -> Any:
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(shape)
        buf = self.bufs.get(key)
        if (buf is None or buf.shape[0] < shape[0] or buf.shape[1:] != shape[1:]
                or buf.dtype != np.dtype(dtype)):
            buf = self.bufs[key] = self.alloc(shape, dtype)
        return buf[: shape[0]]

    def nbytes(self) -> int:
        """Bytes held by the pool's buffers."""
        return sum(int(b.nbytes) for b in self.bufs.values())


class Pooling:
    """``out`` and ``pooled`` for a back-end whose ``empty`` allocates fresh arrays."""

    pool: Pool | None = None

    def out(self, key: str, shape: Any, dtype: Any = np.float64) -> Any:
        """An output array for the stage ``key``: from the render's pool when there is one
        (:meth:`pooled`), else fresh. Its contents are undefined."""
        if self.pool is None:
            return self.empty(shape, dtype)  # type: ignore[attr-defined]
        return self.pool.take(key, shape, dtype)

    def split_outputs(self, n: int) -> tuple[Any, ...]:
        """Room for ``split_escaped`` of a queue of n entries (the same on every back-end):
        escaped path ids, hit path ids, and the hits' distance, primitive, barycentrics."""
        return (self.out("split.esc", n, INDEX), self.out("split.idx", n, INDEX),
                self.out("split.t", n), self.out("split.prim", n, INDEX),
                self.out("split.b", (n, 2), STATE))

    def pooled(self) -> Any:
        """This back-end with a new, empty :class:`Pool` (one per render)."""
        be = copy.copy(self)
        be.pool = Pool(be.empty)  # type: ignore[attr-defined]
        return be
