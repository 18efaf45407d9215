"""A map image rendered by QGIS itself: buildings over their raster, with a caption band, and a sheet of them
(the lab screenshots)."""

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


def save_sheet(images, size: tuple[int, int], png, colours_256: bool = False) -> None:
    """``images`` (each ``size`` px) stacked top to bottom, 8 px of white between, saved to ``png``; with
    ``colours_256``, as an indexed image (a third of the bytes)."""
    from qgis.PyQt.QtGui import QImage, QPainter

    sheet = QImage(size[0], size[1] * len(images) + 8 * (len(images) - 1), QImage.Format_ARGB32)
    sheet.fill(0xFFFFFFFF)
    painter = QPainter(sheet)
    for index, image in enumerate(images):
        painter.drawImage(0, index * (size[1] + 8), image)
    painter.end()
    (sheet.convertToFormat(QImage.Format_Indexed8) if colours_256 else sheet).save(str(png))
