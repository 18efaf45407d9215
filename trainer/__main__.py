"""``python -m trainer <command>``."""

import sys

from .cli import main

sys.exit(main())
