"""A GeoPackage output that a killed run resumes: buildings committed block by block, with a journal.

The run writes ``<name>.partial.gpkg`` beside the output. Each finished block's buildings are committed in one
SQLite transaction together with the block's row in the journal table, so after a crash (even SIGKILL) the
partial file holds exactly the finished blocks. ``--resume`` opens it, checks that the run is the same one (its
fingerprint: inputs, weights, settings) and skips those blocks. When the last block is done the journal tables
are dropped and the file is renamed to the output.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from osgeo import ogr

from .buildings import Building
from .errors import FootprintError
from .output import VectorFileWriter, _QuietGdal
from .output_paths import LAYER_NAME, check_output_path, partial_path

JOURNAL_LAYER = "footprint_journal"
RUN_LAYER = "footprint_run"


class JournalledGeoPackage(VectorFileWriter):
    """The sink of a resumable run (``.gpkg`` only): :meth:`block_done` commits a block; :meth:`finish` moves the
    file into place; :meth:`abort` keeps what was committed for ``--resume`` (and removes a file with nothing)."""

    def __init__(self, path: str | os.PathLike[str], crs_wkt: str, fingerprint: dict, resume: bool = False) -> None:
        self.path = check_output_path(path, (".gpkg",))
        self.tmp_path = partial_path(self.path)
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True))
        self.count = 0
        self.done: dict[str, int] = {}
        self._dataset = self._layer = self._definition = None
        self._transaction = False
        self._block_count = 0  # buildings of the open block
        ogr.UseExceptions()
        if resume:
            self._open_partial()
        else:
            if self.tmp_path.exists():
                raise FootprintError(f"{self.tmp_path} holds an unfinished run: add --resume to continue it, or "
                                     "delete the file to start again.")
            self._create(crs_wkt)
        self._begin()

    # ------------------------------------------------------------------ opening

    def _create(self, crs_wkt: str) -> None:
        try:
            self._dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(self.tmp_path))
            self._create_layer(crs_wkt, LAYER_NAME)
            if self._transaction:  # _create_layer opened one: the tables go in with the first commit
                self._layer.CommitTransaction()
                self._transaction = False
            journal = self._dataset.CreateLayer(JOURNAL_LAYER, geom_type=ogr.wkbNone)
            journal.CreateField(ogr.FieldDefn("block", ogr.OFTString))
            journal.CreateField(ogr.FieldDefn("buildings", ogr.OFTInteger))
            run = self._dataset.CreateLayer(RUN_LAYER, geom_type=ogr.wkbNone)
            run.CreateField(ogr.FieldDefn("fingerprint", ogr.OFTString))
            feature = ogr.Feature(run.GetLayerDefn())
            feature.SetField(0, json.dumps(self.fingerprint, sort_keys=True))
            run.CreateFeature(feature)
            self._dataset.FlushCache()
        except (RuntimeError, OSError) as exc:
            self._discard()
            raise self._error(exc) from None

    def _open_partial(self) -> None:
        if not self.tmp_path.is_file():
            raise FootprintError(f"Nothing to resume: {self.tmp_path} does not exist (run without --resume).")
        try:
            self._dataset = ogr.Open(str(self.tmp_path), 1)
            run = self._dataset.GetLayerByName(RUN_LAYER)
            journal = self._dataset.GetLayerByName(JOURNAL_LAYER)
            self._layer = self._dataset.GetLayerByName(LAYER_NAME)
            if run is None or journal is None or self._layer is None:
                raise FootprintError(f"{self.tmp_path} is not a partial run of this program; delete it.")
            stored = json.loads(next(iter(run)).GetField(0))
            self.done = {feature.GetField(0): feature.GetField(1) for feature in journal}
            for table in (run, journal):
                table.ResetReading()  # no open read statement: the tables are dropped at the end
            self.count = self._layer.GetFeatureCount()
        except (RuntimeError, OSError, StopIteration, ValueError) as exc:
            self._close_quietly()
            raise FootprintError(f"{self.tmp_path} cannot be resumed ({exc or 'no run record'}); delete it to start "
                                 "again.") from None
        if stored != self.fingerprint:
            self._close_quietly()
            differs = sorted(key for key in set(stored) | set(self.fingerprint)
                             if stored.get(key) != self.fingerprint.get(key))
            raise FootprintError(f"{self.tmp_path} is a run with other {', '.join(differs)}; resume it with the same "
                                 "inputs and settings, or delete it to start again.")
        self._definition = self._layer.GetLayerDefn()

    def _begin(self) -> None:
        self._dataset.StartTransaction()
        self._transaction = True
        self._block_count = 0

    # ------------------------------------------------------------------ the sink

    def add(self, buildings: Iterable[Building]) -> None:
        before = self.count
        super().add(buildings)
        self._block_count += self.count - before

    def block_done(self, key: str) -> None:
        """Commit the block's buildings with its journal row."""
        try:
            with _QuietGdal() as quiet:
                journal = self._dataset.GetLayerByName(JOURNAL_LAYER)
                feature = ogr.Feature(journal.GetLayerDefn())
                feature.SetField(0, key)
                feature.SetField(1, self._block_count)
                journal.CreateFeature(feature)
                self._dataset.CommitTransaction()
                self._transaction = False
                if quiet.errors:
                    raise RuntimeError(quiet.errors[-1])
        except RuntimeError as exc:
            raise self._error(exc) from None
        self.done[key] = self._block_count
        self._begin()

    def finish(self, metadata: dict[str, str]) -> None:
        """Drop the journal, keep the run's metadata, and move the file into place."""
        try:
            with _QuietGdal():
                self._dataset.CommitTransaction()
                self._transaction = False
                for name in (JOURNAL_LAYER, RUN_LAYER):
                    for index in range(self._dataset.GetLayerCount()):
                        if self._dataset.GetLayer(index).GetName() == name:
                            self._dataset.DeleteLayer(index)
                            break
                for key, value in metadata.items():
                    self._layer.SetMetadataItem(key, str(value))
            self._layer = self._definition = None
            self._close_checked()
            os.replace(self.tmp_path, self.path)
        except (RuntimeError, OSError) as exc:
            self._close_quietly()
            raise self._error(exc) from None

    def abort(self) -> None:
        """Roll the open block back and keep the finished ones for ``--resume`` (a file with none is removed)."""
        if self._dataset is not None and self._transaction:
            with _QuietGdal():
                try:
                    self._dataset.RollbackTransaction()
                except RuntimeError:
                    pass
        self._close_quietly()
        if not self.done:
            self._remove_partial()

    def _close_quietly(self) -> None:
        with _QuietGdal():
            self._layer = self._definition = None
            self._dataset = None

    def _remove_partial(self) -> None:
        for leftover in (self.tmp_path, *(Path(f"{self.tmp_path}-{s}") for s in ("journal", "wal", "shm"))):
            leftover.unlink(missing_ok=True)

    def _discard(self) -> None:
        self._close_quietly()
        self._remove_partial()

    def __exit__(self, *exc: object) -> None:
        self.abort()
