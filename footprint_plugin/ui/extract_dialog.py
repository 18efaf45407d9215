"""The "Extract buildings" dialog: it only collects choices into an ExtractionRequest."""

from __future__ import annotations

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
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.devices import available_devices
from ..core.errors import FootprintError
from ..core.parameters import OPTION, OPTIONS, Option, build_parameters
from ..qgis_io.layer_files import new_file_beside_project
from ..tasks.extraction_task import ExtractionRequest

AREA_WHOLE, AREA_VIEW, AREA_SELECTION = "Whole layer", "Current map view", "Selected features of a polygon layer"


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
        from ..qgis_io.weights_history import recent_weights  # fine-tuned and recently used weights, newest first

        for path in recent_weights():
            self.weights_combo.addItem(f"Recent: {Path(path).name}", path)
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
        self.widgets: dict[str, QWidget] = {}
        for option in OPTIONS:
            if option.name == "device":
                continue  # above, with the devices this machine has
            self.widgets[option.name] = option_widget(option)
            advanced_form.addRow(option.label, self.widgets[option.name])
        self.bands_hint = QLabel()
        advanced_form.addRow("", self.bands_hint)
        layout.addWidget(advanced)

        self.output_file = QgsFileWidget()
        self.output_file.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        self.output_file.setFilter("GeoPackage (*.gpkg)")
        form.addRow("Output GeoPackage", self.output_file)
        self.probabilities_file = QgsFileWidget()
        self.probabilities_file.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        self.probabilities_file.setFilter("GeoTIFF (*.tif)")
        self.probabilities_file.setToolTip("Optional: the building probability of every pixel, 0-255, loaded styled")
        form.addRow("Probability raster (optional)", self.probabilities_file)
        self.review_check = QCheckBox("Also a review layer: where to correct first")
        self.review_check.setToolTip("The buildings with the lowest scores and the areas where the model is unsure, "
                                     "ranked (rank 1 first), written beside the output as NAME_review.gpkg")
        form.addRow("", self.review_check)
        self.raster_combo.layerChanged.connect(self._suggest_output)
        self.raster_combo.layerChanged.connect(self._show_bands)
        self._suggest_output(self.raster_combo.currentLayer())
        self._show_bands(self.raster_combo.currentLayer())

        self.hint = QLabel("The extraction runs in the background; you can keep working.")
        layout.addWidget(self.hint)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Extract")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _suggest_output(self, layer) -> None:
        if layer is not None:
            self.output_file.setFilePath(new_file_beside_project(f"{layer.name()}_buildings", ".gpkg"))

    def _show_bands(self, layer) -> None:
        """The raster's bands, for the band mapping."""
        if not isinstance(layer, QgsRasterLayer):
            self.bands_hint.setText("")
            return
        names = [f"{band} {layer.bandName(band)}" for band in range(1, layer.bandCount() + 1)]
        self.bands_hint.setText("Bands of this raster: " + ", ".join(names))

    def values(self) -> dict:
        """Option name -> chosen value (None: the default)."""
        values = {name: option_value(OPTION[name], widget) for name, widget in self.widgets.items()}
        values["device"] = self.device_combo.currentData()
        return values

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
        elif self.weights_combo.currentData():
            weights = self.weights_combo.currentData()  # a recent weights file
        output = self.output_file.filePath().strip()
        if not output:
            raise FootprintError("Choose where to save the output GeoPackage.")
        if not output.lower().endswith(".gpkg"):
            output += ".gpkg"
        extent, area_geometry = self._area(layer)
        parameters = build_parameters(self.values(), weights=weights)
        if weights:
            from ..qgis_io.weights_history import remember_weights

            remember_weights(weights)
        probabilities = self.probabilities_file.filePath().strip() or None
        if probabilities and not probabilities.lower().endswith((".tif", ".tiff")):
            probabilities += ".tif"
        review = None
        if self.review_check.isChecked():
            review = str(Path(output).with_name(f"{Path(output).stem}_review.gpkg"))
        return ExtractionRequest(layer, output, parameters, extent, area_geometry, f"{layer.name()} buildings",
                                 probabilities, review)

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



def option_widget(option: Option) -> QWidget:
    """A widget for one entry of the shared option table; a default of None shows as the lowest value."""
    if option.choices:
        widget = QComboBox()
        widget.addItems(list(option.choices))
        widget.setCurrentText(option.default)
        return widget
    if option.kind == "bool":
        widget = QCheckBox()
        widget.setChecked(bool(option.default))
        return widget
    if option.kind == "bands":
        widget = QLineEdit()
        widget.setPlaceholderText(f"{option.auto}, or e.g. 1,2,3")
        return widget
    widget = QSpinBox() if option.kind == "int" else QDoubleSpinBox()
    step = 1 if option.kind == "int" else 0.01
    if option.kind == "float":
        widget.setDecimals(2)
        widget.setSingleStep(0.05)
    low = option.minimum - step if option.default is None else option.minimum
    widget.setRange(low, option.maximum)
    if option.default is None:
        widget.setSpecialValueText(option.auto)  # shown at the lowest value, which means "default"
        widget.setValue(low)
    else:
        widget.setValue(option.default)
    widget.setToolTip(option.help)
    return widget


def option_value(option: Option, widget: QWidget):
    """What ``widget`` holds for ``option``; None where it shows the default's text."""
    if option.choices:
        return widget.currentText()
    if option.kind == "bool":
        return widget.isChecked()
    if option.kind == "bands":
        return widget.text().strip() or None
    if option.default is None and widget.value() == widget.minimum():
        return None
    return widget.value()
