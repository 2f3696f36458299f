"""Where the flow's sampling time goes, and what each measure against it bought.

    python benchmarks/bench_flow_gap.py [--map forest] [--sizes 4096,65536,262144] [--rounds 5]

On one map (default ``forest``), with one fitted pixel flow (the cached fit, made now if
missing, rebuilt from its weights with the current code), prints ``sample`` and ``log_prob``
rates of, in one run (best of ``--rounds`` interleaved rounds, each at least 0.3 s):

* the spline flow (``--model spline``, the cached fit if there is one, else untrained
  weights of the default configuration: its cost does not depend on the weights);
* the pixel flow evaluating its conditioner for every point, in blocks of 16k (the plain
  way, kept here as a subclass);
* the pixel flow evaluating it once per distinct row and (row, coarse bin) of a block, in
  blocks of 16k and of 256k (the default);
* the default frozen with ``torch.jit.freeze`` + ``torch.jit.optimize_for_inference``;
* the default at one thread;
* as the renderer calls them (``LightSampler.sample`` / ``pdf``: direction, solid-angle
  pdf and radiance included): ``flow`` and ``piecewise``, and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_flow_fit import map_paths, throughput
from flows.export import load_flow
from flows.model import FlowConfig, SplineFlow
from flows.piecewise_linear import bin_log_probs
from flows.pixel_flow import PixelFlow, PixelFlowConfig
from tracer.envmap import load_envmap
from tracer.samplers.flow import FlowSampler, cache_path, make_flow_sampler
from tracer.samplers.piecewise import PiecewiseSampler
from tracer.scene import EnvSpec


class PerPointPixelFlow(PixelFlow):
    """The same flow, evaluating the conditioner once per point (no sharing within a block)."""

    def _row_terms(self, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        g = self.row_features(rows)
        index = torch.arange(rows.shape[0], dtype=torch.long, device=rows.device)
        return index, g, bin_log_probs(self.coarse_head(g))

    def _fine_terms(self, g: Tensor, row_of: Tensor, coarse: Tensor) -> tuple[Tensor, Tensor]:
        order = torch.argsort(coarse)
        sorted_logits = self._fine_heads(g.index_select(0, order), coarse.index_select(0, order))
        out = torch.empty(g.shape[0], self.n_fine, dtype=g.dtype, device=g.device)
        return row_of, bin_log_probs(out.index_copy_(0, order, sorted_logits))


def rebuilt(cls: type, config: Any, state: dict[str, Tensor], **kw: Any) -> torch.jit.ScriptModule:
    """A scripted ``cls(config, **kw)`` with the given weights."""
    model = cls(config, **kw)
    model.load_state_dict(state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(model.eval())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--map", default="forest", help="map name or file")
    ap.add_argument("--sizes", default="4096,65536,262144")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    (path,) = map_paths(args.map)
    env = load_envmap(EnvSpec(kind="file", path=path))
    make_flow_sampler(env, progress=False)  # fit and cache the pixel flow if there is none
    scripted, meta = load_flow(cache_path(env))
    config = PixelFlowConfig.from_dict(meta["config"])
    state = scripted.state_dict()
    default = rebuilt(PixelFlow, config, state)
    spline_path = cache_path(env, model="spline")
    if spline_path.exists():
        spline, _ = load_flow(spline_path)
        spline_label = "spline flow (fitted)"
    else:
        spline = torch.jit.script(SplineFlow(FlowConfig()).eval())
        spline_label = "spline flow (untrained weights)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frozen = torch.jit.optimize_for_inference(
            torch.jit.freeze(rebuilt(PixelFlow, config, state), preserved_attrs=["sample", "log_prob"])
        )
    modules: dict[str, Any] = {
        spline_label: spline,
        "pixel, per-point conditioner, blocks of 16k": rebuilt(PerPointPixelFlow, config, state, chunk_size=1 << 14),
        "pixel, per distinct row/pair, blocks of 16k": rebuilt(PixelFlow, config, state, chunk_size=1 << 14),
        "pixel, per distinct row/pair, blocks of 256k (default)": default,
        "  + torch.jit.freeze + optimize_for_inference": frozen,
    }
    flow_sampler = FlowSampler(env, default, meta)
    piecewise = PiecewiseSampler(env)
    rates: dict[tuple[str, str, int], float] = {}
    gen = torch.Generator().manual_seed(0)
    inputs = {n: torch.rand(n, 2, generator=gen) for n in sizes}
    np_inputs = {n: u.double().numpy() for n, u in inputs.items()}
    dirs = {n: piecewise.sample(u).wi for n, u in np_inputs.items()}

    def record(label: str, kind: str, n: int, fn: Callable[[], Any]) -> None:
        rates[label, kind, n] = max(rates.get((label, kind, n), 0.0), throughput(fn, n, 0.3))

    for _ in range(args.rounds):
        for n in sizes:
            u = inputs[n]
            for label, m in modules.items():
                record(label, "sample", n, lambda m=m, u=u: m.sample(u))
                record(label, "log_prob", n, lambda m=m, u=u: m.log_prob(u))
            torch.set_num_threads(1)
            record("  at 1 thread", "sample", n, lambda u=u: default.sample(u))
            record("  at 1 thread", "log_prob", n, lambda u=u: default.log_prob(u))
            torch.set_num_threads(args.threads)
            for label, s in (("renderer: flow (LightSampler)", flow_sampler),
                             ("renderer: piecewise (LightSampler)", piecewise)):
                record(label, "sample", n, lambda s=s, n=n: s.sample(np_inputs[n]))
                record(label, "log_prob", n, lambda s=s, n=n: s.pdf(dirs[n]))

    labels = list(dict.fromkeys(k[0] for k in rates))
    print(f"\n{path.stem}: {meta.get('n_parameters')} parameters, KL {meta.get('kl', float('nan')):.4f}; "
          f"torch {torch.__version__}, {args.threads} threads; M samples/s and M pdf/s, best of {args.rounds}")
    head = ["variant"] + [f"sample @{n // 1024}k" for n in sizes] + [f"pdf @{n // 1024}k" for n in sizes]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for label in labels:
        cells = [f"{rates[label, 'sample', n] / 1e6:.2f}" for n in sizes]
        cells += [f"{rates[label, 'log_prob', n] / 1e6:.2f}" for n in sizes]
        print(f"| {label} | " + " | ".join(cells) + " |")
    f, p = "renderer: flow (LightSampler)", "renderer: piecewise (LightSampler)"
    cells = [f"{rates[p, k, n] / rates[f, k, n]:.1f}x" for k in ("sample", "log_prob") for n in sizes]
    print("| piecewise / flow (renderer) | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
