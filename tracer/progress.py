"""Progress reports: a tqdm bar on a terminal, sparse plain lines anywhere else.

A bar redrawn with carriage returns turns a log file (``tracer render ... > log``) into
hundreds of partial lines; when stderr is not a terminal a line is printed at most every
``PLAIN_INTERVAL`` seconds, and one at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Any

#: seconds between plain progress lines
PLAIN_INTERVAL = 10.0


class PlainProgress:
    """The part of tqdm's interface the project uses, as occasional whole lines."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.postfix = ""
        self.last = time.monotonic()

    def _line(self) -> None:
        pct = 100.0 * self.n / self.total if self.total else 100.0
        print(f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.0f}%){self.postfix}",
              file=sys.stderr, flush=True)
        self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.last >= PLAIN_INTERVAL:
            self._line()

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = "".join(f", {k} {v}" for k, v in kw.items())

    def close(self) -> None:
        self._line()


def progress_bar(total: int, desc: str, unit: str, initial: int = 0) -> Any:
    """A tqdm bar when stderr is a terminal, else a :class:`PlainProgress`."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False)
    return PlainProgress(total, desc, unit, initial)
