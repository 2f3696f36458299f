"""Bad input that used to survive: every case ends in one clear error line (or a warning where
the input is legal but suspicious), never a traceback, a hang, unbounded memory or a silent
black image ("Renders that survive")."""

from __future__ import annotations

import json
import math
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tracer.errors
from tracer.cli import main
from tracer.converge import parse_spp_list, run_converge
from tracer.envmap import EnvMap, constant_map, load_envmap
from tracer.errors import TracerError
from tracer.hdr_io import read_hdr, read_image, write_exr, write_hdr
from tracer.integrator import render
from tracer.job import RenderOptions
from tracer.meshio import load_mesh
from tracer.scene import EnvSpec, load_scene

ROOT = Path(__file__).resolve().parents[1]
FURNACE = ROOT / "scenes" / "furnace.toml"
SMALL = ["--spp", "1", "--resolution", "8x8", "--no-progress"]
CAMERA = "[camera]\neye = [0, 0, 5]\nlook_at = [0, 0, 0]\nfov = 40\n"
ENV = '[envmap]\ntype = "constant"\n'
MAT = '[materials.m]\ntype = "diffuse"\n'
GiB = 1 << 30


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test from an empty folder: nothing may be written into the repository."""
    monkeypatch.chdir(tmp_path)


def run_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The CLI exits 2 with one ``tracer: error:`` line (argparse or not); returns it."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err and "usage:" not in err, err
    lines = err.strip("\n").split("\n")
    assert lines[0].startswith("tracer: error: "), err
    assert len(lines) == 1 or (len(lines) == 2 and "--help" in lines[1]), err
    return lines[0]


def no_hang(fn: Callable[[], Any], seconds: float = 60.0) -> Any:
    """``fn()`` in a thread; fail (rather than hang the suite) if it has not returned in time."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s (blocked or looping)"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def scene_file(tmp_path: Path, text: str, name: str = "scene.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ---------------------------------------------------------------- converge --spp


@pytest.mark.parametrize(
    "text,expect",
    [
        ("1,1,...,8", "increasing"),
        ("2,1,...,8", "increasing"),
        ("1,2,...,1", "cannot reach"),
        ("1,2,...,8,16", "exactly one count"),
        ("1000,1001,...,100000000", "more than 1000"),
    ],
)
def test_spp_series_that_cannot_grow_to_its_end_is_refused(text: str, expect: str) -> None:
    with pytest.raises(TracerError, match=expect):
        no_hang(lambda: parse_spp_list(text), 20)


def test_spp_series_still_expand() -> None:
    assert parse_spp_list("1,2,4,...,64") == [1, 2, 4, 8, 16, 32, 64]
    assert parse_spp_list("1,2,...,48") == [1, 2, 4, 8, 16, 32, 48]
    assert parse_spp_list("4,6,...,20") == [4, 6, 9, 14, 20]


# ---------------------------------------------------------------- sizes a file cannot hold


def old_rle_hdr(path: Path, width: int, height: int) -> Path:
    """A valid .hdr of ``width`` x ``height`` grey pixels in old-style run-length encoding:
    at most 12 bytes for the first scanline, 8 for each other, however wide. A repeat pixel
    ``1, 1, 1, n`` repeats the last pixel ``n << shift`` times, the shift growing by 8 for
    each repeat pixel in a row; at the start of a line it repeats the previous line's last."""
    assert width % 256 == 0 and width <= 1 << 16
    rest = width - 1
    first = bytes([128, 128, 128, 129, 1, 1, 1, rest & 255])
    if rest >> 8:
        first += bytes([1, 1, 1, rest >> 8])
    other = bytes([1, 1, 1, 0, 1, 1, 1, width >> 8])
    header = f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {height} +X {width}\n".encode()
    path.write_bytes(header + first + other * (height - 1))
    return path


def test_hdr_declaring_more_pixels_than_its_bytes_can_hold_is_refused(tmp_path: Path) -> None:
    # 4096 x 4096 pixels (16.8 M) in 32 KB: 512 pixels a byte; refused before allocating
    path = old_rle_hdr(tmp_path / "huge.hdr", 4096, 4096)
    assert path.stat().st_size < 40_000
    with pytest.raises(TracerError, match=r"huge\.hdr: .*cannot hold the 4096 x 4096 pixels"):
        read_hdr(path)


def test_old_rle_within_the_bound_still_reads(tmp_path: Path) -> None:
    rgb = read_hdr(old_rle_hdr(tmp_path / "ok.hdr", 256, 2))
    assert rgb.shape == (2, 256, 3) and np.all(rgb == rgb[0, 0])


@pytest.mark.parametrize("ext", [".hdr", ".exr"])
def test_map_too_large_for_memory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ext: str
) -> None:
    path = tmp_path / f"map{ext}"
    rgb = np.ones((64, 128, 3), np.float32)
    (write_hdr if ext == ".hdr" else write_exr)(path, rgb)
    monkeypatch.setattr(tracer.errors, "available_memory", lambda: 100_000)
    with pytest.raises(TracerError, match=rf"map\{ext}: image too large to load \(128 x 64 pixels\)"):
        read_image(path)


def test_memory_estimate_is_positive() -> None:
    assert tracer.errors.available_memory() > 0


# ---------------------------------------------------------------- files that never end


@pytest.fixture
def fifo(tmp_path: Path) -> Callable[[str], Path]:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")

    def make(name: str) -> Path:
        p = tmp_path / name
        os.mkfifo(p)
        return p

    return make


def zero_link(tmp_path: Path, name: str) -> Path:
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero here")
    p = tmp_path / name
    p.symlink_to("/dev/zero")
    return p


@pytest.mark.parametrize("name", ["map.hdr", "map.exr"])
def test_map_that_is_a_fifo_or_dev_zero_is_refused(
    tmp_path: Path, fifo: Callable[[str], Path], name: str
) -> None:
    with pytest.raises(TracerError, match=r"fifo_" + name.replace(".", r"\.") + ": is a FIFO"):
        no_hang(lambda: read_image(fifo("fifo_" + name)))
    with pytest.raises(TracerError, match=r"zero_" + name.replace(".", r"\.") + ": is a character device"):
        no_hang(lambda: read_image(zero_link(tmp_path, "zero_" + name)))


def test_scene_that_is_a_fifo_or_dev_zero_is_refused(tmp_path: Path, fifo: Callable[[str], Path]) -> None:
    with pytest.raises(TracerError, match=r"s\.toml: is a FIFO"):
        no_hang(lambda: load_scene(fifo("s.toml")))
    with pytest.raises(TracerError, match=r"z\.toml: is a character device"):
        no_hang(lambda: load_scene(zero_link(tmp_path, "z.toml")))


@pytest.mark.parametrize("ext", [".obj", ".ply"])
def test_mesh_that_is_a_fifo_or_dev_zero_is_refused(
    tmp_path: Path, fifo: Callable[[str], Path], ext: str
) -> None:
    with pytest.raises(TracerError, match="is a FIFO"):
        no_hang(lambda: load_mesh(fifo("m" + ext)))
    with pytest.raises(TracerError, match="is a character device"):
        no_hang(lambda: load_mesh(zero_link(tmp_path, "z" + ext)))
    text = CAMERA + ENV + MAT + f'[[shapes]]\ntype = "mesh"\nfile = "m{ext}"\nmaterial = "m"\n'
    with pytest.raises(TracerError, match=r"shapes\[0\]\.file: .*is a FIFO"):
        no_hang(lambda: load_scene(scene_file(tmp_path, text)))


def test_oversized_scene_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "big.toml"
    with open(p, "wb") as fh:
        fh.truncate(64 << 20)  # sparse: no disk used
    with pytest.raises(TracerError, match=r"big\.toml: the scene file is .* more than"):
        load_scene(p)


# ---------------------------------------------------------------- resolutions


@pytest.mark.parametrize("res", ["99999999x99999999", "20000x20000"])
def test_cli_resolution_that_cannot_fit_in_memory(
    res: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracer.errors, "available_memory", lambda: 8 * GiB)
    for cmd in (["render", str(FURNACE)], ["converge", str(FURNACE)]):
        line = run_error([*cmd, "--resolution", res, "--no-progress"], capsys)
        assert "--resolution" in line and "too large" in line and "memory" in line


def test_cli_resolution_that_fits_is_accepted(tmp_path: Path) -> None:
    assert main(["render", str(FURNACE), *SMALL, "--out", str(tmp_path / "o.exr")]) == 0


@pytest.mark.parametrize(
    "table,expect",
    [
        ("[render]\nresolution = [1000000000, 1000000000]\n", r"render\.resolution = .* too large: the film needs"),
        ("[render]\nresolution = [1e9, 1e9]\n", r"render\.resolution must be \[width, height\]"),
    ],
)
def test_scene_resolution_that_cannot_fit_in_memory(tmp_path: Path, table: str, expect: str) -> None:
    with pytest.raises(TracerError, match=expect):
        load_scene(scene_file(tmp_path, CAMERA + ENV + table))


def test_procedural_map_resolution_that_cannot_fit_in_memory(tmp_path: Path) -> None:
    text = CAMERA + '[envmap]\ntype = "sky"\nresolution = [2000000, 1000000]\n'
    with pytest.raises(TracerError, match=r"envmap\.resolution = .* too large: the map needs"):
        load_scene(scene_file(tmp_path, text))


# ---------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--env-rotation", "nan"), ("--env-rotation", "inf"), ("--exposure", "nan"),
        ("--exposure=-inf", None), ("--env-scale", "inf"), ("--env-scale", "nan"),
    ],
)  # fmt: skip
def test_non_finite_flags_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str | None
) -> None:
    given = [flag] if value is None else [flag, value]
    line = run_error(["render", str(FURNACE), *SMALL, "--out", str(tmp_path / "o.exr"), *given], capsys)
    assert flag.split("=")[0] in line and "finite" in line
    assert not (tmp_path / "o.exr").exists()


def test_env_scale_that_makes_the_map_black_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_error(
        ["render", str(FURNACE), *SMALL, "--out", str(tmp_path / "o.exr"), "--env-scale", "1e-45"], capsys
    )
    assert "constant envmap" in line and "render would be black" in line


def test_infinite_scale_blames_the_scale_not_the_pixels() -> None:
    with pytest.raises(TracerError, match="scale must be a positive finite number") as e:
        load_envmap(EnvSpec(kind="constant", scale=math.inf))
    assert "pixels" not in str(e.value)
    with pytest.raises(TracerError, match="rotation must be a finite number"):
        load_envmap(EnvSpec(kind="constant", rotation_deg=math.nan))


def test_scale_that_overflows_float32_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bright.exr"
    write_exr(path, np.full((8, 16, 3), 1e10, np.float32))
    with pytest.raises(TracerError, match=r"bright\.exr: scaled by 1e\+30, .* beyond float32"):
        load_envmap(EnvSpec(kind="file", path=path, scale=1e30))
    # a scale float32 cannot hold is fine where the map can take it
    dim = tmp_path / "dim.exr"
    write_exr(dim, np.full((8, 16, 3), 1e-20, np.float32))
    env = load_envmap(EnvSpec(kind="file", path=dim, scale=1e39))
    assert np.allclose(env.rgb, 1e19, rtol=1e-6)


def test_map_of_finite_huge_pixels_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hot.exr"
    write_exr(path, np.full((8, 16, 3), 3e38, np.float32))
    line = run_error(["render", str(FURNACE), *SMALL, "--out", str(tmp_path / "o.exr"), "--envmap", str(path)], capsys)
    assert "hot.exr" in line and "power over the sphere" in line and "overflow" in line
    assert not (tmp_path / "o.exr").exists()


@pytest.mark.parametrize(
    "text,expect",
    [
        (CAMERA.replace("eye = [0, 0, 5]", "eye = [1e308, 0, 5]") + ENV, r"camera\.eye must hold numbers at most 1e\+12"),
        (CAMERA + ENV + MAT + '[[shapes]]\ntype = "sphere"\ncenter = [0, 0, 0]\nradius = 1e200\nmaterial = "m"\n',
         r"shapes\[0\]\.radius must be at most 1e\+12"),
        (CAMERA + ENV + MAT + '[[shapes]]\ntype = "quad"\ncorner = [0, 0, 0]\nedge1 = [1e300, 0, 0]\n'
         'edge2 = [0, 1, 0]\nmaterial = "m"\n', r"shapes\[0\]\.edge1 must hold numbers at most"),
        (CAMERA + ENV + MAT + '[[shapes]]\ntype = "mesh"\nfile = "t.obj"\nscale = 1e200\nmaterial = "m"\n',
         r"shapes\[0\]\.scale must be at most"),
        (CAMERA + ENV + MAT + '[[shapes]]\ntype = "mesh"\nfile = "far.obj"\nmaterial = "m"\n',
         r"shapes\[0\]: triangle 0 of far\.obj lies beyond 1e\+12"),
    ],
)  # fmt: skip
def test_absurd_scene_magnitudes_are_refused(tmp_path: Path, text: str, expect: str) -> None:
    (tmp_path / "t.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (tmp_path / "far.obj").write_text("v 1e300 0 0\nv -1e300 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(TracerError, match=expect):
        load_scene(scene_file(tmp_path, text))


# ---------------------------------------------------------------- tracebacks


def test_obj_index_beyond_int64_is_an_error(tmp_path: Path) -> None:
    for corner in ("100000000000000000000000000", "1//100000000000000000000000000"):
        p = tmp_path / "big.obj"
        p.write_text(f"v 0 0 0\nv 1 0 0\nv 0 1 0\nvn 0 0 1\nf 1//1 2//1 {corner}\n")
        with pytest.raises(TracerError, match=r"big\.obj:5: .* index 1000.* is out of range"):
            load_mesh(p)


PLY_ASCII = (
    "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
    "element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 0 0\n0 1 0\n"
)


@pytest.mark.parametrize(
    "face,expect",
    [("inf 0 1 2", "bad list length"), ("nan 0 1 2", "bad list length"),
     ("3 0 1 1e26", "vertex index 1e\\+26 out of range"), ("3 0 1 inf", "vertex index inf out of range")],
)  # fmt: skip
def test_ply_counts_and_indices_out_of_range_are_errors(tmp_path: Path, face: str, expect: str) -> None:
    p = tmp_path / "m.ply"
    p.write_text(PLY_ASCII + face + "\n")
    with pytest.raises(TracerError, match=expect):
        load_mesh(p)


@pytest.mark.parametrize(
    "ctype,count,expect",
    [("uint", 4_000_000_000, "truncated"), ("int", 2_000_000_000, "truncated"), ("int", -5, "negative list length")],
)  # fmt: skip
def test_binary_ply_list_length_beyond_the_file_is_an_error(
    tmp_path: Path, ctype: str, count: int, expect: str
) -> None:
    head = (
        "ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
        f"property float z\nelement face 1\nproperty list {ctype} int vertex_indices\nend_header\n"
    ).encode()
    body = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)
    body += struct.pack("<I" if ctype == "uint" else "<i", count) + struct.pack("<3i", 0, 1, 2)
    p = tmp_path / "m.ply"
    p.write_bytes(head + body)
    with pytest.raises(TracerError, match=expect):
        load_mesh(p)


@pytest.mark.parametrize("depth", [3000, 100_000])
def test_deeply_nested_toml_is_an_error(tmp_path: Path, depth: int) -> None:
    text = "x = " + "[" * depth + "]" * depth + "\n" + CAMERA + ENV
    with pytest.raises(TracerError, match=r"s\.toml: invalid TOML: .*nested too deeply"):
        load_scene(scene_file(tmp_path, text, "s.toml"))
    inline = "x = " + "{a = " * depth + "1" + "}" * depth + "\n"
    with pytest.raises(TracerError, match=r"s\.toml: invalid TOML: .*nested too deeply"):
        load_scene(scene_file(tmp_path, inline, "s.toml"))


def test_nested_value_that_parses_is_refused_by_its_key(tmp_path: Path) -> None:
    text = CAMERA.replace("eye = [0, 0, 5]", "eye = " + "[" * 200 + "]" * 200) + ENV
    with pytest.raises(TracerError, match=r"camera\.eye must be an array of 3 numbers"):
        load_scene(scene_file(tmp_path, text, "s.toml"))


@pytest.mark.parametrize("seed", [str(2**70), str(2**32), "-1"])
def test_seed_outside_32_bits_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], seed: str) -> None:
    for cmd in (["render", str(FURNACE), *SMALL], ["converge", str(FURNACE)], ["fit-flow", "m.exr"]):
        line = run_error([*cmd, "--seed", seed], capsys)
        assert "--seed" in line and "4294967295" in line and "32 bits" in line


def test_seed_in_a_scene_file_outside_32_bits_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TracerError, match=r"render\.seed must be an integer from 0 to 4294967295"):
        load_scene(scene_file(tmp_path, CAMERA + ENV + "[render]\nseed = 4294967296\n"))
    assert load_scene(scene_file(tmp_path, CAMERA + ENV + "[render]\nseed = 4294967295\n")).render.seed == 2**32 - 1


def test_largest_seed_renders(tmp_path: Path) -> None:
    assert main(["render", str(FURNACE), *SMALL, "--out", str(tmp_path / "o.exr"), "--seed", str(2**32 - 1)]) == 0


def test_converge_without_samplers_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = run_error(["converge", str(FURNACE), "--samplers", ",", "--out", str(tmp_path / "c")], capsys)
    assert "--samplers" in line and "at least one sampler" in line
    with pytest.raises(TracerError, match="at least one sampler"):
        run_converge(RenderOptions(scene=FURNACE), [], [1, 2], tmp_path / "c", progress=False)


def test_converge_out_that_is_a_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    line = run_error(["converge", str(FURNACE), "--out", str(taken), "--spp", "1,2", "--ref-spp", "1",
                      "--resolution", "4x4", "--samplers", "bsdf", "--no-progress"], capsys)  # fmt: skip
    assert "taken" in line and "existing file" in line
    assert taken.read_text() == "not a folder"


@pytest.fixture(scope="module")
def tiny_flow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("flow")
    env = folder / "sky.exr"
    write_exr(env, np.linspace(0.1, 2.0, 8 * 16 * 3, dtype=np.float32).reshape(8, 16, 3))
    model = folder / "sky.pt"
    argv = ["fit-flow", str(env), "--out", str(model), "--max-steps", "2", "--hidden", "8", "--no-progress"]
    assert main(argv) == 0
    return model


@pytest.mark.parametrize("out", ["x.exr", "x", "dir"])
def test_flow_report_to_an_unwritable_kind_of_file_is_an_error(
    tiny_flow: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str
) -> None:
    (tmp_path / "dir.png").mkdir()
    target = tmp_path / ("dir.png" if out == "dir" else out)
    capsys.readouterr()
    line = run_error(["flow-report", str(tiny_flow), "--out", str(target)], capsys)
    assert str(target) in line
    assert ("is a directory" in line) if out == "dir" else ("use .png" in line)


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_fit_flow_out_that_cannot_be_written_is_refused_before_the_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    env = tmp_path / "m.exr"
    write_exr(env, np.ones((8, 16, 3), np.float32))
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path if where == "a directory" else tmp_path / "file.txt" / "model.pt"
    line = run_error(["fit-flow", str(env), "--out", str(out), "--max-steps", "1", "--no-progress"], capsys)
    assert "--out" in line and ("is a directory" in line or "is not a directory" in line)


# ---------------------------------------------------------------- negative pixels, messages


def test_dim_night_map_with_small_negatives_is_clamped_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rgb = np.full((8, 16, 3), 2e-3, np.float32)
    rgb[1, 2, 0] = -1e-3  # half the map's mean below zero: refused by the old 1% rule
    rgb[5, 5] = -4e-4
    path = tmp_path / "night.exr"
    write_exr(path, rgb)
    env = load_envmap(EnvSpec(kind="file", path=path))
    assert env.clamped_pixels == 2 and env.rgb.min() == 0.0
    err = capsys.readouterr().err
    assert err.startswith("tracer: warning: ") and "night.exr: 2 pixels have negative values" in err
    assert "-0.001" in err
    assert isinstance(env, EnvMap)


def test_render_log_counts_clamped_pixels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rgb = np.full((8, 16, 3), 2e-3, np.float32)
    rgb[1, 2, 0] = -1e-3
    path = tmp_path / "night.exr"
    write_exr(path, rgb)
    assert main(["render", str(FURNACE), *SMALL, "--envmap", str(path), "--out", str(tmp_path / "o.exr")]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["envmap_clamped_negative_pixels"] == 1


@pytest.mark.parametrize(
    "argv",
    [["render", str(FURNACE), "--spp", "0"], ["render"], ["nosuch"], ["converge", str(FURNACE), "--ref-spp", "x"],
     ["fit-flow"], ["render", str(FURNACE), "--bogus"]],
)  # fmt: skip
def test_argument_errors_are_one_tracer_error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    line = run_error(argv, capsys)
    assert not line.startswith("tracer render: error") and "usage" not in line


def test_uncompressed_exr_smaller_than_its_data_window_is_refused(tmp_path: Path) -> None:
    import OpenEXR

    rgb = np.ones((64, 128), np.float32)
    header = {"compression": OpenEXR.NO_COMPRESSION, "type": OpenEXR.scanlineimage}
    path = tmp_path / "cut.exr"
    with OpenEXR.File(header, {c: rgb for c in "RGB"}) as exr:
        exr.write(str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 4])  # the header and a quarter of the pixels
    with pytest.raises(TracerError, match=r"cut\.exr: corrupt OpenEXR file: its data window of 128 x 64"):
        read_image(path)


def test_a_batch_too_large_for_int32_path_ids_is_refused() -> None:
    """Path ids are int32 (tracer.pool.INDEX): a batch of 2^31 paths is refused before any
    allocation, naming the limit."""
    from tracer.samplers import make_strategy

    env = EnvMap(constant_map())
    with pytest.raises(TracerError, match=r"at most 2\^31 - 1"):
        render(None, env, make_strategy("bsdf", env), 4, 4, 1, 1, 0, batch_paths=2**31)


def test_an_image_of_more_than_2_32_pixels_is_refused() -> None:
    """A path's key to its numbers holds its pixel in 32 bits (tracer.rng.path_key): an image
    of more pixels is refused before its film is allocated, naming the limit."""
    from tracer.samplers import make_strategy

    env = EnvMap(constant_map())
    with pytest.raises(TracerError, match=r"65536x65537 pixels: at most 2\^32"):
        render(None, env, make_strategy("bsdf", env), 65536, 65537, 1, 1, 0)
