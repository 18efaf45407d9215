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
    symbol = QgsFillSymbol.createSimple({
        "color": "255,140,0,40",
        "outline_color": "255,120,0,255",
        "outline_width": "0.5",
        "outline_width_unit": "MM",
    })
    layer.setRenderer(QgsSingleSymbolRenderer(symbol))
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


def style_regularized_layer(layer: QgsVectorLayer) -> None:
    """Regularised footprints as orange outlines; those kept as they were (``reg_method`` input, invalid, empty,
    multipart) dashed grey, so that what the tool left alone stands out."""
    from qgis.core import QgsRuleBasedRenderer

    shaped = QgsFillSymbol.createSimple({"color": "255,140,0,40", "outline_color": "255,120,0,255",
                                         "outline_width": "0.5", "outline_width_unit": "MM"})
    kept = QgsFillSymbol.createSimple({"color": "128,128,128,30", "outline_color": "90,90,90,255",
                                       "outline_width": "0.5", "outline_width_unit": "MM", "outline_style": "dash"})
    root = QgsRuleBasedRenderer.Rule(None)
    unchanged = "\"reg_method\" IS NULL OR regexp_match(\"reg_method\", '^(input|invalid|empty|multipart)')"
    for symbol, label, expression in ((shaped, "regularised", f"NOT ({unchanged})"),
                                      (kept, "kept as it was", unchanged)):
        root.appendChild(QgsRuleBasedRenderer.Rule(symbol, 0, 0, expression, label))
    layer.setRenderer(QgsRuleBasedRenderer(root))
    layer.triggerRepaint()
