"""What the plugin imports at start-up must import without the engine's heavy packages (the installer's case)."""

from __future__ import annotations

import subprocess
import sys

from .helpers import REPO


def test_option_table_and_provider_import_without_torch_or_safetensors():
    code = ("import sys\n"
            "sys.modules['torch'] = None\n"
            "sys.modules['safetensors'] = None\n"
            "import footprint_plugin.core.parameters\n"
            "import footprint_plugin.processing.provider\n"
            "print('imported')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "imported"
