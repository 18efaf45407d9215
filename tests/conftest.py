"""Shared test set-up: keep caches (the ONNX export cache) out of the user's home."""

import os
import tempfile

os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="footprint-test-cache-"))
