"""Default look and metadata of a new buildings layer."""

from __future__ import annotations

from qgis.core import (
    QgsColorRampShader,
    QgsFillSymbol,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsSingleSymbolRenderer,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor


def style_buildings_layer(layer: QgsVectorLayer, request=None, outcome=None) -> None:
    """Orange outlines with a faint fill, and layer metadata naming the raster and the weights."""
    layer.setRenderer(QgsSingleSymbolRenderer(_outline("255,140,0,40", "255,120,0,255")))
    metadata = layer.metadata()
    metadata.setTitle(layer.name())
    source = request.layer.source() if request is not None else "unknown raster"
    details = []
    if outcome is not None:
        details.append(f"{outcome.buildings} buildings, {outcome.seconds:.1f} s on {outcome.device}.")
    if request is not None:
        weights_name = request.parameters.weights or "bundled default weights"
        details.append(f"Weights: {weights_name}.")
    metadata.setAbstract(f"Building footprints extracted from {source}. " + " ".join(details))
    metadata.setKeywords({"footprint": ["buildings", "U-Net", "extraction"]})
    layer.setMetadata(metadata)
    layer.triggerRepaint()


def style_probability_layer(layer: QgsRasterLayer) -> None:
    """The building probability (0-255) as transparent-to-orange pseudocolour; below 0.3 fully transparent."""
    ramp = QgsColorRampShader(0, 255)
    ramp.setColorRampType(QgsColorRampShader.Type.Interpolated)
    ramp.setColorRampItemList([
        QgsColorRampShader.ColorRampItem(0, QColor(255, 140, 0, 0), "0"),
        QgsColorRampShader.ColorRampItem(76, QColor(255, 140, 0, 0), "0.3"),
        QgsColorRampShader.ColorRampItem(153, QColor(255, 140, 0, 140), "0.6"),
        QgsColorRampShader.ColorRampItem(255, QColor(230, 60, 0, 220), "1"),
    ])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0)
    renderer.setClassificationMax(255)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def _outline(fill: str, outline: str, width: str = "0.5", style: str = "solid") -> QgsFillSymbol:
    return QgsFillSymbol.createSimple({"color": fill, "outline_color": outline, "outline_width": width,
                                       "outline_width_unit": "MM", "outline_style": style})


def _by_rules(layer: QgsVectorLayer, rules: list[tuple[QgsFillSymbol, str, str]]) -> None:
    """A rule-based renderer: (symbol, legend label, expression) each."""
    from qgis.core import QgsRuleBasedRenderer

    root = QgsRuleBasedRenderer.Rule(None)
    for symbol, label, expression in rules:
        root.appendChild(QgsRuleBasedRenderer.Rule(symbol, 0, 0, expression, label))
    layer.setRenderer(QgsRuleBasedRenderer(root))


def style_regularized_layer(layer: QgsVectorLayer) -> None:
    """Regularised footprints as orange outlines; those kept as they were (``reg_method`` input, invalid, empty,
    multipart) dashed grey, so that what the tool left alone stands out."""
    unchanged = "\"reg_method\" IS NULL OR regexp_match(\"reg_method\", '^(input|invalid|empty|multipart)')"
    _by_rules(layer, [(_outline("255,140,0,40", "255,120,0,255"), "regularised", f"NOT ({unchanged})"),
                      (_outline("128,128,128,30", "90,90,90,255", style="dash"), "kept as it was", unchanged)])
    layer.triggerRepaint()


def style_review_layer(layer: QgsVectorLayer) -> None:
    """The review layer (``core.review``) by rank: the first ten bold red, up to 50 orange, the rest dashed yellow,
    each labelled with its rank, so that the user corrects the first ones first."""
    from qgis.core import QgsPalLayerSettings, QgsVectorLayerSimpleLabeling

    _by_rules(layer, [(_outline("230,0,0,50", "230,0,0,255", "1.2"), "look first (1-10)", '"rank" <= 10'),
                      (_outline("255,120,0,30", "255,120,0,255", "0.8"), "then (11-50)", '"rank" > 10 AND "rank" <= 50'),
                      (_outline("240,200,0,20", "240,200,0,255", style="dash"), "later (51 on)", '"rank" > 50')])
    labels = QgsPalLayerSettings()
    labels.fieldName = "rank"
    layer.setLabeling(QgsVectorLayerSimpleLabeling(labels))
    layer.setLabelsEnabled(True)
    layer.triggerRepaint()
