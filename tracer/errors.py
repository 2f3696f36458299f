"""The one exception type the command line turns into a one-line message, and the checks of
user input that several readers share: regular files only, and sizes that fit in memory."""

from __future__ import annotations

import errno
import os
import stat
import sys


class TracerError(Exception):
    """Bad user input (a file, a flag, a scene): the message names what and where.

    The CLI prints ``tracer: error: <message>`` and exits with status 2; nothing
    that raises this should need a traceback to be understood.
    """


def warn(message: str) -> None:
    """One ``tracer: warning: ...`` line on stderr: the input is legal but suspicious."""
    print(f"tracer: warning: {' '.join(message.split())}", file=sys.stderr)


# ---------------------------------------------------------------------------- memory

#: What the film keeps per pixel: mean and M2 (3 float64 each), sample count and bad-sample
#: count (int64), plus the image copies made when it is written (see tracer.film.Film).
FILM_BYTES_PER_PIXEL = 72


def available_memory() -> int:
    """Bytes of memory this process can still take, by the kernel's own estimate.

    ``MemAvailable`` of ``/proc/meminfo`` (free memory plus reclaimable caches), capped by the
    cgroup's limit where one is set; elsewhere the physical memory.
    """
    avail = None
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
            avail = 1 << 40
    try:
        with open("/sys/fs/cgroup/memory.max", "rb") as fh:
            limit = fh.read().strip()
        if limit.isdigit():
            with open("/sys/fs/cgroup/memory.current", "rb") as fh:
                used = int(fh.read().strip())
            avail = min(avail, max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return int(avail)


def format_bytes(n: float) -> str:
    """``1.5 GB``-style size (powers of 1000) for messages."""
    units = ("bytes", "KB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
    for unit in units:
        if n < 1000 or unit == units[-1]:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} {units[-1]}"  # pragma: no cover


def memory_problem(nbytes: float) -> str | None:
    """Why ``nbytes`` cannot be allocated (a phrase for a message), or None when it fits."""
    avail = available_memory()
    if nbytes <= avail:
        return None
    return f"needs about {format_bytes(nbytes)} of memory; about {format_bytes(avail)} is available"


def film_problem(width: int, height: int) -> str | None:
    """Why a ``width`` x ``height`` film cannot be held in memory, or None when it can."""
    return memory_problem(float(width) * float(height) * FILM_BYTES_PER_PIXEL)


# ---------------------------------------------------------------------------- files

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(
    path: str | os.PathLike[str], name: str, what: str, *, bytes_per_byte: float = 1.0,
    max_bytes: int | None = None, limit: int | None = None,
) -> bytes:
    """The bytes of a regular file (links followed), read up to its size when opened.

    Devices, FIFOs and sockets are refused with a :class:`TracerError` (``/dev/zero`` would
    never end, a FIFO would block), as is a file larger than ``max_bytes`` or one whose
    reading would take more memory than there is (``bytes_per_byte`` times its size: what
    parsing it costs). A directory raises ``IsADirectoryError`` and other failures ``OSError``,
    for the caller to word. ``limit`` reads only the first bytes. ``what`` names the kind of
    file in messages (``"image file"``).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)  # non-blocking: opening a FIFO must not wait for a writer
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), os.fsdecode(path))
        if not stat.S_ISREG(st.st_mode):
            raise TracerError(f"{name}: is {_kind(st.st_mode)}, not a regular {what}")
        size = st.st_size
        if limit is None:
            if max_bytes is not None and size > max_bytes:
                raise TracerError(
                    f"{name}: the {what} is {format_bytes(size)}, more than the "
                    f"{format_bytes(max_bytes)} this reader accepts"
                )
            problem = memory_problem(size * bytes_per_byte)
            if problem:
                raise TracerError(f"{name}: the {what} is too large to load: reading it {problem}")
        n = size if limit is None else min(size, limit)
        chunks = []
        while n > 0:
            chunk = os.read(fd, min(n, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def output_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a file cannot be written at ``path`` (a phrase for a message), or None.

    Checked before long work (a fit, a render) rather than after it: the path must not be a
    directory, an existing file must be writable, and the nearest existing folder above it
    must be a writable directory (missing folders are created on writing).
    """
    p = os.path.abspath(os.fspath(path))
    if os.path.isdir(p):
        return "is a directory; name a file"
    if os.path.lexists(p) and not os.path.isfile(p):
        return "exists and is not a regular file"
    if os.path.exists(p) and not os.access(p, os.W_OK):
        return "exists and is not writable"
    folder = os.path.dirname(p)
    while not os.path.lexists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        return f"cannot be created: {folder} is not a directory"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot be created: {folder} is not writable"
    return None
