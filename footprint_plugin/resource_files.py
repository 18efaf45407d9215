"""Files the plugin ships (icon, weights), found inside the installed plugin or in the repository.

A module of its own so that plugin.py and processing_provider.py both use it without importing
each other. (Not named ``resources``: the installed plugin has a ``resources/`` folder.)
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def resource_path(name: str) -> Path | None:
    """``resources/<name>`` of the installed plugin, else of the repository; None when missing."""
    for candidate in (HERE / "resources" / name, HERE.parent / "resources" / name):
        if candidate.is_file():
            return candidate
    return None


def icon_path() -> str:
    """The toolbar and Processing icon (empty when missing: Qt then shows none)."""
    path = resource_path("icon.svg")
    return str(path) if path else ""
