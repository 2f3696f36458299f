"""Renders that survive: atomic output sets, checkpoints, and resuming a killed render exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tracer.checkpoint import checkpoint_path, load_checkpoint
from tracer.errors import TracerError
from tracer.film import Film
from tracer.hdr_io import read_image
from tracer.job import RenderOptions, run_render

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT / "scenes" / "spheres.toml"


def opts(out: Path, **kw: object) -> RenderOptions:
    base = {"scene": SCENE, "spp": 8, "resolution": (24, 16), "out": out, "progress": False}
    return RenderOptions(**{**base, **kw})


def test_film_merge_equals_sequential_accumulation() -> None:
    """Chan et al.'s pairwise update: two films of disjoint samples merge into the film of all."""
    rng = np.random.default_rng(0)
    x = rng.lognormal(size=(12, 6, 3))

    def film_of(samples: np.ndarray) -> Film:
        f = Film(3, 2)
        for s in samples:  # Welford, as the kernels do it
            f.count += 1
            d = s - f.mean
            f.mean += d / f.count[:, None]
            f.m2 += d * (s - f.mean)
        return f

    a, whole = film_of(x[:5]), film_of(x)
    a.merge(film_of(x[5:]))
    np.testing.assert_array_equal(a.count, whole.count)
    np.testing.assert_allclose(a.mean, whole.mean, rtol=1e-13)
    np.testing.assert_allclose(a.m2, whole.m2, rtol=1e-12)
    empty = Film(3, 2)
    empty.merge(whole)  # into an empty film: exactly the other
    np.testing.assert_array_equal(empty.mean, whole.mean)
    np.testing.assert_array_equal(empty.m2, whole.m2)


def test_chunked_render_with_checkpoints_equals_one_pass(tmp_path: Path) -> None:
    one = run_render(opts(tmp_path / "one.exr"))
    chunked = run_render(opts(tmp_path / "chunked.exr", chunk_spp=3, checkpoint_every=0.0))
    np.testing.assert_array_equal(read_image(tmp_path / "one.exr"), read_image(tmp_path / "chunked.exr"))
    assert one["render_key"] == chunked["render_key"]
    assert not checkpoint_path(tmp_path / "chunked.exr").exists()  # removed once the render is written


def test_resume_adds_samples_to_a_kept_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "grow.exr"
    run_render(opts(out, spp=4, keep_checkpoint=True))
    film, done, _ = load_checkpoint(checkpoint_path(out), json.loads(out.with_suffix(".json").read_text())["render_key"], 24, 16)
    assert done == 4 and film.count.min() == 4
    log = run_render(opts(out, spp=8, resume=True))
    assert log["resumed_from_spp"] == 4
    run_render(opts(tmp_path / "straight.exr", spp=8))
    np.testing.assert_array_equal(read_image(out), read_image(tmp_path / "straight.exr"))


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "x.exr"
    run_render(opts(out, spp=2, keep_checkpoint=True))
    for change in ({"seed": 7}, {"sampler": "bsdf"}, {"max_depth": 2}, {"env_rotation": 30.0}):
        with pytest.raises(TracerError, match="checkpoint is of another render"):
            run_render(opts(out, spp=4, resume=True, **change))
    checkpoint_path(out).write_bytes(b"not a checkpoint")
    with pytest.raises(TracerError, match="x.ckpt.npz: not a checkpoint"):
        run_render(opts(out, spp=4, resume=True))


def test_killed_render_resumes_bit_for_bit(tmp_path: Path) -> None:
    """SIGKILL mid-render (checkpoint after every chunk), then --resume: the uninterrupted image."""
    out = tmp_path / "killed.exr"
    ckpt = checkpoint_path(out)
    args = [sys.executable, "-m", "tracer.cli", "render", str(SCENE), "--resolution", "48x32",
            "--spp", "400", "--no-progress"]
    slow = ["--chunk-spp", "1", "--checkpoint-every", "0"]  # a checkpoint after every sample
    p = subprocess.Popen([*args, *slow, "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ckpt.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # a few more chunks, so the kill may land anywhere in one
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the render finished before it could be killed"
    assert not out.exists()  # no output of a render that did not finish
    r = subprocess.run([*args, "--out", str(out), "--resume"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    log = json.loads(out.with_suffix(".json").read_text())
    assert 0 < log["resumed_from_spp"] < 400  # resumed in bigger chunks: chunking changes nothing
    assert not list(tmp_path.glob(".*.tmp*")), "a temporary file was left behind"
    ref = tmp_path / "ref.exr"
    r = subprocess.run([*args, "--out", str(ref)], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(read_image(out), read_image(ref))


def test_failed_write_keeps_the_previous_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "keep.exr"
    run_render(opts(out, spp=2))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.startswith(".")}

    def broken_png(path: Path, *a: object, **k: object) -> None:
        Path(path).write_bytes(b"\x89PNG half a file")
        raise OSError("disk full")

    monkeypatch.setattr("tracer.job.save_png", broken_png)
    with pytest.raises(OSError, match="disk full"):
        run_render(opts(out, spp=4, seed=3))
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.startswith(".")}
    assert after == before  # the old EXR, PNG and log, whole and together
    assert not list(tmp_path.glob(".*.tmp*"))


def test_two_renders_to_one_out_never_mix(tmp_path: Path) -> None:
    """Renders with different seeds racing to one --out: the EXR left is the one its log describes."""
    out = tmp_path / "race.exr"
    base = [sys.executable, "-m", "tracer.cli", "render", str(SCENE), "--resolution", "24x16", "--spp", "4",
            "--no-progress", "--out", str(out)]
    ps = [subprocess.Popen([*base, "--seed", str(s)], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) for s in (11, 12)]
    assert [p.wait(timeout=300) for p in ps] == [0, 0]
    seed = json.loads(out.with_suffix(".json").read_text())["seed"]
    run_render(opts(tmp_path / "check.exr", spp=4, seed=seed))
    np.testing.assert_array_equal(read_image(out), read_image(tmp_path / "check.exr"))


@pytest.mark.parametrize("name", ["x.png", "x.json", "x"])
def test_out_must_be_an_exr(tmp_path: Path, name: str) -> None:
    with pytest.raises(TracerError, match="use a .exr name"):
        run_render(opts(tmp_path / name))
    assert not any(tmp_path.iterdir())


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True)
    dead = int(p.stdout)
    from tracer.outputs import HOST

    stale = tmp_path / f".t.{HOST}-{dead}.abcd1234.tmp.exr"
    stale.write_bytes(b"half")
    mine = tmp_path / f".t.{HOST}-{os.getpid()}.abcd1234.tmp.exr"
    mine.write_bytes(b"in progress")
    elsewhere = tmp_path / f".t.otherhost-{dead}.abcd1234.tmp.exr"  # its process may well run
    elsewhere.write_bytes(b"in progress on another machine")
    run_render(opts(tmp_path / "t.exr", spp=1))
    assert not stale.exists() and mine.exists() and elsewhere.exists()


def test_a_checkpoint_is_not_overwritten_without_resume(tmp_path: Path) -> None:
    out = tmp_path / "c.exr"
    run_render(opts(out, spp=2, keep_checkpoint=True))
    before = checkpoint_path(out).read_bytes()
    with pytest.raises(TracerError, match="a checkpoint of an unfinished render is there; --resume"):
        run_render(opts(out, spp=4, seed=5))
    assert checkpoint_path(out).read_bytes() == before


def _small_sky() -> object:
    from tracer.envmap import EnvMap, sky_map

    rgb = sky_map(np.array([0.5, 0.6, 0.8]), np.array([0.3, 0.6, 0.4]), 12.0, np.array([20.0, 18.0, 15.0]), 8, 16, 2)
    return EnvMap(rgb)


FAST_FIT = {"max_steps": 20, "eval_every": 10}


def test_a_corrupt_flow_cache_entry_is_refitted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from flows.pixel_flow import PixelFlowConfig
    from tracer.samplers.flow import cache_path, make_flow_sampler

    monkeypatch.setenv("FLOWTRACER_FLOW_CACHE", str(tmp_path))
    env = _small_sky()
    path = cache_path(env)
    path.write_bytes(b"PK\x03\x04 a truncated archive")
    s = make_flow_sampler(env, progress=False, config=PixelFlowConfig(hidden=8), **FAST_FIT)
    assert f"the cached flow {path} is unusable" in capsys.readouterr().err
    u = np.random.default_rng(0).random((100, 2))
    assert np.all(s.sample(u).pdf > 0)
    make_flow_sampler(env, progress=False)  # now a valid entry: loaded, not refitted
    assert "fitting" not in capsys.readouterr().err


def test_a_failed_fit_leaves_no_model_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.pixel_flow import PixelFlowConfig
    from tracer.samplers import flow

    def dies_mid_write(model: object, path: Path, meta: dict) -> None:
        Path(path).write_bytes(b"PK\x03\x04 half")
        raise OSError("killed")

    monkeypatch.setattr("flows.export.save_flow", dies_mid_write)
    out = tmp_path / "m.pt"
    with pytest.raises(OSError, match="killed"):
        flow.fit_map_flow(_small_sky(), out, progress=False, config=PixelFlowConfig(hidden=8), **FAST_FIT)
    assert list(tmp_path.iterdir()) == []


def test_a_flow_sampler_pickles_with_its_weights() -> None:
    """Ray ships samplers to workers by pickling: a flow's scripted module travels as bytes."""
    import pickle

    from flows.pixel_flow import PixelFlowConfig
    from tracer.samplers.flow import make_flow_sampler

    env = _small_sky()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        from tracer.samplers.flow import fit_map_flow

        fit_map_flow(env, Path(d) / "m.pt", progress=False, config=PixelFlowConfig(hidden=8), **FAST_FIT)
        s = make_flow_sampler(env, model_path=Path(d) / "m.pt")
    t = pickle.loads(pickle.dumps(s))
    u = np.random.default_rng(1).random((500, 2))
    a, b = s.sample(u), t.sample(u)
    np.testing.assert_array_equal(a.wi, b.wi)
    np.testing.assert_array_equal(a.pdf, b.pdf)
    np.testing.assert_array_equal(s.pdf(a.wi), t.pdf(a.wi))


@pytest.mark.parametrize(("kw", "match"), [
    ({"sampler": "piecewise", "light": "flow"}, "--light flow chooses the light sampler of --sampler mis"),
    ({"sampler": "piecewise", "flow_model": Path("garbage.pt")}, "--flow-model garbage.pt is used by"),
    ({"sampler": "mis", "flow_model": Path("garbage.pt")}, "with --light piecewise"),
])
def test_options_the_sampler_would_ignore_are_refused(tmp_path: Path, kw: dict, match: str) -> None:
    with pytest.raises(TracerError, match=match):
        run_render(opts(tmp_path / "x.exr", **kw))


def test_device_is_checked_before_a_flow_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tracer import backend

    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    monkeypatch.setattr("tracer.samplers.flow.fit_map_flow", lambda *a, **k: pytest.fail("fitted a flow first"))
    with pytest.raises(TracerError, match="no CUDA GPU"):
        run_render(opts(tmp_path / "x.exr", sampler="flow", device="cuda"))


def test_progress_off_a_terminal_is_a_few_plain_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from tracer.progress import progress_bar

    bar = progress_bar(1000, "render mis", "spp")  # pytest's stderr is not a terminal
    for _ in range(1000):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err and err.splitlines() == ["render mis: 1000/1000 spp (100%)"]


def test_keys_hash_contents_and_refuse_what_has_none() -> None:
    """A key made of a repr with an address (or an abbreviated one) would be wrong: refused."""
    from tracer.digest import content_key

    a = np.arange(10000.0)
    b = a.copy()
    b[5000] += 1  # numpy's repr of both would be the same, abbreviated
    assert content_key(a) != content_key(b) and content_key(a) == content_key(a.copy())
    assert content_key({"x": 1, "y": [1.5, "s", None]}) == content_key({"y": [1.5, "s", None], "x": 1})
    with pytest.raises(TypeError, match="cannot hash a object"):
        content_key(object())
