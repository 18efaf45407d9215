"""The extraction engine: no QGIS, no Qt; runs anywhere torch, rasterio and shapely do."""
