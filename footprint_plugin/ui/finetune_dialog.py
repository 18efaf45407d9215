"""The "Fine-tune on my corrections" dialog: it only collects choices into a ``trainer.finetune.FinetuneRequest``."""

from __future__ import annotations

import os
from pathlib import Path

from qgis.core import (
    QgsGeometry,
    QgsMapLayerProxyModel,
    QgsRasterLayer,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QVBoxLayout,
)

from ..core.errors import FootprintError
from ..qgis_io.layer_files import new_file_beside_project

AREA_VIEW = "Current map view"
AREA_LAYER = "All polygons of a layer"
AREA_SELECTION = "Selected polygons of a layer"
AREA_EXTENT = "Extent of the buildings (+10 m)"
AREA_CHOICES = (AREA_VIEW, AREA_LAYER, AREA_SELECTION, AREA_EXTENT)


def is_polygon_layer(layer) -> bool:
    return isinstance(layer, QgsVectorLayer) and layer.geometryType() == QgsWkbTypes.GeometryType.PolygonGeometry


class FinetuneDialog(QDialog):
    """Raster, corrected buildings, the area where they are complete, minutes, base weights and output file."""

    def __init__(self, iface=None, parent=None, raster: QgsRasterLayer | None = None,
                 buildings: QgsVectorLayer | None = None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.setWindowTitle("Fine-tune on my corrections")
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Correct the extracted buildings in part of the raster (delete false ones, draw missed "
                                "ones, split merged ones), then train the model on them here."))
        form = QFormLayout()
        layout.addLayout(form)
        active = iface.activeLayer() if iface is not None else None

        self.raster_combo = QgsMapLayerComboBox()
        self.raster_combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        raster = raster if raster is not None else active
        if isinstance(raster, QgsRasterLayer):
            self.raster_combo.setLayer(raster)
        form.addRow("Raster", self.raster_combo)

        self.buildings_combo = QgsMapLayerComboBox()
        self.buildings_combo.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        buildings = buildings if buildings is not None else active
        if is_polygon_layer(buildings):
            self.buildings_combo.setLayer(buildings)
        form.addRow("Corrected buildings", self.buildings_combo)

        self.area_combo = QComboBox()
        self.area_combo.addItems(list(AREA_CHOICES))
        self.area_layer = QgsMapLayerComboBox()
        self.area_layer.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self.area_layer.setEnabled(False)
        self.area_combo.currentTextChanged.connect(
            lambda text: self.area_layer.setEnabled(text in (AREA_LAYER, AREA_SELECTION)))
        form.addRow("Area where the edits are complete", self.area_combo)
        form.addRow("Area layer", self.area_layer)

        self.minutes = QDoubleSpinBox()
        self.minutes.setDecimals(2)
        self.minutes.setRange(0.05, 24 * 60)
        self.minutes.setSingleStep(1.0)
        self.minutes.setValue(10.0)
        self.minutes.setSuffix(" min")
        form.addRow("Training time", self.minutes)

        self.base_weights = QgsFileWidget()
        self.base_weights.setFilter("Weights (*.safetensors)")
        self.base_weights.lineEdit().setPlaceholderText("Bundled default model")
        self.base_weights.setToolTip("Weights of your last round bring its corrections along: this round trains on "
                                     "them too")
        form.addRow("Start from", self.base_weights)

        from ..core.devices import available_devices  # torch: only once the dialog opens
        from ..setup.trainer_access import trainer_module

        self.device_combo = QComboBox()
        self.device_combo.addItem("CPU", "cpu")
        for device in available_devices()[:-1]:  # the GPUs (the last is the CPU)
            self.device_combo.addItem(f"{device} (with AMP)" if device.startswith("cuda") else device, device)
        form.addRow("Device", self.device_combo)

        self.output_file = QgsFileWidget()
        self.output_file.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        self.output_file.setFilter("Weights (*.safetensors)")
        form.addRow("Save the weights to", self.output_file)
        self.raster_combo.layerChanged.connect(self._suggest_output)
        self._suggest_output(self.raster_combo.currentLayer())

        layout.addWidget(QLabel("About 15% of the area is held out to measure the F1 before and after; training runs "
                                "in the background and keeps the best weights. A raster inside the area without "
                                "buildings is learnt as ground without buildings. Next round: start from these "
                                "weights, and their corrections are trained on again with the new ones. "
                                + trainer_module("finetune").GUIDANCE))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Fine-tune")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _suggest_output(self, layer) -> None:
        if layer is not None:
            self.output_file.setFilePath(new_file_beside_project(f"{layer.name()}_finetuned", ".safetensors"))

    def request(self, folder: str):
        """The choices as a FinetuneRequest; layers that are not plain files are written into ``folder``.
        Raises FootprintError with a message for the user."""
        from ..qgis_io.layer_files import geometry_file, raster_file, vector_file
        from ..setup.trainer_access import trainer_module

        raster_layer = self.raster_combo.currentLayer()
        if raster_layer is None:
            raise FootprintError("Load the raster the buildings were drawn on, and choose it as the raster.")
        raster = raster_file(raster_layer)
        buildings_layer = self.buildings_combo.currentLayer()
        if buildings_layer is None:
            raise FootprintError("Choose the layer of corrected buildings (e.g. the one Extract buildings added).")
        buildings = vector_file(buildings_layer, folder, "buildings", "corrected buildings")
        area = self._area(folder, vector_file, geometry_file)
        output = self.output_file.filePath().strip()
        if not output:
            raise FootprintError("Choose where to save the fine-tuned weights.")
        if not output.lower().endswith(".safetensors"):
            output += ".safetensors"
        parent = Path(output).resolve().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise FootprintError(f"Cannot save the weights to {output}: {parent} is not a writable folder.")
        base = self.base_weights.filePath().strip() or None
        if base is not None and not Path(base).is_file():
            raise FootprintError(f"Base weights {base}: file not found.")
        if base is not None and Path(base).resolve() == Path(output).resolve():
            raise FootprintError("Save the fine-tuned weights to another file than the base weights.")
        finetune = trainer_module("finetune")
        return finetune.FinetuneRequest(rasters=[raster], buildings=buildings, output=output, area=area, weights=base,
                                        minutes=float(self.minutes.value()), device=self.device_combo.currentData(),
                                        area_option="the area where the edits are complete")

    def _area(self, folder: str, vector_file, geometry_file) -> str | None:
        choice = self.area_combo.currentText()
        if choice == AREA_EXTENT:
            return None  # the trainer's default
        if choice == AREA_VIEW:
            if self.iface is None or self.iface.mapCanvas() is None:
                raise FootprintError("No map view is open; choose an area layer instead.")
            canvas = self.iface.mapCanvas()
            extent = canvas.extent()
            if extent.isEmpty():
                raise FootprintError("The map view is empty; zoom to the area you corrected.")
            return geometry_file(QgsGeometry.fromRect(extent), canvas.mapSettings().destinationCrs(),
                                 Path(folder) / "area.gpkg")
        layer = self.area_layer.currentLayer()
        if layer is None:
            raise FootprintError("Choose the polygon layer that outlines where the edits are complete.")
        return vector_file(layer, folder, "area", "area", selected_only=choice == AREA_SELECTION)
