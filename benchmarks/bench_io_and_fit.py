"""Wall-clock figures that used to be asserts in the tests: mesh loading and the fit's time limit.

    python benchmarks/bench_io_and_fit.py [--repeats 5] [--time-limit 0.5] [--threads 1] [--json F]

Prints (median and best of ``--repeats`` runs, after one warm-up):

* the load time of a 100k-triangle binary little-endian PLY with per-vertex normals (the
  all-triangles fast path of :func:`tracer.meshio.load_mesh`); tests/test_meshio.py checks the
  same file loads exactly, and used to require < 0.5 s;
* the load time of a 50k-face binary PLY of alternating triangles and quads (the
  mixed-polygon path, fan triangulation); the test used to require < 2 s;
* how long :func:`flows.train.fit_flow` with ``time_limit_s`` really runs on an 8 x 8 uniform
  density (the small spline flow of tests/test_flows_train.py) and how many steps it makes:
  the overshoot past the limit is one optimisation step plus the final evaluation and grid KL.
  The test used to require < 5 s for a 0.5 s limit; it now checks the limit on a fake clock.
  Torch runs on ``--threads`` intra-op threads (1, as the flow tests do: on a busy 2-core
  machine two OpenMP threads can make a small-batch step 20x slower).

Timing lives here, not in the tests, because a loaded machine makes any wall-clock bound flaky.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracer.meshio import Mesh, load_mesh, save_ply


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(median, best) wall time of ``fn`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def triangle_ply(folder: Path, n: int = 100_000) -> Path:
    """The file of tests/test_meshio.py::test_large_binary_ply."""
    rng = np.random.default_rng(0)
    mesh = Mesh(
        vertices=rng.random((n // 2 + 2, 3)),
        faces=rng.integers(0, n // 2 + 2, size=(n, 3)),
        normals=rng.random((n // 2 + 2, 3)),
    )
    p = folder / "big.ply"
    save_ply(p, mesh)
    return p


def mixed_ply(folder: Path, n: int = 50_000) -> Path:
    """The file of tests/test_meshio.py::test_large_mixed_polygon_ply."""
    header = (
        "ply\nformat binary_little_endian 1.0\nelement vertex 8\nproperty float x\n"
        "property float y\nproperty float z\nelement face "
        f"{n}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode()
    verts = np.arange(24, dtype="<f4").tobytes()
    tri = bytes([3]) + np.array([0, 1, 2], "<i4").tobytes()
    quad = bytes([4]) + np.array([4, 5, 6, 7], "<i4").tobytes()
    p = folder / "mixed.ply"
    p.write_bytes(header + verts + (tri + quad) * (n // 2))
    return p


def fit_with_time_limit(limit: float, repeats: int) -> list[dict[str, float]]:
    """Wall time and steps of fit_flow with ``time_limit_s=limit`` (the test's configuration)."""
    from flows.model import FlowConfig
    from flows.train import fit_flow

    config = FlowConfig(n_layers=4, n_bins=8, hidden=16, depth=1, encoding_size=16,
                        n_pixel_components=0)
    d = np.ones((8, 8))
    fit_flow(d, config, max_steps=5, batch_size=128)  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = fit_flow(d, config, max_steps=10**6, batch_size=128, patience=10**6,
                     time_limit_s=limit)
        out.append({"wall_s": time.perf_counter() - t0, "fit_s": r.seconds, "steps": r.steps})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--time-limit", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1, help="Torch intra-op threads")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, path in (("ply_100k_triangles", triangle_ply(folder)),
                           ("ply_50k_mixed_polygons", mixed_ply(folder))):
            med, best = timed(lambda p=path: load_mesh(p), args.repeats)
            results[name] = {"median_s": med, "best_s": best}
            print(f"{name:26s} load: median {med * 1e3:8.1f} ms, best {best * 1e3:8.1f} ms")

    fits = fit_with_time_limit(args.time_limit, args.repeats)
    results["fit_flow_time_limit"] = {"limit_s": args.time_limit, "runs": fits}
    walls = [f["wall_s"] for f in fits]
    steps = [f["steps"] for f in fits]
    fit_s = [f["fit_s"] for f in fits]
    print(f"fit_flow(time_limit_s={args.time_limit:g}, {args.threads} thread(s)): optimisation "
          f"median {statistics.median(fit_s):.3f} s (max {max(fit_s):.3f} s), with the final "
          f"grid KL median {statistics.median(walls):.3f} s (max {max(walls):.3f} s); "
          f"steps median {statistics.median(steps):.0f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
