"""How every algorithm of the provider fails: with one line, never a traceback."""

from __future__ import annotations

from collections.abc import Callable

from qgis.core import QgsProcessingException

from ..core.errors import FootprintError


def run_with_one_line_errors(work: Callable[[], dict]) -> dict:
    """``work()``'s outputs; an engine error, a Processing error or a bug becomes one QgsProcessingException line.
    It is raised outside the handler, so no traceback keeps QGIS objects alive (QGIS 3.22 crashes at exit)."""
    error, outputs = None, None
    try:
        outputs = work()
    except (FootprintError, QgsProcessingException) as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug in the engine must not look like success either
        error = f"Unexpected error ({type(exc).__name__}: {exc})"
    if error is not None:
        raise QgsProcessingException(error)
    return outputs
