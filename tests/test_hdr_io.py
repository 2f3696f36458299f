"""Tests of tracer.hdr_io: OpenEXR and Radiance RGBE reading and writing, and its errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import OpenEXR
import pytest

from tests.conftest import real_envmaps
from tracer.errors import TracerError
from tracer.hdr_io import read_exr, read_hdr, read_image, write_exr, write_hdr


def rgbe_value(mantissa: int, e: int) -> float:
    """Radiance's decoding of one channel byte: (m + 0.5) * 2**(e - 136), 0 when e == 0."""
    return 0.0 if e == 0 else (mantissa + 0.5) * 2.0 ** (e - 136)


def decode_pixels(pixels: np.ndarray) -> np.ndarray:
    """Slow reference decoding of an (..., 4) array of RGBE bytes."""
    flat = pixels.reshape(-1, 4)
    out = [[rgbe_value(int(p[c]), int(p[3])) for c in range(3)] for p in flat]
    return np.array(out, dtype=np.float32).reshape(pixels.shape[:-1] + (3,))


def hdr_file(
    body: bytes, resolution: bytes = b"-Y 1 +X 8", fmt: bytes = b"32-bit_rle_rgbe"
) -> bytes:
    """A complete .hdr file around hand-made pixel bytes."""
    return b"#?RADIANCE\nGAMMA=1\nFORMAT=" + fmt + b"\n\n" + resolution + b"\n" + body


def hdr_test_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Pixels whose largest channel spans 1e-3..1e4 and whose channels are within a factor 2."""
    scale = 10.0 ** rng.uniform(-3.0, 4.0, size=(h, w, 1))
    return (scale * rng.uniform(0.5, 1.0, size=(h, w, 3))).astype(np.float32)


# ---------------------------------------------------------------------------- OpenEXR


def test_exr_round_trip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    img = (rng.standard_normal((23, 41, 3)) * 10.0 ** rng.uniform(-6, 6, (23, 41, 3))).astype(
        np.float32
    )
    img[0, 0] = [np.inf, -np.inf, np.nan]  # stored as given: no checks on read or write
    img[1, 1] = [0.0, -0.0, 3.0e38]
    path = tmp_path / "new" / "folder" / "img.exr"  # parents are created
    write_exr(path, img)
    back = read_image(path)
    assert back.shape == (23, 41, 3) and back.dtype == np.float32
    np.testing.assert_array_equal(back, img)


def test_exr_rgba_half_drops_alpha(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    planes = {c: rng.uniform(0, 100, (6, 9)).astype(np.float16) for c in "RGBA"}
    path = tmp_path / "rgba.exr"
    with OpenEXR.File({"compression": OpenEXR.PIZ_COMPRESSION}, dict(planes)) as exr:
        exr.write(str(path))
    with OpenEXR.File(str(path), separate_channels=True) as exr:
        assert {ch.type() for ch in exr.channels().values()} == {OpenEXR.HALF}
    back = read_exr(path)
    assert back.dtype == np.float32 and back.shape == (6, 9, 3)
    expected = np.stack([planes[c] for c in "RGB"], axis=-1).astype(np.float32)
    np.testing.assert_array_equal(back, expected)


def test_exr_luminance_is_replicated(tmp_path: Path) -> None:
    y = np.linspace(0.0, 5.0, 4 * 7, dtype=np.float32).reshape(4, 7)
    path = tmp_path / "gray.exr"
    with OpenEXR.File({}, {"Y": y}) as exr:
        exr.write(str(path))
    back = read_exr(path)
    assert back.shape == (4, 7, 3)
    for c in range(3):
        np.testing.assert_array_equal(back[:, :, c], y)


# ---------------------------------------------------------------------------- Radiance RGBE


@pytest.mark.parametrize("rle", [False, True])
def test_hdr_round_trip_within_quantization(tmp_path: Path, rle: bool) -> None:
    rng = np.random.default_rng(3)
    img = hdr_test_image(rng, 37, 300)
    img[5, :20] = 0.0  # zero pixels stay exactly zero
    img[7, 3] = [0.0, 2.0, 0.0]  # a zero channel decodes to half a quantum: 2 / 256
    path = tmp_path / "img.hdr"
    write_hdr(path, img, rle=rle)
    back = read_image(path)
    assert back.shape == img.shape and back.dtype == np.float32
    assert np.all(back[5, :20] == 0.0)
    np.testing.assert_array_equal(back[7, 3], [1.0 / 128.0, 2.0 + 1.0 / 128.0, 1.0 / 128.0])
    nonzero = img > 0
    nonzero[7, 3] = False
    rel = np.abs(back[nonzero] - img[nonzero]) / img[nonzero]
    assert rel.max() <= 1.0 / 128.0


def test_hdr_rle_and_flat_decode_identically(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    img = hdr_test_image(rng, 20, 64)
    img[3:9] = img[3:9, :1]  # constant rows: long runs in every plane
    img[12, 10:30] = img[12, 10]  # a run in the middle of a row
    write_hdr(tmp_path / "flat.hdr", img, rle=False)
    write_hdr(tmp_path / "rle.hdr", img, rle=True)
    flat_bytes = (tmp_path / "flat.hdr").read_bytes()
    rle_bytes = (tmp_path / "rle.hdr").read_bytes()
    header_end = rle_bytes.index(b"-Y 20 +X 64\n") + len(b"-Y 20 +X 64\n")
    assert rle_bytes[header_end : header_end + 4] == bytes([2, 2, 0, 64])
    assert len(rle_bytes) < len(flat_bytes)
    np.testing.assert_array_equal(read_hdr(tmp_path / "rle.hdr"), read_hdr(tmp_path / "flat.hdr"))


def test_hdr_narrow_image_is_written_flat(tmp_path: Path) -> None:
    img = hdr_test_image(np.random.default_rng(5), 3, 5)  # width < 8: no RLE possible
    write_hdr(tmp_path / "narrow.hdr", img, rle=True)
    data = (tmp_path / "narrow.hdr").read_bytes()
    assert data[:-60].endswith(b"-Y 3 +X 5\n")  # then 3 * 5 * 4 flat bytes
    back = read_hdr(tmp_path / "narrow.hdr")
    assert np.all(np.abs(back - img) <= img / 128.0)


def test_hdr_hand_written_new_rle(tmp_path: Path) -> None:
    """Two 8-pixel scanlines of the new adaptive RLE, mixing runs and literals."""
    body = bytes(
        [2, 2, 0, 8]
        + [128 + 5, 200, 3, 10, 20, 30]  # R: a run of 5, then 3 literals
        + [8, 1, 2, 3, 4, 5, 6, 7, 8]  # G: 8 literals
        + [128 + 8, 0]  # B: one run
        + [128 + 8, 129]  # E: one run
        + [2, 2, 0, 8]
        + [8, 255, 0, 128, 64, 32, 16, 8, 4]
        + [128 + 4, 50, 128 + 4, 60]
        + [2, 7, 9, 128 + 6, 255]
        + [128 + 3, 128, 128 + 5, 0]  # e == 0: the last 5 pixels are zero
    )
    path = tmp_path / "new_rle.hdr"
    path.write_bytes(hdr_file(body, b"-Y 2 +X 8"))
    rgbe = np.zeros((2, 8, 4), dtype=np.uint8)
    rgbe[0, :, 0] = [200] * 5 + [10, 20, 30]
    rgbe[0, :, 1] = np.arange(1, 9)
    rgbe[0, :, 3] = 129
    rgbe[1, :, 0] = [255, 0, 128, 64, 32, 16, 8, 4]
    rgbe[1, :, 1] = [50] * 4 + [60] * 4
    rgbe[1, :, 2] = [7, 9] + [255] * 6
    rgbe[1, :, 3] = [128] * 3 + [0] * 5
    back = read_hdr(path)
    np.testing.assert_array_equal(back, decode_pixels(rgbe))
    assert back[0, 0, 0] == np.float32(200.5 / 128.0)
    assert np.all(back[1, 3:] == 0.0)


def test_hdr_hand_written_old_rle(tmp_path: Path) -> None:
    """Old RLE: 1, 1, 1, n repeats the previous pixel n << shift times (shift += 8 in a row)."""
    a, b = [10, 20, 30, 130], [200, 100, 50, 120]
    row0 = a + [1, 1, 1, 43] + [1, 1, 1, 1]  # 1 + 43 + (1 << 8) = 300 pixels
    row1 = b + [1, 1, 1, 4] + [7, 8, 9, 140] * 295  # old RLE, then flat pixels
    path = tmp_path / "old_rle.hdr"
    path.write_bytes(hdr_file(bytes(row0 + row1), b"-Y 2 +X 300"))
    back = read_hdr(path)
    assert back.shape == (2, 300, 3)
    np.testing.assert_array_equal(back[0], np.tile(decode_pixels(np.array(a)), (300, 1)))
    np.testing.assert_array_equal(back[1, :5], np.tile(decode_pixels(np.array(b)), (5, 1)))
    np.testing.assert_array_equal(
        back[1, 5:], np.tile(decode_pixels(np.array([7, 8, 9, 140])), (295, 1))
    )

    # a width below 8 never uses the new RLE, so every line goes through the old decoder
    p, q, r, s = [1, 2, 3, 129], [4, 5, 6, 129], [200, 3, 3, 131], [9, 9, 200, 127]
    narrow = tmp_path / "old_narrow.hdr"
    narrow.write_bytes(hdr_file(bytes(p + [1, 1, 1, 3] + q + r + [1, 1, 1, 1] + s), b"-Y 2 +X 4"))
    expected = decode_pixels(np.array([[p, p, p, p], [q, r, r, s]]))
    np.testing.assert_array_equal(read_hdr(narrow), expected)


def test_hdr_orientations(tmp_path: Path) -> None:
    """Scanlines listed bottom-up (+Y) or as columns (+X W -Y H) come back row 0 at the top."""
    rgbe = np.zeros((2, 3, 4), dtype=np.uint8)
    rgbe[..., 0] = np.arange(6).reshape(2, 3) * 10 + 128
    rgbe[..., 3] = 128
    expected = decode_pixels(rgbe)
    bottom_up = tmp_path / "bottom_up.hdr"
    bottom_up.write_bytes(hdr_file(rgbe[::-1].tobytes(), b"+Y 2 +X 3"))
    np.testing.assert_array_equal(read_hdr(bottom_up), expected)
    columns = tmp_path / "columns.hdr"
    columns.write_bytes(hdr_file(rgbe.transpose(1, 0, 2).tobytes(), b"+X 3 -Y 2"))
    np.testing.assert_array_equal(read_hdr(columns), expected)
    mirrored = tmp_path / "mirrored.PIC"
    mirrored.write_bytes(hdr_file(rgbe[:, ::-1].tobytes(), b"-Y 2 -X 3"))
    np.testing.assert_array_equal(read_image(mirrored), expected)


# ---------------------------------------------------------------------------- errors


def _write_truncated_hdr(path: Path) -> None:
    write_hdr(path, hdr_test_image(np.random.default_rng(6), 16, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_truncated_flat_hdr(path: Path) -> None:
    write_hdr(path, hdr_test_image(np.random.default_rng(7), 16, 64), rle=False)
    data = path.read_bytes()
    path.write_bytes(data[:-3])


def _write_truncated_exr(path: Path) -> None:
    write_exr(path, hdr_test_image(np.random.default_rng(8), 64, 64))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(9).integers(0, 256, 2000, dtype=np.uint8).tobytes())


def _garbage_after_exr_magic(path: Path) -> None:
    path.write_bytes(b"\x76\x2f\x31\x01" + b"\x02\x00\x00\x00" + b"\xff" * 500)


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _make_dir(path: Path) -> None:
    path.mkdir()


def _no_file(path: Path) -> None:
    pass


def _exr_without_rgb(path: Path) -> None:
    with OpenEXR.File({}, {"Z": np.ones((4, 4), np.float32)}) as exr:
        exr.write(str(path))


ERROR_CASES = [
    ("missing.exr", _no_file, "no such file"),
    ("missing.hdr", _no_file, "no such file"),
    ("folder.hdr", _make_dir, "directory"),
    ("image.png", _garbage, "unsupported image format"),
    ("noext", _garbage, "unsupported image format"),
    ("garbage.exr", _garbage, "not an openexr file"),
    ("garbage_magic.exr", _garbage_after_exr_magic, "corrupt"),
    ("truncated.exr", _write_truncated_exr, "corrupt"),
    ("z_only.exr", _exr_without_rgb, "channels"),
    ("garbage.hdr", _garbage, "not a radiance"),
    ("truncated.hdr", _write_truncated_hdr, "truncated"),
    ("truncated_flat.hdr", _write_truncated_flat_hdr, "truncated"),
    ("no_header_end.hdr", _bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n"), "header"),
    ("no_pixels.hdr", _bytes(hdr_file(b"", b"-Y 2 +X 8")), "truncated"),
    ("xyze.hdr", _bytes(hdr_file(bytes(32), b"-Y 1 +X 8", b"32-bit_rle_xyze")), "xyze"),
    ("other_format.hdr", _bytes(hdr_file(bytes(32), b"-Y 1 +X 8", b"jpeg")), "format"),
    ("bad_res.hdr", _bytes(hdr_file(bytes(32), b"-Y 1 X 8")), "resolution"),
    ("same_axis.hdr", _bytes(hdr_file(bytes(32), b"-Y 1 +Y 8")), "resolution"),
    ("zero_size.hdr", _bytes(hdr_file(bytes(32), b"-Y 0 +X 8")), "resolution"),
    ("huge.hdr", _bytes(hdr_file(bytes(32), b"-Y 99999999 +X 99999999")), "resolution"),
    ("overrun.hdr", _bytes(hdr_file(bytes([2, 2, 0, 8, 128 + 9, 1] + [0] * 40))), "corrupt"),
    ("rle_width.hdr", _bytes(hdr_file(bytes([2, 2, 0, 9] + [0] * 40))), "corrupt"),
    ("old_overrun.hdr", _bytes(hdr_file(bytes([5, 5, 5, 128, 1, 1, 1, 9]))), "corrupt"),
    ("leading_repeat.hdr", _bytes(hdr_file(bytes([1, 1, 1, 8]))), "corrupt"),
]


@pytest.mark.parametrize(
    ("filename", "make", "reason"), ERROR_CASES, ids=[c[0] for c in ERROR_CASES]
)
def test_bad_files_raise_tracer_error(
    tmp_path: Path, filename: str, make: Callable[[Path], None], reason: str
) -> None:
    path = tmp_path / filename
    make(path)
    with pytest.raises(TracerError) as info:
        read_image(path)
    message = str(info.value)
    assert filename in message and "\n" not in message
    assert reason in message.lower()


def test_writers_reject_wrong_shapes_and_non_finite(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_hdr(tmp_path / "a.hdr", np.ones((4, 4)))
    with pytest.raises(ValueError):
        write_exr(tmp_path / "a.exr", np.ones((4, 4, 4)))
    img = np.ones((4, 8, 3), np.float32)
    img[1, 2, 0] = np.nan
    with pytest.raises(TracerError, match="nan.hdr"):
        write_hdr(tmp_path / "nan.hdr", img)


# ---------------------------------------------------------------------------- real maps


@pytest.mark.parametrize("path", real_envmaps(), ids=lambda p: p.stem)
def test_shared_envmaps_read(path: Path) -> None:
    img = read_image(path)
    assert img.shape == (512, 1024, 3)
    assert img.dtype == np.float32
    assert np.isfinite(img).all()
