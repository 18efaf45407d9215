# Two commands on a fresh machine: `make demo` and `make test`. Each does the set-up it needs.
SHELL := /bin/bash
PYTHON := .venv/bin/python
APT_PACKAGES := qgis python3-qgis qgis-providers gdal-bin python3-gdal python3-rasterio python3-shapely \
	python3-scipy python3-tqdm python3-matplotlib python3-venv python3-pip xvfb xauth imagemagick
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup demo test lint bench package check-package install uninstall clean

setup: .venv/.installed

# System packages (only the missing ones), then the venv on Debian's Python with its site packages.
.venv/.installed: requirements.txt Makefile
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "setup: installing system packages: $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@test -x $(PYTHON) || /usr/bin/python3 -m venv --system-site-packages .venv
	@# Pin numpy to Debian's: QGIS, GDAL and rasterio are compiled against it.
	@echo "numpy==$$(/usr/bin/python3 -c 'import numpy; print(numpy.__version__)')" > .venv/constraints.txt
	$(PYTHON) -m pip install -q --disable-pip-version-check -c .venv/constraints.txt -r requirements.txt
	@touch $@

demo: setup
	$(PYTHON) -m trainer.demo

# Without the user's site-packages (~/.local/lib/python3.*): what another checkout or tool put there stays out.
test: setup
	PYTHONNOUSERSITE=1 $(PYTHON) -m pytest -q tests

lint: setup
	.venv/bin/ruff check .

bench: setup
	$(PYTHON) tools/bench.py

package: setup
	$(PYTHON) tools/plugin_package.py package

# The official plugin repository's checks on the zip (metadata, no compiled files, licence, icon, size).
check-package: package
	$(PYTHON) tools/plugin_package.py check

# Into the default QGIS user profile (QGIS_PROFILE_DIR=... for another one), enabled, with the plugin finding
# this checkout's .venv packages. Changes nothing outside that profile (README: Install).
install: package
	$(PYTHON) tools/plugin_package.py install

# Undoes `make install` in that profile (works without .venv too: the tool needs only Python's standard library).
uninstall:
	$$(test -x $(PYTHON) && echo $(PYTHON) || echo python3) tools/plugin_package.py uninstall

clean:
	rm -rf .venv out dist
