"""Fit flows to environment maps and measure them: fit time, size, KL, throughput.

    python benchmarks/bench_flow_fit.py [--model pixel|spline] [--config JSON] [--maps a,b]
                                        [--threads 2] [--sizes 4096,65536,262144] [--json F]
    python benchmarks/bench_flow_fit.py --resolution-floor

For each map (the five in ../shared/envmaps, else the bundled ones) the target is the
renderer's own sampling density (luminance times sin(theta), ``EnvMap.sampling_density``).
The script fits a flow with :func:`flows.train.fit_flow`, then prints the fit time, the
parameter count, the size of the saved TorchScript file, KL(target || flow) on the 500 x 500
grid, and ``sample`` / ``log_prob`` throughput of the scripted module at several batch sizes
(best of interleaved rounds, no autograd). ``--inference`` adds the throughput of the same
module frozen with ``torch.jit.freeze`` and ``torch.jit.optimize_for_inference``, and at one
thread.

``--resolution-floor`` fits nothing: it prints the KL that a perfect model would still pay
if it could not resolve single pixels (pairs of pixels averaged in u, in v, 2x2 and 4x4
blocks), and the KL of low-rank approximations of the log-density, which is what a
conditioner of a given width can express.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flows.model import FlowConfig
from flows.pixel_flow import PixelFlowConfig
from flows.train import fit_flow, kl_divergence, normalize_density
from tracer.envmap import load_envmap
from tracer.scene import EnvSpec

SIZES = (4096, 65536, 262144)


def map_paths(names: str | None) -> list[Path]:
    """The maps to measure: names in the shared folder, files, or every shared map."""
    shared = ROOT.parent / "shared" / "envmaps"
    folder = shared if shared.is_dir() else ROOT / "scenes" / "envmaps"
    if not names:
        return sorted(folder.glob("*.exr"))
    out = []
    for n in names.split(","):
        p = Path(n)
        out.append(p if p.suffix else folder / f"{n}.exr")
    return out


def throughput(fn: Callable[[], Any], batch: int, min_seconds: float = 0.5) -> float:
    """Items per second of ``fn`` (one call handles ``batch``): best of repeated calls."""
    with torch.inference_mode():
        fn()
        fn()
        best = float("inf")
        total = 0.0
        calls = 0
        while total < min_seconds or calls < 3:
            t = time.perf_counter()
            fn()
            dt = time.perf_counter() - t
            best = min(best, dt)
            total += dt
            calls += 1
    return batch / best


def module_rates(module: Any, sizes: list[int], rounds: int, prefix: str = "") -> dict[str, float]:
    """``sample`` and ``log_prob`` rates at each batch size, best of interleaved rounds."""
    gen = torch.Generator().manual_seed(0)
    inputs = {n: torch.rand(n, 2, generator=gen) for n in sizes}
    out: dict[str, float] = {}
    for _ in range(rounds):
        for n, u in inputs.items():
            for key, fn in (
                (f"{prefix}sample_{n}", lambda u=u: module.sample(u)),
                (f"{prefix}log_prob_{n}", lambda u=u: module.log_prob(u)),
            ):
                out[key] = max(out.get(key, 0.0), throughput(fn, n))
    return out


def saved_bytes(scripted: torch.jit.ScriptModule) -> int:
    """Size of the module as ``torch.jit.save`` writes it."""
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    return buf.getbuffer().nbytes


class TableDensity(torch.nn.Module):
    """A piecewise-constant density on the square given as an (h, w) array (mean 1)."""

    def __init__(self, q: np.ndarray) -> None:
        super().__init__()
        self.q = torch.from_numpy(np.log(np.maximum(q, 1e-300)))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.q.shape
        r = (x[:, 1] * h).long().clamp(0, h - 1)
        c = (x[:, 0] * w).long().clamp(0, w - 1)
        return self.q[r, c]


def resolution_floor(paths: list[Path]) -> None:
    """KL of models that cannot resolve single pixels, and of low-rank log-densities."""
    head = ["map", "u pairs", "v pairs", "2x2", "4x4", "rank 32", "rank 64", "rank 128"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for path in paths:
        p = normalize_density(load_envmap(EnvSpec(kind="file", path=path)).sampling_density())
        h, w = p.shape
        cells = []
        for fv, fu in ((1, 2), (2, 1), (2, 2), (4, 4)):
            q = p.reshape(h // fv, fv, w // fu, fu).mean(axis=(1, 3))
            q = np.repeat(np.repeat(q, fv, axis=0), fu, axis=1)
            cells.append(kl_divergence(TableDensity(q), p))
        u, s, vt = np.linalg.svd(np.log(np.maximum(p, p.max() * 1e-12)), full_matrices=False)
        for r in (32, 64, 128):
            q = np.exp((u[:, :r] * s[:r]) @ vt[:r])
            cells.append(kl_divergence(TableDensity(q / q.mean()), p))
        print(f"| {path.stem} | " + " | ".join(f"{c:.3f}" for c in cells) + " |", flush=True)


def _fmt_rate(r: float) -> str:
    return f"{r / 1e6:.2f}M" if r >= 1e6 else f"{r / 1e3:.0f}k"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maps", help="comma-separated map names or files (default: all)")
    ap.add_argument("--model", choices=("pixel", "spline"), default="pixel")
    ap.add_argument("--config", default="{}", help="config overrides as JSON")
    ap.add_argument("--objective", choices=("auto", "exact", "samples"), default="auto")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--time-limit", type=float, default=None, help="fit_flow time_limit_s")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="benchmark batch sizes")
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds (best is kept)")
    ap.add_argument("--inference", action="store_true",
                    help="also time the frozen/optimised module, and at one thread")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--progress", action="store_true", help="show a progress bar per fit")
    ap.add_argument("--resolution-floor", action="store_true", help="no fits: the KL floor table")
    args = ap.parse_args(argv)

    paths = map_paths(args.maps)
    for path in paths:
        if not path.exists():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    torch.set_num_threads(args.threads)
    if args.resolution_floor:
        resolution_floor(paths)
        return 0
    base = PixelFlowConfig() if args.model == "pixel" else FlowConfig()
    config = type(base).from_dict({**base.to_dict(), **json.loads(args.config)})
    sizes = [int(s) for s in args.sizes.split(",") if s]
    fit_kw: dict[str, Any] = {"seed": args.seed, "progress": args.progress, "objective": args.objective}
    for key, value in (("max_steps", args.max_steps), ("time_limit_s", args.time_limit), ("lr", args.lr)):
        if value is not None:
            fit_kw[key] = value
    print(f"{args.model}: {json.dumps(config.to_dict())}")
    print(f"fit: {json.dumps(fit_kw)}; torch {torch.__version__}, {args.threads} threads")

    rows: list[dict[str, Any]] = []
    for path in paths:
        density = load_envmap(EnvSpec(kind="file", path=path)).sampling_density()
        cpu0 = time.process_time()
        result = fit_flow(density, config, **fit_kw)
        cpu = time.process_time() - cpu0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(result.model)
        row: dict[str, Any] = {
            "map": path.stem,
            "fit_s": result.seconds,
            "fit_cpu_s": cpu,
            "steps": result.steps,
            "params": result.model.count_parameters(),
            "bytes": saved_bytes(scripted),
            "kl": result.kl,
        }
        row.update(module_rates(scripted, sizes, args.rounds))
        if args.inference:
            frozen = torch.jit.optimize_for_inference(
                torch.jit.freeze(scripted.eval(), preserved_attrs=["sample", "log_prob"])
            )
            row.update(module_rates(frozen, sizes, args.rounds, prefix="frozen_"))
            torch.set_num_threads(1)
            row.update(module_rates(scripted, sizes, args.rounds, prefix="1thread_"))
            torch.set_num_threads(args.threads)
        rows.append(row)
        print(f"  {path.stem}: {result.seconds:.1f} s ({cpu:.0f} s CPU), {result.steps} steps, "
              f"KL {result.kl:.4f}", flush=True)

    variants = [""] + (["frozen_", "1thread_"] if args.inference else [])
    head = ["map", "fit s", "steps", "params", "KB", "KL nats"]
    for v in variants:
        head += [f"{v}sample/s @{n}" for n in sizes] + [f"{v}log_prob/s @{n}" for n in sizes]
    table = [head]
    for r in rows:
        line = [r["map"], f"{r['fit_s']:.1f}", str(r["steps"]), str(r["params"]),
                str(r["bytes"] // 1024), f"{r['kl']:.4f}"]
        for v in variants:
            line += [_fmt_rate(r[f"{v}sample_{n}"]) for n in sizes]
            line += [_fmt_rate(r[f"{v}log_prob_{n}"]) for n in sizes]
        table.append(line)
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    print()
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in table[1:]:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps({"model": args.model, "config": config.to_dict(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
