"""The last few weights files used or written (fine-tuned), newest first, kept in QgsSettings."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsSettings

KEY = "footprint_plugin/recent_weights"
KEEP = 5


def recent_weights() -> list[str]:
    """Remembered weights files that still exist, newest first."""
    value = QgsSettings().value(KEY, [])
    paths = [value] if isinstance(value, str) else list(value or [])
    return [p for p in paths if p and Path(p).is_file()][:KEEP]


def remember_weights(path: str) -> list[str]:
    """Put ``path`` first (once); returns the list now remembered."""
    path = str(Path(path).resolve())
    paths = [path] + [p for p in recent_weights() if p != path]
    QgsSettings().setValue(KEY, paths[:KEEP])
    return paths[:KEEP]
