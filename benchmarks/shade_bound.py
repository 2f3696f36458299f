"""What vector code buys the shading: the render's shading of a rough conductor as scalar
code and as the vector code the render runs (:mod:`tracer.shade_vector`), against a plain
branch-free loop over struct-of-arrays queues, scalar and vector.

    python benchmarks/shade_bound.py [--n 65536] [--repeats 9]

It prints, one thread, ns a shading point of the knot's gold (GGX, alpha 0.1), with the
packed and scalar double (or single) arithmetic counted in each machine code:

- ``render shade_columns, scalar`` / ``render shade_conductor (vector)``: the render's own
  maths (:func:`tracer.stages.shade_columns` over a block's conductor columns, the material a
  constant), compiled here with LLVM's default options, and the render's function, compiled
  with the alias-check limits raised and the width forced to ``shade_vector.LANES``. Blocks
  of the kernel's size, past the roulette's first depth, no shadow-ray roulette, the numbers
  given. The two outputs are checked to be the same bit for bit. Left out: the kernel's
  gathers, hashed numbers and scatters.
- ``loop float64``: :func:`conductor_loop`, the same maths written without branches, as
  Numba compiles it. LLVM leaves it scalar: with its 20-odd arrays the loop needs more
  run-time alias checks than LLVM's limits allow ("loop not vectorized: too many memory
  checks needed");
- ``loop float64, checks raised`` / ``loop float32 fastmath, checks raised``: the same in a
  child process that raises those limits (``llvmlite.binding.set_option``:
  ``-runtime-memory-check-threshold``, ``-vectorize-memory-check-threshold``,
  ``-memory-check-merge-threshold``), where LLVM compiles it to AVX2 code. The float64
  vector code's outputs are checked to be the scalar code's bit for bit, the float32 code's
  to agree with them to 1e-3 (fastmath and single precision together).

The loop (:func:`conductor_loop`) computes what the render's maths computes for the gold:
the frame from the shading normal, the next-event term with the light sample (eval, pdf,
power-heuristic weight), a direction by the visible normals (spherical caps), its weight
and pdf, and the throughput's roulette. Its BSDF values are checked against
``tracer.bsdf.eval_batch`` / ``sample_batch``. It is a bound: it leaves out the shadow-ray
roulette, the origin's offset and the other materials' branches.
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: LLVM's limits on run-time alias checks, raised in the child process
RAISED = ("-runtime-memory-check-threshold=512", "-vectorize-memory-check-threshold=4096",
          "-memory-check-merge-threshold=4096")
ALPHA = 0.1
F0 = (1.0, 0.78, 0.34)
PACKED = r"\bv(?:mul|add|sub|div|sqrt|fn?m(?:add|sub)\d{{3}})p{}\b"
SCALAR = r"\bv(?:mul|add|sub|div|sqrt|fn?m(?:add|sub)\d{{3}})s{}\b"


def make_loop(dt, fastmath: bool):
    """The conductor's shading over struct-of-arrays inputs in precision ``dt``."""
    import numpy as np
    from numba import njit

    from tracer.trig import sincos_pi

    one, zero, two, eps, cap = dt(1.0), dt(0.0), dt(2.0), dt(1e-9), dt(0.95)
    inv_pi = dt(1.0 / math.pi)
    single = dt is np.float32

    @njit(fastmath=fastmath, error_model="numpy")
    def sincos(x):
        if single:
            s, c = sincos_pi(np.float64(x))
            return dt(s), dt(c)
        return sincos_pi(x)

    @njit(fastmath=fastmath, error_model="numpy")
    def conductor_loop(n, wo, wi, lpdf, le, beta, u, alpha, f0r, f0g, f0b,
                       nee, d_out, b_out, p_out, alive):
        a2 = alpha * alpha
        for k in range(n.shape[1]):
            # the shading frame (Duff et al. 2017) and both directions in it
            nx, ny, nz = n[0, k], n[1, k], n[2, k]
            sign = one if nz >= zero else -one
            a = -one / (sign + nz)
            b = nx * ny * a
            tx, ty, tz = one + sign * nx * nx * a, sign * b, -sign * nx
            bx, by, bz = b, sign + ny * ny * a, -ny
            ox, oy, oz = wo[0, k], wo[1, k], wo[2, k]
            lox, loy, loz = ox * tx + oy * ty + oz * tz, ox * bx + oy * by + oz * bz, ox * nx + oy * ny + oz * nz
            ix, iy, iz = wi[0, k], wi[1, k], wi[2, k]
            lix, liy, liz = ix * tx + iy * ty + iz * tz, ix * bx + iy * by + iz * bz, ix * nx + iy * ny + iz * nz
            # next-event estimation: D G2 F / (4 c_o) at the light sample, its pdf, the
            # power heuristic's weight over the light's pdf
            hx, hy, hz = lox + lix, loy + liy, loz + liz
            ih = one / math.sqrt(hx * hx + hy * hy + hz * hz)
            t = hz * ih * hz * ih * (a2 - one) + one
            d = a2 * inv_pi / (t * t)
            ao = math.sqrt(loz * loz + a2 * (one - loz * loz))
            ai = math.sqrt(liz * liz + a2 * (one - liz * liz))
            common = d * liz / (two * (liz * ao + loz * ai))
            bp = d / (two * (loz + ao))
            m = one - max(zero, min(one, (lix * hx + liy * hy + liz * hz) * ih))
            m5 = m * m * m * m * m
            lp = lpdf[k]
            w = common * lp / (lp * lp + bp * bp) if (loz > zero and liz > zero and lp > zero) else zero
            nee[0, k] = beta[0, k] * (f0r + (one - f0r) * m5) * le[0, k] * w
            nee[1, k] = beta[1, k] * (f0g + (one - f0g) * m5) * le[1, k] * w
            nee[2, k] = beta[2, k] * (f0b + (one - f0b) * m5) * le[2, k] * w
            # a visible normal by spherical caps, the reflected direction, its weight and pdf
            vx, vy, vz = alpha * lox, alpha * loy, loz
            iv = one / math.sqrt(vx * vx + vy * vy + vz * vz)
            vx, vy, vz = vx * iv, vy * iv, vz * iv
            z = (one - u[1, k]) * (one + vz) - vz
            st = math.sqrt(max(zero, one - z * z))
            sp, cp = sincos(two * u[2, k])
            mx, my, mz = alpha * (st * cp + vx), alpha * (st * sp + vy), max(eps, z + vz)
            im = one / math.sqrt(mx * mx + my * my + mz * mz)
            mx, my, mz = mx * im, my * im, mz * im
            dot = lox * mx + loy * my + loz * mz
            wx, wy, wz = -lox + two * dot * mx, -loy + two * dot * my, -loz + two * dot * mz
            a_i = math.sqrt(wz * wz + a2 * (one - wz * wz))
            g = wz * (loz + ao) / (wz * ao + loz * a_i)
            t2 = mz * mz * (a2 - one) + one
            p_out[k] = a2 * inv_pi / (t2 * t2) / (two * (loz + ao))
            m = one - max(zero, min(one, dot))
            m5 = m * m * m * m * m
            b0 = beta[0, k] * (f0r + (one - f0r) * m5) * g
            b1 = beta[1, k] * (f0g + (one - f0g) * m5) * g
            b2 = beta[2, k] * (f0b + (one - f0b) * m5) * g
            gx, gy, gz = wx * tx + wy * bx + wz * nx, wx * ty + wy * by + wz * ny, wx * tz + wy * bz + wz * nz
            ig = one / math.sqrt(gx * gx + gy * gy + gz * gz)
            d_out[0, k], d_out[1, k], d_out[2, k] = gx * ig, gy * ig, gz * ig
            # Russian roulette on the throughput, capped
            c = min(max(b0, max(b1, b2)), cap)
            alive[k] = wz > zero and dot > zero and u[0, k] < c
            ic = one / c
            b_out[0, k], b_out[1, k], b_out[2, k] = b0 * ic, b1 * ic, b2 * ic

    return conductor_loop


def inputs(n: int, dt, normal_z: bool = False) -> dict:
    """Shading points of a gold conductor, one array per quantity: normals (or +z), outgoing
    directions on the normal's side, light directions and pdfs, radiance, throughput, numbers."""
    import numpy as np

    rng = np.random.default_rng(0)

    def unit(m: int) -> np.ndarray:
        d = rng.normal(size=(3, m))
        return d / np.linalg.norm(d, axis=0)

    nrm = np.tile([[0.0], [0.0], [1.0]], n) if normal_z else unit(n)
    wo = unit(n)
    wo *= np.sign((wo * nrm).sum(0))
    a = {"n": nrm, "wo": wo, "wi": unit(n), "lpdf": rng.random(n), "le": rng.random((3, n)),
         "beta": rng.random((3, n)), "u": rng.random((3, n))}
    return {k: np.ascontiguousarray(v.astype(dt)) for k, v in a.items()}


def run_loop(dt, fastmath: bool, n: int, repeats: int) -> tuple[float, int, int, dict]:
    """ns a point of the loop, its packed and scalar arithmetic, and its outputs."""
    import numpy as np

    f = make_loop(dt, fastmath)
    a = inputs(n, dt)
    out = {"nee": np.empty((3, n), dt), "d": np.empty((3, n), dt), "b": np.empty((3, n), dt),
           "p": np.empty(n, dt), "alive": np.empty(n, np.bool_)}
    args = (a["n"], a["wo"], a["wi"], a["lpdf"], a["le"], a["beta"], a["u"], dt(ALPHA), *map(dt, F0),
            *out.values())
    f(*args)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - t0)
    asm = f.inspect_asm(f.signatures[0])
    s = "s" if dt is np.float32 else "d"
    return (statistics.median(times) / n * 1e9, len(re.findall(PACKED.format(s), asm)),
            len(re.findall(SCALAR.format(s), asm)), out)


def check_loop() -> None:
    """The loop's BSDF against tracer.bsdf's (normals +z, so that the frame is the local one)."""
    import numpy as np

    from tracer.bsdf import CONDUCTOR, N_PARAMS, eval_batch, sample_batch

    n = 2000
    f = make_loop(np.float64, False)
    a = inputs(n, np.float64, normal_z=True)
    out = [np.empty((3, n)), np.empty((3, n)), np.empty((3, n)), np.empty(n), np.empty(n, np.bool_)]
    a["beta"][:] = 1.0
    a["le"][:] = 1.0
    a["u"][0] = 0.0  # every path survives the roulette: the weights are the BSDF's
    f(a["n"], a["wo"], a["wi"], a["lpdf"], a["le"], a["beta"], a["u"], ALPHA, *F0, *out)
    prm = np.zeros(N_PARAMS)
    prm[:3], prm[3] = F0, ALPHA
    for k in range(0, n, 97):
        wo = a["wo"][:, k]
        e = eval_batch(CONDUCTOR, prm, wo, a["wi"][:, k][None])[0]
        lp = a["lpdf"][k]
        want = e[:3] * lp / (lp * lp + e[3] ** 2) if e[3] > 0 else np.zeros(3)
        np.testing.assert_allclose(out[0][:, k], want, rtol=1e-9, atol=1e-300)
        s = sample_batch(CONDUCTOR, prm, wo, np.array([[0.0, a["u"][1, k], a["u"][2, k]]]))[0]
        if s[8]:
            np.testing.assert_allclose(out[1][:, k], s[:3] / np.linalg.norm(s[:3]), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(out[3][k], s[6], rtol=1e-9)
            c = min(max(s[3:6]), 0.95)
            np.testing.assert_allclose(out[2][:, k] * c, s[3:6], rtol=1e-9)


def per_material(n: int, repeats: int, vector: bool) -> tuple:
    """ns a point of the render's shading of the conductor, as the render runs it: a block's
    conductor columns through :func:`tracer.stages.shade_columns`, either the render's own
    vector code (:func:`tracer.shade_vector.shade_conductor`) or the same function compiled
    here with LLVM's default options (scalar code); over blocks of the kernel's size (rows
    padded as the kernel pads them), past the roulette's depth, without the shadow-ray
    roulette, the numbers given (not hashed). Returns the time, the packed and scalar
    arithmetic and the scratches after the run."""
    import numpy as np
    from numba import njit

    from tracer import kernels as K
    from tracer.bsdf import CONDUCTOR, N_PARAMS
    from tracer.integrator import RR_CAP, RR_DEPTH
    from tracer.shade_vector import SIGNATURE, shade_conductor, vectorising
    from tracer.stages import S_U, SHADE_F, SHADE_I, shade_columns, shade_gather_at

    def compile_here():
        @njit(SIGNATURE, error_model="numpy")
        def fn(j0, j1, sf, depth, mode, power, rr_depth, rr_cap, rr_shadow):
            shade_columns(CONDUCTOR, j0, j1, sf, depth, mode, power, rr_depth, rr_cap, rr_shadow)

        return fn

    cols, width = K.SHADE_BLOCK, K.SHADE_ROW
    if vector:
        fn = shade_conductor
        with vectorising():  # the render's is from Numba's cache: count a fresh compilation's
            counted = compile_here()
    else:
        fn = counted = compile_here()

    @njit
    def blocks(sf, depth, mode, power, rr_depth, rr_cap, rr_shadow):
        for t in range(sf.shape[0]):
            fn(0, cols, sf[t], depth, mode, power, rr_depth, rr_cap, rr_shadow)

    @njit
    def gather(sf, si, idx, key_of, pos, ng, ns, mat, kinds, prm, wi, lpdf, le, rd, beta, eta):
        for k in range(idx.shape[0]):
            shade_gather_at(k, k, sf, si, K.MIS, idx, key_of, pos, ng, ns, mat, kinds, prm, wi,
                            lpdf, le, rd, beta, eta)

    assert n % cols == 0, f"--n must be a multiple of {cols}"
    a = inputs(n, np.float64)
    rows = {k: np.ascontiguousarray(v.T) for k, v in a.items() if v.ndim == 2}
    prm = np.zeros((1, N_PARAMS))
    prm[0, :3], prm[0, 3] = F0, ALPHA
    flat = np.zeros((SHADE_F, n))
    gather(flat, np.zeros((SHADE_I, n), np.int64), np.arange(n), np.zeros(n, np.int64),
           np.random.default_rng(1).normal(size=(n, 3)), rows["n"],
           rows["n"], np.zeros(n, np.int64), np.array([CONDUCTOR]), prm, rows["wi"], a["lpdf"],
           rows["le"], -rows["wo"], rows["beta"], np.ones(n))
    flat[S_U] = 0.0
    flat[S_U + 1:S_U + 5] = np.random.default_rng(2).random((4, n))
    tasks = n // cols
    sf = np.zeros((tasks, SHADE_F, width))
    sf[:, :, :cols] = flat.reshape(SHADE_F, tasks, cols).transpose(1, 0, 2)
    args = (RR_DEPTH, K.MIS, 2.0, RR_DEPTH, RR_CAP, 0.0)
    blocks(sf.copy(), *args)
    times = []
    for _ in range(repeats):
        s = sf.copy()
        t0 = time.perf_counter()
        blocks(s, *args)
        times.append(time.perf_counter() - t0)
    asm = counted.inspect_asm(counted.signatures[0])
    return (statistics.median(times) / n * 1e9, len(re.findall(PACKED.format("d"), asm)),
            len(re.findall(SCALAR.format("d"), asm)), s[:, :, :cols])


def child(n: int, repeats: int, scalar_out: str) -> None:
    """This process with LLVM's alias-check limits raised: the loop in both precisions, its
    outputs against the scalar code's (``scalar_out``, the parent's)."""
    import llvmlite.binding as llvm
    import numpy as np

    for option in RAISED:
        llvm.set_option("", option)
    want = np.load(scalar_out)
    for label, dt, fm in (("loop float64, checks raised", np.float64, False),
                          ("loop float32 fastmath, checks raised", np.float32, True)):
        ns, packed, scalar, out = run_loop(dt, fm, n, repeats)
        for name, got in out.items():
            if dt is np.float64:  # the same IEEE operations, lane by lane
                assert np.array_equal(got, want[name]), f"{label}: {name} differs from the scalar code's"
            else:
                close = np.isclose(got.astype(np.float64), want[name], rtol=1e-3, atol=1e-6)
                assert close.mean() > 0.999, f"{label}: {name} agrees in {close.mean():.4%} of points"
        print(f"  {label:<38}{ns:8.1f}{packed:8d}{scalar:8d}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1 << 16)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from numba import set_num_threads

    set_num_threads(1)
    if args.child:
        child(args.n, args.repeats, args.child)
        return
    import tempfile

    import numpy as np

    check_loop()
    print(f"a gold conductor's shading, {args.n} points, one thread")
    print(f"  {'':<38}{'ns':>8}{'packed':>8}{'scalar':>8}")
    ns, packed, scalar, want = per_material(args.n, args.repeats, vector=False)
    print(f"  {'render shade_columns, scalar':<38}{ns:8.1f}{packed:8d}{scalar:8d}", flush=True)
    ns, packed, scalar, got = per_material(args.n, args.repeats, vector=True)
    assert np.array_equal(got, want), "the render's vector code: not the scalar code's numbers"
    print(f"  {'render shade_conductor (vector)':<38}{ns:8.1f}{packed:8d}{scalar:8d}", flush=True)
    ns, packed, scalar, out = run_loop(np.float64, False, args.n, args.repeats)
    print(f"  {'loop float64':<38}{ns:8.1f}{packed:8d}{scalar:8d}", flush=True)
    # a fresh process: LLVM's options are global, and no cache, so that they compile anew
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "scalar.npz")
        np.savez(path, **out)
        subprocess.run([sys.executable, __file__, "--child", path, "--n", str(args.n),
                        "--repeats", str(args.repeats)], check=True)


if __name__ == "__main__":
    main()
