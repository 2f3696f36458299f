"""Render outputs written atomically, the EXR, PNG and JSON log published together.

Every file is written to a temporary name in its own folder (``.NAME.HOST-PID.XXXX.tmp.EXT``),
flushed to disk, then renamed over the final name (``os.replace`` is atomic on POSIX), so a
killed or failed render never leaves a truncated file. The set is published under an
exclusive lock on a hidden lock file beside it (``.NAME.json.lock``, left in place), the old
log removed first and the new log renamed last: a log, when present, always describes the
files beside it (a crash between the renames can leave a new image with no log, never with
an old one), and two renders to the same ``--out`` cannot interleave their files.
Temporaries of processes on this host that no longer run are removed by the next render.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tracer.errors import TracerError


def check_output_path(out: Path) -> Path:
    """``out`` as the EXR of an output set: refuse another extension (the PNG and JSON go beside it)."""
    out = Path(out)
    if out.suffix.lower() != ".exr":
        raise TracerError(
            f"{out}: --out names the EXR of the render (its PNG and JSON log go beside it); "
            f"use a .exr name, e.g. {out.with_suffix('.exr')}"
        )
    if out.exists() and not out.is_file():
        raise TracerError(f"{out}: exists and is not a regular file")
    return out


#: this machine's name in temporary file names (another host's temporaries are never removed)
HOST = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname()) or "host"


def temp_path(final: Path) -> Path:
    """A unique temporary name in ``final``'s folder, with its suffix (writers go by it)."""
    return final.with_name(f".{final.stem}.{HOST}-{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{final.suffix}")


def remove_stale_temps(final: Path) -> int:
    """Remove temporaries of ``final`` left by processes that no longer run (killed mid-write)."""
    removed = 0
    final = Path(final)
    pattern = f".{glob.escape(final.stem)}.{glob.escape(HOST)}-*.tmp{glob.escape(final.suffix)}"
    for tmp in final.parent.glob(pattern):
        try:
            pid = int(tmp.name[len(final.stem) + len(HOST) + 3:].split(".")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _alive(pid):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_temp(final: Path, write: Callable[[Path], Any]) -> Path:
    """Run ``write(tmp)`` for a temporary beside ``final`` and flush it; remove it on failure."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    try:
        write(tmp)
        _fsync(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_atomic(final: Path, write: Callable[[Path], Any]) -> None:
    """Write one file atomically: ``write(tmp)``, flush, rename over ``final``."""
    final = Path(final)
    os.replace(write_temp(final, write), final)


@contextmanager
def locked(final: Path) -> Iterator[None]:
    """An exclusive lock on a hidden lock file beside ``final`` (held by one process at a time)."""
    lock = final.with_name(f".{final.name}.lock")
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def publish_set(files: list[tuple[Path, Callable[[Path], Any]]], log: Path, log_data: dict[str, Any]) -> None:
    """Write ``files`` (final path, writer) and the JSON ``log`` as one set, atomically each.

    All temporaries are written first; then, under the lock, the old log goes, the files are
    renamed into place, and the new log last: a log always describes the files beside it.
    """
    temps: list[tuple[Path, Path]] = []
    try:
        for final, write in files:
            temps.append((write_temp(final, write), final))
        temps.append((write_temp(log, lambda p: p.write_text(json.dumps(log_data, indent=2))), log))
        with locked(log):
            log.unlink(missing_ok=True)
            for tmp, final in temps:
                os.replace(tmp, final)
        _fsync(log.parent)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
