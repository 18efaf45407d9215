"""Building footprints: a QGIS plugin that extracts building polygons with a U-Net.

Nothing from QGIS or Qt is imported here at module level, so the engine in
``footprint_plugin.core`` can be used on machines without QGIS.
"""


def classFactory(iface):  # noqa: N802 - QGIS's plugin entry point
    """Called by QGIS to create the plugin."""
    from .setup.dependencies import activate_profile_folder

    # What the dependency installer put into this QGIS profile, first on sys.path; then, after `make install`
    # from a checkout, that checkout's .venv packages (recorded in the profile).
    activate_profile_folder()
    from .plugin import FootprintPlugin

    return FootprintPlugin(iface)
