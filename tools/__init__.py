"""What `make` runs (the benchmark, the plugin package) and, in ``lab/``, the measurements behind the docs."""
