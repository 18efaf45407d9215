"""Getting the engine's packages: the dependency installer (no QGIS at module level) and access to the trainer."""
