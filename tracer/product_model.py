r"""Building, saving and judging the tables of the ``product`` sampler (:mod:`tracer.samplers.product`).

The product of the map with a BSDF lobe and the cosine is known in closed form given the
map and the condition, so the model is "fitted" by evaluating it: for every condition on a
grid, the mass of each coarse cell of the map's square is the sum over the cell's pixels of
:math:`f_{ij} k(\omega_{ij})`, with :math:`f_{ij}` the map's colour density
(:func:`colour_density`) and :math:`k` the lobe (:math:`\max(0, n \cdot \omega)` for diffuse normals,
:math:`\exp((r\cdot\omega - 1)/2\alpha^2)` for a conductor's mirror direction and roughness).
Nothing is learned from renders; a few seconds per map on two cores.

Quality is the KL divergence from the exact product to the model over the map's pixels,
averaged over conditions: for a condition :math:`c` the target puts on pixel :math:`ij` the mass
:math:`p^*_{ij} \propto f_{ij}\, f_r(\omega_o, \omega_{ij})\,|\cos\theta_{ij}|` (the real BSDF
of :mod:`tracer.bsdf`, not the lobe the tables use), and the model
:math:`q_{ij} = p_{uv}(ij)/HW`; :func:`mean_kl` reports
:math:`\frac{1}{|C|}\sum_c \mathrm{KL}(p^*_c \| q_c)` in nats, and the same for ``piecewise``
(:math:`q = f/\sum f`) as the yardstick.

Files are ``.npz`` archives with the tables and a JSON metadata entry (map hash, sizes,
build time, KL); a file fitted to another map, or unreadable, is refused with one line.
"""

from __future__ import annotations

import json
import math
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit, prange

from tracer.bsdf import CONDUCTOR, DIFFUSE, N_PARAMS, bsdf_eval, material_params
from tracer.distribution import GUIDE, build_distribution_2d
from tracer.envmap import EnvMap, row_sin_theta
from tracer.errors import TracerError
from tracer.outputs import write_atomic
from tracer.pool import INDEX
from tracer.samplers.base import Condition
from tracer.samplers.product import (
    ProductSampler,
    ProductStatic,
    ProductTables,
    condition_at,
    grid_weights,
    material_blend,
    pdf_uv_at,
)
from tracer.sphere_map import uv_to_dir
from tracer.stages import onb

FORMAT = "flowtracer-product"
FORMAT_VERSION = 1
#: coarse cells of the map's square (rows, columns), at least one pixel each
CELLS = (16, 32)
#: the condition grid (rows, columns) of normals and mirror directions
GRID = (17, 32)
#: roughness of the conductor tables (GGX alpha), increasing
ALPHAS = (0.05, 0.1, 0.15, 0.25, 0.4, 0.7)
#: the defensive fraction of samples drawn from the map alone
EPS = 0.1
#: the arrays a model file holds
_ARRAYS = ("head_w", "alphas")


@dataclass
class ProductModel:
    """A product model: head weights per (condition row, cell) and the map's tables."""

    density: np.ndarray  # (H, W) the map's sampling density f_ij
    head_w: np.ndarray  # (rows, CH * CW) float32 cell masses per condition row
    cells: tuple[int, int]
    grid: tuple[int, int]
    alphas: np.ndarray
    eps: float
    meta: dict[str, Any]

    def static(self) -> ProductStatic:
        """The sampler's tables (:class:`tracer.samplers.product.ProductStatic`)."""
        d = build_distribution_2d(self.density)
        h, w = self.density.shape
        ch, cw = self.cells
        row0 = (np.arange(ch + 1) * h) // ch
        col0 = (np.arange(cw + 1) * w) // cw
        cell_of_row = np.searchsorted(row0, np.arange(h), side="right") - 1
        cell_of_col = np.searchsorted(col0, np.arange(w), side="right") - 1
        trow, tcol = _tail_cdfs(d.func, row0, col0)
        mass = self.head_w.astype(np.float64)
        tot = mass.sum(axis=1)
        ok = tot > 0
        cdf = np.zeros((mass.shape[0], mass.shape[1] + 1))
        np.cumsum(mass, axis=1, out=cdf[:, 1:])
        cdf[ok] /= tot[ok, None]
        cdf[~ok] = np.linspace(0.0, 1.0, mass.shape[1] + 1)
        cdf[:, -1] = 1.0
        cdf32 = cdf.astype(np.float32)
        ncell = mass.shape[1]
        guide = np.concatenate([cdf32[:, 0:ncell:GUIDE], np.ones((cdf32.shape[0], 1), np.float32)], axis=1)
        # the probabilities the sampler draws with: differences of the float32 CDF it searches
        # (exact in float64)
        p_cell = np.diff(cdf32.astype(np.float64), axis=1)
        return ProductStatic(
            d.cond_cdf, d.cond_guide, d.marg_cdf, d.func, np.array([d.integral]),
            cell_of_row.astype(np.int64), cell_of_col.astype(np.int64),
            row0.astype(np.int64), col0.astype(np.int64), trow, tcol,
            cdf32, np.ascontiguousarray(guide), np.ascontiguousarray(p_cell.T),
            np.array(self.grid, np.int64),
            np.asarray(self.alphas, np.float64), np.array([self.eps]),
        )

    def nbytes(self) -> int:
        """Memory of the sampler's tables (bytes)."""
        return int(sum(a.nbytes for a in self.static()))


def _tail_cdfs(func: np.ndarray, row0: np.ndarray, col0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CDFs over each cell's pixel rows (CH, CW, R + 1) and each row's columns (H, CW, C + 1)."""
    h = func.shape[0]
    ch, cw = len(row0) - 1, len(col0) - 1
    rmax = int(np.max(np.diff(row0)))
    cmax = int(np.max(np.diff(col0)))
    trow = np.ones((ch, cw, rmax + 1))
    tcol = np.ones((h, cw, cmax + 1))
    for cj in range(cw):
        block = func[:, col0[cj]:col0[cj + 1]]  # (H, C)
        nc = block.shape[1]
        rs = block.sum(axis=1)
        cum = np.concatenate([np.zeros((h, 1)), np.cumsum(block, axis=1)], axis=1)
        good = rs > 0
        cum[good] /= rs[good, None]
        cum[~good] = np.linspace(0.0, 1.0, nc + 1)
        cum[:, -1] = 1.0
        tcol[:, cj, :nc + 1] = cum
        for ci in range(ch):
            r = rs[row0[ci]:row0[ci + 1]]
            nr = r.shape[0]
            c = np.concatenate([[0.0], np.cumsum(r)])
            c = c / c[-1] if c[-1] > 0 else np.linspace(0.0, 1.0, nr + 1)
            c[-1] = 1.0
            trow[ci, cj, :nr + 1] = c
    return trow, tcol


@njit(cache=True)
def _grid_dirs(nv: int, nu: int) -> np.ndarray:
    """Directions (map frame) at the nodes of an nv x nu lat-long grid, row-major: row i at
    v = i / (nv - 1) (the first and last rows are the poles, where floors' normals are),
    column j at u = (j + 1/2) / nu."""
    out = np.empty((nv * nu, 3))
    for i in range(nv):
        for j in range(nu):
            out[i * nu + j] = uv_to_dir((j + 0.5) / nu, i / (nv - 1))
    return out


@njit(cache=True, parallel=True)
def _head_weights(
    func: np.ndarray, cell_of_row: np.ndarray, cell_of_col: np.ndarray, ncw: int,
    bins: np.ndarray, lam: np.ndarray, ncell: int,
) -> np.ndarray:
    """Cell masses per condition row: rows [0, B) are diffuse normals (clamped cosine), then
    one block of B mirror directions per roughness (spherical Gaussian of sharpness lam)."""
    h, w = func.shape
    nb = bins.shape[0]
    rows = nb * (1 + lam.shape[0])
    out = np.zeros((rows, ncell))
    for row in prange(rows):
        b = row % nb
        a = row // nb - 1
        bx, by, bz = bins[b, 0], bins[b, 1], bins[b, 2]
        for i in range(h):
            base = cell_of_row[i] * ncw
            for j in range(w):
                f = func[i, j]
                if f <= 0.0:
                    continue
                dx, dy, dz = uv_to_dir((j + 0.5) / w, (i + 0.5) / h)
                c = bx * dx + by * dy + bz * dz
                if a < 0:
                    if c > 0.0:
                        out[row, base + cell_of_col[j]] += f * c
                else:
                    e = lam[a] * (c - 1.0)
                    if e > -40.0:
                        out[row, base + cell_of_col[j]] += f * math.exp(e)
    return out


def build_product_model(env: EnvMap, cells: tuple[int, int] = CELLS, grid: tuple[int, int] = GRID,
                        alphas: tuple[float, ...] = ALPHAS, eps: float = EPS) -> ProductModel:
    """Tabulate the product model of ``env`` (see the module docstring). With ``alphas=()``
    only the diffuse (clamped cosine) tables are built, and conductors use them too: the
    "tabulated diffuse product" baseline."""
    t0 = time.perf_counter()
    density = colour_density(env)
    h, w = density.shape
    ch, cw = min(cells[0], h), min(cells[1], w)
    row0 = (np.arange(ch + 1) * h) // ch
    col0 = (np.arange(cw + 1) * w) // cw
    cell_of_row = (np.searchsorted(row0, np.arange(h), side="right") - 1).astype(np.int64)
    cell_of_col = (np.searchsorted(col0, np.arange(w), side="right") - 1).astype(np.int64)
    if len(alphas) == 1:
        raise ValueError("conductor tables need two roughness values or more (or none)")
    a = np.asarray(alphas, np.float64)
    lam = 1.0 / (2.0 * a * a)
    # the cell masses are sums over blocks of b x b pixels inside a cell (b <= 4: a block of a
    # 512 x 1024 map spans 1.4 degrees, well inside the sharpest lobe tabulated)
    b = 1
    if h % ch == 0 and w % cw == 0:
        while b < 4 and (h // ch) % (2 * b) == 0 and (w // cw) % (2 * b) == 0:
            b *= 2
    blocks = density.reshape(h // b, b, w // b, b).sum(axis=(1, 3))
    head = _head_weights(blocks, cell_of_row[::b] if b > 1 else cell_of_row,
                         cell_of_col[::b] if b > 1 else cell_of_col, cw, _grid_dirs(*grid), lam, ch * cw)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": "product",
            "map_hash": env.content_hash(), "map": env.name, "map_shape": [h, w],
            "cells": [ch, cw], "grid": list(grid), "eps": eps,
            "build_seconds": time.perf_counter() - t0}
    return ProductModel(density, head.astype(np.float32), (ch, cw), tuple(grid), a, eps, meta)


def colour_density(env: EnvMap) -> np.ndarray:
    r"""The (H, W) density the product model follows on the map's square:
    :math:`f_{ij} = \sin\theta_i \sqrt{\sum_c (L_{ij,c} / \bar L_c)^2}`, each channel relative to
    its mean over the sphere.

    One sample estimates three channels; the density that minimises the sum of their relative
    second moments is proportional to this norm (times the lobe), not to the luminance: with
    luminance alone a blue sky over a warm ground leaves the red and blue channels 4x noisier
    than the green (measured on the bundled map, diffuse floor: relative variance 0.11 / 0.03 /
    0.13 per sample).
    """
    rgb = np.asarray(env.rgb, np.float64)
    sin_t = row_sin_theta(rgb.shape[0])[:, None]
    mean = np.sum(rgb * sin_t[..., None], axis=(0, 1)) / (np.sum(sin_t) * rgb.shape[1])
    rel = rgb / np.where(mean > 0, mean, 1.0)
    return np.ascontiguousarray(np.sqrt(np.sum(rel * rel, axis=2)) * sin_t)


# ------------------------------------------------------------------ files and the cache


def save_product_model(model: ProductModel, path: Path) -> None:
    """Write ``model`` atomically (an ``.npz`` with its metadata); the map's pixels are not
    stored: the map is always at hand when the model is used, and its hash is checked."""
    text = json.dumps(model.meta, sort_keys=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, head_w=model.head_w, alphas=model.alphas,
                                meta=np.frombuffer(text.encode(), np.uint8))

    write_atomic(Path(path), write)


def load_product_model(path: Path | str, env: EnvMap) -> ProductModel:
    """Read a model written by :func:`save_product_model` for ``env``; one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise TracerError(f"product model {p} does not exist or is not a regular file")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in (*_ARRAYS, "meta")}
        meta = json.loads(arrays["meta"].tobytes().decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise TracerError(f"product model {p} is corrupt or not a product model: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TracerError(f"{p} is not a flowtracer product model")
    if meta.get("format_version") != FORMAT_VERSION:
        raise TracerError(f"product model {p} has format version {meta.get('format_version')!r}; "
                          f"this flowtracer reads version {FORMAT_VERSION} (fit it again)")
    if meta.get("map_hash") != env.content_hash():
        raise TracerError(f"product model {p} was fitted to another map ({meta.get('map')!r}), "
                          f"not {env.name!r}")
    density = colour_density(env)
    h, w = density.shape
    head, alphas = arrays["head_w"], arrays["alphas"]
    try:
        ch, cw = (int(x) for x in meta["cells"])
        nv, nu = (int(x) for x in meta["grid"])
        eps = float(meta["eps"])
    except (KeyError, TypeError, ValueError) as e:
        raise TracerError(f"product model {p} is corrupt: bad metadata ({type(e).__name__}: {e})") from None
    problems = []
    if not (1 <= ch <= h and 1 <= cw <= w):
        problems.append(f"cells {ch}x{cw} do not fit the {h}x{w} map")
    if nv < 2 or nu < 1:
        problems.append(f"condition grid {nv}x{nu} is too small")
    if not (math.isfinite(eps) and 0.0 < eps <= 1.0):
        problems.append(f"defensive fraction {eps} is not in (0, 1]")
    if (alphas.ndim != 1 or len(alphas) == 1 or not np.all(np.isfinite(alphas)) or np.any(alphas <= 0)
            or np.any(np.diff(alphas) <= 0)):
        problems.append("roughness values are not positive and strictly increasing")
    elif head.shape != (nv * nu * (1 + alphas.shape[0]), ch * cw):
        problems.append("the head's shape does not match the grids")
    if not np.all(np.isfinite(head)) or np.any(head < 0) or list(density.shape) != meta.get("map_shape"):
        problems.append("the head is not finite and nonnegative, or the map's shape differs")
    if problems:
        raise TracerError(f"product model {p} is corrupt: {'; '.join(problems)}")
    return ProductModel(density, head, (ch, cw), (nv, nu), alphas, eps, meta)


def product_cache_path(env: EnvMap) -> Path:
    """The cache file of ``env``'s product model (beside the fitted flows)."""
    from tracer.samplers.flow import cache_path

    return cache_path(env, model="product").with_suffix(".npz")


def cached_product_model(env: EnvMap, progress: bool = True) -> ProductModel:
    """``env``'s product model from the cache, built and cached if missing or unusable."""
    import sys

    path = product_cache_path(env)
    if path.exists():
        try:
            return load_product_model(path, env)
        except TracerError as e:
            print(f"tracer: the cached product model {path} is unusable ({e}); building it again",
                  file=sys.stderr)
    model = build_product_model(env)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_product_model(model, path)
    if progress:
        print(f"built the product model of {env.name} in {model.meta['build_seconds']:.1f} s "
              f"(cached as {path})", file=sys.stderr)
    return model


# ------------------------------------------------------------------ quality: KL over conditions


def random_conditions(n: int, seed: int = 0, alphas: tuple[float, ...] = (0.1, 0.3)) -> tuple[Condition, np.ndarray]:
    """``n`` conditions: normals uniform on the sphere, wo cosine-distributed about them; a
    third diffuse, the rest GGX conductors at ``alphas``. Returns the condition (one entry
    per path) and the (n, 3) local wo."""
    rng = np.random.default_rng(seed)
    nrm = rng.normal(size=(n, 3))
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    r1, r2 = rng.random(n), rng.random(n)
    local = np.stack([np.sqrt(r1) * np.cos(2 * np.pi * r2), np.sqrt(r1) * np.sin(2 * np.pi * r2),
                      np.sqrt(1 - r1)], axis=1)
    wo = np.empty((n, 3))
    for k in range(n):
        tx, ty, tz, bx, by, bz = onb(*nrm[k])
        wo[k] = local[k, 0] * np.array([tx, ty, tz]) + local[k, 1] * np.array([bx, by, bz]) + local[k, 2] * nrm[k]
    kinds = np.array([DIFFUSE] + [CONDUCTOR] * len(alphas), np.int64)
    prm = np.zeros((len(kinds), N_PARAMS))
    prm[:, :3] = 0.8
    prm[1:, 3] = alphas
    mat = (np.arange(n) % len(kinds)).astype(np.int64)
    return Condition(np.arange(n, dtype=INDEX), nrm, wo, mat, kinds, prm), local


@njit(cache=True)
def _kl_one(t: Any, func: np.ndarray, rot_u: float, fsum: float, k: int) -> tuple[float, float]:
    """KL(exact || model) and KL(exact || map) in nats for condition k (0, 0 if no product)."""
    h, w = func.shape
    p = t.idx[k]
    m = t.mat[p]
    kind = t.mat_kind[m]
    nx, ny, nz = t.normal[p, 0], t.normal[p, 1], t.normal[p, 2]
    tx, ty, tz, bx, by, bz = onb(nx, ny, nz)
    ox, oy, oz = t.wo[p, 0], t.wo[p, 1], t.wo[p, 2]
    lox, loy, loz = ox * tx + oy * ty + oz * tz, ox * bx + oy * by + oz * bz, ox * nx + oy * ny + oz * nz
    table, cu, cv, mm = condition_at(t, k, rot_u)
    g = grid_weights(t, mm, cu, cv)
    target = np.zeros((h, w))
    for i in range(h):
        for j in range(w):
            if func[i, j] > 0.0:
                dx, dy, dz = uv_to_dir((j + 0.5) / w, (i + 0.5) / h)
                fr, fg, fb, _ = bsdf_eval(kind, material_params(t.mat_prm[m]), lox, loy, loz, dx * tx + dy * ty + dz * tz,
                                          dx * bx + dy * by + dz * bz, dx * nx + dy * ny + dz * nz)
                target[i, j] = func[i, j] * (fr + fg + fb)
    z = target.sum()
    kl_model = 0.0
    kl_map = 0.0
    if z <= 0.0:
        return kl_model, kl_map
    for i in range(h):
        for j in range(w):
            ps = target[i, j] / z
            if ps > 0.0:
                q = pdf_uv_at(t, table, g, (j + 0.5) / w, (i + 0.5) / h) / (h * w)
                kl_model += ps * math.log(ps / q)
                kl_map += ps * math.log(ps / (func[i, j] / fsum))
    return kl_model, kl_map


@njit(cache=True, parallel=True)
def _kl_rows(t: Any, func: np.ndarray, rot_u: float) -> np.ndarray:
    """(C, 2): KL(exact || model) and KL(exact || map) in nats per condition."""
    nc = t.idx.shape[0]
    out = np.zeros((nc, 2))
    fsum = func.sum()
    for k in prange(nc):
        out[k, 0], out[k, 1] = _kl_one(t, func, rot_u, fsum, k)
    return out


def mean_kl(model: ProductModel, cond: Condition) -> dict[str, float]:
    """KL(exact product || model) and KL(exact product || piecewise), averaged over ``cond``
    (map frame, no rotation), in nats; conditions whose product is zero are left out."""
    static = model.static()
    t = ProductTables(*static, *cond, material_blend(cond.mat_kind, cond.mat_prm, static.alphas, static.grid))
    kl = _kl_rows(t, t.map_func, 0.0)
    used = np.any(kl != 0.0, axis=1)
    return {"kl_product": float(kl[used, 0].mean()), "kl_piecewise": float(kl[used, 1].mean()),
            "conditions": int(used.sum())}


def fit_product_model(env: EnvMap, out: Path, n_conditions: int = 96, seed: int = 0) -> dict[str, Any]:
    """Build ``env``'s product model, measure its KL over random conditions, save it to ``out``."""
    model = build_product_model(env)
    model.meta.update(mean_kl(model, random_conditions(n_conditions, seed)[0]))
    model.meta["table_bytes"] = model.nbytes()
    save_product_model(model, out)
    return model.meta


def make_product_sampler(env: EnvMap, model_path: Path | str | None = None, progress: bool = True,
                         **_: Any) -> ProductSampler:
    """The product sampler for ``env``: from ``model_path``, else the cache, else built now."""
    if model_path is not None:
        return ProductSampler(env, load_product_model(model_path, env))
    return ProductSampler(env, cached_product_model(env, progress=progress))
