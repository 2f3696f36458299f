"""The light-sampler dispatcher: a sampler written once (tests/toy_sampler.py) runs on both back-ends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.chi2 import chi2_test
from tests.toy_sampler import CosineSampler
from tracer.backend import cuda_available
from tracer.envmap import EnvMap, one_hot_map
from tracer.light_dispatch import registered

ROOT = Path(__file__).resolve().parents[1]


def env() -> EnvMap:
    return EnvMap(one_hot_map(4, 8, 1, 3, 5.0), rot_u=0.2)


def test_a_new_sampler_runs_on_the_cpu_and_follows_its_pdf() -> None:
    s = CosineSampler(env())
    assert registered(s.tables)
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        ls = s.sample(rng.random((n, 2)))
        return ls.wi, ls.pdf > 0

    res = chi2_test(sample, s.pdf, n_samples=200_000, n_theta=16, n_phi=32, n_tests=2)
    assert res.passed, res.message


def test_the_dispatcher_feeds_the_planted_density_through() -> None:
    """A sampler claiming 5% too much density is rejected: the dispatcher runs its code, not another's."""
    s = CosineSampler(env(), scale=1.05)
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        ls = s.sample(rng.random((n, 2)))
        return ls.wi, ls.pdf > 0

    res = chi2_test(sample, s.pdf, n_samples=200_000, n_theta=16, n_phi=32, n_tests=2)
    assert not res.passed


def test_a_new_sampler_runs_on_the_cuda_backend_unchanged(tmp_path: Path) -> None:
    """The same per-entry functions on the CUDA back-end (the simulator without a GPU) equal the CPU's."""
    out = tmp_path / "toy.npz"
    envvars = dict(os.environ)
    if not cuda_available():
        envvars.update(NUMBA_ENABLE_CUDASIM="1", NUMBA_DISABLE_JIT="1")
    r = subprocess.run([sys.executable, "-m", "tests.toy_sampler", str(out)], cwd=ROOT, env=envvars,
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    s = CosineSampler(env())
    u = np.random.default_rng(1).random((256, 2))
    ls = s.sample(u)
    with np.load(out) as cu:
        np.testing.assert_allclose(cu["wi"], ls.wi, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(cu["pdf"], ls.pdf, rtol=1e-12)
        np.testing.assert_array_equal(cu["le"], ls.le)
        np.testing.assert_allclose(cu["p"], s.pdf(ls.wi), rtol=1e-12)


def test_unregistered_tables_are_not_dispatched() -> None:
    from typing import NamedTuple

    class Stray(NamedTuple):
        a: np.ndarray

    assert not registered(Stray(np.zeros(1)))
    with pytest.raises(KeyError):
        from tracer.light_dispatch import light_pdf_at

        light_pdf_at(0, Stray(np.zeros(1)), 0.0, np.zeros((1, 3)), np.zeros(1))


@pytest.mark.parametrize("name", ["piecewise", "alias"])
def test_grouped_light_kernels_equal_the_per_entry_kernels(name: str) -> None:
    """Samplers that draw on the square (and tabulate their density there) run on the CPU in
    groups (tracer.kernels.light_sample_grouped / light_pdf_grouped: piecewise's searches a
    level at a time across the group); the numbers are the per-entry ``sample_at`` /
    ``pdf_at``'s, bit for bit. The map's 40 columns leave a short last guide block, and
    5001 entries a short last group and task."""
    from tracer import kernels
    from tracer.backend import CPU
    from tracer.light_dispatch import has_square, has_square_pdf
    from tracer.samplers import make_light_sampler

    rng = np.random.default_rng(3)
    e = EnvMap(rng.random((24, 40, 3)).astype(np.float32) ** 4, rot_u=0.3)
    tables = make_light_sampler(name, e).tables
    assert has_square(tables) and has_square_pdf(tables)
    assert not has_square(make_light_sampler("uniform", e).tables)
    n = 5001
    u = rng.random((n, 2))
    u[:50] = rng.integers(0, 8, (50, 2)) / 8.0  # uniforms on CDF steps and 0 itself
    wi, pdf, le = (a.copy() for a in CPU.light_sample(tables, e, u))
    ref = np.empty((n, 3)), np.empty(n), np.empty((n, 3))
    kernels.light_sample(tables, e.rgb, e.rot_u, u, *ref)
    assert np.array_equal(wi, ref[0]) and np.array_equal(pdf, ref[1]) and np.array_equal(le, ref[2])
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d[:3] = [[0.0, 1.0, 0.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]  # the poles and the horizon
    got = CPU.light_pdf(tables, e, d).copy()
    want = np.empty(n)
    kernels.light_pdf(tables, e.rot_u, d, want)
    assert np.array_equal(got, want)
    # the grouped radiance lookup against the per-entry functions it schedules
    from tracer.envmap import env_lookup, world_dir_to_map_uv

    want_le = np.array([env_lookup(e.rgb, *world_dir_to_map_uv(*x, e.rot_u)) for x in d[:300]])
    assert np.array_equal(CPU.env_eval(e, d)[:300], want_le)
