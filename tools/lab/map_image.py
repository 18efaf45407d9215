"""A map image rendered by QGIS itself: buildings over their raster, with a caption band (the lab screenshots)."""

from __future__ import annotations


def rendered_map(buildings, raster_layer, extent, size: tuple[int, int], caption: str, font_size: int = 14):
    """The ``buildings`` layer over ``raster_layer`` in the raster's CRS, ``extent`` at ``size`` px, with
    ``caption`` on a white band at the top (a QImage)."""
    from qgis.core import QgsMapRendererSequentialJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QFont, QPainter

    settings = QgsMapSettings()
    settings.setLayers([buildings, raster_layer])
    settings.setDestinationCrs(raster_layer.crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(*size))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    band = 2 * font_size
    painter = QPainter(image)
    painter.setFont(QFont("Sans", font_size, QFont.Bold))
    painter.fillRect(0, 0, image.width(), band, QColor(255, 255, 255, 212))
    painter.drawText(8, band - font_size // 2 - 2, caption)
    painter.end()
    return image
