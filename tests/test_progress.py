"""trainer.progress.ProgressBar: tqdm on a terminal, plain spaced-out lines in a log."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import select
import struct
import termios
import time
from collections.abc import Callable

from trainer.progress import ProgressBar


def test_a_log_gets_whole_lines_at_most_every_five_seconds_and_the_end():
    log = io.StringIO()
    bar = ProgressBar("epoch 1/3", stream=log)
    for step in range(1, 101):
        bar(step / 100, f"loss {1 / step:.3f}")
    bar(1.0, "loss 0.010")  # a repeated end is not written twice
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) == 2, lines  # the first update, then the end (the loop takes far less than 5 s)
    assert lines[0].startswith("epoch 1/3 |") and "  1%" in lines[0] and "loss 1.000" in lines[0]
    assert "100%" in lines[1] and lines[1].endswith("loss 0.010") and "#" * 30 in lines[1]


def read_until(fd: int, done: Callable[[str], bool], seconds: float = 30.0) -> str:
    """What arrives on ``fd`` until ``done(text so far)`` or the deadline: a pty delivers output in pieces."""
    data = b""
    deadline = time.monotonic() + seconds
    while not done(data.decode(errors="replace")) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            data += os.read(fd, 65536)
    return data.decode(errors="replace")


def test_a_terminal_gets_one_redrawn_tqdm_line():
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    with os.fdopen(follower, "w") as terminal:
        assert terminal.isatty()
        bar = ProgressBar("predict", stream=terminal, width=20)
        bar(0.0, "tile 0/4")
        for tile in range(1, 5):
            bar(tile / 4, f"tile {tile}/4")
        bar.close()
        terminal.flush()
        # close() ends the bar's line: everything has arrived once a line end follows "tile 4/4".
        shown = read_until(leader, lambda text: re.search(r"tile 4/4[^\r\n]*\r?\n", text) is not None)
    os.close(leader)
    assert "\r" in shown  # redrawn in place
    last = shown.replace("\r\n", "\n").split("\r")[-1]
    assert "predict |" + "\u2588" * 20 + "| 100%" in last and "tile 4/4" in last  # tqdm's full blocks
    assert shown.endswith("\n")
