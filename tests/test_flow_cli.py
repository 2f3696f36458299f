"""``tracer fit-flow``, ``tracer flow-report`` and ``render --sampler flow`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tracer.cli import main
from tracer.envmap import sky_map
from tracer.hdr_io import write_exr

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--max-steps", "60", "--hidden", "8", "--no-progress"]
#: the same, for each model
MODELS = {
    "pixel": ["--model", "pixel", *TINY],
    "spline": ["--model", "spline", "--layers", "2", "--bins", "8", *TINY],
    # a real-line family (flows/plane.py); tests/test_flow_families.py covers each of them
    "glow": ["--model", "glow", "--layers", "2", *TINY],
}


@pytest.fixture(scope="module")
def sky_exr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("maps") / "sky.exr"
    write_exr(p, sky_map(np.array([0.5, 0.6, 0.8]), np.array([0.3, 0.6, 0.4]), 10.0, np.array([30.0] * 3), 16, 32, 2))
    return p


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_fit_report_render(kind: str, sky_exr: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "sky.pt"
    assert main(["fit-flow", str(sky_exr), "--out", str(model), *MODELS[kind]]) == 0
    out = capsys.readouterr().out
    assert "KL(target || flow)" in out and model.exists()
    assert main(["flow-report", str(model), "--out", str(tmp_path / "r.png")]) == 0
    from PIL import Image

    with Image.open(tmp_path / "r.png") as im:
        assert im.format == "PNG"
    exr = tmp_path / "f.exr"
    for args in (["--sampler", "flow"], ["--sampler", "mis", "--light", "flow"]):
        rc = main(["render", str(ROOT / "scenes" / "furnace.toml"), "--envmap", str(sky_exr), *args,
                   "--flow-model", str(model), "--spp", "2", "--resolution", "8x8", "--out", str(exr),
                   "--no-progress"])
        assert rc == 0
        log = json.loads(exr.with_suffix(".json").read_text())
        assert log["light"] == "flow" and log["nan_inf_samples"] == 0


def test_render_refuses_a_flow_of_another_map(sky_exr: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "sky.pt"
    assert main(["fit-flow", str(sky_exr), "--out", str(model), *TINY]) == 0
    capsys.readouterr()
    rc = main(["render", str(ROOT / "scenes" / "furnace.toml"), "--sampler", "flow", "--flow-model", str(model),
               "--spp", "1", "--resolution", "4x4", "--out", str(tmp_path / "x.exr"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "sky.pt" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("bad", ["black", "nan"])
def test_fit_flow_refuses_unusable_maps(bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rgb = np.zeros((8, 16, 3), np.float32)
    if bad == "nan":
        rgb[:] = 1.0
        rgb[2, 3, 0] = np.nan
    p = tmp_path / f"{bad}.exr"
    write_exr(p, rgb)
    assert main(["fit-flow", str(p), "--out", str(tmp_path / "m.pt"), *TINY]) == 2
    err = capsys.readouterr().err
    assert f"{bad}.exr" in err and err.startswith("tracer: error:")


def test_fit_flow_refuses_spline_options_for_the_pixel_flow(sky_exr: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    for model in ("pixel", "realnvp"):
        rc = main(["fit-flow", str(sky_exr), "--out", str(tmp_path / "m.pt"), "--bins", "8", "--model", model,
                   *TINY])
        err = capsys.readouterr().err
        assert rc == 2 and f"--bins is an option of --model spline, not of --model {model}" in err
        assert not (tmp_path / "m.pt").exists()
    rc = main(["fit-flow", str(sky_exr), "--out", str(tmp_path / "m.pt"), "--time-limit", "-1", *TINY])
    err = capsys.readouterr().err
    assert rc == 2 and "--time-limit must be positive" in err and not (tmp_path / "m.pt").exists()
