"""``footprint:extract_buildings_many``: several raster layers as one input (the command line's many rasters).

Layers that share a CRS are read as one mosaic, so buildings across their edges come out whole and once; layers in
other CRSs run one after another into the same layer, in the first layer's CRS or the chosen one. Each building's
``source`` is the layer file holding its centre.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterCrs,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsWkbTypes,
)

from ..core.errors import FootprintError
from ..setup.dependencies import install_hint, missing_packages
from .extract_algorithm import ExtractBuildingsAlgorithm, _option_parameter, check_written
from .one_line_errors import run_with_one_line_errors


class ExtractBuildingsManyAlgorithm(QgsProcessingAlgorithm):
    INPUTS, WEIGHTS, CRS, OUTPUT = "INPUTS", "WEIGHTS", "CRS", "OUTPUT"

    def name(self) -> str:
        return "extract_buildings_many"

    def displayName(self) -> str:  # noqa: N802
        return "Extract buildings from several rasters"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Extracts building footprints from several raster files at once (e.g. the tiles of an orthophoto) "
                "into one layer with fields area_m2, score and source (the raster holding the building's centre). "
                "Rasters in one CRS are read as one mosaic: buildings on tile edges come out whole and once.")

    def createInstance(self):  # noqa: N802
        return ExtractBuildingsManyAlgorithm()

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        from ..core.parameters import OPTIONS

        self.addParameter(QgsProcessingParameterMultipleLayers(self.INPUTS, "Input rasters",
                                                               QgsProcessing.SourceType.TypeRaster))
        self.addParameter(QgsProcessingParameterFile(self.WEIGHTS, "Weights file (empty: bundled default)",
                                                     extension="safetensors", optional=True))
        self.addParameter(QgsProcessingParameterCrs(self.CRS, "Output CRS (empty: the first raster's)", optional=True))
        for option in OPTIONS:
            self.addParameter(_option_parameter(option))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, "Buildings",
                                                            QgsProcessing.SourceType.TypeVectorPolygon))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        missing = missing_packages()
        if missing:
            raise QgsProcessingException(install_hint(missing))
        return run_with_one_line_errors(lambda: self._extract(parameters, context, feedback))

    def _paths(self, parameters, context) -> list[str]:
        """The files of the chosen layers (each must be a raster file GDAL opens)."""
        layers = self.parameterAsLayerList(parameters, self.INPUTS, context)
        if not layers:
            raise FootprintError("Choose one or more raster layers as INPUTS.")
        paths = []
        for layer in layers:
            path = layer.source().split("|")[0]
            if layer.providerType() != "gdal" or not Path(path).is_file():
                raise FootprintError(f"Layer {layer.name()} is not a raster file; save it as a GeoTIFF first "
                                     "(Export > Save As).")
            paths.append(path)
        return paths

    def _extract(self, parameters, context, feedback) -> dict:
        from ..core.inputs import open_inputs
        from ..core.mosaic_run import run_inputs
        from ..core.parameters import build_parameters
        from ..qgis_io.feature_sink import FeatureSinkAdapter, building_fields

        values = ExtractBuildingsAlgorithm._values(self, parameters, context)
        options = build_parameters(values, weights=self.parameterAsFile(parameters, self.WEIGHTS, context) or None)
        crs = self.parameterAsCrs(parameters, self.CRS, context)
        with tempfile.TemporaryDirectory(prefix="footprint-mosaics-") as folder:
            inputs = open_inputs(self._paths(parameters, context), Path(folder),
                                 crs.toWkt() if crs.isValid() else None)
            fields = building_fields()
            sink, dest_id = self.parameterAsSink(parameters, self.OUTPUT, context, fields, QgsWkbTypes.Type.Polygon,
                                                 QgsCoordinateReferenceSystem.fromWkt(inputs.crs.to_wkt()))
            if sink is None:
                raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
            adapter = FeatureSinkAdapter(sink, fields, dest_id)
            del sink  # the adapter holds the only reference: releasing it closes the file
            summary = run_inputs(inputs, options, adapter, progress=lambda f, _m: feedback.setProgress(100 * f),
                                 cancel=feedback.isCanceled, warn=feedback.pushWarning)
        adapter.release()
        check_written(dest_id, adapter.count)
        feedback.pushInfo(summary.message())
        return {self.OUTPUT: dest_id}
