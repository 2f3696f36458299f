r"""``tracer converge``: error against samples and against time, per sampler.

Each sampler renders the scene progressively: one film accumulates samples and is measured
whenever its sample count reaches the next value of ``--spp`` (so the sample sets are
nested, and the time of a point is the cumulative render time). Every sampler uses the same
seed and so the same camera jitter and BSDF random numbers; compile and model loading are
timed apart (``setup_s``) and excluded from the curves, after the same warm-up render for
every sampler.

Errors against the reference :math:`r` (Rousselle et al. 2011):
:math:`\mathrm{MSE} = \overline{(x - r)^2}`,
:math:`\mathrm{relMSE} = \overline{(x - r)^2 / (r^2 + 10^{-2})}`, and the efficiency
:math:`1 / (\mathrm{relMSE} \cdot t)`, which is constant for an unbiased estimator once its
error is dominated by variance.

The reference is a ``mis`` render at ``--ref-spp`` (or a given EXR); its own noise is
reported as the mean relative variance of its pixels, which bounds the smallest relMSE the
experiment can resolve. A rendered reference is kept in the output folder and reused only
while its key (``reference.json``, see :func:`reference_key`) matches: a hash of what is
rendered (the scene's arrays, the map's pixels) and of the settings, so an edited scene,
mesh or map gets a fresh reference. A bias check runs at the highest spp: per pixel
:math:`z = (x - r) / \sqrt{\sigma_x^2 + \sigma_r^2}`, and the image-mean difference against
its standard error; a sampler is flagged biased when the mean differs by more than
``Z_BIAS`` standard errors or more than 1% of pixels exceed the Bonferroni threshold.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from tracer.checkpoint import render_key
from tracer.digest import content_key
from tracer.envmap import EnvMap
from tracer.errors import TracerError
from tracer.film import Film, tonemap_image
from tracer.hdr_io import read_image, write_exr
from tracer.integrator import StageTimes, render
from tracer.job import RenderOptions, error_metrics, load_reference, resolve_env, scene_data
from tracer.outputs import write_atomic
from tracer.progress import progress_bar
from tracer.samplers import (
    MODEL_SAMPLERS,
    SHADOW_RR,
    make_reference_strategy,
    make_strategy,
    parse_sampler_name,
)

if TYPE_CHECKING:
    from tracer.integrator import SceneData

#: image-mean z beyond which a sampler is flagged biased
Z_BIAS = 5.0
#: fraction of pixels allowed beyond the per-pixel Bonferroni threshold
PIXEL_OUTLIERS = 0.01


@dataclass
class Point:
    """One row of metrics.csv."""

    sampler: str
    spp: int
    time_s: float
    light_s: float
    trace_s: float
    shade_s: float
    paths_per_s: float
    mse: float
    relmse: float
    mean_pixel_variance: float
    efficiency: float
    setup_s: float


COLUMNS = list(Point.__dataclass_fields__)


#: Most sample counts one ``--spp`` list may expand to.
MAX_SPP_POINTS = 1000


def parse_spp_list(text: str) -> list[int]:
    """``1,2,4,...,1024`` (a geometric series up to the last value) or an explicit list.

    Before ``...`` come at least two increasing counts, whose ratio (> 1) continues the
    series; after it exactly one count, at least the last one before it. The series stops at
    the last count, which ends the list even where the ratio does not reach it exactly
    (``1,2,4,...,48`` ends ``32, 48``). Every list must be strictly increasing and positive.
    """
    usage = f"--spp: expected a list like 1,2,4,...,1024, got {text!r}"
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if "..." in parts:
            i = parts.index("...")
            if i != len(parts) - 2:
                raise TracerError(f"{usage}: '...' must be followed by exactly one count, the last")
            head = [int(p) for p in parts[:i]]
            last = int(parts[i + 1])
            if len(head) < 2:
                raise TracerError(f"{usage}: '...' needs two counts before it to set the ratio")
            if any(v <= 0 for v in head) or any(b <= a for a, b in itertools.pairwise(head)):
                raise TracerError(
                    f"{usage}: the counts before '...' must be positive and increasing"
                )
            if last < head[-1]:
                raise TracerError(
                    f"{usage}: the last count, {last}, is below {head[-1]}: the series "
                    "cannot reach it"
                )
            ratio = head[-1] / head[-2]  # > 1; each step then grows by 1 at least
            vals = head[:]
            while vals[-1] * ratio <= last:
                if len(vals) >= MAX_SPP_POINTS:
                    raise TracerError(f"{usage}: more than {MAX_SPP_POINTS} sample counts")
                vals.append(round(vals[-1] * ratio))
            if vals[-1] != last:
                vals.append(last)
        else:
            vals = [int(p) for p in parts]
    except (ValueError, IndexError, OverflowError):
        raise TracerError(usage) from None
    if not vals or any(v <= 0 for v in vals) or vals != sorted(set(vals)):
        raise TracerError(f"--spp: expected increasing positive counts, got {text!r}")
    if len(vals) > MAX_SPP_POINTS:
        raise TracerError(f"{usage}: more than {MAX_SPP_POINTS} sample counts")
    return vals


def normal_isf(p: float) -> float:
    """The standard normal's upper quantile: ``x`` with ``P(Z > x) = p``, for ``0 < p < 1``.

    ``-inv_cdf(p)`` rather than ``inv_cdf(1 - p)``, which would lose the digits of a tiny ``p``
    (the standard library, so that ``tracer converge`` does not need SciPy).
    """
    return -NormalDist().inv_cdf(p)


def bias_check(img: np.ndarray, var: np.ndarray, ref: np.ndarray, ref_var: np.ndarray | None) -> dict[str, Any]:
    """z-tests of an image against the reference (per pixel, and of the image mean)."""
    rv = np.zeros_like(ref) if ref_var is None else ref_var
    tot = var + rv
    z = (img - ref) / np.sqrt(tot + 1e-30)
    thresh = normal_isf(0.01 / (2 * z.size))
    frac = float(np.mean(np.abs(z) > thresh))
    z_mean = float((img.mean() - ref.mean()) / (math.sqrt(tot.sum()) / img.size + 1e-30))
    return {"z_mean": z_mean, "pixel_outlier_fraction": frac, "pixel_threshold": thresh,
            "biased": bool(abs(z_mean) > Z_BIAS or frac > PIXEL_OUTLIERS)}


def run_converge(
    opts: RenderOptions, samplers: list[str], spp_list: list[int], out_dir: Path,
    ref_spp: int = 4096, reference: Path | None = None, crop: tuple[int, int, int, int] | None = None,
    progress: bool = True, ray: str | None = None,
) -> dict[str, Any]:
    """Run the experiment; write metrics.csv/json, convergence.png and crops.png.

    Each sampler's sweep is kept in ``out_dir/sweeps/`` with the key of what it rendered, so a
    rerun of an interrupted (or extended) experiment renders only the samplers it lacks.
    ``ray`` (``local`` or a cluster address) runs the samplers' sweeps as Ray tasks.
    """
    from tracer.scene import load_scene

    out_dir = Path(out_dir)
    if not samplers:
        raise TracerError("--samplers: name at least one sampler, e.g. --samplers mis,piecewise")
    if not spp_list or any(int(v) <= 0 for v in spp_list) or list(spp_list) != sorted(set(spp_list)):
        raise TracerError(f"--spp: expected increasing positive counts, got {spp_list}")
    if out_dir.exists() and not out_dir.is_dir():
        raise TracerError(f"{out_dir}: --out must be a folder, and this is an existing file")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TracerError(f"{out_dir}: cannot create the output folder ({e.strerror or e})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise TracerError(f"{out_dir}: the output folder is not writable")
    scene = load_scene(opts.scene)
    rs = scene.render
    width, height = (rs.width, rs.height) if opts.resolution is None else opts.resolution
    max_depth = rs.max_depth if opts.max_depth is None else opts.max_depth
    seed = rs.seed if opts.seed is None else opts.seed
    env = resolve_env(scene, opts)
    data = scene_data(scene, width, height)
    tiny = scene_data(scene, 2, 2)
    strategies = {name: parse_sampler_name(name) for name in samplers}

    total = sum(spp_list[-1] for _ in samplers) + (0 if reference else ref_spp)
    bar = None
    if progress:
        bar = progress_bar(total, "converge", "spp")

    # ---- the reference
    ref_var = None
    ref_path = out_dir / "reference.exr"
    ref_var_path = out_dir / "reference_variance.exr"
    ref_json = out_dir / "reference.json"
    if reference is not None:
        ref = load_reference(reference, width, height)
        ref_note = f"given: {reference}"
    else:
        key = reference_key(data, env, width, height, max_depth, seed + 1_000_003, ref_spp)
        if _stored_key(ref_json) == key and ref_path.exists() and ref_var_path.exists():
            ref = load_reference(ref_path, width, height)
            ref_var = read_image(ref_var_path).astype(np.float64)
            ref_note = f"reused {ref_path} (mis, {ref_spp} spp, seed {seed + 1_000_003})"
        else:
            st = make_reference_strategy(env)
            res = render(data, env, st, width, height, ref_spp, max_depth, seed + 1_000_003,
                         progress=bar.update if bar else None)
            ref = res.film.image().astype(np.float32).astype(np.float64)
            ref_var = res.film.variance()
            ref_json.unlink(missing_ok=True)  # no stale key beside half-written images
            write_exr(ref_path, ref.astype(np.float32))
            write_exr(ref_var_path, ref_var.astype(np.float32))
            ref_json.write_text(json.dumps({
                "key": key, "scene": str(opts.scene), "envmap": env.name, "resolution": [width, height],
                "max_depth": max_depth, "seed": seed + 1_000_003, "spp": ref_spp, "sampler": "mis",
            }, indent=2))
            ref_note = f"rendered: mis, {ref_spp} spp, seed {seed + 1_000_003}, {res.seconds:.1f} s"
    ref_noise = float(np.mean(ref_var / (ref**2 + 1e-2))) if ref_var is not None else float("nan")

    # ---- each sampler, progressively (kept per sampler in sweeps/, so a rerun resumes)
    points: list[Point] = []
    snapshots: dict[str, dict[int, np.ndarray]] = {}
    bias: dict[str, dict[str, Any]] = {}
    jobs = {name: make_sweep_job(name, base, kw.get("light", "piecewise"), opts.flow_model, data, env,
                                 width, height, list(spp_list), max_depth, seed, progress, opts.sequence,
                                 kw.get("compensate"), opts.shadow_rr)
            for name, (base, kw) in strategies.items()}
    sweeps = out_dir / "sweeps"
    results: dict[str, SweepResult] = {}
    for name, job in jobs.items():
        kept = load_sweep(sweeps / f"{name}.npz", job.key)
        if kept is not None:
            results[name] = kept
            if bar:
                bar.update(spp_list[-1])
    todo = [name for name in jobs if name not in results]

    def finished(name: str, res: SweepResult) -> None:
        save_sweep(sweeps / f"{name}.npz", res)
        results[name] = res

    if ray is not None and todo:
        from tracer.distributed import ray_map

        ray_map(ray, run_sweep, [(jobs[n], data, tiny, env, ref, progress) for n in todo],
                lambda i, res: (finished(todo[i], res), bar.update(spp_list[-1]) if bar else None))
    else:
        for name in todo:
            finished(name, run_sweep(jobs[name], data, tiny, env, ref, progress,
                                     bar.update if bar else None))
    for name in jobs:
        res = results[name]
        points += res.points
        snapshots[name] = dict(zip(spp_list, res.snapshots, strict=True))
        bias[name] = bias_check(res.image, res.variance, ref, ref_var)
    if bar:
        bar.close()

    # ---- files
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for p in points:
            w.writerow(asdict(p))
    summary = {
        "scene": str(opts.scene), "resolution": [width, height], "max_depth": max_depth, "seed": seed,
        "sequence": opts.sequence,
        "shadow_rr": opts.shadow_rr,
        "envmap": env.name, "reference": ref_note, "reference_mean_relative_variance": ref_noise,
        "points": [asdict(p) for p in points], "bias": bias,
    }
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    plot_convergence(points, out_dir / "convergence.png", f"{Path(opts.scene).stem}, {width}x{height}")
    plot_crops(snapshots, points, ref, out_dir / "crops.png", crop)
    return summary


@dataclass
class SweepJob:
    """One sampler's progressive render through the spp list.

    The strategy is built once, by the driver (a flow is loaded or fitted there), and travels
    with the job, so a Ray worker renders exactly the sampler that the key describes.
    """

    name: str
    strategy: Any
    setup_s: float  # seconds to build the strategy (tables, or loading or fitting a flow)
    key: str  # what the sweep's rows depend on (scene, map, sampler tables or weights, settings, code)
    width: int
    height: int
    spp_list: list[int]
    max_depth: int
    seed: int


def make_sweep_job(name: str, base: str, light: str, flow_model: Path | None, data: SceneData,
                   env: EnvMap, width: int, height: int, spp_list: list[int], max_depth: int,
                   seed: int, progress: bool = False, sequence: str = "independent",
                   compensate: bool | None = None, shadow_rr: float = SHADOW_RR) -> SweepJob:
    """Build the strategy of sampler ``name`` and the key of its sweep (``compensate``: the
    light density of ``mis``, see :func:`tracer.samplers.make_strategy`)."""
    t0 = time.perf_counter()
    flow_opts: dict = {"progress": progress}
    if flow_model and any(m in (base, light) for m in MODEL_SAMPLERS):
        flow_opts["model_path"] = flow_model
    st = make_strategy(base, env, light=light, compensate=compensate, sequence=sequence,
                       shadow_rr=shadow_rr, **flow_opts)
    setup = time.perf_counter() - t0
    key = content_key("flowtracer-sweep-v1", name, spp_list,
                      render_key(data, env, st, width, height, max_depth, seed))
    return SweepJob(name, st, setup, key, width, height, spp_list, max_depth, seed)


@dataclass
class SweepResult:
    """A finished sweep: its rows, the image at each spp, and the last image's variance."""

    key: str
    points: list[Point]
    snapshots: list[np.ndarray]
    image: np.ndarray
    variance: np.ndarray


def run_sweep(job: SweepJob, data: SceneData, tiny: SceneData, env: EnvMap, ref: np.ndarray,
              progress: bool = False, bar: Any = None) -> SweepResult:
    """Render ``job``'s sampler through its spp list, one film continued from count to count."""
    t0 = time.perf_counter()
    st = job.strategy
    render(tiny, env, st, 2, 2, 1, job.max_depth, job.seed)  # the same warm-up for everyone
    setup = job.setup_s + time.perf_counter() - t0
    w, h = job.width, job.height
    film, times = Film(w, h), StageTimes()
    elapsed, done = 0.0, 0
    points, snaps = [], []
    for spp in job.spp_list:
        res = render(data, env, st, w, h, spp - done, job.max_depth, job.seed, spp_start=done,
                     film=film, times=times, progress=bar)
        elapsed += res.seconds
        done = spp
        img = film.image().astype(np.float32).astype(np.float64)
        m = error_metrics(img, ref)
        points.append(Point(job.name, spp, elapsed, times.light, times.trace, times.shade,
                            w * h * spp / elapsed, m["mse"], m["relmse"], film.mean_variance(),
                            1.0 / (m["relmse"] * elapsed) if m["relmse"] > 0 else math.inf, setup))
        snaps.append(img)
    return SweepResult(job.key, points, snaps, film.image(), film.variance())


def save_sweep(path: Path, res: SweepResult) -> None:
    """Keep a finished sweep (atomically) for a later run of the same experiment."""
    meta = {"key": res.key, "points": [asdict(p) for p in res.points]}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(json.dumps(meta)), snapshots=np.stack(res.snapshots),
                     image=res.image, variance=res.variance)

    write_atomic(path, write)


def load_sweep(path: Path, key: str) -> SweepResult | None:
    """The kept sweep at ``path`` if it is of this very job; None otherwise (it is redone)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("key") != key:
                return None
            return SweepResult(key, [Point(**p) for p in meta["points"]], list(z["snapshots"]),
                               z["image"], z["variance"])
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
        return None


#: bump when the reference render changes in a way its inputs do not show (3: ``mis`` takes
#: the MIS-compensated light density by default)
REFERENCE_KEY_VERSION = 3


def reference_key(
    data: SceneData, env: EnvMap, width: int, height: int, max_depth: int, seed: int, spp: int,
) -> str:
    """What the reference render depends on, hashed: its contents, not file names or options.

    The scene enters as the arrays the kernels render (geometry and BVH, shading normals,
    materials, camera frame), so an edited scene file or mesh changes the key wherever it
    changes the image, and a moved or re-commented one does not. The map enters as the hash
    of its scaled pixels plus its rotation; then the resolution (the camera frame holds only
    the aspect ratio), path depth, seed and sample count.
    """
    return content_key(f"flowtracer-reference-v{REFERENCE_KEY_VERSION}", "mis", "piecewise", data,
                       env.rgb, float(env.rot_u), int(width), int(height), int(max_depth),
                       int(seed), int(spp))


def _stored_key(path: Path) -> str | None:
    """The key in a reference.json, or None when it is missing or unreadable."""
    try:
        key = json.loads(path.read_text()).get("key")
    except (OSError, ValueError, AttributeError):
        return None
    return key if isinstance(key, str) else None


def plot_convergence(points: list[Point], path: Path, title: str) -> None:
    """relMSE against spp and against seconds, log-log, one curve per sampler."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for name in dict.fromkeys(p.sampler for p in points):
        ps = [p for p in points if p.sampler == name]
        ax[0].loglog([p.spp for p in ps], [p.relmse for p in ps], "o-", ms=3, label=name)
        ax[1].loglog([p.time_s for p in ps], [p.relmse for p in ps], "o-", ms=3, label=name)
    ax[0].set_xlabel("samples per pixel")
    ax[1].set_xlabel("render time (s), compile excluded")
    for a in ax:
        a.set_ylabel("relMSE")
        a.grid(True, which="both", alpha=0.3)
        a.legend()
    fig.suptitle(f"convergence: {title}")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_crops(
    snapshots: dict[str, dict[int, np.ndarray]], points: list[Point], ref: np.ndarray, path: Path,
    crop: tuple[int, int, int, int] | None,
) -> None:
    """One row at equal spp (the middle count), one at equal time, the reference at the end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h, w, _ = ref.shape
    x0, y0, cw, ch = crop or (w // 4, h // 4, max(1, w // 2), max(1, h // 2))
    names = list(snapshots)
    spps = sorted(next(iter(snapshots.values())))
    eq_spp = spps[len(spps) // 2]
    # equal time: the budget is the smallest final time; each sampler shows its last
    # snapshot within that budget
    finals = {n: max(p.time_s for p in points if p.sampler == n) for n in names}
    budget = min(finals.values())

    def at_time(n: str) -> tuple[int, np.ndarray]:
        ok = [p for p in points if p.sampler == n and p.time_s <= budget * 1.0001] or \
             [min((p for p in points if p.sampler == n), key=lambda p: p.time_s)]
        s = max(ok, key=lambda p: p.spp).spp
        return s, snapshots[n][s]

    fig, ax = plt.subplots(2, len(names) + 1, figsize=(2.4 * (len(names) + 1), 5.2), constrained_layout=True)
    exposure = -math.log2(max(np.percentile(ref, 99), 1e-6)) + 0.0
    for j, n in enumerate(names):
        ax[0, j].imshow(tonemap_image(snapshots[n][eq_spp][y0:y0 + ch, x0:x0 + cw], exposure))
        ax[0, j].set_title(f"{n}\n{eq_spp} spp", fontsize=9)
        s, img = at_time(n)
        ax[1, j].imshow(tonemap_image(img[y0:y0 + ch, x0:x0 + cw], exposure))
        ax[1, j].set_title(f"{s} spp in <= {budget:.2f} s", fontsize=9)
    for r in range(2):
        ax[r, -1].imshow(tonemap_image(ref[y0:y0 + ch, x0:x0 + cw], exposure))
        ax[r, -1].set_title("reference", fontsize=9)
        for a in ax[r]:
            a.axis("off")
    fig.suptitle("top: equal samples per pixel; bottom: equal render time")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    # Noisy crops compress badly: a 256-colour palette makes the PNG ~3x smaller.
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(256)
    small.save(path, optimize=True)


def format_table(summary: dict[str, Any]) -> str:
    """The terminal summary: final point per sampler, plus the bias verdict."""
    rows = {}
    for p in summary["points"]:
        rows[p["sampler"]] = p
    lines = [f"reference: {summary['reference']} (mean relative variance {summary['reference_mean_relative_variance']:.2e})",
             f"{'sampler':<16}{'spp':>6}{'time s':>9}{'Mpaths/s':>10}{'relMSE':>11}{'efficiency':>12}{'setup s':>9}  bias"]
    for name, p in rows.items():
        b = summary["bias"][name]
        verdict = "BIASED" if b["biased"] else "ok"
        lines.append(f"{name:<16}{p['spp']:>6}{p['time_s']:>9.2f}{p['paths_per_s'] / 1e6:>10.3f}"
                     f"{p['relmse']:>11.3e}{p['efficiency']:>12.3g}{p['setup_s']:>9.1f}  {verdict} (z {b['z_mean']:+.1f})")
    return "\n".join(lines)
