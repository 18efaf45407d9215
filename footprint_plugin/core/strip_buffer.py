"""The vectoriser's buffer of class-map rows: building, seeds and probability, and a plane for region labels.

With vectorising workers it lies in shared memory, so that the workers read their pieces of it without a
copy through a pipe (:class:`SharedStripBuffer`); without, in plain arrays (:class:`LocalStripBuffer`). Rows are
appended below and dropped from the top; :class:`BufferView` says where a job finds the planes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np

from .instances import ClassMaps

PLANE_TYPES = (np.bool_, np.bool_, np.uint8, np.int32)  # building, seeds, probability, region labels


@dataclass
class BufferView:
    """The strip buffer's four planes (building, seeds, probability, region labels): in shared memory by
    name, or as arrays in this process."""

    rows: int
    width: int
    arrays: tuple[np.ndarray, ...] | None = None  # in this process
    names: tuple[str, ...] | None = None  # shared memory segments
    capacity: int = 0  # rows each segment holds

    def planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self.arrays is not None:
            return tuple(array[: self.rows] for array in self.arrays)  # type: ignore[return-value]
        return tuple(attached_array(name, (self.capacity, self.width), dtype)[: self.rows]  # type: ignore[return-value]
                     for name, dtype in zip(self.names, PLANE_TYPES))


_ATTACHED: dict[str, tuple[shared_memory.SharedMemory, np.ndarray]] = {}


def attached_array(name: str, shape: tuple[int, int], dtype: Any) -> np.ndarray:
    """The array in the shared memory segment ``name`` (attached once per worker; segments a newer buffer
    replaced are let go)."""
    if name not in _ATTACHED:
        prefix = name.rsplit("-", 1)[0]
        for old in [key for key in _ATTACHED if key.rsplit("-", 1)[0] == prefix]:
            _ATTACHED.pop(old)[0].close()
        segment = shared_memory.SharedMemory(name=name)  # the main process's resource tracker: it unlinks
        _ATTACHED[name] = (segment, np.ndarray(shape, dtype, buffer=segment.buf))
    return _ATTACHED[name][1]


class _StripBuffer:
    """Rows of the four planes: appended below, dropped from the top; :meth:`_allocate` makes room."""

    width: int
    rows: int
    capacity: int
    _arrays: list[np.ndarray]

    def _allocate(self, capacity: int) -> None:
        raise NotImplementedError

    def append(self, maps: ClassMaps) -> None:
        if self.rows + len(maps) > self.capacity:
            self._allocate(max(2 * self.capacity, self.rows + len(maps)))
        for target, source in zip(self._arrays, maps.arrays()):
            target[self.rows : self.rows + len(maps)] = source
        self.rows += len(maps)

    def drop(self, rows: int) -> None:
        """Forget the first ``rows`` rows."""
        keep = self.rows - rows
        if keep > 0 and rows > 0:
            for array in self._arrays[:3]:
                array[:keep] = array[rows : self.rows].copy()
        self.rows = max(keep, 0)

    def maps(self) -> ClassMaps:
        return ClassMaps(*(array[: self.rows] for array in self._arrays[:3]))

    def labels(self) -> np.ndarray:
        return self._arrays[3][: self.rows]


class SharedStripBuffer(_StripBuffer):
    """The strip buffer in shared memory, so that the workers read their pieces without a copy through a pipe."""

    def __init__(self, width: int, capacity: int = 1024) -> None:
        self.width = width
        self.rows = 0
        self._generation = 0
        self._prefix = f"fp{os.getpid()}{id(self) % 100000}"
        self._segments: list[shared_memory.SharedMemory] = []
        self._arrays = []
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        old = self._arrays
        segments, arrays = [], []
        for plane, dtype in enumerate(PLANE_TYPES):
            name = f"{self._prefix}p{plane}-{self._generation}"
            size = max(1, capacity * self.width * np.dtype(dtype).itemsize)
            segment = shared_memory.SharedMemory(name=name, create=True, size=size)
            segments.append(segment)
            arrays.append(np.ndarray((capacity, self.width), dtype, buffer=segment.buf))
        for new, previous in zip(arrays[:3], old[:3]):  # the label plane is made anew each round
            new[: self.rows] = previous[: self.rows]
        self._release()
        self._segments, self._arrays, self.capacity = segments, arrays, capacity
        self._generation += 1

    def _release(self) -> None:
        self._arrays = []
        for segment in self._segments:
            segment.close()
            segment.unlink()
        self._segments = []

    def view(self) -> BufferView:
        """Where the workers find the planes."""
        return BufferView(self.rows, self.width, names=tuple(segment.name for segment in self._segments),
                          capacity=self.capacity)

    def close(self) -> None:
        self._release()


class LocalStripBuffer(_StripBuffer):
    """The strip buffer in plain arrays of this process (no workers)."""

    def __init__(self, width: int, capacity: int = 1024) -> None:
        self.width, self.rows, self.capacity = width, 0, capacity
        self._arrays = [np.zeros((capacity, width), dtype) for dtype in PLANE_TYPES]

    def _allocate(self, capacity: int) -> None:
        grown = [np.zeros((capacity, self.width), dtype) for dtype in PLANE_TYPES]
        for new, old in zip(grown[:3], self._arrays[:3]):
            new[: self.rows] = old[: self.rows]
        self._arrays, self.capacity = grown, capacity

    def view(self) -> BufferView:
        return BufferView(self.rows, self.width, arrays=tuple(self._arrays))

    def close(self) -> None:
        self._arrays = []
