"""The shading stage in blocks sorted by material, as vector code (the CPU), against one entry
at a time (the GPU's schedule)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from tracer import kernels as K
from tracer import shade_vector
from tracer.bsdf import CONDUCTOR, DIELECTRIC, DIFFUSE, N_PARAMS
from tracer.integrator import RR_CAP, RR_DEPTH
from tracer.pool import INDEX, STATE
from tracer.rng import INDEPENDENT, SOBOL, path_keys
from tracer.stages import SHADE_F, SHADE_I, shade_at, shade_gather_at, shade_scatter_at


@njit(cache=True)
def shade_one_at_a_time(idx, depth, seed, sampling, key_of, mode, power, rr_depth,
                        rr_cap, rr_shadow, pos, ng, ns, mat, mat_kind, mat_prm, light_wi, light_pdf,
                        light_le, nee, ro, rd, beta, alive, prev_pdf, prev_delta, eta_scale):
    """What a GPU thread does (tracer.kernels_cuda), entry by entry in a scratch of one column."""
    sf = np.empty((SHADE_F, 1))
    si = np.empty((SHADE_I, 1), np.int64)
    for k in range(idx.shape[0]):
        shade_gather_at(k, 0, sf, si, mode, idx, key_of, pos, ng, ns, mat, mat_kind,
                        mat_prm, light_wi, light_pdf, light_le, rd, beta, eta_scale)
        shade_at(0, sf, si, depth, seed, sampling, mode, power, rr_depth, rr_cap, rr_shadow)
        shade_scatter_at(k, 0, sf, mode, nee, idx, ro, rd, beta, alive, prev_pdf, prev_delta,
                         eta_scale)


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    d = rng.normal(size=(n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


@pytest.mark.parametrize("mode", [K.MIS, K.NEE_ONLY, K.BSDF_ONLY])
@pytest.mark.parametrize("sampling", [INDEPENDENT, SOBOL])
@pytest.mark.parametrize("depth,rr_shadow", [(0, 0.0), (RR_DEPTH + 1, 2.0)])
def test_grouped_shading_equals_one_entry_at_a_time(mode: int, sampling: int, depth: int,
                                                    rr_shadow: float) -> None:
    """Bit for bit, every output (the next-event terms and the path state): a queue of 2500
    sparse paths (nine blocks and a short last one, each with runs of every material) over
    diffuse, rough and near-mirror conductors and glass, shading normals tilted off the
    geometric ones (some samples then land on the wrong side), outgoing directions on both
    sides, light samples of zero density, throughputs above and below the roulette's cap,
    paths inside glass (eta_scale != 1), with and without shadow-ray roulette."""
    rng = np.random.default_rng(11)
    paths, n = 4000, 2500
    kinds = np.array([DIFFUSE, CONDUCTOR, CONDUCTOR, DIELECTRIC, DIFFUSE], np.int64)
    prm = np.zeros((len(kinds), N_PARAMS))
    prm[:, :3] = rng.random((len(kinds), 3))
    prm[:, 3] = [0.0, 0.3, 0.02, 0.0, 0.0]
    prm[:, 4] = [0.0, 0.0, 0.0, 1.5, 0.0]
    idx = np.sort(rng.choice(paths, n, replace=False)).astype(INDEX)
    ng = unit(rng, n)
    ns = ng + 0.3 * unit(rng, n)
    ns /= np.linalg.norm(ns, axis=1, keepdims=True)
    ns *= np.sign(np.sum(ns * ng, axis=1))[:, None]
    wi = unit(rng, n)
    lpdf = rng.random(n) * (rng.random(n) > 0.1)
    state = {
        "nee": np.full((n, 3), -1.0),
        "ro": rng.normal(size=(paths, 3)), "rd": unit(rng, paths),
        "beta": rng.random((paths, 3)) * 2.0,
        "alive": np.ones(paths, np.bool_), "prev_pdf": rng.random(paths),
        "prev_delta": np.zeros(paths, np.bool_),
        "eta_scale": np.where(rng.random(paths) < 0.2, 2.25, 1.0),
    }
    # the render's types: all the state but the ray origins in float32, the ids in int32
    state = {k: v.astype(STATE) if k != "ro" and v.dtype == np.float64 else v for k, v in state.items()}
    keys = path_keys(sampling, 7, rng.integers(0, 10_000, paths), rng.integers(0, 64, paths))
    args = (idx, depth, 7, sampling, keys, mode, 2.0, RR_DEPTH, RR_CAP, rr_shadow,
            rng.normal(size=(n, 3)), ng.astype(STATE), ns.astype(STATE),
            rng.integers(0, len(kinds), n).astype(INDEX), kinds, prm, wi, lpdf,
            rng.random((n, 3)) * 5.0)
    got = {k: v.copy() for k, v in state.items()}
    want = {k: v.copy() for k, v in state.items()}
    K.shade_and_scatter(*args, *got.values())
    shade_one_at_a_time(*args, *want.values())
    for name in state:
        assert np.array_equal(got[name], want[name]), name
    # the stage did its work: next-event terms, some zero, paths ended and continued in new
    # directions; with the roulette, against the same queue without it: some terms zeroed,
    # some kept and scaled up to tau in their largest component, those above tau untouched
    if mode != K.BSDF_ONLY:
        nz = np.any(got["nee"] != 0.0, axis=1)
        assert 0 < nz.sum() < n
        assert np.all(got["nee"] >= 0.0)
        if rr_shadow > 0.0:
            plain = {k: v.copy() for k, v in state.items()}
            K.shade_and_scatter(*args[:9], 0.0, *args[10:], *plain.values())
            a, b = got["nee"], plain["nee"]
            below = (b.max(axis=1) < rr_shadow) & (b.max(axis=1) > 0.0)
            zeroed = below & (a.max(axis=1) == 0.0)
            kept = below & ~zeroed
            assert zeroed.sum() > 0 and kept.sum() > 0
            np.testing.assert_allclose(a[kept].max(axis=1), rr_shadow, rtol=1e-12)
            np.testing.assert_array_equal(a[~below], b[~below])
    assert 0 < got["alive"].sum() < paths
    assert not np.array_equal(got["rd"], state["rd"])


@pytest.mark.parametrize("name", ["shade_diffuse", "shade_conductor", "shade_dielectric"])
def test_the_shading_is_vector_code(name: str) -> None:
    """Each material's shading loop holds double arithmetic of the host's width
    (tracer.shade_vector.LANES): LLVM took the options of tracer.shade_vector (an option it
    no longer knew would be ignored without a word, and the shading would silently be scalar
    code again). Read from the optimised module, which Numba's cache keeps."""
    lanes = shade_vector.LANES
    fn = getattr(shade_vector, name)
    ir = str(fn.overloads[fn.signatures[0]].library._shared_module)
    assert f"<{lanes} x double>" in ir and f"llvm.sqrt.v{lanes}f64" in ir, f"{name} is scalar code"


def test_the_vector_width_is_the_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight lanes of doubles where the features Numba compiles with hold AVX-512, four
    otherwise: NUMBA_CPU_FEATURES when set, else the host's as Numba reports them (less AVX
    under NUMBA_ENABLE_AVX=0); and the shading's functions were compiled at that width."""
    from numba.core import codegen, config

    avx2 = "+64bit,+avx,+avx2,+fma,-avx512f"
    avx512 = "+64bit,+avx,+avx2,+fma,+avx512f,+avx512dq"
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    monkeypatch.setattr(codegen, "get_host_cpu_features", lambda: avx512)
    assert shade_vector.host_lanes() == 8
    monkeypatch.setattr(codegen, "get_host_cpu_features", lambda: avx2)
    assert shade_vector.host_lanes() == 4
    # the user's features win over the host's, both ways
    monkeypatch.setattr(config, "CPU_FEATURES", avx512)
    assert shade_vector.host_lanes() == 8
    monkeypatch.setattr(codegen, "get_host_cpu_features", lambda: avx512)
    monkeypatch.setattr(config, "CPU_FEATURES", avx2)
    assert shade_vector.host_lanes() == 4
    monkeypatch.undo()
    # NUMBA_ENABLE_AVX=0: Numba's own report of the host drops AVX, AVX-512 with it
    monkeypatch.setattr(config, "CPU_FEATURES", None)
    monkeypatch.setattr(config, "ENABLE_AVX", False)
    assert shade_vector.host_lanes() == 4
    monkeypatch.undo()
    assert shade_vector.LANES == shade_vector.host_lanes()
    assert f"-force-vector-width={shade_vector.LANES}" in shade_vector.VECTOR_OPTIONS


def test_the_vector_options_are_put_back() -> None:
    """A loop over more arrays than LLVM's default alias-check limits allow is vector code
    when compiled inside tracer.shade_vector's options and scalar code after them: the
    raised limits and the forced width did not leak into the rest of the process."""

    def many_arrays(o, i):
        # twelve outputs, each from two of twenty-four inputs: 12 x 24 run-time checks
        for x in range(o[0].shape[0]):
            o[0][x] = i[0][x] * i[1][x]
            o[1][x] = i[2][x] * i[3][x]
            o[2][x] = i[4][x] * i[5][x]
            o[3][x] = i[6][x] * i[7][x]
            o[4][x] = i[8][x] * i[9][x]
            o[5][x] = i[10][x] * i[11][x]
            o[6][x] = i[12][x] * i[13][x]
            o[7][x] = i[14][x] * i[15][x]
            o[8][x] = i[16][x] * i[17][x]
            o[9][x] = i[18][x] * i[19][x]
            o[10][x] = i[20][x] * i[21][x]
            o[11][x] = i[22][x] * i[23][x]

    outs = tuple(np.zeros(64) for _ in range(12))
    ins = tuple(np.ones(64) for _ in range(24))

    def compiled_ir() -> str:
        f = njit(error_model="numpy")(many_arrays)
        f(outs, ins)
        return f.inspect_llvm(f.signatures[0])

    with shade_vector.vectorising():
        assert f"<{shade_vector.LANES} x double>" in compiled_ir()
    assert "x double>" not in compiled_ir()
