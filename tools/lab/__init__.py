"""Lab scripts: each measured a figure or table in ``docs/`` (its first docstring line says which)."""
