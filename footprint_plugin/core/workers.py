"""Vectorising workers: processes that vectorise pieces of the strip buffer, which they read from shared memory.

The main process only routes pieces and writes; labelling, seeds, polygons and outlines run here, on as
many cores as there are workers. Workers start with the ``forkserver`` method where there is one (``spawn``
elsewhere), never by forking a process that runs torch threads, and with a Python interpreter: inside QGIS
``sys.executable`` is QGIS itself, so :func:`python_interpreter` finds QGIS's Python (Linux, Windows
OSGeo4W and standalone, macOS). They ignore Ctrl-C: the main process handles it and stops them.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from .errors import FootprintError

BROKEN = ("A vectorising worker process stopped (out of memory?); run again with one vectorising process "
          "(--vectorize-workers 1, or Vectorising processes 1 under Advanced).")


def _start_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from . import pieces  # noqa: F401 - imported once, before the first piece arrives


@functools.lru_cache(maxsize=1)
def python_interpreter() -> str | None:
    """A Python interpreter of this very installation (same version, same base prefix) to start the workers
    with: ``sys.executable`` when it is one, else (inside QGIS, where it is QGIS itself or whatever ``python3``
    comes first on the PATH) the interpreter beside QGIS's Python library; None when there is none."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    names = [f"python{version}", f"python{sys.version_info[0]}", "python"]
    executable = Path(sys.executable) if sys.executable else None
    candidates = [executable] if executable is not None else []
    for prefix in dict.fromkeys([sys.prefix, sys.exec_prefix, getattr(sys, "base_prefix", sys.prefix)]):
        root = Path(prefix)
        candidates += [root / "python.exe", root / "python3.exe"]  # Windows: OSGeo4W apps\Python3x, standalone
        candidates += [root / "bin" / name for name in names]  # Linux, macOS (QGIS.app's Python framework)
    if executable is not None:  # macOS: QGIS.app/Contents/MacOS/bin/python3; Windows: beside qgis-bin.exe
        candidates += [executable.parent / "bin" / name for name in names] + [executable.parent / "python.exe"]
    candidates += [Path(found) for found in (shutil.which(name) for name in names) if found]
    for candidate in dict.fromkeys(candidates):
        if candidate.name.lower().startswith("python") and candidate.is_file() and _this_python(candidate):
            return str(candidate)
    return None


def _this_python(candidate: Path) -> bool:
    """Whether ``candidate`` is this Python's version and installation (a virtual environment of it counts)."""
    code = "import sys; print('%d.%d' % sys.version_info[:2]); print(getattr(sys, 'base_prefix', sys.prefix))"
    try:
        found = subprocess.run([str(candidate), "-c", code], capture_output=True, text=True, timeout=30,
                               check=False).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return False
    mine = os.path.realpath(getattr(sys, "base_prefix", sys.prefix))
    return len(found) >= 2 and found[0] == f"{sys.version_info[0]}.{sys.version_info[1]}" and \
        os.path.realpath(found[1].strip()) == mine


class VectorizeWorkers:
    """A pool of ``count`` vectorising processes, started with ``python`` (default: :func:`python_interpreter`);
    close it when the run ends. ``cpu_seconds`` adds up what the jobs reported."""

    def __init__(self, count: int, python: str | None = None) -> None:
        if count < 2:
            raise ValueError("a pool needs at least two workers; use none for one")
        python = python or python_interpreter()
        if python is None:
            raise FootprintError("No Python interpreter to start vectorising workers with was found; "
                                 "run with one vectorising process (--vectorize-workers 1).")
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self._executable = multiprocessing.spawn.get_executable()
        if os.path.normcase(python) != os.path.normcase(str(self._executable)):
            context.set_executable(python)
        self.count = count
        self.cpu_seconds = 0.0
        self._pool = ProcessPoolExecutor(max_workers=count, mp_context=context, initializer=_start_worker)
        with _main_module_without_phantom_file():
            self.map(_ready, range(count))  # every worker started (and its modules imported) before the first piece

    def map(self, function: Callable[[Any], Any], jobs: Iterable[Any]) -> list[Any]:
        return [self.result(future) for future in [self.submit(function, job) for job in jobs]]

    def submit(self, function: Callable[[Any], Any], job: Any) -> Future:
        try:
            return self._pool.submit(function, job)
        except (BrokenProcessPool, RuntimeError):
            raise FootprintError(BROKEN) from None

    def result(self, future: Future) -> Any:
        try:
            result = future.result()
        except BrokenProcessPool:
            raise FootprintError(BROKEN) from None
        self.cpu_seconds += getattr(result, "cpu_seconds", 0.0)
        return result

    def check(self) -> None:
        """Raise the one-line error when a worker process has died (killed, out of memory)."""
        if getattr(self._pool, "_broken", False):
            raise FootprintError(BROKEN)

    def close(self, cancel: bool = False) -> None:
        try:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
        finally:
            multiprocessing.spawn.set_executable(self._executable)


def _ready(_: int) -> int:
    return os.getpid()


@contextlib.contextmanager
def _main_module_without_phantom_file():
    """New processes import the parent's main module again from its file; a main module read from standard
    input or embedded (QGIS) names a file that does not exist, so it is hidden while the workers start."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    hide = path is not None and not os.path.isfile(path)
    if hide:
        del main.__file__
    try:
        yield
    finally:
        if hide:
            main.__file__ = path


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # Windows, macOS
        return os.cpu_count() or 1


def automatic_workers(device_type: str) -> int:
    """The default: every core but one when a GPU runs the model (the run's own process feeds it and writes),
    one process on a CPU, whose cores the model uses."""
    return max(1, available_cores() - 1) if device_type in ("cuda", "mps") else 1


def start_workers(requested: int | None, device_type: str, warn: Callable[[str], None] | None = None
                  ) -> VectorizeWorkers | None:
    """The pool for a run (None: vectorise in the run's own process): ``requested`` processes, or
    :func:`automatic_workers`. Without a Python interpreter to start them with, one process, and a warning."""
    count = requested or automatic_workers(device_type)
    if count < 2:
        return None
    python = python_interpreter()
    if python is None:
        if warn:
            warn(f"No Python interpreter was found to start {count} vectorising processes with "
                 f"(sys.executable is {sys.executable}); vectorising in one process.")
        return None
    return VectorizeWorkers(count, python)
