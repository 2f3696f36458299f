"""``tracer flow-report``: the target density beside the flow's, on the map's square."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tracer.envmap import load_envmap
from tracer.errors import TracerError, output_file_problem
from tracer.scene import EnvSpec

#: What the report can be written as (by matplotlib).
REPORT_FORMATS = (".png", ".pdf", ".svg")


def density_grid(module: torch.jit.ScriptModule, h: int, w: int) -> np.ndarray:
    """exp(log_prob) of the flow at the centres of an h x w grid over the square."""
    v, u = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    x = torch.as_tensor(np.stack([u.ravel(), v.ravel()], 1), dtype=torch.float32)
    with torch.inference_mode():
        return torch.exp(module.log_prob(x)).numpy().reshape(h, w).astype(np.float64)


def flow_report(model: Path, envmap: Path | None = None, out: Path | None = None) -> Path:
    """Write a PNG: target density, learned density (same log colour scale), log ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tracer.samplers.flow import load_map_flow

    out = Path(out) if out else Path(model).with_suffix(".png")
    fmt = out.suffix.lower()
    if fmt not in REPORT_FORMATS:
        shown = f"'{fmt}'" if fmt else "no extension"
        raise TracerError(
            f"{out}: cannot write a report as {shown}; use {', '.join(REPORT_FORMATS)}"
        )
    problem = output_file_problem(out)
    if problem:
        raise TracerError(f"{out}: {problem}")
    module, meta = load_map_flow(None, Path(model))
    map_path = envmap or (Path(meta["map"]) if "map" in meta else None)
    if map_path is None or not Path(map_path).exists():
        raise TracerError(f"{model}: name the map it was fitted to with --envmap")
    env = load_envmap(EnvSpec(kind="file", path=Path(map_path)))
    if env.content_hash() != meta.get("map_hash"):
        raise TracerError(f"{model} was fitted to another map than {map_path}")
    target = env.sampling_density()
    target = target / target.mean()  # density on the unit square
    h, w = target.shape
    learned = density_grid(module, h, w)
    eps = 1e-3
    lo = np.log10(max(target[target > 0].min(), eps)) if np.any(target > 0) else -3
    hi = np.log10(max(target.max(), learned.max()))
    fig, ax = plt.subplots(1, 3, figsize=(15, 3.4), constrained_layout=True)
    for a, img, title in ((ax[0], target, "target p(u,v)"), (ax[1], learned, "flow q(u,v)")):
        im = a.imshow(np.log10(np.maximum(img, eps)), extent=(0, 1, 1, 0), vmin=lo, vmax=hi, cmap="magma")
        a.set_title(f"{title}, log10")
        a.set_xlabel("u")
        a.set_ylabel("v")
    fig.colorbar(im, ax=ax[:2], shrink=0.9)
    ratio = np.log10(np.maximum(learned, eps) / np.maximum(target, eps))
    im2 = ax[2].imshow(ratio, extent=(0, 1, 1, 0), vmin=-1, vmax=1, cmap="coolwarm")
    ax[2].set_title("log10(q / p)")
    fig.colorbar(im2, ax=ax[2], shrink=0.9)
    fig.suptitle(f"{Path(map_path).name}, {meta.get('model', 'spline')} flow: "
                 f"KL(p || q) = {meta.get('kl', float('nan')):.4f} nats, "
                 f"{meta.get('n_parameters', '?')} parameters, fit {meta.get('fit_seconds', float('nan')):.1f} s")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=80)
    except OSError as e:
        raise TracerError(f"{out}: cannot write the report ({e.strerror or e})") from None
    finally:
        plt.close(fig)
    return out
