"""The trainer's progress bar on the terminal, drawn by tqdm (QGIS shows its own task bar instead)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

try:
    from tqdm import tqdm
except ImportError:  # a GPU server with only torch, numpy, scipy, rasterio, shapely: plain lines instead
    tqdm = None


class ProgressBar:
    """``bar(fraction, message)`` shows ``label |#####     |  42% 00:12<00:16, message`` on stderr.

    On a terminal tqdm redraws one line; into a log file (not a TTY) one such line is written at most
    every 5 seconds, and at the end, so logs stay readable.
    """

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.format = f"{{desc}} |{{bar:{width}}}| {{percentage:3.0f}}% {{elapsed}}<{{remaining}}{{postfix}}"
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar = None
        self._started = time.monotonic()
        self._last = 0.0
        self._fraction = 0.0

    def __call__(self, fraction: float, message: str = "") -> None:
        fraction = min(max(float(fraction), 0.0), 1.0)
        if self._interactive and tqdm is not None:
            if self._bar is None:
                self._bar = tqdm(total=1.0, desc=self.label, file=self.stream, bar_format=self.format,
                                 mininterval=0.2, leave=True, dynamic_ncols=True)
            self._bar.set_postfix_str(message, refresh=False)
            self._bar.update(fraction - self._bar.n)
            if fraction >= 1.0:
                self._bar.refresh()
            return
        now = time.monotonic()
        if fraction < 1.0 and now - self._last < 5.0:
            return
        if fraction >= 1.0 and self._fraction >= 1.0:
            return  # the end was written already
        self._last, self._fraction = now, fraction
        self.stream.write(self._line(fraction, now - self._started, message) + "\n")
        self.stream.flush()

    def _line(self, fraction: float, elapsed: float, message: str) -> str:
        if tqdm is not None:
            return tqdm.format_meter(fraction, 1.0, elapsed, prefix=self.label, ascii=True,
                                     bar_format=self.format, postfix=message or None)
        filled = int(round(self.width * fraction))
        return f"{self.label} |{'#' * filled}{' ' * (self.width - filled)}| {fraction:4.0%} {message}".rstrip()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
