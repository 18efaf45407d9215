"""The ``trainer`` package (fine-tuning, scoring), imported only when the user fine-tunes or evaluates.

The plugin zip carries a copy of the repository's ``trainer/`` as ``footprint_plugin/vendor/trainer/``
(``tools/plugin_package.py``); in a repository checkout ``trainer`` is importable as it is. Nothing here
runs at plugin load: extraction never needs the trainer.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from ..core.errors import FootprintError

VENDOR = Path(__file__).resolve().parents[1] / "vendor"


def trainer_module(name: str) -> ModuleType:
    """``trainer.<name>``, from the plugin's vendored copy when there is one; one-line FootprintError otherwise."""
    from .dependencies import install_hint, missing_packages

    missing = missing_packages()
    if missing:
        raise FootprintError(install_hint(missing))
    vendored = VENDOR / "trainer" / "__init__.py"
    if vendored.is_file() and str(VENDOR) not in sys.path and "trainer" not in sys.modules:
        sys.path.insert(0, str(VENDOR))  # ahead of any unrelated package that is also called "trainer"
        importlib.invalidate_caches()
    try:
        return importlib.import_module(f"trainer.{name}")
    except ImportError as exc:
        raise FootprintError(f"The training part of the plugin cannot be loaded ({exc}); reinstall the plugin "
                             "from its zip, which carries it under footprint_plugin/vendor/trainer.") from None
