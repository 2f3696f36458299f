"""The light-sampler contract shared by every environment sampler.

``sample`` and ``pdf`` are always a pair, vectorised over a whole wavefront (as pbrt-v4's
``SampleLi``/``PDF_Li`` and Mitsuba 3's ``sample_direction``/``pdf_direction``), and both
speak of the same density per unit **solid angle**. A sample whose pdf is 0 (a pole of the
lat-long parameterisation) carries no light and is skipped by the integrator.

Both take the back-end (:class:`tracer.backend.Backend`) whose arrays they receive and
return: NumPy arrays on the CPU (the default), device arrays on CUDA. A sampler's device
code is written once, as the per-entry functions it registers with
:mod:`tracer.light_dispatch`; :class:`TabulatedSampler` runs them on either back-end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from tracer.backend import CPU, Backend

if TYPE_CHECKING:
    from tracer.envmap import EnvMap


class LightSamples(NamedTuple):
    """A batch of light samples (arrays of the back-end that drew them)."""

    wi: Any  # (N, 3) float64 unit world directions towards the light
    pdf: Any  # (N,) float64 solid-angle density of wi
    le: Any  # (N, 3) float64 radiance arriving from wi


class Condition(NamedTuple):
    """The shading condition of a queue, for conditional (product) samplers.

    Path-indexed arrays the integrator records at every surface hit; entry k of the queue is
    path ``idx[k]``. The material arrays are the scene's (kind and parameters per material).
    """

    idx: Any  # (M,) int32 path of each queue entry (tracer.pool.INDEX)
    normal: Any  # (N, 3) float64 shading normal at the path's last hit (world)
    wo: Any  # (N, 3) float64 direction back along the ray that reached it (world)
    mat: Any  # (N,) int64 material at that hit
    mat_kind: Any  # (K,) int64 kind of each material (tracer.bsdf tags)
    mat_prm: Any  # (K, 8) float64 parameters of each material


class LightSampler(Protocol):
    """Batched importance sampling of the environment light."""

    name: str
    env: EnvMap

    def sample(self, u: Any, be: Backend | None = None) -> LightSamples:
        """Directions for (N, 2) uniforms in [0, 1)^2."""
        ...

    def pdf(self, wi: Any, be: Backend | None = None) -> Any:
        """Solid-angle density of (N, 3) world directions."""
        ...


class ConditionalLightSampler(Protocol):
    """A light sampler whose density depends on the shading point (``conditional = True``).

    The same pair as :class:`LightSampler`, with the queue's :class:`Condition`; the
    integrator records the condition and hands it over, once per queue.
    """

    name: str
    env: EnvMap
    conditional: bool

    def sample(self, u: Any, cond: Condition, be: Backend | None = None) -> LightSamples: ...

    def pdf(self, wi: Any, cond: Condition, be: Backend | None = None) -> Any: ...


def is_conditional(light: Any) -> bool:
    """Does ``light`` take the shading condition (a :class:`ConditionalLightSampler`)?"""
    return bool(getattr(light, "conditional", False))


def cpu_if_none(be: Backend | None) -> Backend:
    """The back-end to run on: ``be``, or the CPU."""
    return CPU if be is None else be


class TabulatedSampler:
    """A sampler whose whole state is a tables ``NamedTuple`` registered with the dispatcher.

    Subclasses set ``name``, ``env`` and ``tables``; sampling and density run the registered
    per-entry functions through the back-end's ``light_sample`` / ``light_pdf`` kernels.
    """

    name: str
    env: EnvMap
    tables: NamedTuple

    def sample(self, u: Any, be: Backend | None = None) -> LightSamples:
        return LightSamples(*cpu_if_none(be).light_sample(self.tables, self.env, u))

    def pdf(self, wi: Any, be: Backend | None = None) -> Any:
        return cpu_if_none(be).light_pdf(self.tables, self.env, wi)

    def pdf_tables(self) -> NamedTuple | None:
        """The tables whose registered density is this sampler's :meth:`pdf` (a back-end may
        then compute it inside a kernel of its own, as the CPU's fused escaped-ray stage
        does), or None where a subclass overrides :meth:`pdf`."""
        return self.tables if type(self).pdf is TabulatedSampler.pdf else None
