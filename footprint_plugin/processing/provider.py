"""The Processing provider "Building footprints": extract, fine-tune, evaluate and regularise."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..core.resource_files import icon_path
from .extract_algorithm import ExtractBuildingsAlgorithm


class FootprintProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "footprint"

    def name(self) -> str:
        return "Building footprints"

    def icon(self):
        return QIcon(icon_path())

    def loadAlgorithms(self) -> None:  # noqa: N802
        self.addAlgorithm(ExtractBuildingsAlgorithm())
        from .evaluate_algorithm import EvaluateBuildingsAlgorithm  # the trainer itself loads only when run
        from .extract_many_algorithm import ExtractBuildingsManyAlgorithm
        from .regularize_algorithm import RegularizeBuildingsAlgorithm
        from .train_algorithm import TrainModelAlgorithm

        self.addAlgorithm(ExtractBuildingsManyAlgorithm())
        self.addAlgorithm(TrainModelAlgorithm())
        self.addAlgorithm(EvaluateBuildingsAlgorithm())
        self.addAlgorithm(RegularizeBuildingsAlgorithm())
