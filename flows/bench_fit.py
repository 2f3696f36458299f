"""Fit a flow to each bundled environment map and benchmark it: ``python -m flows.bench_fit``.

For each map (``shared/envmaps/*.exr`` beside the repository) the target density is the
luminance :math:`0.2126 R + 0.7152 G + 0.0722 B` times :math:`\\sin\\theta` of the pixel-centre
row, :math:`\\theta = \\pi (i + 1/2) / H` (the lat-long Jacobian, see ``tracer.sphere_map``).
The script fits it with :func:`flows.train.fit_flow`, reports the fit time, the parameter count
and KL(target || flow) on the 500 x 500 grid, then scripts the model and measures ``sample``
and ``log_prob`` throughput (best of several timed calls, no autograd) at several batch sizes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flows.export import content_hash, save_flow
from flows.model import FlowConfig
from flows.train import fit_flow

ENVMAPS = Path(__file__).resolve().parents[2] / "shared" / "envmaps"
MAPS = ("courtyard", "forest", "interior", "studio", "sunset")
SIZES = (4096, 65536, 262144)


def load_rgb(path: Path) -> np.ndarray:
    """The RGB pixels (H, W, 3) of an EXR file as float64."""
    import OpenEXR  # imported here: only this script needs it

    with OpenEXR.File(str(path)) as f:
        pixels = np.asarray(f.parts[0].channels["RGB"].pixels)
    return pixels.astype(np.float64)


def envmap_density(rgb: np.ndarray) -> np.ndarray:
    """Luminance times sin(theta) of the pixel-centre row, (H, W); not normalised."""
    h = rgb.shape[0]
    lum = 0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]
    theta = np.pi * (np.arange(h) + 0.5) / h
    return lum * np.sin(theta)[:, None]


def throughput(fn: Callable[[], Any], batch: int, min_seconds: float = 1.0) -> float:
    """Items per second of ``fn`` (one call handles ``batch``): best of repeated calls."""
    with torch.no_grad():
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


def _fmt_rate(r: float) -> str:
    return f"{r / 1e6:.2f}M" if r >= 1e6 else f"{r / 1e3:.0f}k"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m flows.bench_fit", description=__doc__)
    ap.add_argument("--envmaps", type=Path, default=ENVMAPS, help="folder of the EXR maps")
    ap.add_argument("--maps", default=",".join(MAPS), help="comma-separated map names")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    ap.add_argument("--config", default="{}", help="FlowConfig overrides as JSON")
    ap.add_argument("--max-steps", type=int, default=None, help="fit_flow max_steps")
    ap.add_argument(
        "--time-limit", type=float, default=115.0, help="fit_flow time_limit_s (0: none)"
    )
    ap.add_argument("--batch-size", type=int, default=None, help="fit_flow batch_size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)), help="benchmark batch sizes")
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds (best is kept)")
    ap.add_argument("--save", type=Path, default=None, help="write <map>.flow.pt files here")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--progress", action="store_true", help="show a progress bar per fit")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    config = FlowConfig(**{**FlowConfig().to_dict(), **json.loads(args.config)})
    sizes = [int(s) for s in args.sizes.split(",") if s]
    fit_kw: dict[str, Any] = {"seed": args.seed, "progress": args.progress}
    for key, value in (
        ("max_steps", args.max_steps),
        ("time_limit_s", args.time_limit or None),
        ("batch_size", args.batch_size),
    ):
        if value is not None:
            fit_kw[key] = value
    print(f"config: {json.dumps(config.to_dict())}")
    print(f"fit: {json.dumps(fit_kw)}; torch {torch.__version__}, {args.threads} threads")

    rows: list[dict[str, Any]] = []
    for name in [m for m in args.maps.split(",") if m]:
        path = args.envmaps / f"{name}.exr"
        if not path.exists():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
        rgb = load_rgb(path)
        density = envmap_density(rgb)
        cpu0 = time.process_time()
        result = fit_flow(density, config, **fit_kw)
        cpu = time.process_time() - cpu0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(result.model)
        row: dict[str, Any] = {
            "map": name,
            "fit_s": result.seconds,
            "fit_cpu_s": cpu,
            "steps": result.steps,
            "params": result.model.count_parameters(),
            "kl": result.kl,
        }
        gen = torch.Generator().manual_seed(0)
        inputs = {n: torch.rand(n, 2, generator=gen) for n in sizes}
        # Interleaved rounds, best of all: robust against other load on a shared machine.
        for _ in range(args.rounds):
            for n, u in inputs.items():
                for key, fn in (
                    (f"sample_{n}", lambda m=scripted, u=u: m.sample(u)),
                    (f"log_prob_{n}", lambda m=scripted, u=u: m.log_prob(u)),
                ):
                    row[key] = max(row.get(key, 0.0), throughput(fn, n, min_seconds=0.5))
        rows.append(row)
        print(
            f"  {name}: {result.seconds:.1f} s ({cpu:.0f} s CPU), {result.steps} steps, "
            f"KL {result.kl:.4f}",
            flush=True,
        )
        if args.save is not None:
            args.save.mkdir(parents=True, exist_ok=True)
            save_flow(
                result.model,
                args.save / f"{name}.flow.pt",
                {"map": path.name, "map_hash": content_hash(rgb), "kl": result.kl},
            )

    head = ["map", "fit s", "steps", "params", "KL nats"]
    head += [f"sample/s @{n}" for n in sizes] + [f"log_prob/s @{n}" for n in sizes]
    table = [head]
    for r in rows:
        line = [r["map"], f"{r['fit_s']:.1f}", str(r["steps"]), str(r["params"]), f"{r['kl']:.4f}"]
        line += [_fmt_rate(r[f"sample_{n}"]) for n in sizes]
        line += [_fmt_rate(r[f"log_prob_{n}"]) for n in sizes]
        table.append(line)
    widths = [max(len(t[i]) for t in table) for i in range(len(head))]
    print()
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in table[1:]:
        print("| " + " | ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps({"config": config.to_dict(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
