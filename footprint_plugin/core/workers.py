"""Vectorising workers: processes that turn parts of a strip into buildings, so that polygonising
and outline clean-up run on several cores while the model runs (``--vectorize-workers`` on the
command line; a GPU leaves the CPU's cores to them).

Workers start with the ``forkserver`` method where there is one (``spawn`` elsewhere), never by
forking a process that runs torch threads, and ignore Ctrl-C: the main process handles it and
stops them.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .errors import FootprintError

BROKEN = "A vectorising worker process stopped (out of memory?); run again with --vectorize-workers 1."


def _ignore_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class VectorizeWorkers:
    """A pool of ``count`` vectorising processes; close it when the run ends."""

    def __init__(self, count: int) -> None:
        if count < 2:
            raise ValueError("a pool needs at least two workers; use none for one")
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self.count = count
        self._pool = ProcessPoolExecutor(max_workers=count, mp_context=context, initializer=_ignore_interrupt)

    def map(self, function: Callable[[Any], Any], jobs: Iterable[Any]) -> list[Any]:
        return [self.result(future) for future in [self.submit(function, job) for job in jobs]]

    def submit(self, function: Callable[[Any], Any], job: Any) -> Future:
        try:
            return self._pool.submit(function, job)
        except BrokenProcessPool:
            raise FootprintError(BROKEN) from None

    @staticmethod
    def result(future: Future) -> Any:
        try:
            return future.result()
        except BrokenProcessPool:
            raise FootprintError(BROKEN) from None

    def close(self, cancel: bool = False) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)
