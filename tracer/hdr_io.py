r"""Reading and writing HDR images: OpenEXR (through the ``OpenEXR`` package) and Radiance RGBE.

Every reader returns an ``(H, W, 3)`` float32 array, row 0 at the top, the pixels exactly as
stored: nothing here clamps, checks finiteness or applies an exposure (the env-map module
validates what it loads). Every failure caused by a bad file or path raises
:class:`~tracer.errors.TracerError` with a one-line message that starts with the file name;
exceptions raised by the OpenEXR library are wrapped the same way.

Only regular files are read (links followed): a device such as ``/dev/zero`` or a FIFO is
refused, not read forever or waited on. Before pixels are allocated, the size a header
declares is checked against what the file can hold (:data:`_MAX_PIXELS_PER_BYTE` for RGBE,
the compression's largest ratio for OpenEXR) and against the memory available
(:data:`LOAD_BYTES_PER_PIXEL` a pixel, for the map and what is built from it).

Radiance RGBE (``.hdr``, ``.pic``) is decoded by hand, following ``color.c`` and ``header.c``
of Greg Ward's Radiance, the reference implementation:

* The header starts with ``#?RADIANCE`` or ``#?RGBE``, holds ``NAME=value`` lines and ends with
  a blank line; ``FORMAT`` must be ``32-bit_rle_rgbe`` (or absent). ``EXPOSURE`` and the other
  variables are ignored, as most readers do.
* The resolution line follows, ``-Y H +X W`` in the standard orientation. All eight
  orientations of the format are accepted and returned flipped/transposed to row 0 at the top,
  column 0 at the left.
* Each scanline is stored in one of three encodings, told apart by its first bytes: *flat*
  (4 bytes a pixel), *old* run-length (a pixel ``1, 1, 1, n`` repeats the previous pixel
  ``n << shift`` times, ``shift`` growing by 8 for consecutive repeat pixels), or *new* adaptive
  run-length (the line starts ``2, 2, W >> 8, W & 255`` and then stores the four byte planes one
  after another as runs: a count ``c > 128`` means ``c - 128`` copies of the next byte, otherwise
  ``c`` literal bytes follow). New run-length lines exist only for ``8 <= W <= 0x7fff``.
* A pixel ``(r, g, b, e)`` means :math:`(r + \tfrac12)\, 2^{e - 136}` per channel, and 0 when
  ``e == 0``: Radiance's ``colr_color`` convention (``ldexp(mantissa + 0.5, e - 136)``), which
  puts the value at the centre of its quantisation bin (``stb_image`` omits the ``+ 0.5``, so
  its values are lower by half a quantum). The writer truncates (Radiance's ``setcolr``), so a
  round trip has a relative error of at most ``0.5 / mantissa``: 1/256 on the largest channel
  of a pixel, 1/128 on any channel at least half as large. A zero channel of a non-zero pixel
  reads back as half a quantum, not 0.

The scanline decoder and the run-length encoder are Numba kernels over byte buffers; they report
bad data by a status code that the Python side turns into a :class:`TracerError`.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import OpenEXR
from numba import njit

from tracer.errors import TracerError, memory_problem, read_regular_file

__all__ = ["read_exr", "read_hdr", "read_image", "write_exr", "write_hdr"]

_EXR_MAGIC = b"\x76\x2f\x31\x01"
_HDR_MAGICS = (b"#?RADIANCE", b"#?RGBE")
_HDR_EXTENSIONS = (".hdr", ".pic")
_RGBE_FORMAT = b"32-bit_rle_rgbe"
_XYZE_FORMAT = b"32-bit_rle_xyze"
_RESOLUTION_RE = re.compile(rb"([-+])([XY]) +(\d+) +([-+])([XY]) +(\d+)")

#: Largest image (pixels, and pixels along one side) a .hdr header may declare.
_MAX_PIXELS = 1 << 28
_MAX_SIDE = 1 << 20
#: Memory a loaded map takes per pixel, all told: the decoded image and its copies, the
#: luminance and the sampling tables built from it (a 16384 x 16384 map needs ~17 GB).
LOAD_BYTES_PER_PIXEL = 64
#: Most pixels one byte of RGBE pixel data can stand for: a new-style run stores up to 127
#: bytes of one plane in 2 bytes (~16 pixels a byte), an old-style repeat pixel up to 255
#: pixels in 4 bytes (~64 a byte). Only chained old-style repeats (a shift of 8 or more, a
#: run of 256 identical pixels or longer in a file of such runs) could beat this.
_MAX_PIXELS_PER_BYTE = 64
#: Most bytes of pixel data one byte of an OpenEXR file can hold, by compression (the
#: format's own bounds: uncompressed 1, RLE runs of 128 in 2 bytes, deflate's 1032:1, PXR24's
#: deflate of 24-bit floats, B44A's 3-byte flat blocks). Others (PIZ, DWA, ...) have none.
_EXR_MAX_RATIO = {
    "NO_COMPRESSION": 1.0, "RLE_COMPRESSION": 64.0, "ZIPS_COMPRESSION": 1032.0,
    "ZIP_COMPRESSION": 1032.0, "PXR24_COMPRESSION": 1032.0 * 4 / 3,
    "B44_COMPRESSION": 32.0 / 14.0, "B44A_COMPRESSION": 32.0 / 3.0,
}
#: Scanline widths that may use the new run-length encoding (Radiance's MINELEN, MAXELEN).
_MIN_RLE_WIDTH = 8
_MAX_RLE_WIDTH = 0x7FFF
#: Shortest run the encoder emits as a run rather than literals (Radiance's MINRUN).
_MIN_RUN = 4
#: Values below this (largest channel) are written as the zero pixel, as Radiance does.
_RGBE_ZERO = 1e-32
#: Largest float32 that still has an 8-bit exponent in RGBE (below 2**127).
_RGBE_MAX = float(np.nextafter(np.float32(2.0**127), np.float32(0.0)))

# Status codes of the Numba scanline decoder.
_OK = 0
_TRUNCATED = 1
_BAD_RLE_WIDTH = 2
_OVERRUN = 3
_LEADING_REPEAT = 4

#: Scale of an RGBE exponent byte: 2**(e - 136), and 0 for e == 0 (exact in float32).
_RGBE_SCALE = np.array([0.0] + [np.ldexp(1.0, e - 136) for e in range(1, 256)], dtype=np.float32)


# ---------------------------------------------------------------------------- dispatch


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an HDR image as an ``(H, W, 3)`` float32 array, by extension.

    ``.exr`` goes to :func:`read_exr`, ``.hdr`` and ``.pic`` to :func:`read_hdr` (case
    insensitive); any other extension raises :class:`TracerError`.
    """
    ext = Path(path).suffix.lower()
    if ext == ".exr":
        return read_exr(path)
    if ext in _HDR_EXTENSIONS:
        return read_hdr(path)
    shown = f"'{ext}'" if ext else "no extension"
    raise TracerError(
        f"{os.fsdecode(path)}: unsupported image format ({shown}); expected .exr, .hdr or .pic"
    )


# ---------------------------------------------------------------------------- helpers


def _one_line(exc: BaseException) -> str:
    """An exception's message squeezed onto one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _os_error(name: str, exc: OSError, verb: str) -> TracerError:
    """A :class:`TracerError` for an ``OSError`` met while reading or writing ``name``."""
    if isinstance(exc, FileNotFoundError) and verb == "read":
        return TracerError(f"{name}: no such file")
    if isinstance(exc, IsADirectoryError):
        return TracerError(f"{name}: is a directory, not an image file")
    reason = exc.strerror or _one_line(exc)
    return TracerError(f"{name}: cannot {verb} the file ({reason})")


def _read_bytes(path: str | os.PathLike[str], name: str, limit: int | None = None) -> bytes:
    """The bytes of a regular file (the first ``limit`` if given), or a TracerError.

    Devices, FIFOs and sockets are refused (``/dev/zero`` never ends, a FIFO blocks), links
    followed; so is a file too large to hold in memory.
    """
    try:
        return read_regular_file(path, name, "image file", limit=limit)
    except OSError as exc:
        raise _os_error(name, exc, "read") from exc


def _check_pixels_fit(name: str, width: int, height: int) -> None:
    """Refuse an image whose loading (and the tables built from it) cannot fit in memory."""
    problem = memory_problem(float(width) * float(height) * LOAD_BYTES_PER_PIXEL)
    if problem:
        raise TracerError(f"{name}: image too large to load ({width} x {height} pixels): {problem}")


def _make_parent(path: str | os.PathLike[str], name: str) -> None:
    """Create the parent directories of an output file."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _os_error(name, exc, "create the folder of") from exc


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` as an array, after checking it is a non-empty ``(H, W, 3)`` image.

    A wrong shape is a programming error, not bad user input, hence ``ValueError``.
    """
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"expected an (H, W, 3) RGB image, got an array of shape {arr.shape}")
    return arr


# ---------------------------------------------------------------------------- OpenEXR


def read_exr(path: str | os.PathLike[str]) -> np.ndarray:
    """Read the first part of an OpenEXR file as an ``(H, W, 3)`` float32 array.

    Takes the ``R``, ``G``, ``B`` channels (an ``A`` channel and any others are ignored) or, for
    a luminance-only image, ``Y`` replicated to three channels. Channels may be half or float;
    integer or subsampled channels, deep images and other channel sets raise
    :class:`TracerError`, as do missing, unreadable, corrupt and truncated files.
    """
    name = os.fsdecode(path)
    data = _read_bytes(path, name)
    if data[: len(_EXR_MAGIC)] != _EXR_MAGIC:
        raise TracerError(f"{name}: not an OpenEXR file (bad magic number)")
    try:
        with OpenEXR.File(io.BytesIO(data), separate_channels=True, header_only=True) as exr:
            if not exr.parts:
                raise TracerError(f"{name}: corrupt or truncated OpenEXR file (no readable part)")
            _check_exr_size(name, exr.header(), len(data))  # the header empties on closing
    except TracerError:
        raise
    except Exception as exc:  # the binding raises RuntimeError, ValueError, ...
        raise TracerError(f"{name}: corrupt or unreadable OpenEXR file ({_one_line(exc)})") from exc
    try:
        with OpenEXR.File(io.BytesIO(data), separate_channels=True) as exr:
            if not exr.parts:
                raise TracerError(f"{name}: corrupt or truncated OpenEXR file (no readable part)")
            kind = exr.header().get("type", OpenEXR.scanlineimage)
            if kind not in (OpenEXR.scanlineimage, OpenEXR.tiledimage):
                raise TracerError(f"{name}: deep OpenEXR images are not supported")
            channels = dict(exr.channels())
    except TracerError:
        raise
    except Exception as exc:  # the binding raises RuntimeError, ValueError, MemoryError, ...
        raise TracerError(f"{name}: corrupt or unreadable OpenEXR file ({_one_line(exc)})") from exc

    if all(c in channels for c in "RGB"):
        picked = [channels["R"], channels["G"], channels["B"]]
    elif "Y" in channels:
        picked = [channels["Y"]] * 3
    else:
        found = ", ".join(sorted(channels)) or "none"
        raise TracerError(
            f"{name}: unsupported OpenEXR channels ({found}); expected R, G, B (A optional) or Y"
        )

    planes = []
    for ch in picked:
        if ch.type() not in (OpenEXR.HALF, OpenEXR.FLOAT):
            raise TracerError(
                f"{name}: OpenEXR channel {ch.name} holds {ch.type().name} values; "
                "expected HALF or FLOAT"
            )
        pixels = np.asarray(ch.pixels)
        if ch.xSampling != 1 or ch.ySampling != 1 or pixels.ndim != 2:
            raise TracerError(f"{name}: OpenEXR channel {ch.name} is subsampled; not supported")
        planes.append(pixels)
    if len({p.shape for p in planes}) != 1 or planes[0].size == 0:
        raise TracerError(f"{name}: OpenEXR channels have inconsistent or empty sizes")
    return np.stack(planes, axis=-1).astype(np.float32, copy=False)


def _check_exr_size(name: str, header: dict, file_bytes: int) -> None:
    """Refuse a data window that the file cannot hold, or that cannot fit in memory.

    Checked from the header, before the library allocates the pixels: the window's pixels
    times the channels (2 bytes each at least) must fit in the file's bytes times the
    compression's largest ratio (:data:`_EXR_MAX_RATIO`; no bound for PIZ, DWA, ...).
    """
    try:
        lo, hi = header["dataWindow"]
        width = int(hi[0]) - int(lo[0]) + 1
        height = int(hi[1]) - int(lo[1]) + 1
    except (KeyError, TypeError, ValueError, IndexError):
        return  # the full read reports what is wrong
    if width < 1 or height < 1:
        raise TracerError(f"{name}: corrupt OpenEXR file (empty data window {width} x {height})")
    n_channels = max(len(header.get("channels") or ()), 1)
    compression = getattr(header.get("compression"), "name", "")
    ratio = _EXR_MAX_RATIO.get(compression)
    if ratio is not None and float(width) * height * n_channels * 2 > ratio * file_bytes:
        raise TracerError(
            f"{name}: corrupt OpenEXR file: its data window of {width} x {height} pixels is "
            f"more than its {file_bytes} bytes can hold ({compression})"
        )
    _check_pixels_fit(name, width, height)


def write_exr(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Write an ``(H, W, 3)`` image as a float32 RGB OpenEXR file (ZIP compression, lossless).

    Parent directories are created. Values are stored as given, non-finite ones included.
    Raises ``ValueError`` for an array of the wrong shape and :class:`TracerError` when the
    file cannot be written.
    """
    name = os.fsdecode(path)
    arr = np.ascontiguousarray(_check_rgb(rgb), dtype=np.float32)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    channels = {c: np.ascontiguousarray(arr[:, :, i]) for i, c in enumerate("RGB")}
    _make_parent(path, name)
    try:
        with OpenEXR.File(header, channels) as exr:
            exr.write(name)
    except Exception as exc:  # the binding raises RuntimeError on I/O failure
        raise TracerError(f"{name}: cannot write the OpenEXR file ({_one_line(exc)})") from exc


# ---------------------------------------------------------------------------- Radiance RGBE


@njit(cache=True)
def _decode_scanlines(data: np.ndarray, pos: int, out: np.ndarray) -> tuple[int, int]:
    """Decode RGBE scanlines from ``data[pos:]`` into ``out`` (lines, width, 4) uint8.

    Each line may be flat, old run-length or new run-length encoded (see the module
    docstring); this mirrors Radiance's ``freadcolrs``/``oldreadcolrs``. An old-style repeat
    pixel at the start of a line repeats the last pixel of the previous line. Returns
    ``(status, line)``: ``_OK`` or the first problem met, and the scanline where it was met.
    """
    n_lines = out.shape[0]
    width = out.shape[1]
    n = data.shape[0]
    for y in range(n_lines):
        # ---- new adaptive run-length line: 2, 2, width >> 8, width & 255, then four planes
        if _MIN_RLE_WIDTH <= width <= _MAX_RLE_WIDTH:
            if pos + 4 > n:
                return _TRUNCATED, y
            if data[pos] == 2 and data[pos + 1] == 2 and data[pos + 2] < 128:
                if (np.int64(data[pos + 2]) << 8 | np.int64(data[pos + 3])) != width:
                    return _BAD_RLE_WIDTH, y
                pos += 4
                for c in range(4):
                    x = 0
                    while x < width:
                        if pos >= n:
                            return _TRUNCATED, y
                        count = np.int64(data[pos])
                        pos += 1
                        if count > 128:  # a run: count - 128 copies of one byte
                            count -= 128
                            if x + count > width:
                                return _OVERRUN, y
                            if pos >= n:
                                return _TRUNCATED, y
                            value = data[pos]
                            pos += 1
                            for k in range(count):
                                out[y, x + k, c] = value
                        else:  # count literal bytes (0 is a no-op, as in Radiance)
                            if x + count > width:
                                return _OVERRUN, y
                            if pos + count > n:
                                return _TRUNCATED, y
                            for k in range(count):
                                out[y, x + k, c] = data[pos + k]
                            pos += count
                        x += count
                continue

        # ---- flat or old run-length line: 4 bytes a pixel, 1, 1, 1, n repeats the last one
        x = 0
        shift = 0
        while x < width:
            if pos + 4 > n:
                return _TRUNCATED, y
            if data[pos] == 1 and data[pos + 1] == 1 and data[pos + 2] == 1:
                e = np.int64(data[pos + 3])
                pos += 4
                if e == 0:
                    count = 0
                elif shift > 24:
                    return _OVERRUN, y
                else:
                    count = e << shift
                if x + count > width:
                    return _OVERRUN, y
                if count > 0:
                    if x > 0:
                        py, px = y, x - 1
                    elif y > 0:
                        py, px = y - 1, width - 1
                    else:
                        return _LEADING_REPEAT, y
                    for k in range(count):
                        for c in range(4):
                            out[y, x + k, c] = out[py, px, c]
                x += count
                shift += 8
            else:
                for c in range(4):
                    out[y, x, c] = data[pos + c]
                pos += 4
                x += 1
                shift = 0
    return _OK, n_lines


@njit(cache=True)
def _rgbe_to_float(rgbe: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBE -> (H, W, 3) float32: ``(byte + 0.5) * scale[e]``, exact."""
    h = rgbe.shape[0]
    w = rgbe.shape[1]
    out = np.empty((h, w, 3), dtype=np.float32)
    for y in range(h):
        for x in range(w):
            s = scale[rgbe[y, x, 3]]
            for c in range(3):
                out[y, x, c] = (np.float32(rgbe[y, x, c]) + np.float32(0.5)) * s
    return out


@njit(cache=True)
def _encode_rle(rgbe: np.ndarray) -> np.ndarray:
    """New adaptive run-length encoding of (H, W, 4) uint8 RGBE pixels, as Radiance writes.

    Runs of at least ``_MIN_RUN`` equal bytes (up to 127) become ``128 + n, byte``; everything
    else is stored in literal blocks of up to 128 bytes. Needs ``8 <= W <= 0x7fff``.
    """
    h = rgbe.shape[0]
    w = rgbe.shape[1]
    buf = np.empty(h * (4 + 4 * (w + (w + 127) // 128)), dtype=np.uint8)
    pos = 0
    for y in range(h):
        buf[pos] = 2
        buf[pos + 1] = 2
        buf[pos + 2] = w >> 8
        buf[pos + 3] = w & 255
        pos += 4
        for c in range(4):
            x = 0
            while x < w:
                value = rgbe[y, x, c]
                run = 1
                while run < 127 and x + run < w and rgbe[y, x + run, c] == value:
                    run += 1
                if run >= _MIN_RUN:
                    buf[pos] = 128 + run
                    buf[pos + 1] = value
                    pos += 2
                    x += run
                    continue
                # literals, up to 128 of them, until a run of _MIN_RUN equal bytes starts
                start = x
                x += run
                while x < w and x - start < 128:
                    k = 1
                    while k < _MIN_RUN and x + k < w and rgbe[y, x + k, c] == rgbe[y, x, c]:
                        k += 1
                    if k >= _MIN_RUN:
                        break
                    x += 1
                buf[pos] = x - start
                pos += 1
                for i in range(start, x):
                    buf[pos] = rgbe[y, i, c]
                    pos += 1
    return buf[:pos]


def _next_line(data: bytes, pos: int, name: str, what: str) -> tuple[bytes, int]:
    """The header line starting at ``pos`` (without its newline) and the position after it."""
    end = data.find(b"\n", pos)
    if end < 0:
        raise TracerError(f"{name}: bad Radiance header: the file ends before the {what}")
    return data[pos:end].rstrip(b"\r"), end + 1


def _parse_hdr_header(data: bytes, name: str) -> tuple[int, tuple[str, int, str, int]]:
    """Check the header of a .hdr file and parse its resolution line.

    Returns the offset of the pixel data and the resolution as ``(axis1, n1, axis2, n2)``,
    e.g. ``("-Y", 512, "+X", 1024)``: ``n1`` scanlines of ``n2`` pixels.
    """
    if not data.startswith(_HDR_MAGICS):
        raise TracerError(
            f"{name}: not a Radiance .hdr file (it does not start with #?RADIANCE or #?RGBE)"
        )
    line, pos = _next_line(data, 0, name, "end of the header")
    fmt = None
    while True:
        line, pos = _next_line(data, pos, name, "end of the header")
        if not line.strip():
            break
        if line.startswith(b"FORMAT="):
            fmt = line[len(b"FORMAT=") :].strip()
    if fmt == _XYZE_FORMAT:
        raise TracerError(
            f"{name}: unsupported Radiance pixel format 32-bit_rle_xyze (CIE XYZ); "
            "only 32-bit_rle_rgbe is supported"
        )
    if fmt is not None and fmt != _RGBE_FORMAT:
        shown = fmt.decode("latin-1")[:40]
        raise TracerError(
            f"{name}: unsupported Radiance pixel format {shown!r}; expected 32-bit_rle_rgbe"
        )

    line, pos = _next_line(data, pos, name, "resolution line")
    match = _RESOLUTION_RE.fullmatch(line.strip())
    shown = line.decode("latin-1")[:40]
    if match is None or match[2] == match[5]:
        raise TracerError(f"{name}: bad resolution line {shown!r}; expected e.g. '-Y 512 +X 1024'")
    n1, n2 = int(match[3]), int(match[6])
    if not (0 < n1 <= _MAX_SIDE and 0 < n2 <= _MAX_SIDE and n1 * n2 <= _MAX_PIXELS):
        raise TracerError(f"{name}: bad resolution line {shown!r}; size out of range")
    orient = ((match[1] + match[2]).decode(), n1, (match[4] + match[5]).decode(), n2)
    return pos, orient


def read_hdr(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a Radiance RGBE (``.hdr``/``.pic``) file as an ``(H, W, 3)`` float32 array.

    Accepts flat, old run-length and new run-length scanlines and any of the eight
    orientations (returned with row 0 at the top, column 0 at the left). Pixels decode as
    ``(byte + 0.5) * 2**(e - 136)``, and 0 for ``e == 0``. Raises :class:`TracerError` for a
    missing or unreadable file, a bad header or resolution line, XYZE or another pixel format,
    and corrupt or truncated pixel data.
    """
    name = os.fsdecode(path)
    data = _read_bytes(path, name)
    pos, (axis1, n1, axis2, n2) = _parse_hdr_header(data, name)

    size = len(data) - pos
    if size < 4 * n1:  # every scanline takes 4 bytes at least
        raise TracerError(f"{name}: truncated .hdr file: too little pixel data for {n1} lines")
    if n1 * n2 > _MAX_PIXELS_PER_BYTE * size:
        raise TracerError(
            f"{name}: corrupt or truncated .hdr file: {size} bytes of pixel data cannot hold the "
            f"{n2} x {n1} pixels its header declares (run-length encoding stores at most "
            f"{_MAX_PIXELS_PER_BYTE} pixels a byte)"
        )
    _check_pixels_fit(name, n2, n1)
    try:
        rgbe = np.empty((n1, n2, 4), dtype=np.uint8)
    except MemoryError as exc:
        raise TracerError(f"{name}: image too large to load ({n1} x {n2} pixels)") from exc
    status, line = _decode_scanlines(np.frombuffer(data, dtype=np.uint8), pos, rgbe)
    if status == _TRUNCATED:
        raise TracerError(f"{name}: truncated .hdr file: pixel data ends in scanline {line}/{n1}")
    if status == _BAD_RLE_WIDTH:
        raise TracerError(f"{name}: corrupt .hdr file: scanline {line} has the wrong RLE width")
    if status == _OVERRUN:
        raise TracerError(
            f"{name}: corrupt .hdr file: a run in scanline {line} goes past the end of the line"
        )
    if status == _LEADING_REPEAT:
        raise TracerError(f"{name}: corrupt .hdr file: the first pixel is a repeat code")

    try:
        rgb = _rgbe_to_float(rgbe, _RGBE_SCALE)
    except MemoryError as exc:
        raise TracerError(f"{name}: image too large to load ({n1} x {n2} pixels)") from exc
    # Bring the scanline order to (rows top to bottom, columns left to right); in Radiance +Y
    # points up, so "-Y" lists rows from the top and "+X" lists columns from the left.
    if axis1[1] == "X":
        rgb = rgb.transpose(1, 0, 2)
        axis1, axis2 = axis2, axis1
    if axis1 == "+Y":
        rgb = rgb[::-1]
    if axis2 == "-X":
        rgb = rgb[:, ::-1]
    return np.ascontiguousarray(rgb, dtype=np.float32)


def _float_to_rgbe(rgb: np.ndarray) -> np.ndarray:
    """Encode a finite (H, W, 3) array as (H, W, 4) uint8 RGBE, like Radiance.

    Negative channels become 0 and values too large for RGBE are clamped; a pixel whose
    largest channel is below 1e-32 is the zero pixel. The mantissa bytes are truncated:
    ``floor(c * 2**(8 - e))`` with ``e`` the binary exponent of the largest channel (exact).
    """
    rgb = np.clip(rgb, 0.0, _RGBE_MAX).astype(np.float32, copy=False)
    v = rgb.max(axis=2)
    _, exp = np.frexp(v)
    nonzero = v >= _RGBE_ZERO
    exp = np.where(nonzero, exp, 0).astype(np.int32)
    rgbe = np.zeros(rgb.shape[:2] + (4,), dtype=np.uint8)
    mant = np.floor(np.ldexp(rgb, (8 - exp)[:, :, None]))
    rgbe[:, :, :3] = np.where(nonzero[:, :, None], mant, 0.0)
    rgbe[:, :, 3] = np.where(nonzero, exp + 128, 0)
    return rgbe


def write_hdr(path: str | os.PathLike[str], rgb: np.ndarray, rle: bool = True) -> None:
    """Write an ``(H, W, 3)`` image as a Radiance RGBE file, orientation ``-Y H +X W``.

    With ``rle`` (the default) scanlines use the new adaptive run-length encoding, otherwise
    they are flat; widths outside 8..32767 are always flat, as the format requires. Negative
    channels are written as 0 and values above ~1.7e38 are clamped (RGBE cannot hold them);
    NaN or infinite values raise :class:`TracerError`, as does a file that cannot be written.
    Parent directories are created. Raises ``ValueError`` for an array of the wrong shape.
    """
    name = os.fsdecode(path)
    arr = _check_rgb(rgb)
    bad = int(np.count_nonzero(~np.isfinite(arr).all(axis=2)))
    if bad:
        raise TracerError(f"{name}: cannot write {bad} NaN or infinite pixels in RGBE format")
    rgbe = _float_to_rgbe(arr)
    h, w = rgbe.shape[:2]
    if rle and _MIN_RLE_WIDTH <= w <= _MAX_RLE_WIDTH:
        body = _encode_rle(rgbe)
    else:
        body = rgbe.reshape(-1)
    header = b"#?RADIANCE\n# written by flowtracer\nFORMAT=32-bit_rle_rgbe\n\n"
    resolution = f"-Y {h} +X {w}\n".encode()
    _make_parent(path, name)
    try:
        with open(path, "wb") as fh:
            fh.write(header + resolution)
            fh.write(body.tobytes())
    except OSError as exc:
        raise _os_error(name, exc, "write") from exc
