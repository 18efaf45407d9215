"""A dependency-free text progress bar for the terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Redraws one line on stderr: ``label [#####.....]  42%  message``."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self._last = 0.0
        self._shown = False
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self._last < (0.2 if self._interactive else 5.0):
            return
        self._last = now
        filled = int(round(self.width * min(max(fraction, 0.0), 1.0)))
        line = f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {fraction:4.0%} {message}"
        end = "\r" if self._interactive else "\n"
        self.stream.write(line.ljust(79) + end if self._interactive else line + end)
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown and self._interactive:
            self.stream.write("\n")
            self.stream.flush()
