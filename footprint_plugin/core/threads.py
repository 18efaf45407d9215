"""A producer thread feeding a consumer, where neither side can hang the other.

Every blocking queue operation waits at most ``POLL_S`` before it checks a stop event,
so an error or a cancel on either side ends both within about one poll (plus the
producer's current step, which checks the same event through its cancel callback).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

POLL_S = 0.05
_DONE = object()


def _put(items: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless ``stop`` is set first; True when it was put."""
    while not stop.is_set():
        try:
            items.put(item, timeout=POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _produce(make: Callable[[], Iterator], items: queue.Queue, stop: threading.Event) -> None:
    """Worker: run the iterator, hand over each item, then the end marker or the error."""
    iterator = None
    try:
        iterator = make()
        for item in iterator:
            if not _put(items, (item, None), stop):
                return
        _put(items, (_DONE, None), stop)
    except BaseException as exc:  # handed to the consumer, which re-raises it
        _put(items, (_DONE, exc), stop)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            try:
                close()  # a generator's own clean-up (its reading threads) runs here, in this thread
            except Exception:  # noqa: S110 - the run's own error, if any, was already handed over
                pass


def run_in_background(make: Callable[[], Iterator], stop: threading.Event | None = None,
                      maxsize: int = 2, name: str = "footprint-infer",
                      check: Callable[[], None] | None = None) -> Iterator:
    """Iterate ``make()`` in a worker thread so its consumer runs concurrently with it.

    ``stop`` (set when the consumer leaves, for any reason) should also be checked by the
    producer's own steps, e.g. through its cancel callback. Leaving the loop, normally or by
    an exception, stops and joins the worker; the worker's exception is raised here. ``check``
    runs while the consumer waits, and may raise to end the run (a worker process that died).
    """
    stop = stop or threading.Event()
    items: queue.Queue = queue.Queue(maxsize=maxsize)
    thread = threading.Thread(target=_produce, args=(make, items, stop), name=name, daemon=True)
    thread.start()
    try:
        while True:
            try:
                item, error = items.get(timeout=POLL_S)
            except queue.Empty:
                if not thread.is_alive() and items.empty():
                    raise RuntimeError("the background worker ended without a result") from None
                if check is not None:
                    check()
                continue
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        _drain(items)
        thread.join()


def _drain(items: queue.Queue) -> None:
    """Drop what the worker queued, so large arrays are freed at once."""
    while True:
        try:
            items.get_nowait()
        except queue.Empty:
            return
