"""The ``tracer`` command line: ``render`` (and the flow and experiment commands)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from flows.families import FAMILY_NAMES
from tracer.errors import TracerError, film_problem, output_file_problem

#: Seeds are hashed as 32-bit numbers (tracer.rng): 2**32 would render as 0 does.
SEED_LIMIT = 1 << 32


class _Parser(argparse.ArgumentParser):
    """Argument errors as one ``tracer: error: ...`` line and a hint, not a usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"tracer: error: {' '.join(message.split())}\n")
        sys.stderr.write(f"(see '{self.prog} --help')\n")
        sys.exit(2)


def _resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (e.g. 320x240), got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    problem = film_problem(w, h)
    if problem:
        raise argparse.ArgumentTypeError(f"{w}x{h} is too large: its film {problem}")
    return w, h


def _finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return v


def _positive_finite_float(text: str) -> float:
    v = _finite_float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return v


def _nonneg_finite_float(text: str) -> float:
    v = _finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return v


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _seed(text: str) -> int:
    v = _int(text)
    if not 0 <= v < SEED_LIMIT:
        raise argparse.ArgumentTypeError(
            f"must be from 0 to {SEED_LIMIT - 1} (the random numbers hash 32 bits of it), got {v}"
        )
    return v


def _output_file(text: str) -> Path:
    problem = output_file_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"{text} {problem}")
    return Path(text)


def _sampler_list(text: str) -> str:
    if not any(s.strip() for s in text.split(",")):
        raise argparse.ArgumentTypeError(f"name at least one sampler, e.g. mis,piecewise; got {text!r}")
    return text


def _positive_int(text: str) -> int:
    v = _int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {v}")
    return v


def _nonneg_int(text: str) -> int:
    v = _int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from tracer.samplers import LIGHTS, SAMPLERS, SEQUENCES, SHADOW_RR

    p = _Parser(
        prog="tracer",
        description="flowtracer: a wavefront path tracer lit by HDR environment maps.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("render", help="render a scene file to EXR + PNG + JSON log")
    r.add_argument("scene", type=Path, help="scene file (TOML, see scenes/FORMAT.md)")
    r.add_argument("--sampler", choices=SAMPLERS, help="light sampling strategy (default: the scene's)")
    r.add_argument("--light", choices=LIGHTS, default="piecewise", help="light sampler inside mis")
    r.add_argument("--heuristic", choices=("balance", "power"), default="power", help="MIS heuristic")
    r.add_argument("--compensate", action=argparse.BooleanOptionalAction, default=None,
                   help="the light density under --sampler mis: MIS-compensated (pbrt-v4; the "
                        "default) or, with --no-compensate, the plain one")
    r.add_argument("--envmap", type=Path, help="environment map (.exr/.hdr) overriding the scene's")
    r.add_argument("--env-scale", type=_positive_finite_float, help="intensity multiplier of the environment")
    r.add_argument("--env-rotation", type=_finite_float, help="rotation of the environment about +y, degrees")
    r.add_argument("--spp", type=_positive_int, help="samples per pixel")
    r.add_argument("--resolution", type=_resolution, help="WIDTHxHEIGHT")
    r.add_argument("--max-depth", type=_nonneg_int, help="maximum number of bounces")
    r.add_argument("--seed", type=_seed, help="random seed")
    r.add_argument("--sequence", choices=SEQUENCES, default="independent",
                   help="sample sequence: independent hashed numbers, or Owen-scrambled Sobol "
                        "(stratified per pixel; best at power-of-two spp)")
    r.add_argument("--shadow-rr", type=_nonneg_finite_float, default=SHADOW_RR,
                   help="shadow-ray roulette: a light sample whose contribution is below this many "
                        "times the map's mean luminance is traced with probability contribution / "
                        "threshold and weighted by its inverse (unbiased; 0 traces every shadow ray)")
    r.add_argument("--out", type=Path, help="output EXR (PNG and JSON go beside it)")
    r.add_argument("--exposure", type=_finite_float, default=0.0, help="PNG exposure in stops")
    r.add_argument("--tonemap", choices=("filmic", "srgb"), default="filmic", help="PNG tone curve")
    r.add_argument("--reference", type=Path, help="reference EXR: adds MSE and relMSE to the log")
    r.add_argument("--flow-model", type=Path, help="fitted model for --sampler flow / product or --light flow / product")
    r.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                   help="where the wavefront runs (auto: the GPU when there is one)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint beside --out (refused if it is of other settings)")
    r.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                   help="seconds between checkpoints of a long render (0: after every chunk)")
    r.add_argument("--keep-checkpoint", action="store_true",
                   help="keep the checkpoint after the render is written (to add samples later)")
    r.add_argument("--chunk-spp", type=_positive_int,
                   help="samples per pixel per chunk (default: one wavefront batch)")
    r.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="farm sample chunks to Ray workers: a local Ray, or the cluster at ADDRESS")
    f = sub.add_parser("fit-flow", help="fit a normalizing flow to an environment map")
    f.add_argument("envmap", type=Path, nargs="+", help="environment map(s) (.exr/.hdr)")
    f.add_argument("--out", type=_output_file, help="output .pt (default: the cache, renders/flows/<hash>-<model>.pt)")
    f.add_argument("--seed", type=_seed, default=0)
    f.add_argument("--model", choices=(*FAMILY_NAMES, "product"), default="pixel",
                   help="pixel: piecewise-linear flow at the map's resolution (default); "
                        "spline: rational-quadratic spline couplings; nice, realnvp, glow, maf, "
                        "iaf: the real-line families through a logistic map (README, Flow families); "
                        "product: the conditional map x BSDF x cosine tables of --sampler product")
    f.add_argument("--max-steps", type=_positive_int, help="optimisation steps at most")
    f.add_argument("--time-limit", type=float, help="stop fitting after this many seconds")
    f.add_argument("--hidden", type=_positive_int, help="conditioner width")
    f.add_argument("--layers", type=_positive_int, help="coupling layers (spline)")
    f.add_argument("--bins", type=_positive_int, help="spline bins (spline)")
    f.add_argument("--no-progress", action="store_true")
    f.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="fit the maps as Ray tasks (a local Ray, or the cluster at ADDRESS)")

    fr = sub.add_parser("flow-report", help="target vs learned density of a fitted flow, as a PNG")
    fr.add_argument("model", type=Path, help="fitted flow (.pt)")
    fr.add_argument("--envmap", type=Path, help="the map it was fitted to (default: recorded in the model)")
    fr.add_argument("--out", type=Path, help="output PNG (default: beside the model)")
    c = sub.add_parser("converge", help="error against spp and time for several samplers, with plots")
    c.add_argument("scene", type=Path)
    c.add_argument("--samplers", type=_sampler_list, default="uniform,bsdf,piecewise,mis",
                   help="comma list of --sampler names, mis-LIGHT (mis with that --light) and "
                        "mis+plain, mis-piecewise+plain, mis-alias+plain (the plain light density, "
                        "--no-compensate)")
    c.add_argument("--spp", default="1,2,4,...,256", help="sample counts, e.g. 1,2,4,...,1024")
    c.add_argument("--out", type=Path, default=Path("renders/converge"), help="output folder")
    c.add_argument("--reference", type=Path, help="reference EXR (default: render one with mis)")
    c.add_argument("--ref-spp", type=_positive_int, default=4096, help="spp of the rendered reference")
    c.add_argument("--envmap", type=Path)
    c.add_argument("--resolution", type=_resolution)
    c.add_argument("--max-depth", type=_nonneg_int)
    c.add_argument("--seed", type=_seed)
    c.add_argument("--sequence", choices=SEQUENCES, default="independent",
                   help="sample sequence of every swept sampler (the reference stays independent)")
    c.add_argument("--shadow-rr", type=_nonneg_finite_float, default=SHADOW_RR,
                   help="shadow-ray roulette's threshold of every swept sampler (render --shadow-rr; "
                        "0: off; the reference traces every shadow ray)")
    c.add_argument("--flow-model", type=Path)
    c.add_argument("--no-progress", action="store_true")
    c.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run the samplers' sweeps as Ray tasks (a local Ray, or the cluster at ADDRESS)")
    return p


def cmd_converge(args: argparse.Namespace) -> None:
    from tracer.converge import format_table, parse_spp_list, run_converge
    from tracer.job import RenderOptions
    from tracer.samplers import sweep_sampler_names

    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    valid = set(sweep_sampler_names())
    for s in samplers:
        if s not in valid:
            raise TracerError(f"unknown sampler {s!r} in --samplers; choose from {', '.join(sorted(valid))}")
    uses = {kind for kind in ("flow", "product") if any(kind in s.split("-") for s in samplers)}
    if args.flow_model is not None and len(uses) > 1:
        raise TracerError(f"--flow-model {args.flow_model} is one model file, but the sweep has both flow "
                          "and product samplers; sweep them separately")
    opts = RenderOptions(scene=args.scene, envmap=args.envmap, resolution=args.resolution,
                         max_depth=args.max_depth, seed=args.seed, flow_model=args.flow_model,
                         sequence=args.sequence, shadow_rr=args.shadow_rr)
    summary = run_converge(opts, samplers, parse_spp_list(args.spp), args.out, args.ref_spp,
                           args.reference, progress=not args.no_progress, ray=args.ray)
    print(format_table(summary))
    print(f"wrote {args.out}/metrics.csv, metrics.json, convergence.png, crops.png")


def fit_product(args: argparse.Namespace) -> None:
    """``fit-flow --model product``: tabulate each map's product model (no optimisation)."""
    from tracer.envmap import load_envmap, require_light
    from tracer.product_model import fit_product_model, product_cache_path
    from tracer.scene import EnvSpec

    ignored = [o for o, v in (("--layers", args.layers), ("--bins", args.bins), ("--hidden", args.hidden),
                              ("--max-steps", args.max_steps), ("--time-limit", args.time_limit),
                              ("--ray", args.ray)) if v is not None]
    if ignored:
        raise TracerError(f"{', '.join(ignored)}: not options of --model product (it is tabulated, not trained)")
    if args.out is not None and len(args.envmap) > 1:
        raise TracerError("--out names one model file: fit one map with it, or leave it out (the cache)")
    for path in args.envmap:
        env = load_envmap(EnvSpec(kind="file", path=path))
        require_light(env)
        out = args.out or product_cache_path(env)
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = fit_product_model(env, out, seed=args.seed)
        print(f"{path}: KL(exact product || model) = {meta['kl_product']:.4f} nats "
              f"(piecewise: {meta['kl_piecewise']:.4f}) over {meta['conditions']} conditions; "
              f"built in {meta['build_seconds']:.1f} s, {meta['table_bytes'] / 2**20:.1f} MiB of tables")
        print(f"wrote {out}")


def cmd_fit_flow(args: argparse.Namespace) -> None:
    import dataclasses
    import time

    from flows.families import family
    from tracer.envmap import load_envmap, require_light
    from tracer.samplers.flow import cache_path, fit_map_flow_bytes
    from tracer.scene import EnvSpec

    if args.model == "product":
        return fit_product(args)
    over = {k: v for k, v in (("n_layers", args.layers), ("n_bins", args.bins), ("hidden", args.hidden)) if v}

    def fields(name: str) -> set[str]:
        return {f.name for f in dataclasses.fields(family(name).config_class())}

    for key, option in (("n_layers", "--layers"), ("n_bins", "--bins")):
        if key in over and key not in fields(args.model):
            owners = ", ".join(n for n in FAMILY_NAMES if key in fields(n))
            raise TracerError(f"{option} is an option of --model {owners}, not of --model {args.model}")
    if args.time_limit is not None and not args.time_limit > 0:
        raise TracerError(f"--time-limit must be positive, got {args.time_limit}")
    if args.out is not None and len(args.envmap) > 1:
        raise TracerError("--out names one model file: fit one map with it, or leave it out (the cache)")
    envs = []
    for path in args.envmap:
        env = load_envmap(EnvSpec(kind="file", path=path))
        require_light(env)
        envs.append(env)
    config = family(args.model).default_config(**over)
    fit_kw = {"time_limit_s": args.time_limit}
    if args.max_steps is not None:
        fit_kw["max_steps"] = args.max_steps
    outs = [args.out or cache_path(env, model=args.model) for env in envs]
    t0 = time.perf_counter()

    def done(i: int, result: tuple[bytes, dict]) -> None:
        from tracer.outputs import write_atomic

        data, meta = result
        write_atomic(Path(outs[i]), lambda p: p.write_bytes(data))
        print(f"{args.envmap[i]}: KL(target || flow) = {meta['kl']:.4f} nats on a 500x500 grid, "
              f"fit {meta['fit_seconds']:.1f} s ({meta['steps']} steps; {time.perf_counter() - t0:.1f} s in all)")
        print(f"wrote {outs[i]}")

    jobs = [(env, args.seed, config, fit_kw) for env in envs]
    if args.ray is not None:
        from tracer.distributed import ray_map

        ray_map(args.ray, fit_map_flow_bytes, jobs, done)  # the maps' pixels travel with the tasks
    else:
        for i, job in enumerate(jobs):
            done(i, fit_map_flow_bytes(*job, progress=not args.no_progress))


def cmd_flow_report(args: argparse.Namespace) -> None:
    from tracer.flow_report import flow_report

    out = flow_report(args.model, args.envmap, args.out)
    print(f"wrote {out}")


def cmd_render(args: argparse.Namespace) -> None:
    from tracer.job import RenderOptions, run_render

    opts = RenderOptions(
        scene=args.scene, sampler=args.sampler, light=args.light, heuristic=args.heuristic,
        compensate=args.compensate, envmap=args.envmap, env_scale=args.env_scale,
        env_rotation=args.env_rotation, spp=args.spp, resolution=args.resolution,
        max_depth=args.max_depth, seed=args.seed, sequence=args.sequence,
        shadow_rr=args.shadow_rr, out=args.out,
        exposure=args.exposure,
        tonemap=args.tonemap, progress=not args.no_progress, reference=args.reference,
        flow_model=args.flow_model, device=args.device, resume=args.resume,
        checkpoint_every=args.checkpoint_every, keep_checkpoint=args.keep_checkpoint,
        chunk_spp=args.chunk_spp, ray=args.ray,
    )
    if not (opts.checkpoint_every >= 0 and opts.checkpoint_every < float("inf")):
        raise TracerError(f"--checkpoint-every must be a finite number of seconds >= 0, got {opts.checkpoint_every}")
    log = run_render(opts)
    t = log["time_s"]
    line = (
        f"{log['sampler']}: {log['spp']} spp {log['resolution'][0]}x{log['resolution'][1]} in "
        f"{t['render']:.2f} s ({log['paths_per_second'] / 1e6:.2f} M paths/s; setup+compile "
        f"{t['setup_compile']:.1f} s; light {t['light_sampling']:.2f} s, trace {t['tracing']:.2f} s, "
        f"shade {t['shading']:.2f} s), mean pixel variance {log['mean_pixel_variance']:.3g}, "
        f"NaN/Inf {log['nan_inf_samples']}"
    )
    if "relmse" in log:
        line += f", MSE {log['mse']:.4g}, relMSE {log['relmse']:.4g}"
    if log["resumed_from_spp"]:
        line += f" (resumed at {log['resumed_from_spp']} spp)"
    print(line)
    print(f"wrote {log['outputs']['exr']}, {log['outputs']['png']}, {log['outputs']['log']}")


COMMANDS = {
    "render": cmd_render,
    "fit-flow": cmd_fit_flow,
    "flow-report": cmd_flow_report,
    "converge": cmd_converge,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except TracerError as e:
        print(f"tracer: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except MemoryError:
        print("tracer: error: out of memory (a smaller resolution, map or mesh may fit)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tracer: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
