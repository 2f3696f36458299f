"""The convergence experiment: metrics, files, plots, and that it catches a biased sampler."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tracer import converge
from tracer.camera import camera_frame
from tracer.converge import COLUMNS, normal_isf, parse_spp_list, run_converge
from tracer.errors import TracerError
from tracer.hdr_io import read_image, write_exr
from tracer.job import RenderOptions, error_metrics
from tracer.samplers import make_strategy as real_make_strategy
from tracer.samplers.base import LightSamples

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "scenes" / "furnace.toml"


def test_error_metrics_closed_forms() -> None:
    rng = np.random.default_rng(0)
    ref = rng.random((8, 8, 3)) + 0.5
    assert error_metrics(ref, ref) == {"mse": 0.0, "relmse": 0.0}
    m = error_metrics(ref + 0.1, ref)
    assert m["mse"] == pytest.approx(0.01)
    assert m["relmse"] == pytest.approx(np.mean(0.01 / (ref**2 + 1e-2)))


def test_parse_spp_list() -> None:
    assert parse_spp_list("1,2,4,...,64") == [1, 2, 4, 8, 16, 32, 64]
    assert parse_spp_list("1,2,4,...,48") == [1, 2, 4, 8, 16, 32, 48]
    assert parse_spp_list("3,5,9") == [3, 5, 9]
    for bad in ("", "0,1", "4,2", "1,...", "a,b"):
        with pytest.raises(TracerError):
            parse_spp_list(bad)


Snapshots = dict[str, dict[int, np.ndarray]]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, Snapshots]:
    """The furnace at 12x12, four samplers; also the images each measured (spp -> image)."""
    out = tmp_path_factory.mktemp("conv")
    opts = RenderOptions(scene=SCENE, resolution=(12, 12))
    snapshots: Snapshots = {}
    real_plot_crops = converge.plot_crops

    def keep(snaps: Snapshots, *args: object, **kw: object) -> None:
        snapshots.update(snaps)
        real_plot_crops(snaps, *args, **kw)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(converge, "plot_crops", keep)
        summary = run_converge(opts, ["uniform", "bsdf", "piecewise", "mis"], [1, 2, 4, 8, 16, 32],
                               out, ref_spp=64, progress=False)
    return out, summary, snapshots


def test_metrics_files_have_every_row_and_column(experiment: tuple[Path, dict, Snapshots]) -> None:
    out, _, _ = experiment
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == COLUMNS
    assert len(rows) == 4 * 6
    assert {(r["sampler"], int(r["spp"])) for r in rows} == {
        (s, n) for s in ("uniform", "bsdf", "piecewise", "mis") for n in (1, 2, 4, 8, 16, 32)}
    for r in rows:
        for c in COLUMNS[1:]:
            # one sample per pixel has no variance estimate: reported as inf
            if c == "mean_pixel_variance" and r["spp"] == "1":
                assert float(r[c]) == np.inf
                continue
            assert np.isfinite(float(r[c])), (c, r)
    data = json.loads((out / "metrics.json").read_text())
    assert len(data["points"]) == 24 and set(data["bias"]) == {"uniform", "bsdf", "piecewise", "mis"}
    # cumulative time grows with spp
    t = [float(r["time_s"]) for r in rows if r["sampler"] == "mis"]
    assert t == sorted(t)


def test_plots_are_valid_pngs(experiment: tuple[Path, dict, Snapshots]) -> None:
    from PIL import Image

    out, _, _ = experiment
    for name in ("convergence.png", "crops.png"):
        with Image.open(out / name) as im:
            im.verify()
            assert im.format == "PNG"


def test_furnace_error_falls_and_no_sampler_is_biased(experiment: tuple[Path, dict, Snapshots]) -> None:
    """Every light-sampling strategy's error falls with spp (bsdf's is the reference's own
    noise from the start: see the next test), and none is flagged biased."""
    _, summary, _ = experiment
    pts = summary["points"]
    for s in ("uniform", "piecewise", "mis"):
        rel = [p["relmse"] for p in pts if p["sampler"] == s]
        assert rel[-1] < rel[0]
    assert not any(b["biased"] for b in summary["bias"].values()), summary["bias"]


def furnace_pixels(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) masks of the furnace's pixels that see only the sphere / only the sky.

    From the geometry alone, not from any render: a pixel's camera rays cover its whole
    footprint (box filter), and a ray hits the sphere iff its point on the film plane (at
    distance 1 along the view axis) lies within ``tan`` of the sphere's angular radius of the
    centre. Pixels in neither mask straddle the silhouette.
    """
    from tracer.scene import load_scene

    scene = load_scene(SCENE)
    cam = scene.camera
    center, radius = scene.sphere_centers[0], float(scene.sphere_radii[0])
    assert scene.num_spheres == 1 and scene.num_triangles == 0
    np.testing.assert_array_equal(cam.look_at, center)  # the disc is centred in the view
    frame = camera_frame(cam.eye, cam.look_at, cam.up, cam.fov_deg, width, height)
    d = float(np.linalg.norm(center - cam.eye))
    edge = radius / np.sqrt(d * d - radius * radius)
    sx = (2.0 * np.arange(width + 1) / width - 1.0) * np.linalg.norm(frame[2])
    sy = (1.0 - 2.0 * np.arange(height + 1) / height) * np.linalg.norm(frame[3])
    x0, x1 = np.minimum(sx[:-1], sx[1:]), np.maximum(sx[:-1], sx[1:])
    y0, y1 = np.minimum(sy[:-1], sy[1:]), np.maximum(sy[:-1], sy[1:])
    far = np.hypot(np.maximum(abs(x0), abs(x1))[None, :], np.maximum(abs(y0), abs(y1))[:, None])
    near = np.hypot(np.clip(0.0, x0, x1)[None, :], np.clip(0.0, y0, y1)[:, None])
    return far < edge * (1 - 1e-9), near > edge * (1 + 1e-9)


def test_furnace_bsdf_is_exact(experiment: tuple[Path, dict, Snapshots]) -> None:
    """bsdf sampling of a convex diffuse sphere (albedo 0.5) under a constant sky (radiance 1)
    has zero variance: a cosine-sampled bounce has weight = albedo and always escapes to the
    same radiance. So at every spp each pixel that sees only the sphere is exactly 0.5 and
    each that sees only the sky exactly 1, to float precision; only silhouette pixels (partly
    covered by the camera jitter) vary, and stay within [0.5, 1]. Light sampling leaves the
    same pixels noisy, so the check tells the samplers apart."""
    _, _, snaps = experiment
    inside, outside = furnace_pixels(12, 12)
    assert inside.sum() >= 20 and outside.sum() >= 20 and (~(inside | outside)).sum() >= 8
    assert sorted(snaps["bsdf"]) == [1, 2, 4, 8, 16, 32]
    for spp, img in snaps["bsdf"].items():
        np.testing.assert_allclose(img[inside], 0.5, rtol=0, atol=1e-6,
                                   err_msg=f"bsdf, {spp} spp, pixels on the sphere")
        np.testing.assert_allclose(img[outside], 1.0, rtol=0, atol=1e-6,
                                   err_msg=f"bsdf, {spp} spp, pixels on the sky")
        rim = img[~(inside | outside)]
        assert rim.min() >= 0.5 - 1e-6 and rim.max() <= 1.0 + 1e-6, (spp, rim.min(), rim.max())
    for s in ("uniform", "piecewise"):
        assert np.ptp(snaps[s][32][inside]) > 1e-2, s


class HalfPdf:
    """A deliberately wrong light sampler: it reports half the density it samples with."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.name = "half-pdf"
        self.env = getattr(inner, "env", None)

    # extra arguments (the back-end) pass through to the real sampler
    def sample(self, u: np.ndarray, *args: object, **kw: object) -> LightSamples:
        s = self.inner.sample(u, *args, **kw)  # type: ignore[attr-defined]
        return LightSamples(s.wi, s.pdf * 0.5, s.le)

    def pdf(self, wi: np.ndarray, *args: object, **kw: object) -> np.ndarray:
        return self.inner.pdf(wi, *args, **kw) * 0.5  # type: ignore[attr-defined]


def test_a_biased_sampler_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def rigged(name: str, env: object, **kw: object):
        st = real_make_strategy(name, env, **kw)
        if name == "piecewise":
            st.light = HalfPdf(st.light)
        return st

    monkeypatch.setattr(converge, "make_strategy", rigged)
    opts = RenderOptions(scene=SCENE, resolution=(12, 12))
    summary = run_converge(opts, ["piecewise", "bsdf"], [4, 16, 64], tmp_path, ref_spp=64, progress=False)
    assert summary["bias"]["piecewise"]["biased"], summary["bias"]
    assert not summary["bias"]["bsdf"]["biased"], summary["bias"]


def test_reference_of_wrong_size_or_non_finite_is_refused(tmp_path: Path) -> None:
    from tracer.hdr_io import write_exr

    bad = tmp_path / "ref.exr"
    write_exr(bad, np.ones((5, 7, 3), np.float32))
    opts = RenderOptions(scene=SCENE, resolution=(12, 12))
    with pytest.raises(TracerError, match="ref.exr"):
        run_converge(opts, ["mis"], [1], tmp_path / "o", reference=bad, progress=False)
    img = np.ones((12, 12, 3), np.float32)
    img[3, 3, 1] = np.inf
    write_exr(bad, img)
    with pytest.raises(TracerError, match="non-finite"):
        run_converge(opts, ["mis"], [1], tmp_path / "o", reference=bad, progress=False)


# ------------------------------------------------------------------ no SciPy at run time


def test_normal_isf_matches_known_quantiles() -> None:
    assert normal_isf(0.5) == pytest.approx(0.0, abs=1e-12)
    assert normal_isf(0.025) == pytest.approx(1.9599639845400545, rel=1e-12)
    assert normal_isf(0.01 / 216) == pytest.approx(3.909225264091338, rel=1e-12)
    assert normal_isf(1e-10) == pytest.approx(6.361340902404056, rel=1e-12)


def test_converge_works_without_scipy() -> None:
    """SciPy comes only with the dev extra: ``tracer converge`` must not need it."""
    code = textwrap.dedent("""
        import sys

        class NoScipy:
            def find_spec(self, name, path=None, target=None):
                if name == "scipy" or name.startswith("scipy."):
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
                return None

        sys.meta_path.insert(0, NoScipy())
        try:
            import scipy  # noqa: F401
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker let scipy in")

        import numpy as np

        from tracer import converge

        rng = np.random.default_rng(1)
        ref = rng.random((6, 6, 3)) + 0.5
        var = np.full_like(ref, 1e-4)
        ok = converge.bias_check(ref + rng.normal(0.0, 1e-2, ref.shape), var, ref, None)
        bad = converge.bias_check(ref + 0.1, var, ref, var)
        assert not ok["biased"] and bad["biased"], (ok, bad)
        assert abs(ok["pixel_threshold"] - 3.909225264091338) < 1e-9, ok
        assert not [m for m in sys.modules if m == "scipy" or m.startswith("scipy.")]
        print("converge without scipy: ok")
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=600, check=False)
    assert r.returncode == 0 and "converge without scipy: ok" in r.stdout, r.stdout + r.stderr


# ------------------------------------------------------------------ reusing the reference


def small_converge(scene: Path, out: Path, resolution: tuple[int, int] = (8, 8)) -> tuple[str, np.ndarray]:
    """A tiny experiment; how it came by its reference ("rendered"/"reused") and the reference."""
    opts = RenderOptions(scene=scene, resolution=resolution)
    summary = run_converge(opts, ["bsdf"], [1], out, ref_spp=4, progress=False)
    return summary["reference"].split()[0].rstrip(":"), read_image(out / "reference.exr")


def test_reference_is_reused_only_while_the_scene_is_unchanged(tmp_path: Path) -> None:
    text = SCENE.read_text()
    scene = tmp_path / "scene.toml"
    scene.write_text(text)
    out = tmp_path / "out"
    how, grey = small_converge(scene, out)
    assert how == "rendered"
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])  # white sky, grey sphere
    how, again = small_converge(scene, out)
    assert how == "reused"
    np.testing.assert_array_equal(again, grey)
    # what the scene renders is unchanged by a comment or by [render] spp (converge sets its own)
    scene.write_text("# the same furnace\n" + text.replace("spp = 16", "spp = 32"))
    assert small_converge(scene, out)[0] == "reused"
    # a material colour: a new reference, in the new colour
    scene.write_text(text.replace("albedo = [0.5, 0.5, 0.5]", "albedo = [0.25, 0.5, 0.5]"))
    how, tinted = small_converge(scene, out)
    assert how == "rendered"
    assert (tinted[..., 0] < tinted[..., 1]).any() and (tinted[..., 0] <= tinted[..., 1]).all()
    assert small_converge(scene, out)[0] == "reused"
    # the camera, and the resolution (the camera frame alone keeps only the aspect ratio)
    scene.write_text(text.replace("fov = 40", "fov = 50"))
    assert small_converge(scene, out)[0] == "rendered"
    assert small_converge(scene, out, (10, 10))[0] == "rendered"
    # and back to the first scene: keyed on content, so rendered again, not a stale reuse
    scene.write_text(text)
    assert small_converge(scene, out)[0] == "rendered"


def test_reference_is_rendered_again_for_another_map_at_the_same_path(tmp_path: Path) -> None:
    envmap = tmp_path / "sky.exr"
    write_exr(envmap, np.ones((8, 16, 3), np.float32))
    scene = tmp_path / "scene.toml"
    scene.write_text(SCENE.read_text().replace('type = "constant"', 'file = "sky.exr"')
                     .replace("radiance = [1.0, 1.0, 1.0]", ""))
    out = tmp_path / "out"
    how, ref = small_converge(scene, out)
    assert how == "rendered" and ref[0, 0, 0] == 1.0  # a corner pixel sees the sky
    write_exr(envmap, np.ones((8, 16, 3), np.float32))  # the same pixels, written again
    assert small_converge(scene, out)[0] == "reused"
    write_exr(envmap, np.full((8, 16, 3), 2.0, np.float32))
    how, ref = small_converge(scene, out)
    assert how == "rendered" and ref[0, 0, 0] == 2.0
    assert small_converge(scene, out)[0] == "reused"


def test_reference_is_rendered_again_for_an_edited_mesh(tmp_path: Path) -> None:
    mesh = tmp_path / "tri.obj"
    tri = "v -1 -1 0\nv 1 -1 0\nv 0 1 0\nf 1 2 3\n"
    mesh.write_text(tri)
    scene = tmp_path / "scene.toml"
    scene.write_text(SCENE.read_text().split("[[shapes]]")[0]
                     + '[[shapes]]\ntype = "mesh"\nfile = "tri.obj"\nmaterial = "grey"\n')
    out = tmp_path / "out"
    assert small_converge(scene, out)[0] == "rendered"
    assert small_converge(scene, out)[0] == "reused"
    mesh.write_text(tri.replace("v 0 1 0", "v 0 0.5 0"))
    assert small_converge(scene, out)[0] == "rendered"
    assert small_converge(scene, out)[0] == "reused"


@pytest.mark.parametrize("name,light", [("mis", "piecewise-compensated"), ("mis+plain", "piecewise"),
                                        ("mis-alias", "alias-compensated"), ("mis-alias+plain", "alias"),
                                        ("piecewise", "piecewise"), ("mis-uniform", "uniform")])
def test_sweep_names_choose_the_light_density(tmp_path: Path, name: str, light: str) -> None:
    """``+plain`` sweeps mis with the plain light density; plain ``mis`` is the compensated one."""
    from tracer.envmap import load_envmap
    from tracer.samplers import parse_sampler_name
    from tracer.scene import load_scene
    from tracer.scene_data import scene_data

    scene = load_scene(SCENE)
    env = load_envmap(scene.env)
    base, kw = parse_sampler_name(name)
    job = converge.make_sweep_job(name, base, kw.get("light", "piecewise"), None, scene_data(scene, 4, 4),
                                  env, 4, 4, [1], 2, 0, compensate=kw.get("compensate"))
    assert job.strategy.light.name == light
