"""The escaped rays' stage as one kernel (the CPU) against its steps one by one (the GPU's
schedule, and the CPU's for samplers whose density that kernel does not compute)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.toy_sampler import CosineSampler
from tracer import kernels as K
from tracer.backend import CPU, CpuBackend, bind_light
from tracer.envmap import EnvMap
from tracer.pool import INDEX, STATE
from tracer.product_model import build_product_model, random_conditions
from tracer.samplers import make_light_sampler
from tracer.samplers.base import Condition
from tracer.samplers.product import ProductSampler

ROOT = Path(__file__).resolve().parents[1]


def state(paths: int) -> SimpleNamespace:
    """Path state of a batch: directions (the poles and the horizon among them), throughputs,
    radiance so far, the last bounce's pdf and delta flag (a few pdfs of zero)."""
    rng = np.random.default_rng(6)
    rd = rng.normal(size=(paths, 3))
    rd /= np.linalg.norm(rd, axis=1, keepdims=True)
    rd[:3] = [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]
    return SimpleNamespace(  # the render's types (tracer.pool.STATE)
        rd=rd.astype(STATE), beta=rng.random((paths, 3)).astype(STATE),
        radiance=rng.random((paths, 3)).astype(STATE), alive=np.ones(paths, np.bool_),
        prev_pdf=(rng.random(paths) * (rng.random(paths) > 0.05)).astype(STATE),
        prev_delta=rng.random(paths) < 0.2,
    )


def steps(env: EnvMap, light, idx: np.ndarray, depth: int, mode: int, q, cond=None) -> None:
    """The integrator's escaped-ray steps one by one (as it runs them where ``escaped`` declines)."""
    dirs = CPU.gather(q.rd, idx)
    le = CPU.env_eval(env, dirs).copy()
    lpdf = light.pdf(dirs, cond) if mode == K.MIS and depth > 0 else np.zeros(idx.shape[0])
    K.handle_escaped(idx, depth, mode, 2.0, le, lpdf, q.beta, q.radiance, q.alive,
                     q.prev_pdf, q.prev_delta)


def the_map(rot_u: float = 0.3) -> EnvMap:
    """A map of 24 x 40 pixels (its last guide block short), rotated."""
    rng = np.random.default_rng(5)
    return EnvMap(rng.random((24, 40, 3)).astype(np.float32) ** 4, rot_u=rot_u)


def run_both(light_of, mode: int, depth: int) -> tuple[SimpleNamespace, SimpleNamespace, np.ndarray, bool]:
    """The steps' path state, the fused stage's, the queue (5001 sparse paths: a short last
    group and task), and whether the stage ran fused. ``light_of(env)`` is the light, or None."""
    env = the_map()
    light = light_of(env)
    light = None if light is None else bind_light(light, CPU)
    paths, n = 8000, 5001
    idx = np.sort(np.random.default_rng(4).choice(paths, n, replace=False)).astype(INDEX)
    cond = None
    if light is not None and light.conditional:  # the escaped queue's shading condition
        base, _ = random_conditions(paths, seed=3)
        cond = Condition(idx, *base[1:])
    want, got = state(paths), state(paths)
    steps(env, light, idx, depth, mode, want, cond)
    fused = CPU.escaped(env, light, idx, depth, mode, 2.0, got, cond)
    return want, got, idx, fused


def sampler(name: str, compensate: bool = False):
    return lambda env: make_light_sampler(name, env, compensate=compensate)


def product(env: EnvMap) -> ProductSampler:
    """The product sampler of the map (5 x 8 cells: each a few pixels, some cut short)."""
    return ProductSampler(env, build_product_model(env, cells=(5, 8)))


#: (light, mode): the project's samplers with a density on the map's square (plain and
#: MIS-compensated) under each mode, the product sampler (its density under the escaped
#: queue's condition), no light at all (BSDF sampling alone), and samplers whose density the
#: kernel does not compute where it reads none
CASES = [(f"{name}{'+c' if c else ''}", sampler(name, c), mode)
         for name in ("piecewise", "alias") for c in (False, True)
         for mode in (K.MIS, K.NEE_ONLY, K.BSDF_ONLY)]
CASES += [("product", product, mode) for mode in (K.MIS, K.NEE_ONLY)]
CASES += [("none", lambda env: None, K.BSDF_ONLY), ("uniform", sampler("uniform"), K.NEE_ONLY),
          ("toy", CosineSampler, K.BSDF_ONLY)]


@pytest.mark.parametrize("name,light_of,mode", CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
@pytest.mark.parametrize("depth", [0, 2])
def test_fused_escaped_stage_equals_its_steps(name: str, light_of, mode: int, depth: int) -> None:
    """Bit for bit: every path's radiance and its end, at the first bounce (no density read)
    and after it."""
    want, got, idx, fused = run_both(light_of, mode, depth)
    assert fused
    assert np.array_equal(got.radiance, want.radiance)
    assert np.array_equal(got.alive, want.alive) and not got.alive[idx].any()


def test_fused_escaped_stage_takes_the_density_of_an_equal_map() -> None:
    """The sampler's map may be another object (a Ray worker's copy): the density reads only
    its rotation, so an equal rotation is fused, bit for bit, and another is declined."""
    for rot_u, fused_want in ((0.3, True), (0.1, False)):
        want, got, _, fused = run_both(lambda env, r=rot_u: make_light_sampler("piecewise", the_map(r)),
                                       K.MIS, 2)
        assert fused is fused_want
        if fused:
            assert np.array_equal(got.radiance, want.radiance)


class OwnPdf:
    """A piecewise sampler whose ``pdf`` is its own (a mixture with another density, say)."""

    def __new__(cls, env: EnvMap):
        from tracer.samplers.piecewise import PiecewiseSampler

        class Mixed(PiecewiseSampler):
            def pdf(self, wi, be=None):
                return 0.5 * super().pdf(wi, be) + 0.5 / (4.0 * np.pi)

        return Mixed(env)


class ProductOwnPdf:
    """A product sampler whose ``pdf`` is its own."""

    def __new__(cls, env: EnvMap):
        class Mixed(ProductSampler):
            def pdf(self, wi, cond, be=None):
                return 0.5 * super().pdf(wi, cond, be) + 0.5 / (4.0 * np.pi)

        return Mixed(env, build_product_model(env, cells=(5, 8)))


@pytest.mark.parametrize("light_of", [sampler("uniform"), CosineSampler, OwnPdf, ProductOwnPdf],
                         ids=["uniform", "toy", "own-pdf", "product-own-pdf"])
def test_fused_escaped_stage_declines_densities_it_does_not_compute(light_of) -> None:
    """Under MIS after the first bounce, the uniform sampler (no density on the map's
    square), one defined outside the project, and one that overrides ``pdf``: ``escaped``
    does nothing and says so, and the steps run them."""
    _, got, _, fused = run_both(light_of, K.MIS, 2)
    untouched = state(8000)
    assert not fused
    assert np.array_equal(got.radiance, untouched.radiance) and got.alive.all()


class Stepwise(CpuBackend):
    """The CPU with the escaped rays' steps one by one."""

    def escaped(self, *args, **kw) -> bool:
        return False


@pytest.mark.parametrize("sampler_name,light", [("mis", "piecewise"), ("mis", "alias"),
                                               ("mis", "product"), ("bsdf", None)])
def test_renders_equal_with_the_fused_stage_and_without(sampler_name: str, light: str | None) -> None:
    """The integrator's two roads give the same image, bit for bit (the knot: a floor, a
    glossy mesh and the map seen directly)."""
    from tracer.envmap import load_envmap
    from tracer.integrator import render
    from tracer.samplers import make_strategy
    from tracer.scene import load_scene
    from tracer.scene_data import scene_data

    scene = load_scene(ROOT / "scenes" / "knot.toml")
    env = load_envmap(scene.env)
    kw = {"light": light} if light else {}
    strategy = make_strategy(sampler_name, env, **kw)
    images = [render(scene_data(scene, 24, 24), env, strategy, 24, 24, 4, 5, 3, be=be).film.mean
              for be in (CPU, Stepwise())]
    assert np.array_equal(images[0], images[1])
    assert images[0].max() > 0.0
