r"""One light-sampler entry point for both back-ends, dispatched on the sampler's table type.

Every sampler is written once, as two per-entry device functions over the sampler's own
tables (a ``NamedTuple`` of arrays)::

    sample_at(k, tables, rgb, rot_u, u, wi, pdf, le)   # entry k: u[k] -> wi[k], pdf[k], le[k]
    pdf_at(k, tables, rot_u, wi, out)                  # entry k: wi[k] -> out[k]

both in solid angle, ``rgb``/``rot_u`` being the environment map and its rotation. The
sampler's module calls :func:`register_light` with its tables class and the two functions
(and any of the optional four below).

A sampler that draws a point of the map's square may also register that first half, and a
sampler whose density is tabulated on the square, that density (the uniforms are in [0, 1),
as for every sampler)::

    square_at(k, tables, u, sq)                             # entry k: u[k] -> sq[k] = (u, v, p_uv)
    square_group(tables, k0, rot_u, u, sq, ij, f, js)       # the same for a group of rows u
    square_pdf(tables, u, v) -> p_uv                        # the density at map coordinates (u, v)
    square_pdf_group(tables, k0, m, rot_u, uv, out, f, js)  # pdf_at of entries k0 .. k0 + m - 1

(where registered, ``sample_at`` is ``square_at`` followed by
:func:`tracer.envmap.square_sample_to_light`, and ``pdf_at`` is
:func:`tracer.envmap.world_dir_to_map_uv`, ``square_pdf`` and
:func:`tracer.sphere_map.uv_to_solid_angle_pdf`). The CPU back-end then runs such a sampler
in groups of a few entries (:func:`tracer.kernels.light_sample_grouped`,
:func:`tracer.kernels.light_pdf_grouped`): each step for the whole group before the next,
the arithmetic apart from the table reads, so that a group's reads are in flight together
instead of one dependent chain at a time. ``square_group`` and ``square_pdf_group`` are a
sampler's own schedules of its work over a group (``piecewise``: its binary searches a level
at a time across the group; ``product``, which registers these two alone: its conditions'
arithmetic across the group, then its searches and reads); without them, the group runs
``square_at`` / ``square_pdf`` entry by entry. A group is entries ``k0 ..`` of the queue
(``len(u)`` of them, or ``m``), row ``e`` of ``u``, ``sq`` and ``uv`` (the map coordinates
of the directions ``pdf_at`` would see) being entry ``k0 + e``: a conditional sampler reads
its condition there; ``square_pdf_group`` writes the solid-angle densities into
``out[k0 + e]``. ``ij`` (two integer columns) takes the pixel rows and columns a schedule
finds (``piecewise``'s searches leave them there); ``f`` (:data:`tracer.envmap.GROUP_F`
columns) and ``js`` (:data:`tracer.envmap.GROUP_I` integer ones) are the schedule's own
scratch. ``square_pdf_group`` gets its group as ``k0`` and ``m`` with the whole scratch
``uv``, not a slice ``uv[:m]``: handed to the inlined schedule, the slice kept the compiler
from vectorising the loop that fills ``uv``, and ``piecewise``'s densities took twice as
long. (``square_group``'s slice of the input ``u`` measured the same either way.)
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

from tracer.sphere_map import uv_to_solid_angle_pdf

#: tables class -> (sample_at, pdf_at, square_at, square_group, square_pdf, square_pdf_group),
#: the last four None where not registered
_REGISTRY: dict[type, tuple[Callable[..., Any] | None, ...]] = {}
SAMPLE, PDF, SQUARE, SQUARE_GROUP, SQUARE_PDF, SQUARE_PDF_GROUP = range(6)


def register_light(
    tables: type, sample_at: Callable[..., None], pdf_at: Callable[..., None],
    square_at: Callable[..., None] | None = None, square_group: Callable[..., None] | None = None,
    square_pdf: Callable[..., float] | None = None, square_pdf_group: Callable[..., None] | None = None,
) -> None:
    """Make ``sample_at`` / ``pdf_at`` (and optionally ``square_at``, ``square_group``,
    ``square_pdf``, ``square_pdf_group``) the device functions of samplers whose tables are
    ``tables``."""
    _REGISTRY[tables] = (sample_at, pdf_at, square_at, square_group, square_pdf, square_pdf_group)


def _has(tables: Any, which: int) -> bool:
    entry = _REGISTRY.get(type(tables))
    return entry is not None and entry[which] is not None


def has_square(tables: Any) -> bool:
    """Does the sampler owning ``tables`` draw on the square (``square_at`` or
    ``square_group``)? Its samples can then run in groups on the CPU."""
    return _has(tables, SQUARE) or _has(tables, SQUARE_GROUP)


def has_square_pdf(tables: Any) -> bool:
    """Does the sampler owning ``tables`` register its density on the square (``square_pdf``
    or ``square_pdf_group``)? Its densities can then run in groups on the CPU."""
    return _has(tables, SQUARE_PDF) or _has(tables, SQUARE_PDF_GROUP)


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
    _REGISTRY[type(tables)][SAMPLE](k, tables, rgb, rot_u, u, wi, pdf, le)


def light_pdf_at(k: int, tables: Any, rot_u: float, wi: Any, out: Any) -> None:
    """Entry k of a light pdf batch by the sampler that owns ``tables``."""
    _REGISTRY[type(tables)][PDF](k, tables, rot_u, wi, out)


def light_square_group(tables: Any, k0: int, rot_u: float, u: Any, sq: Any, ij: Any, f: Any, js: Any) -> None:
    """Square samples (u, v, p_uv) of a group of uniforms ``u`` (entries ``k0 ..``) into
    ``sq`` by the sampler that owns ``tables`` (its ``square_group``, else ``square_at``
    entry by entry)."""
    entry = _REGISTRY[type(tables)]
    if entry[SQUARE_GROUP] is not None:
        entry[SQUARE_GROUP](tables, k0, rot_u, u, sq, ij, f, js)
    else:
        for e in range(u.shape[0]):
            entry[SQUARE](e, tables, u, sq)


def light_square_pdf_group(tables: Any, k0: int, m: int, rot_u: float, uv: Any, out: Any, f: Any, js: Any) -> None:
    """Solid-angle densities of entries ``k0 .. k0 + m - 1``, whose directions see the map's
    square at ``uv``'s rows, into ``out[k0 + e]`` by the sampler that owns ``tables`` (its
    ``square_pdf_group``, else ``square_pdf`` entry by entry)."""
    entry = _REGISTRY[type(tables)]
    if entry[SQUARE_PDF_GROUP] is not None:
        entry[SQUARE_PDF_GROUP](tables, k0, m, rot_u, uv, out, f, js)
    else:
        for e in range(m):
            out[k0 + e] = uv_to_solid_angle_pdf(entry[SQUARE_PDF](tables, uv[e, 0], uv[e, 1]), uv[e, 1])


def _lookup(tables: types.Type, which: int) -> Callable[..., None] | None:
    if isinstance(tables, types.BaseNamedTuple) and tables.instance_class in _REGISTRY:
        return _REGISTRY[tables.instance_class][which]
    return None


def _dispatch(stub: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register an ``@overload`` builder of ``stub`` for both targets.

    On the CPU the one-call wrapper is inlined into its caller (``inline="always"``). On the
    GPU it is a device function of its own (which NVVM inlines): Numba's inliner works on the
    CPU side's IR, which numba-cuda cannot lower (every binary operation of the inlined code
    fails to type there: "No implementation of function mul(omitted, omitted)"), while the
    CUDA simulator runs the same code as Python and passes. ``benchmarks/cuda_ptx_check.py``
    (``tests/test_cuda_ptx.py``) compiles every light kernel for a GPU, without one.
    """

    def register(builder: Callable[..., Any]) -> Callable[..., Any]:
        overload(stub, target="cpu", inline="always")(builder)
        overload(stub, target="cuda")(builder)
        return builder

    return register


@_dispatch(light_sample_at)
def _light_sample_at_impl(k, tables, rgb, rot_u, u, wi, pdf, le):
    fn = _lookup(tables, SAMPLE)
    if fn is None:
        return None

    def impl(k, tables, rgb, rot_u, u, wi, pdf, le):
        fn(k, tables, rgb, rot_u, u, wi, pdf, le)

    return impl


@_dispatch(light_pdf_at)
def _light_pdf_at_impl(k, tables, rot_u, wi, out):
    fn = _lookup(tables, PDF)
    if fn is None:
        return None

    def impl(k, tables, rot_u, wi, out):
        fn(k, tables, rot_u, wi, out)

    return impl


@_dispatch(light_square_group)
def _light_square_group_impl(tables, k0, rot_u, u, sq, ij, f, js):
    group = _lookup(tables, SQUARE_GROUP)
    if group is not None:
        def impl(tables, k0, rot_u, u, sq, ij, f, js):
            group(tables, k0, rot_u, u, sq, ij, f, js)

        return impl
    one = _lookup(tables, SQUARE)
    if one is None:
        return None

    def impl_each(tables, k0, rot_u, u, sq, ij, f, js):
        for e in range(u.shape[0]):
            one(e, tables, u, sq)

    return impl_each


@_dispatch(light_square_pdf_group)
def _light_square_pdf_group_impl(tables, k0, m, rot_u, uv, out, f, js):
    group = _lookup(tables, SQUARE_PDF_GROUP)
    if group is not None:
        def impl(tables, k0, m, rot_u, uv, out, f, js):
            group(tables, k0, m, rot_u, uv, out, f, js)

        return impl
    one = _lookup(tables, SQUARE_PDF)
    if one is None:
        return None

    def impl_each(tables, k0, m, rot_u, uv, out, f, js):
        for e in range(m):
            out[k0 + e] = uv_to_solid_angle_pdf(one(tables, uv[e, 0], uv[e, 1]), uv[e, 1])

    return impl_each
