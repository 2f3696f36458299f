r"""One light-sampler entry point for both back-ends, dispatched on the sampler's table type.

Every sampler is written once, as two per-entry device functions over the sampler's own
tables (a ``NamedTuple`` of arrays)::

    sample_at(k, tables, rgb, rot_u, u, wi, pdf, le)   # entry k: u[k] -> wi[k], pdf[k], le[k]
    pdf_at(k, tables, rot_u, wi, out)                  # entry k: wi[k] -> out[k]

both in solid angle, ``rgb``/``rot_u`` being the environment map and its rotation. The
sampler's module calls :func:`register_light` with its tables class and the two functions
(and the optional third below).

A sampler that draws a point of the map's square may also register its first half::

    square_at(k, tables, u, sq)                        # entry k: u[k] -> sq[k] = (u, v, p_uv)

(``sample_at`` being that followed by :func:`tracer.envmap.square_sample_to_light`). The CPU
back-end then samples in two kernels, the table draws and then the conversion to a direction
and its radiance: each loop body is short, so more of the entries' table and map reads are
in flight at once (the alias sampler: 16-30% less time per sample on the bundled maps).
The back-ends' kernels (:func:`tracer.kernels.light_sample` and its CUDA twin in
:mod:`tracer.kernels_cuda`) call :func:`light_sample_at` / :func:`light_pdf_at`, which Numba
resolves at typing time, by the tables' type, to the registered functions (an ``@overload``,
as pbrt-v4's ``TaggedPointer::Dispatch`` picks a light's ``SampleLi`` by its tag, but at
compile time). So a new sampler needs no edit of either back-end; both compile a
specialisation of the same kernel for its tables, and Numba's cache keeps each one.

Without the JIT (``NUMBA_DISABLE_JIT=1``, which the CUDA simulator needs) the same stubs
dispatch in Python through the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numba import types
from numba.extending import overload

#: tables class -> (sample_at, pdf_at, square_at or None)
_REGISTRY: dict[type, tuple[Callable[..., None], Callable[..., None], Callable[..., None] | None]] = {}


def register_light(
    tables: type, sample_at: Callable[..., None], pdf_at: Callable[..., None],
    square_at: Callable[..., None] | None = None,
) -> None:
    """Make ``sample_at`` / ``pdf_at`` (and optionally ``square_at``) the per-entry functions
    of samplers whose tables are ``tables``."""
    _REGISTRY[tables] = (sample_at, pdf_at, square_at)


def has_square(tables: Any) -> bool:
    """Does the sampler owning ``tables`` register a square stage (``square_at``)?"""
    entry = _REGISTRY.get(type(tables))
    return entry is not None and entry[2] is not None


def registered(tables: Any) -> bool:
    """Is ``tables`` an instance of a registered tables class?"""
    return type(tables) in _REGISTRY


def cacheable(tables: Any) -> bool:
    """May kernels specialised on ``tables``' type go to Numba's on-disk cache?

    Only the project's own samplers: the cache index of a kernel pickles the types of all
    its specialisations, so one cached for a class defined in a script or a test would make
    every later process that loads the index import that module (and fail where it cannot).
    Other samplers run the same kernels compiled without the cache, once per process.
    """
    return type(tables).__module__.startswith("tracer.")


def light_sample_at(k: int, tables: Any, rgb: Any, rot_u: float, u: Any, wi: Any, pdf: Any, le: Any) -> None:
    """Entry k of a light sample batch by the sampler that owns ``tables``."""
    _REGISTRY[type(tables)][0](k, tables, rgb, rot_u, u, wi, pdf, le)


def light_pdf_at(k: int, tables: Any, rot_u: float, wi: Any, out: Any) -> None:
    """Entry k of a light pdf batch by the sampler that owns ``tables``."""
    _REGISTRY[type(tables)][1](k, tables, rot_u, wi, out)


def light_square_at(k: int, tables: Any, u: Any, sq: Any) -> None:
    """Entry k of a batch of square samples by the sampler that owns ``tables``."""
    _REGISTRY[type(tables)][2](k, tables, u, sq)


def _lookup(tables: types.Type, which: int) -> Callable[..., None] | None:
    if isinstance(tables, types.BaseNamedTuple) and tables.instance_class in _REGISTRY:
        return _REGISTRY[tables.instance_class][which]
    return None


@overload(light_sample_at, target="generic", inline="always")
def _light_sample_at_impl(k, tables, rgb, rot_u, u, wi, pdf, le):
    fn = _lookup(tables, 0)
    if fn is None:
        return None

    def impl(k, tables, rgb, rot_u, u, wi, pdf, le):
        fn(k, tables, rgb, rot_u, u, wi, pdf, le)

    return impl


@overload(light_pdf_at, target="generic", inline="always")
def _light_pdf_at_impl(k, tables, rot_u, wi, out):
    fn = _lookup(tables, 1)
    if fn is None:
        return None

    def impl(k, tables, rot_u, wi, out):
        fn(k, tables, rot_u, wi, out)

    return impl


@overload(light_square_at, target="generic", inline="always")
def _light_square_at_impl(k, tables, u, sq):
    fn = _lookup(tables, 2)
    if fn is None:
        return None

    def impl(k, tables, u, sq):
        fn(k, tables, u, sq)

    return impl
