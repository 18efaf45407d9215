"""The pipeline's sink protocol over a QgsFeatureSink (a Processing output), every write checked."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsFeature, QgsFeatureSink, QgsField, QgsFields, QgsGeometry
from qgis.PyQt.QtCore import QVariant

from ..core.errors import FootprintError

try:  # Qt5 builds
    REAL, TEXT = QVariant.Double, QVariant.String
except AttributeError:  # Qt6 builds
    from qgis.PyQt.QtCore import QMetaType

    REAL, TEXT = QMetaType.Type.Double, QMetaType.Type.QString


def building_fields() -> QgsFields:
    """Fields area_m2, score and source, as in the files the engine writes."""
    fields = QgsFields()
    fields.append(QgsField("area_m2", REAL))
    fields.append(QgsField("score", REAL))
    fields.append(QgsField("source", TEXT))
    return fields


class FeatureSinkAdapter:
    """Streams buildings into a QgsFeatureSink; a refused write or flush raises FootprintError.

    ``release()`` drops the sink object, which closes a file destination (QGIS writes the last
    buffered features then); the caller checks the closed file afterwards.
    """

    def __init__(self, sink: QgsFeatureSink, fields: QgsFields, name: str) -> None:
        self.sink, self.fields, self.name = sink, fields, name
        self.count = 0

    def _failed(self, what: str) -> FootprintError:
        detail = self.sink.lastError() if hasattr(self.sink, "lastError") else ""
        return FootprintError(f"Output {self.name}: {what}" + (f" ({detail})." if detail else "."))

    def add(self, buildings) -> None:
        features = []
        for building in buildings:
            feature = QgsFeature(self.fields)
            geometry = QgsGeometry()
            geometry.fromWkb(building.wkb)
            feature.setGeometry(geometry)
            feature.setAttributes([round(float(building.area_m2), 2), round(float(building.score), 4),
                                   building.source])
            features.append(feature)
        if not self.sink.addFeatures(features, QgsFeatureSink.Flag.FastInsert):
            raise self._failed("cannot write the buildings")
        self.count += len(features)

    def finish(self, metadata: dict[str, str]) -> None:
        if not self.sink.flushBuffer():
            raise self._failed("cannot write the last buildings")

    def abort(self) -> None:
        """Close the sink and delete a partly written file destination."""
        self.release()
        path = Path(self.name.split("|")[0])
        if "://" not in self.name and path.suffix and path.is_file():
            for leftover in (path, *(Path(f"{path}-{s}") for s in ("journal", "wal", "shm"))):
                leftover.unlink(missing_ok=True)

    def release(self) -> None:
        self.sink = None
