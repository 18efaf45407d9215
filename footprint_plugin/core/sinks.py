"""Where the buildings of a run go: a list, a vector file or a SpaceNet proposals CSV.

A sink has ``add(buildings)`` (called for each strip's buildings as they are found),
optionally ``block_done(key)`` (a block's buildings are all added: a resumable sink commits them),
``finish(metadata)`` (the run succeeded: flush, commit, move into place; ``metadata`` describes
the run, key -> value, for formats that keep it) and ``abort()``
(the run failed or was cancelled: drop everything, never raise). The output format of a
file follows its extension (:func:`open_output`).
"""

from __future__ import annotations

import csv
import os
import queue
import threading
from typing import Protocol

from rasterio.transform import Affine
from shapely import affinity

from .buildings import Building
from .errors import FootprintError
from .output_paths import CSV_SUFFIX, check_output_path


class Sink(Protocol):
    def add(self, buildings: list[Building]) -> None: ...

    def finish(self, metadata: dict[str, str]) -> None: ...

    def abort(self) -> None: ...


class ListSink:
    """Keeps the buildings in memory (tests, scoring, small rasters)."""

    def __init__(self) -> None:
        self.buildings: list[Building] = []
        self.finished = False

    def add(self, buildings: list[Building]) -> None:
        self.buildings.extend(buildings)

    def finish(self, metadata: dict[str, str]) -> None:
        self.finished = True

    def abort(self) -> None:
        self.buildings.clear()


class SpaceNetCsvWriter:
    """SpaceNet proposals ``ImageId,BuildingId,PolygonWKT_Pix,Confidence`` in the raster's pixels.

    ``to_pixels`` maps the raster's CRS to its pixel (column, row) coordinates; ``trainer
    evaluate`` reads the file. Written under a temporary name and renamed on :meth:`finish`.
    """

    def __init__(self, path: str | os.PathLike[str], image_id: str, to_pixels: Affine) -> None:
        self.path = check_output_path(path, (CSV_SUFFIX,))
        self.tmp_path = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        self.image_id = image_id
        self._matrix = [to_pixels.a, to_pixels.b, to_pixels.d, to_pixels.e, to_pixels.xoff, to_pixels.yoff]
        self.count = 0
        try:
            self._file = open(self.tmp_path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in finish/abort
            self._csv = csv.writer(self._file)
            self._csv.writerow(["ImageId", "BuildingId", "PolygonWKT_Pix", "Confidence"])
        except OSError as exc:
            self.abort()
            raise self._error(exc) from None

    def _error(self, exc: OSError) -> FootprintError:
        return FootprintError(f"Output {self.path}: cannot write the file ({exc.strerror or exc}).")

    def add(self, buildings: list[Building]) -> None:
        try:
            for building in buildings:
                pixels = affinity.affine_transform(building.geometry, self._matrix)
                self.count += 1
                self._csv.writerow([self.image_id, self.count, pixels.wkt, round(float(building.score), 4)])
        except OSError as exc:
            raise self._error(exc) from None

    def finish(self, metadata: dict[str, str] | None = None) -> None:
        try:
            if self.count == 0:
                self._csv.writerow([self.image_id, -1, "POLYGON EMPTY", 1])
            self._file.close()
            os.replace(self.tmp_path, self.path)
        except OSError as exc:
            self.abort()
            raise self._error(exc) from None

    def abort(self) -> None:
        try:
            self._file.close()
        except (OSError, AttributeError):
            pass
        self.tmp_path.unlink(missing_ok=True)


def open_output(path: str | os.PathLike[str], crs_wkt: str, raster_transform: Affine, image_id: str) -> Sink:
    """The sink for ``path`` by its extension: a SpaceNet CSV or an OGR vector file."""
    path = check_output_path(path)
    if path.suffix.lower() == CSV_SUFFIX:
        return SpaceNetCsvWriter(path, image_id, ~raster_transform)
    try:
        from .output import VectorFileWriter  # GDAL's Python bindings: only needed to write vector files
    except ImportError as exc:
        raise FootprintError(
            f"Writing {path.suffix} files needs GDAL's Python bindings (osgeo), which this Python lacks ({exc}); "
            "install them (Debian: apt-get install python3-gdal) or write a .csv."
        ) from None
    return VectorFileWriter(path, crs_wkt)


class TeeSink:
    """Hands every building to several sinks (e.g. a file and a list)."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = sinks

    def add(self, buildings: list[Building]) -> None:
        for sink in self.sinks:
            sink.add(buildings)

    def block_done(self, key: str) -> None:
        for sink in self.sinks:
            if hasattr(sink, "block_done"):
                sink.block_done(key)

    def finish(self, metadata: dict[str, str]) -> None:
        for sink in self.sinks:
            sink.finish(metadata)

    def abort(self) -> None:
        for sink in self.sinks:
            sink.abort()


class BackgroundSink:
    """Hands the buildings to ``sink`` in a thread of its own, so that writing a strip's buildings overlaps
    with vectorising the next strip. A write error comes back at the next ``add`` or at ``finish``; ``abort``
    stops the thread and drops everything."""

    def __init__(self, sink: Sink, depth: int = 4) -> None:
        self.sink = sink
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write, name="footprint-write", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    if isinstance(item, str):
                        self.sink.block_done(item)
                    else:
                        self.sink.add(item)
                except BaseException as exc:  # handed to the run's thread at its next call
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def add(self, buildings: list[Building]) -> None:
        self._raise()
        self._queue.put(buildings)

    def block_done(self, key: str) -> None:
        """Committed by the writing thread after the block's buildings (when the sink commits blocks)."""
        self._raise()
        if hasattr(self.sink, "block_done"):
            self._queue.put(key)

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def finish(self, metadata: dict[str, str]) -> None:
        self._stop()
        self._raise()
        self.sink.finish(metadata)

    def abort(self) -> None:
        self._error = self._error or RuntimeError("aborted")  # the thread writes nothing more
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._stop()
        self.sink.abort()
