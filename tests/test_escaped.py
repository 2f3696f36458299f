"""The escaped rays' stage as one kernel (the CPU) against its steps one by one (the GPU's
schedule, and the CPU's for samplers whose density is not on the map's square)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tests.toy_sampler import CosineSampler
from tracer import kernels as K
from tracer.backend import CPU, bind_light
from tracer.envmap import EnvMap
from tracer.samplers import make_light_sampler


def state(rng: np.random.Generator, paths: int) -> SimpleNamespace:
    """Path state of a batch: directions (the poles and the horizon among them), throughputs,
    radiance so far, the last bounce's pdf and delta flag (a few pdfs of zero)."""
    rd = rng.normal(size=(paths, 3))
    rd /= np.linalg.norm(rd, axis=1, keepdims=True)
    rd[:3] = [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]
    return SimpleNamespace(
        rd=rd, beta=rng.random((paths, 3)), radiance=rng.random((paths, 3)),
        alive=np.ones(paths, np.bool_), prev_pdf=rng.random(paths) * (rng.random(paths) > 0.05),
        prev_delta=rng.random(paths) < 0.2,
    )


def steps(be, env: EnvMap, light, idx: np.ndarray, depth: int, mode: int, power: float, q) -> None:
    """The integrator's escaped-ray steps one by one (as it runs them where ``escaped`` declines)."""
    dirs = be.gather(q.rd, idx)
    le = be.env_eval(env, dirs).copy()
    lpdf = light.pdf(dirs) if mode == K.MIS and depth > 0 else np.zeros(idx.shape[0])
    K.handle_escaped(idx, depth, mode, power, le, lpdf, q.beta, q.radiance, q.alive,
                     q.prev_pdf, q.prev_delta)


#: (light, mode): the project's samplers with a density on the map's square under each mode,
#: and no light at all (BSDF sampling alone)
CASES = [(name, mode) for name in ("piecewise", "alias") for mode in (K.MIS, K.NEE_ONLY, K.BSDF_ONLY)]
CASES += [(None, K.BSDF_ONLY), ("uniform", K.NEE_ONLY)]


def run_both(name: str | None, mode: int, depth: int) -> tuple[SimpleNamespace, SimpleNamespace, np.ndarray, bool]:
    """The steps' path state, the fused stage's, the queue, and whether the stage ran fused."""
    rng = np.random.default_rng(5)
    env = EnvMap(rng.random((24, 40, 3)).astype(np.float32) ** 4, rot_u=0.3)
    light = None if name is None else bind_light(make_light_sampler(name, env), CPU)
    paths, n = 8000, 5001
    idx = np.sort(rng.choice(paths, n, replace=False))
    want = state(np.random.default_rng(6), paths)
    got = state(np.random.default_rng(6), paths)
    steps(CPU, env, light, idx, depth, mode, 2.0, want)
    fused = CPU.escaped(env, light, idx, depth, mode, 2.0, got)
    return want, got, idx, fused


@pytest.mark.parametrize("name,mode", CASES)
@pytest.mark.parametrize("depth", [0, 2])
def test_fused_escaped_stage_equals_its_steps(name: str | None, mode: int, depth: int) -> None:
    """Bit for bit: every path's radiance and its end, for a queue of 5001 sparse paths (a
    short last group and task) over a map with 40 columns, at the first bounce (no density
    read) and after it."""
    want, got, idx, fused = run_both(name, mode, depth)
    assert fused
    assert np.array_equal(got.radiance, want.radiance)
    assert np.array_equal(got.alive, want.alive) and not got.alive[idx].any()
    # a planted change of one path's radiance is seen: the comparison can fail
    got.radiance[idx[7], 1] += 1e-12
    assert not np.array_equal(got.radiance, want.radiance)


def test_fused_escaped_stage_declines_samplers_it_cannot_run() -> None:
    """Under MIS after the first bounce, a sampler whose density the kernel does not compute
    (one defined outside the project; the uniform sampler, whose density is not on the map's
    square) is left to the steps one by one: ``escaped`` does nothing and says so."""
    _, got, _, fused = run_both("uniform", K.MIS, 2)
    assert not fused and np.array_equal(got.radiance, state(np.random.default_rng(6), 8000).radiance)
    rng = np.random.default_rng(7)
    env = EnvMap(rng.random((8, 16, 3)).astype(np.float32), rot_u=0.0)
    light = bind_light(CosineSampler(env), CPU)
    q = state(rng, 100)
    before = q.radiance.copy()
    idx = np.arange(0, 100, 3)
    assert not CPU.escaped(env, light, idx, 1, K.MIS, 2.0, q)
    assert np.array_equal(q.radiance, before) and q.alive.all()
    # at the first bounce no density is read: the kernel runs for any light
    assert CPU.escaped(env, light, idx, 0, K.MIS, 2.0, q)
    assert not q.alive[idx].any()
