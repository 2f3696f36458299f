"""The product sampler (tracer.samplers.product) against its own pdf, for fixed conditions.

Chi-square (the shared harness, cells aligned with the map's pixels as in test_samplers) for
diffuse normals up / tilted / grazing and GGX conductors at two roughnesses and two outgoing
directions, on a one-hot, a constant and a real map; pdf(sample) == pdf; the density
integrates to 1 for every condition; two-sided materials; what the model buys over
piecewise; bad model files.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from numba import njit

from tests.chi2 import chi2_test
from tests.conftest import ROOT, real_envmaps
from tests.test_samplers import pixel_grid
from tracer.backend import CPU
from tracer.bsdf import CONDUCTOR, DIFFUSE, N_PARAMS
from tracer.envmap import EnvMap, constant_map, one_hot_map
from tracer.errors import TracerError
from tracer.hdr_io import read_image
from tracer.pool import INDEX
from tracer.product_model import (
    build_product_model,
    load_product_model,
    mean_kl,
    random_conditions,
    save_product_model,
)
from tracer.samplers.base import Condition
from tracer.samplers.piecewise import PiecewiseSampler
from tracer.samplers.product import ProductSampler, tail_cell

N_SAMPLES = 300_000


def _unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, np.float64)
    return a / np.linalg.norm(a)


#: name -> (material kind, roughness, shading normal, outgoing direction), world frame
CONDITIONS = {
    "diffuse-up": (DIFFUSE, 0.0, _unit([0, 1, 0]), _unit([0.3, 1, 0.2])),
    "diffuse-tilted": (DIFFUSE, 0.0, _unit([0.6, 0.8, 0.0]), _unit([0, 1, 0.5])),
    "diffuse-grazing": (DIFFUSE, 0.0, _unit([1, 0.02, 0]), _unit([0.05, 0.2, 1])),
    "ggx0.1-normal": (CONDUCTOR, 0.1, _unit([0.2, 0.9, 0.3]), _unit([0.25, 0.9, 0.3])),
    "ggx0.1-oblique": (CONDUCTOR, 0.1, _unit([0.2, 0.9, 0.3]), _unit([-0.8, 0.5, 0.1])),
    "ggx0.4-normal": (CONDUCTOR, 0.4, _unit([0.0, 0.3, 1.0]), _unit([0.1, 0.3, 1.0])),
    "ggx0.4-oblique": (CONDUCTOR, 0.4, _unit([0.0, 0.3, 1.0]), _unit([0.9, -0.1, 0.4])),
}
MAPS = {
    "one_hot": lambda: one_hot_map(8, 16, 2, 5, 10.0),
    "constant": lambda: constant_map((1.0, 1.0, 1.0), 8, 16),
    "real": lambda: read_image(real_envmaps()[-1]),
}
#: chi-square tests in this file (Sidak): every map x condition, and the rotated map
N_TESTS = len(MAPS) * len(CONDITIONS) + 1


def condition(name: str, n: int, flip_normal: bool = False) -> Condition:
    """``n`` queue entries of one condition."""
    kind, alpha, nrm, wo = CONDITIONS[name]
    prm = np.zeros((1, N_PARAMS))
    prm[0, :3] = 0.8
    prm[0, 3] = alpha
    prm[0, 4] = 1.5
    nrm = -nrm if flip_normal else nrm
    return Condition(np.zeros(n, INDEX), nrm[None].copy(), wo[None].copy(), np.zeros(1, np.int64),
                     np.array([kind], np.int64), prm)


@pytest.fixture(scope="module")
def samplers() -> dict[str, ProductSampler]:
    out = {}
    for name, make in MAPS.items():
        env = EnvMap(make(), name=name)
        out[name] = ProductSampler(env, build_product_model(env))
    return out


def run_chi2(sampler: ProductSampler, cond_name: str, seed: int = 0) -> None:
    h, w = sampler.env.rgb.shape[:2]
    theta_edges, n_phi, sub = pixel_grid(h, w)
    rng = np.random.default_rng(seed)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        s = sampler.sample(rng.random((n, 2)), condition(cond_name, n))
        return s.wi, s.pdf > 0

    def pdf(d: np.ndarray) -> np.ndarray:
        return sampler.pdf(np.ascontiguousarray(d), condition(cond_name, d.shape[0]))

    res = chi2_test(sample, pdf, n_samples=N_SAMPLES, theta_edges=theta_edges, n_phi=n_phi,
                    sub=sub, quad_order=2, n_tests=N_TESTS)
    assert res.passed, res.message


@pytest.mark.parametrize("cond_name", list(CONDITIONS))
@pytest.mark.parametrize("map_name", list(MAPS))
def test_product_chi2(samplers: dict, map_name: str, cond_name: str) -> None:
    run_chi2(samplers[map_name], cond_name)


def test_product_chi2_rotated(samplers: dict) -> None:
    """The map's rotation moves the samples and the density together."""
    s = samplers["real"]
    env = EnvMap(s.env.rgb, rot_u=0.3, name="real-rotated")
    run_chi2(ProductSampler(env, s.model), "diffuse-tilted", seed=3)


@pytest.mark.parametrize("map_name", list(MAPS))
def test_pdf_of_sample_is_sample_pdf(samplers: dict, map_name: str) -> None:
    s = samplers[map_name]
    n = 20_000
    u = np.random.default_rng(1).random((n, 2))
    for cond_name in CONDITIONS:
        c = condition(cond_name, n)
        ls = s.sample(u, c)
        assert np.all(np.isfinite(ls.pdf)) and np.all(ls.pdf >= 0)
        ok = ls.pdf > 0
        assert ok.mean() > 0.999
        again = s.pdf(ls.wi, c)
        # near the poles sin(theta) of the round trip direction -> (u, v) differs in the last bits
        np.testing.assert_allclose(again[ok], ls.pdf[ok], rtol=1e-7, err_msg=cond_name)


@pytest.mark.parametrize("map_name", list(MAPS))
def test_density_integrates_to_one(samplers: dict, map_name: str) -> None:
    """Midpoint rule on a grid of 2 x 2 points per pixel of the square: exact, because the
    density on the square is constant on each pixel (p_omega 2 pi^2 sin theta = p_uv)."""
    s = samplers[map_name]
    h, w = s.env.rgb.shape[:2]
    v = (np.arange(2 * h) + 0.5) / (2 * h)
    u = (np.arange(2 * w) + 0.5) / (2 * w)
    vv, uu = np.meshgrid(v, u, indexing="ij")
    th, ph = np.pi * vv.ravel(), 2 * np.pi * uu.ravel()
    d = np.stack([np.sin(ph) * np.sin(th), np.cos(th), -np.cos(ph) * np.sin(th)], axis=1)
    jac = 2 * np.pi**2 * np.sin(th)
    for cond_name in CONDITIONS:
        p = s.pdf(d, condition(cond_name, d.shape[0]))
        total = float(np.sum(p * jac) / d.shape[0])
        assert abs(total - 1.0) < 1e-6, (cond_name, total)


@pytest.mark.parametrize("cond_name", ["diffuse-tilted", "ggx0.4-oblique"])
def test_two_sided_materials(samplers: dict, cond_name: str) -> None:
    """Diffuse and conductor are two-sided: the lit side is wo's, whichever way the shading
    normal points, so the density is the same with the normal flipped, and most samples leave
    on wo's side of the surface."""
    s = samplers["constant"]
    n = 50_000
    u = np.random.default_rng(2).random((n, 2))
    a = s.sample(u, condition(cond_name, n))
    b = s.sample(u, condition(cond_name, n, flip_normal=True))
    np.testing.assert_array_equal(a.wi, b.wi)
    np.testing.assert_array_equal(a.pdf, b.pdf)
    _, _, nrm, wo = CONDITIONS[cond_name]
    side = np.sign(wo @ nrm)
    # the conductor tables know the mirror direction, not the surface: a broad lobe about a
    # grazing mirror direction (here alpha 0.4, wo at 66 degrees) leaves part of its mass below
    # the horizon (measured 69%); the diffuse tables clamp the cosine (measured 97%)
    above = np.mean((a.wi @ nrm) * side > 0)
    assert above > (0.9 if cond_name.startswith("diffuse") else 0.6), above


def test_product_beats_piecewise_on_a_real_map(samplers: dict) -> None:
    """Relative variance of L cos / (pi p) for an up-facing diffuse point: the product
    sampler's must be far below piecewise's (measured 0.03 vs 0.66 on the bundled sunset)."""
    s = samplers["real"]
    pw = PiecewiseSampler(s.env)
    n = 200_000
    u = np.random.default_rng(4).random((n, 2))
    nrm = CONDITIONS["diffuse-up"][2]
    rel = {}
    for name, ls in (("product", s.sample(u, condition("diffuse-up", n))), ("piecewise", pw.sample(u))):
        ok = ls.pdf > 0
        f = np.zeros(n)
        f[ok] = (ls.le[ok] @ np.array([0.2126, 0.7152, 0.0722])) * np.maximum(ls.wi[ok] @ nrm, 0) / (np.pi * ls.pdf[ok])
        rel[name] = f.var() / f.mean() ** 2
    assert rel["product"] < rel["piecewise"] / 4, rel


def test_kl_over_conditions_is_below_piecewise(samplers: dict) -> None:
    kl = mean_kl(samplers["real"].model, random_conditions(12, seed=5)[0])
    assert kl["conditions"] == 12
    assert 0.0 <= kl["kl_product"] < kl["kl_piecewise"] / 2, kl


def test_model_round_trip_and_bad_files(tmp_path: Path, samplers: dict) -> None:
    s = samplers["one_hot"]
    path = tmp_path / "m.npz"
    save_product_model(s.model, path)
    back = load_product_model(path, s.env)
    np.testing.assert_array_equal(back.head_w, s.model.head_w)
    with pytest.raises(TracerError, match="another map"):
        load_product_model(path, samplers["constant"].env)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[: 200])
    with pytest.raises(TracerError, match="corrupt"):
        load_product_model(bad, s.env)
    with pytest.raises(TracerError, match="does not exist"):
        load_product_model(tmp_path / "missing.npz", s.env)


def test_cli_refuses_a_model_of_another_map_in_one_line(tmp_path: Path) -> None:
    from tracer.envmap import load_envmap
    from tracer.scene import EnvSpec

    env = load_envmap(EnvSpec(kind="file", path=ROOT / "scenes" / "envmaps" / "studio.exr"))
    model = tmp_path / "studio.npz"
    save_product_model(build_product_model(env), model)
    # spheres.toml is lit by sunset.exr
    for flow_model in (model, tmp_path / "garbage.npz"):
        if flow_model.name == "garbage.npz":
            flow_model.write_bytes(b"not a zip at all")
        r = subprocess.run([sys.executable, "-m", "tracer", "render", str(ROOT / "scenes" / "spheres.toml"),
                            "--sampler", "product", "--flow-model", str(flow_model), "--spp", "1",
                            "--resolution", "4x4", "--out", str(tmp_path / "x.exr")],
                           capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False)
        assert r.returncode == 2, r.stderr[-2000:]
        lines = [ln for ln in r.stderr.splitlines() if "warning" not in ln]
        assert len(lines) == 1 and str(flow_model) in lines[0], r.stderr
        assert ("another map" in lines[0]) if flow_model == model else ("corrupt" in lines[0])


def test_density_is_positive_wherever_the_map_is_lit(samplers: dict) -> None:
    """The defensive term: no direction the map lights has density 0, whatever the lobe."""
    s = samplers["one_hot"]
    h, w = 8, 16
    i, j = 2, 5
    th, ph = math.pi * (i + 0.5) / h, 2 * math.pi * (j + 0.5) / w
    d = np.array([[math.sin(ph) * math.sin(th), math.cos(th), -math.cos(ph) * math.sin(th)]])
    for cond_name in CONDITIONS:
        assert s.pdf(d, condition(cond_name, 1))[0] > 0, cond_name


@pytest.mark.parametrize("edit", [
    {"cells": [16, 8]}, {"cells": [0, 4]}, {"grid": [1, 32]}, {"eps": 0.0}, {"eps": 3.0},
    {"cells": None}, {"eps": None}, {"alphas": [0.1]}, {"alphas": [0.0, 0.1]}, {"alphas": [0.2, 0.2]},
], ids=lambda e: "-".join(f"{k}={v}" for k, v in e.items()))
def test_model_with_inconsistent_tables_is_refused(tmp_path: Path, samplers: dict, edit: dict) -> None:
    """A file whose metadata does not match its tables (or makes no density) is corrupt: a
    cell grid that does not fit the map would sample cells without pixels (measured pdf
    integrals 0.44-0.85), eps <= 0 drops the defensive term, bad roughness values divide by 0."""
    import json

    s = samplers["one_hot"]
    path = tmp_path / "m.npz"
    save_product_model(s.model, path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes().decode())
    if "alphas" in edit:
        arrays["alphas"] = np.array(edit["alphas"], np.float64)
    else:
        meta.update(edit)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(TracerError, match="corrupt"):
        load_product_model(path, s.env)


def test_converge_refuses_one_model_file_for_flow_and_product(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tracer.cli import main

    rc = main(["converge", str(ROOT / "scenes" / "spheres.toml"), "--samplers", "mis-flow,mis-product",
               "--flow-model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "c")])
    assert rc == 2
    assert "both flow and product" in capsys.readouterr().err


def test_host_conditions_on_the_cpu_and_device_tables_agree(samplers: dict) -> None:
    """The per-material blend (roughness blocks) is computed once per scene arrays and gives
    the same densities as a fresh sampler."""
    s = samplers["constant"]
    d = np.random.default_rng(7).normal(size=(1000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    c = condition("ggx0.4-oblique", 1000)
    a = s.pdf(d, c)
    fresh = ProductSampler(s.env, s.model)
    np.testing.assert_array_equal(fresh.pdf(d, c), a)


@pytest.mark.parametrize("map_name", ["real", "odd", "odd-cells", "odd-cosine"])
def test_grouped_kernels_equal_the_per_entry_kernels(samplers: dict, map_name: str) -> None:
    """On the CPU the product sampler runs in groups (its ``square_group`` and
    ``square_pdf_group``: the conditions' arithmetic across the group, then each step of the
    draw, the searches a level at a time, then the reads); the numbers are the per-entry
    ``sample_at`` / ``pdf_at``'s (what the GPU runs), bit for bit. A queue of sparse paths with
    diffuse, conductor (tabulated roughnesses, between them and beyond them) and dielectric
    materials, normals facing away from wo, conductors whose wo is zero (no mirror direction),
    uniforms on the defensive split and at 0 and just below 1, and 5001 entries: a short last
    group and task. Maps: a real one; 24 x 19 with dark rows (cells of one and two pixel rows,
    304 cells: a short last block of the head's guided search); 24 x 40 with 5 x 7 cells of
    4-5 rows and 5-6 columns (the tail's searches over the tables' padded width, 35 cells);
    the same without conductor tables."""
    from tracer import kernels
    from tracer.backend import CPU
    from tracer.bsdf import DIELECTRIC
    from tracer.light_dispatch import has_square, has_square_pdf

    if map_name == "real":
        s = samplers[map_name]
    else:
        w = 19 if map_name == "odd" else 40
        img = (np.random.default_rng(5).random((24, w, 3)) ** 4).astype(np.float32)
        img[3:6] = 0.0
        img[:, 7] = 0.0
        env = EnvMap(img, name=map_name)
        opts = {"odd": {}, "odd-cells": {"cells": (5, 7)}, "odd-cosine": {"cells": (5, 7), "alphas": ()}}
        s = ProductSampler(env, build_product_model(env, **opts[map_name]))
    s.env.rot_u = 0.3
    try:
        rng = np.random.default_rng(7)
        n, paths = 5001, 9000
        base, _ = random_conditions(paths, seed=3, alphas=(0.05, 0.12, 0.5, 0.9))
        kinds = np.append(base.mat_kind, DIELECTRIC)
        prm = np.vstack([base.mat_prm, base.mat_prm[:1]])
        mat = rng.integers(0, len(kinds), paths)
        nrm = base.normal * np.where(rng.random(paths) < 0.3, -1.0, 1.0)[:, None]
        wo = base.wo.copy()
        wo[::97] = 0.0  # no mirror direction: the map term alone for a conductor
        idx = np.sort(rng.choice(paths, n, replace=False)).astype(INDEX)
        cond = Condition(idx, nrm, wo, mat, kinds, prm)
        t = s.queue_tables(cond, CPU)
        assert has_square(t) and has_square_pdf(t)  # the CPU takes the grouped kernels
        u = rng.random((n, 2))
        u[:40, 0] = s.tables.eps[0] * rng.integers(0, 2, 40)  # on the defensive term's edge
        u[40:80] = rng.integers(0, 2, (40, 2)) * (1.0 - 2.0 ** -53)  # 0 and just below 1
        want = np.empty((n, 3)), np.empty(n), np.empty((n, 3))
        kernels.light_sample(t, s.env.rgb, s.env.rot_u, u, *want)
        got = s.sample(u, cond)
        for g, w in zip(got, want, strict=True):
            assert np.array_equal(g, w)
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        d[:n // 2] = got.wi[:n // 2]
        want_p = np.empty(n)
        kernels.light_pdf(t, s.env.rot_u, d, want_p)
        got_p = s.pdf(d, cond)
        assert np.array_equal(got_p, want_p)
    finally:
        s.env.rot_u = 0.0


@njit
def _stretch(t, rows: np.ndarray, cells: np.ndarray, x: np.ndarray, out: np.ndarray) -> None:
    for k in range(rows.shape[0]):
        out[k] = tail_cell(t, rows[k], cells[k], x[k])[2]


def test_the_cells_uniform_is_stretched_by_the_cells_exact_probability(samplers: dict) -> None:
    # the uniform that found a cell of the head's float32 CDF is stretched back to [0, 1)
    # by the cell's exact probability (the float32 entries' difference in double precision,
    # the head_p the density reads), so that the tail inside the cell is drawn as stated
    st = samplers["real"].tables
    hc = st.head_cdf
    rng = np.random.default_rng(5)
    n = 20000
    rows = rng.integers(0, hc.shape[0], n)
    cells = rng.integers(0, hc.shape[1] - 1, n)
    c0 = hc[rows, cells].astype(np.float64)
    pc = hc[rows, cells + 1].astype(np.float64) - c0
    ok = pc > 0
    rows, cells, c0, pc = rows[ok], cells[ok], c0[ok], pc[ok]
    np.testing.assert_array_equal(pc, st.head_p[cells, rows])  # the density's own probability
    frac = rng.random(rows.shape[0])
    x = c0 + frac * pc
    out = np.empty(rows.shape[0])
    t = samplers["real"].queue_tables(condition("diffuse-up", 1), CPU)
    _stretch(t, rows, cells, x, out)
    want = np.minimum(np.maximum((x - c0) / pc, 0.0), 1.0 - 1e-16)
    assert rows.shape[0] > 1000
    np.testing.assert_array_equal(out, want)
