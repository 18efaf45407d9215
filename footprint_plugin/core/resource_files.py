"""Files the plugin ships (the default weights, the icon), found inside the installed plugin or in the
repository. Plain Python: the plugin's start-up uses it before torch may be installed."""

from __future__ import annotations

from pathlib import Path

from .errors import FootprintError

PLUGIN = Path(__file__).resolve().parents[1]  # footprint_plugin/
DEFAULT_WEIGHTS_NAME = "default_weights.safetensors"


def resource_path(name: str) -> Path | None:
    """``resources/<name>`` of the installed plugin (or the pip package), else of the repository; None when
    missing."""
    for candidate in (PLUGIN / "resources" / name, PLUGIN.parent / "resources" / name):
        if candidate.is_file():
            return candidate
    return None


def default_weights_path() -> Path:
    """The bundled weights; a FootprintError that says what to do when this copy has none."""
    path = resource_path(DEFAULT_WEIGHTS_NAME)
    if path is None:
        raise FootprintError("No default weights are bundled with this copy; pass a weights file (--weights FILE, "
                             "or choose one in the dialog).")
    return path


def icon_path() -> str:
    """The toolbar and Processing icon (empty when missing: Qt then shows none)."""
    path = resource_path("icon.svg")
    return str(path) if path else ""
