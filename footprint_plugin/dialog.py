"""The "Extract buildings" dialog: it only collects choices into an ExtractionRequest."""

from __future__ import annotations

import tempfile
from pathlib import Path

from qgis.core import (
    QgsCoordinateTransform,
    QgsGeometry,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
)

from .core.errors import FootprintError
from .core.extract import ExtractionParameters
from .core.inference import TilingOptions, available_devices
from .core.vectorize import REGULARIZE_MODES
from .task import ExtractionRequest

AREA_WHOLE, AREA_VIEW, AREA_SELECTION = "Whole layer", "Current map view", "Selected features of a polygon layer"


def default_output_path(layer_name: str) -> str:
    """Beside the project file when there is one, else in the temporary folder; never overwrites."""
    project_file = QgsProject.instance().fileName()
    folder = Path(project_file).parent if project_file else Path(tempfile.gettempdir())
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{layer_name}_buildings")
    candidate = folder / f"{stem}.gpkg"
    number = 2
    while candidate.exists():
        candidate = folder / f"{stem}_{number}.gpkg"
        number += 1
    return str(candidate)


class ExtractDialog(QDialog):
    """Input raster, weights, area, device, advanced tiling and output."""

    def __init__(self, iface=None, parent=None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.setWindowTitle("Extract buildings")
        layout = QVBoxLayout(self)
        form = QFormLayout()
        layout.addLayout(form)

        self.raster_combo = QgsMapLayerComboBox()
        self.raster_combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        current = iface.activeLayer() if iface is not None else None
        if isinstance(current, QgsRasterLayer):
            self.raster_combo.setLayer(current)
        form.addRow("Input raster", self.raster_combo)

        self.weights_combo = QComboBox()
        self.weights_combo.addItems(["Bundled default model", "Weights file…"])
        self.weights_file = QgsFileWidget()
        self.weights_file.setFilter("Weights (*.safetensors)")
        self.weights_file.setEnabled(False)
        self.weights_combo.currentIndexChanged.connect(lambda i: self.weights_file.setEnabled(i == 1))
        form.addRow("Model", self.weights_combo)
        form.addRow("", self.weights_file)

        self.area_combo = QComboBox()
        self.area_combo.addItems([AREA_WHOLE, AREA_VIEW, AREA_SELECTION])
        self.area_layer = QgsMapLayerComboBox()
        self.area_layer.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self.area_layer.setEnabled(False)
        self.area_combo.currentTextChanged.connect(lambda t: self.area_layer.setEnabled(t == AREA_SELECTION))
        form.addRow("Area", self.area_combo)
        form.addRow("Polygon layer", self.area_layer)

        self.device_combo = QComboBox()
        devices = available_devices()
        self.device_combo.addItem(f"Auto ({devices[0]})", "auto")
        for device in devices:
            self.device_combo.addItem(device.upper() if device == "cpu" else device, device)
        if not any(d.startswith("cuda") for d in devices):
            self.device_combo.addItem("CUDA (not available here)", "cuda")
        form.addRow("Device", self.device_combo)

        advanced = QgsCollapsibleGroupBox("Advanced")
        advanced.setCollapsed(True)
        advanced_form = QFormLayout(advanced)
        self.tile_size = QSpinBox()
        self.tile_size.setRange(0, 4096)
        self.tile_size.setSingleStep(32)
        self.tile_size.setSpecialValueText("model default")
        self.overlap = QSpinBox()
        self.overlap.setRange(-1, 2048)
        self.overlap.setSpecialValueText("quarter tile")
        self.overlap.setValue(-1)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(0, 256)
        self.batch_size.setSpecialValueText("device default")
        self.min_area = QDoubleSpinBox()
        self.min_area.setRange(0, 10000)
        self.min_area.setValue(5.0)
        self.min_area.setSuffix(" m²")
        self.regularize = QComboBox()
        self.regularize.addItems(REGULARIZE_MODES)
        self.regularize.setCurrentText("simplify")
        for label, widget in (("Tile size (px)", self.tile_size), ("Overlap (px)", self.overlap),
                              ("Batch size", self.batch_size), ("Minimum area", self.min_area),
                              ("Outline", self.regularize)):
            advanced_form.addRow(label, widget)
        layout.addWidget(advanced)

        self.output_file = QgsFileWidget()
        self.output_file.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        self.output_file.setFilter("GeoPackage (*.gpkg)")
        form.addRow("Output GeoPackage", self.output_file)
        self.raster_combo.layerChanged.connect(self._suggest_output)
        self._suggest_output(self.raster_combo.currentLayer())

        self.hint = QLabel("The extraction runs in the background; you can keep working.")
        layout.addWidget(self.hint)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Extract")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _suggest_output(self, layer) -> None:
        if layer is not None:
            self.output_file.setFilePath(default_output_path(layer.name()))

    def request(self) -> ExtractionRequest:
        """The choices as a request; raises FootprintError with a message for the user."""
        layer = self.raster_combo.currentLayer()
        if not isinstance(layer, QgsRasterLayer):
            raise FootprintError("Load a raster layer first (and choose it as the input raster).")
        weights = None
        if self.weights_combo.currentIndex() == 1:
            weights = self.weights_file.filePath().strip()
            if not weights:
                raise FootprintError("Choose a weights file, or use the bundled default model.")
        output = self.output_file.filePath().strip()
        if not output:
            raise FootprintError("Choose where to save the output GeoPackage.")
        if not output.lower().endswith(".gpkg"):
            output += ".gpkg"
        extent, area_geometry = self._area(layer)
        tiling = TilingOptions(tile_size=self.tile_size.value() or None,
                               overlap=None if self.overlap.value() < 0 else self.overlap.value(),
                               batch_size=self.batch_size.value() or None)
        parameters = ExtractionParameters(weights=weights, device=self.device_combo.currentData(), tiling=tiling,
                                          min_area_m2=self.min_area.value(), regularize=self.regularize.currentText())
        return ExtractionRequest(layer, output, parameters, extent, area_geometry, f"{layer.name()} buildings")

    def _area(self, layer: QgsRasterLayer) -> tuple[QgsRectangle | None, QgsGeometry | None]:
        choice = self.area_combo.currentText()
        project = QgsProject.instance()
        if choice == AREA_VIEW:
            if self.iface is None:
                raise FootprintError("No map view is open.")
            canvas = self.iface.mapCanvas()
            to_layer = QgsCoordinateTransform(canvas.mapSettings().destinationCrs(), layer.crs(), project)
            return to_layer.transformBoundingBox(canvas.extent()), None
        if choice == AREA_SELECTION:
            polygons = self.area_layer.currentLayer()
            if polygons is None or polygons.selectedFeatureCount() == 0:
                raise FootprintError("Select one or more features of the polygon layer that outlines the area.")
            geometry = QgsGeometry.unaryUnion([f.geometry() for f in polygons.selectedFeatures()])
            geometry.transform(QgsCoordinateTransform(polygons.crs(), layer.crs(), project))
            return geometry.boundingBox(), geometry
        return None, None
