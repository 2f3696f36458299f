"""Tests of the command line: every kind of bad input is one line on stderr and exit status 2;
and a small happy-path render with its outputs and log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tracer.cli import main
from tracer.hdr_io import read_exr, write_exr
from tracer.samplers import SHADOW_RR

ROOT = Path(__file__).resolve().parents[1]
FURNACE = ROOT / "scenes" / "furnace.toml"
SMALL = ["--spp", "2", "--resolution", "16x16", "--no-progress"]

CAMERA = "[camera]\neye = [0, 0, 5]\nlook_at = [0, 0, 0]\nfov = 40\n"
ENV = '[envmap]\ntype = "constant"\n'
SPHERE = (
    '[materials.m]\ntype = "diffuse"\n'
    '[[shapes]]\ntype = "sphere"\ncenter = [0, 0, 0]\nradius = 1\nmaterial = "m"\n'
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test from an empty folder: nothing may be written into the repository."""
    monkeypatch.chdir(tmp_path)


def run_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI in-process; it must exit 2 with one ``tracer: error:`` line. Returns it."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("tracer: error: "), err
    return lines[0]


def run_argparse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """argparse refuses the flags: SystemExit(2), one ``tracer: error:`` line and at most a
    short hint after it (no usage block). Returns stderr."""
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert lines[0].startswith("tracer: error: "), err
    assert len(lines) <= 2 and "usage:" not in err, err
    return err


def render_args(tmp_path: Path, *extra: str, scene: Path = FURNACE) -> list[str]:
    return ["render", str(scene), *SMALL, "--out", str(tmp_path / "out.exr"), *extra]


def envmap_file(tmp_path: Path, rgb: np.ndarray, name: str = "map.exr") -> Path:
    path = tmp_path / name
    write_exr(path, rgb)
    return path


def scene_file(tmp_path: Path, text: str, name: str = "scene.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- environment maps


def test_missing_envmap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_error(render_args(tmp_path, "--envmap", "nonexistent.exr"), capsys)
    assert "nonexistent.exr" in line and "no such file" in line


@pytest.mark.parametrize(
    "data,expect",
    [
        (b"this is not an image at all" * 10, "not an OpenEXR file"),
        (b"\x76\x2f\x31\x01" + bytes(range(256)) * 4, "corrupt or unreadable OpenEXR file"),
        (b"", "not an OpenEXR file"),
    ],
)
def test_corrupt_envmap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, expect: str
) -> None:
    path = tmp_path / "garbage.exr"
    path.write_bytes(data)
    line = run_error(render_args(tmp_path, "--envmap", str(path)), capsys)
    assert "garbage.exr" in line and expect in line


def test_envmap_of_unsupported_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "map.png"
    path.write_bytes(b"\x89PNG")
    line = run_error(render_args(tmp_path, "--envmap", str(path)), capsys)
    assert "map.png" in line and "unsupported image format" in line


@pytest.mark.parametrize(
    "value,expect",
    [(np.nan, "NaN or infinite"), (np.inf, "NaN or infinite"), (-np.inf, "NaN or infinite")],
)  # fmt: skip
def test_bad_envmap_pixels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: float, expect: str
) -> None:
    rgb = np.ones((8, 16, 3), np.float32)
    rgb[3, 5, 1] = value
    path = envmap_file(tmp_path, rgb, "bad_pixels.exr")
    line = run_error(render_args(tmp_path, "--envmap", str(path)), capsys)
    assert "bad_pixels.exr" in line and expect in line and "row 3, column 5" in line


@pytest.mark.parametrize("low", [-1e-4, -0.5])
def test_negative_pixels_are_clamped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], low: float
) -> None:
    rgb = np.ones((8, 16, 3), np.float32)
    rgb[3, 5, 1] = low
    rgb[6, 1] = -2e-4
    path = envmap_file(tmp_path, rgb, "ringing.exr")
    assert main(render_args(tmp_path, "--envmap", str(path))) == 0
    log = json.loads((tmp_path / "out.json").read_text())
    assert log["envmap_clamped_negative_pixels"] == 2
    assert log["envmap"].endswith("ringing.exr")
    err = capsys.readouterr().err
    assert "tracer: warning:" in err and "ringing.exr: 2 pixels have negative values" in err


def test_black_envmap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = envmap_file(tmp_path, np.zeros((8, 16, 3), np.float32), "black.exr")
    line = run_error(render_args(tmp_path, "--envmap", str(path)), capsys)
    assert "black.exr" in line and "black everywhere" in line


def test_bad_env_scale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = run_argparse_error(render_args(tmp_path, "--env-scale", "0"), capsys)
    assert "--env-scale" in err


# ---------------------------------------------------------------- flags


@pytest.mark.parametrize(
    "flags,expect",
    [
        (["--sampler", "magic"], "--sampler"),
        (["--spp", "0"], "--spp"),
        (["--spp", "-3"], "--spp"),
        (["--spp", "many"], "--spp"),
        (["--resolution", "0x10"], "--resolution"),
        (["--resolution", "16"], "--resolution"),
        (["--max-depth", "-1"], "--max-depth"),
        (["--light", "bsdf"], "--light"),
        (["--sequence", "halton"], "--sequence"),
        (["--shadow-rr", "-1"], "--shadow-rr"),
        (["--shadow-rr", "nan"], "--shadow-rr"),
        (["--shadow-rr", "inf"], "--shadow-rr"),
    ],
)
def test_bad_flags_are_argparse_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], expect: str
) -> None:
    argv = ["render", str(FURNACE), "--out", str(tmp_path / "out.exr"), "--no-progress", *flags]
    err = run_argparse_error(argv, capsys)
    assert expect in err


def test_no_command_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    run_argparse_error([], capsys)


@pytest.mark.parametrize("sampler", ["piecewise", "uniform", "bsdf"])
def test_compensate_needs_mis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sampler: str
) -> None:
    line = run_error(render_args(tmp_path, "--sampler", sampler, "--compensate"), capsys)
    assert "--compensate" in line and "--sampler mis" in line
    line = run_error(render_args(tmp_path, "--sampler", sampler, "--no-compensate"), capsys)
    assert "--no-compensate" in line and "--sampler mis" in line and sampler in line


@pytest.mark.parametrize("flag", ["--compensate", "--no-compensate"])
def test_compensate_needs_a_tabulated_light(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    """The uniform light has no table to compensate: the flag would be ignored, so it is refused."""
    line = run_error(render_args(tmp_path, "--sampler", "mis", "--light", "uniform", flag), capsys)
    assert flag in line and "--light uniform" in line and "piecewise or alias" in line


@pytest.mark.parametrize("flags,light", [((), "piecewise-compensated"),
                                         (("--compensate",), "piecewise-compensated"),
                                         (("--no-compensate",), "piecewise"),
                                         (("--light", "alias"), "alias-compensated"),
                                         (("--light", "alias", "--no-compensate"), "alias")])
def test_mis_takes_the_compensated_density_by_default(
    tmp_path: Path, flags: tuple[str, ...], light: str
) -> None:
    """pbrt-v4's default: under MIS the light density is the compensated one unless
    --no-compensate says otherwise; the log names the light sampler that ran."""
    assert main(render_args(tmp_path, "--sampler", "mis", *flags)) == 0
    assert json.loads((tmp_path / "out.json").read_text())["light"] == light


def test_reference_of_the_wrong_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = envmap_file(tmp_path, np.ones((8, 12, 3), np.float32), "ref.exr")
    line = run_error(render_args(tmp_path, "--reference", str(ref)), capsys)
    assert "ref.exr" in line and "reference is 12x8" in line and "16x16" in line


def test_reference_with_nan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rgb = np.ones((16, 16, 3), np.float32)
    rgb[0, 0, 0] = np.nan
    ref = envmap_file(tmp_path, rgb, "ref.exr")
    line = run_error(render_args(tmp_path, "--reference", str(ref)), capsys)
    assert "ref.exr" in line and "non-finite" in line


def test_missing_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_error(render_args(tmp_path, "--reference", str(tmp_path / "nope.exr")), capsys)
    assert "nope.exr" in line and "no such file" in line


# ---------------------------------------------------------------- scene files


def test_missing_scene_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_error(render_args(tmp_path, scene=tmp_path / "nowhere.toml"), capsys)
    assert "nowhere.toml" in line and "no such scene file" in line


@pytest.mark.parametrize(
    "text,expect",
    [
        (CAMERA + ENV + "[render\nspp = 4\n", "invalid TOML"),
        (CAMERA + ENV + "spp = = 4\n", "invalid TOML"),
        (CAMERA.replace("fov", "fov_deg") + ENV + SPHERE, "unknown key camera.fov_deg"),
        (CAMERA + ENV + SPHERE + "[extra]\nx = 1\n", "unknown key extra"),
        (ENV + SPHERE, "missing required table [camera]"),
        (CAMERA + SPHERE, "missing required table [envmap]"),
        (CAMERA + ENV + SPHERE.replace("radius = 1", "radius = -1"), "shapes[0].radius"),
        (CAMERA + ENV + SPHERE.replace('material = "m"', 'material = "x"'), "unknown material"),
    ],
)
def test_malformed_scene(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expect: str
) -> None:
    scene = scene_file(tmp_path, text, "broken.toml")
    line = run_error(render_args(tmp_path, scene=scene), capsys)
    assert "broken.toml" in line and expect in line


def test_scene_envmap_file_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = scene_file(tmp_path, CAMERA + '[envmap]\nfile = "maps/absent.exr"\n' + SPHERE)
    line = run_error(render_args(tmp_path, scene=scene), capsys)
    assert "absent.exr" in line and "no such file" in line


# ---------------------------------------------------------------- a real process


def test_subprocess_missing_map_is_one_line_without_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tracer", "render", str(FURNACE), "--envmap", "missing.exr",
         "--out", str(tmp_path / "x.exr"), "--no-progress"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tracer: error: ") and "missing.exr" in lines[0]
    assert not (tmp_path / "x.exr").exists()


# ---------------------------------------------------------------- happy path


def test_render_writes_outputs_and_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "f.exr"
    code = main(["render", str(FURNACE), "--spp", "2", "--resolution", "16x16", "--out", str(out),
                 "--no-progress"])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0
    for suffix in (".exr", ".png", ".json"):
        assert out.with_suffix(suffix).is_file(), suffix
    assert "wrote" in stdout and str(out) in stdout
    log = json.loads(out.with_suffix(".json").read_text())
    for key in ("sampler", "spp", "resolution", "max_depth", "seed", "time_s", "paths_per_second",
                "mean_pixel_variance", "nan_inf_samples", "versions"):  # fmt: skip
        assert key in log, key
    for key in ("setup_compile", "render", "light_sampling", "tracing", "shading"):
        assert isinstance(log["time_s"][key], float) and log["time_s"][key] >= 0, key
    assert log["sampler"] == "mis"  # the scene's default
    assert log["spp"] == 2
    assert log["resolution"] == [16, 16]
    assert log["max_depth"] == 5 and log["seed"] == 0  # from furnace.toml / the defaults
    assert log["sequence"] == "independent"
    assert log["shadow_rr"] == SHADOW_RR
    assert log["paths_per_second"] > 0
    assert log["mean_pixel_variance"] >= 0
    assert log["nan_inf_samples"] == 0
    assert {"python", "numpy", "numba"} <= set(log["versions"])
    assert "mse" not in log and "relmse" not in log
    img = read_exr(out)
    assert img.shape == (16, 16, 3)
    assert np.all(np.isfinite(img))
    # the furnace: the corners see only the environment, radiance exactly 1
    np.testing.assert_allclose(img[[0, 0, -1, -1], [0, -1, 0, -1]], 1.0, rtol=1e-6)


def two_renders_differ_in_key_and_image(tmp_path: Path, flag: str, values: tuple[str, str],
                                        sampler: str) -> dict[str, dict]:
    """Render the furnace (8x8, 4 spp) once per value of ``flag``; assert that the two
    images and checkpoint keys differ, and return the two logs by value."""
    logs = {}
    for v in values:
        out = tmp_path / f"{v}.exr"
        assert main(["render", str(FURNACE), "--spp", "4", "--resolution", "8x8", "--out", str(out),
                     "--no-progress", flag, v, "--sampler", sampler]) == 0  # fmt: skip
        logs[v] = json.loads(out.with_suffix(".json").read_text())
    a, b = values
    assert logs[a]["render_key"] != logs[b]["render_key"]
    assert not np.array_equal(read_exr(tmp_path / f"{a}.exr"), read_exr(tmp_path / f"{b}.exr"))
    return logs


def test_sequence_sobol_changes_the_numbers_and_the_resume_key(tmp_path: Path) -> None:
    """--sequence sobol is logged, draws other numbers than the default, and is part of the
    checkpoint key (a render of one sequence is never resumed with the other)."""
    logs = two_renders_differ_in_key_and_image(tmp_path, "--sequence", ("independent", "sobol"), "bsdf")
    for seq, log in logs.items():
        assert log["sequence"] == seq


def test_shadow_rr_is_logged_and_part_of_the_resume_key(tmp_path: Path) -> None:
    """--shadow-rr is logged, changes the image (at 1 most of the furnace's next-event terms
    are rouletted) and is part of the checkpoint key; under bsdf, which traces no shadow
    ray, it is 0 whatever the flag says."""
    logs = two_renders_differ_in_key_and_image(tmp_path, "--shadow-rr", ("0", "1"), "mis")
    for srr, log in logs.items():
        assert log["shadow_rr"] == float(srr)
    out = tmp_path / "bsdf.exr"
    assert main(["render", str(FURNACE), "--spp", "1", "--resolution", "4x4", "--out", str(out),
                 "--no-progress", "--shadow-rr", "1", "--sampler", "bsdf"]) == 0  # fmt: skip
    assert json.loads(out.with_suffix(".json").read_text())["shadow_rr"] == 0.0


def test_reference_adds_error_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = tmp_path / "first.exr"
    assert main(render_args(tmp_path, "--out", str(first), "--seed", "3")) == 0
    # against a constant reference of 1: MSE and relMSE as defined (eps = 1e-2)
    ref = envmap_file(tmp_path, np.ones((16, 16, 3), np.float32), "ones.exr")
    other = tmp_path / "other.exr"
    capsys.readouterr()
    argv = render_args(tmp_path, "--out", str(other), "--seed", "3", "--reference", str(ref))
    assert main(argv) == 0
    assert "MSE" in capsys.readouterr().out
    log = json.loads(other.with_suffix(".json").read_text())
    img = read_exr(first).astype(np.float64)  # the same seed renders the same image
    np.testing.assert_array_equal(read_exr(other), read_exr(first))
    mse = float(((img - 1.0) ** 2).mean())
    assert mse > 1e-4
    assert log["mse"] == pytest.approx(mse, rel=1e-6)
    assert log["relmse"] == pytest.approx(mse / 1.01, rel=1e-6)


def test_image_against_itself_has_zero_error(tmp_path: Path) -> None:
    first = tmp_path / "first.exr"
    assert main(render_args(tmp_path, "--out", str(first), "--seed", "3")) == 0
    again = tmp_path / "again.exr"
    argv = render_args(tmp_path, "--out", str(again), "--seed", "3", "--reference", str(first))
    assert main(argv) == 0
    np.testing.assert_array_equal(read_exr(again), read_exr(first))  # deterministic
    log = json.loads(again.with_suffix(".json").read_text())
    assert log["mse"] == 0.0 and log["relmse"] == 0.0
