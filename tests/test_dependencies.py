"""The dependency installer: pins, sys.path, real pip runs (failure, cancel, held packages), the QGIS dialog
and task, and the whole story on a clean QGIS profile: Debian's /usr/bin/python3 without torch, the
installer run headless into the profile, then qgis_process extracting buildings with that profile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from osgeo import ogr
from qgis.PyQt.QtGui import QGuiApplication

from footprint_plugin.setup import dependencies
from footprint_plugin.ui.install_dialog import InstallDialog
from tools import plugin_package

from .helpers import REPO, SAMPLE_RASTER

SYSTEM_PYTHON = "/usr/bin/python3"
ARTIFACTS = REPO / "out" / "test-artifacts"


# pip settings that say only where packages come from (a mirror, local wheels); every other PIP_* is dropped.
PIP_SOURCES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CERT", "PIP_CLIENT_CERT",
               "PIP_TRUSTED_HOST", "PIP_PROXY", "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES", "PIP_CONFIG_FILE")


@pytest.fixture(autouse=True)
def isolated_pip(monkeypatch):
    """pip (run by the installer with os.environ) sees only its Python's own packages and the target: no user
    site (another checkout's .pth), no PYTHONPATH or venv, no PIP_* but where packages come from."""
    for name in [*os.environ]:
        if name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") or (name.startswith("PIP_") and name not in PIP_SOURCES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PYTHONNOUSERSITE", "1")


def plain_env(**extra: str) -> dict[str, str]:
    """The environment of a user's QGIS: no PYTHONPATH into this checkout, no user site (.pth into .venv)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "QGIS_OPTS")}
    env.update(PYTHONNOUSERSITE="1", FOOTPRINT_TORCH_INDEX="none", QT_QPA_PLATFORM="offscreen", **extra)
    return env


def test_requirements_are_pinned_for_the_numpy_found():
    assert dependencies.requirements(["torch", "safetensors"], "1.24.2") == ["torch==2.13.0", "safetensors==0.8.0"]
    assert dependencies.requirements(["rasterio", "scipy", "shapely"], "1.24.2") == [
        "rasterio==1.3.11", "scipy==1.13.1", "shapely==2.0.7"]
    assert dependencies.requirements(["rasterio"], "2.1.3") == ["rasterio==1.4.4"]
    assert dependencies.requirements(["numpy", "mpmath==1.3.0"], None) == ["numpy", "mpmath==1.3.0"]


def test_the_folder_is_per_profile_and_python_and_goes_first_once(tmp_path):
    folder = dependencies.dependency_folder(tmp_path / "profiles" / "default")
    assert folder == tmp_path / "profiles/default/python/footprint_plugin_packages" / dependencies.python_tag()
    assert not dependencies.activate(folder)  # not there yet
    folder.mkdir(parents=True)
    try:
        assert dependencies.activate(folder) and sys.path[0] == str(folder)
        assert not dependencies.activate(folder) and sys.path.count(str(folder)) == 1
    finally:
        sys.path.remove(str(folder))


def test_the_developer_site_make_install_records_goes_right_after_the_folder(tmp_path, monkeypatch):
    profile = tmp_path / "profile"
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = tmp_path / "checkout/.venv/lib" / version / "site-packages"
    site.mkdir(parents=True)
    zip_path = tmp_path / "plugin.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("footprint_plugin/__init__.py", "")
    plugin_package.install(zip_path, profile, developer_site=site)
    assert dependencies.developer_site(profile) == site
    folder = dependencies.dependency_folder(profile)
    folder.mkdir(parents=True)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert dependencies.activate_profile_folder(profile) == folder
    assert sys.path[:2] == [str(folder), str(site)]
    assert dependencies.activate_profile_folder(profile) == folder and sys.path.count(str(site)) == 1
    site.rename(site.with_name("gone"))  # the checkout was deleted: nothing is added
    monkeypatch.setattr(sys, "path", list(sys.path[2:]))
    assert dependencies.developer_site(profile) is None
    dependencies.activate_profile_folder(profile)
    assert sys.path[0] == str(folder) and str(site) not in sys.path
    plugin_package.install(zip_path, profile)  # without a developer site: the record says none
    assert dependencies.developer_site(profile) is None


def test_torch_index_cpu_cuda_and_override(monkeypatch):
    monkeypatch.delenv("FOOTPRINT_TORCH_INDEX", raising=False)
    assert dependencies.torch_index(False).endswith("/whl/cpu")
    assert "/whl/cu" in dependencies.torch_index(True)
    monkeypatch.setenv("FOOTPRINT_TORCH_INDEX", "none")
    assert dependencies.torch_index(True) == ""
    monkeypatch.setenv("FOOTPRINT_TORCH_INDEX", "https://mirror.example/torch")
    assert dependencies.torch_index(False) == "https://mirror.example/torch"


def test_check_command_tells_what_is_missing():
    here = subprocess.run([sys.executable, "-m", "footprint_plugin.setup.dependencies", "check"], cwd=REPO,
                          capture_output=True, text=True)
    assert here.returncode == 0 and "all required packages import" in here.stdout
    system = subprocess.run([SYSTEM_PYTHON, "-m", "footprint_plugin.setup.dependencies", "check"], cwd=REPO,
                            capture_output=True, text=True, env=plain_env())
    assert system.returncode == 1 and "torch" in system.stdout


def test_a_failed_install_is_one_message_with_pips_last_lines_and_the_command(tmp_path):
    result = dependencies.install(tmp_path / "deps", packages=["footprint-no-such-package==1.0"], index="")
    assert not result.ok and not result.cancelled
    assert "pip's last lines:" in result.message and "footprint-no-such-package" in result.message
    assert "No matching distribution" in result.message or "ResolutionImpossible" in result.message
    assert f"--target {tmp_path / 'deps'}" in result.message and result.command in result.message


def test_numpy_and_the_packages_qgis_ships_are_never_replaced(tmp_path):
    for wanted in ("numpy==2.0.0", "scipy==1.16.0"):
        result = dependencies.install(tmp_path / "deps", python=SYSTEM_PYTHON, packages=[wanted], index="")
        assert not result.ok, wanted
        assert "conflicting dependencies" in result.message and "(constraint)" in result.message
    assert not any((tmp_path / "deps").glob("numpy*")) and not any((tmp_path / "deps").glob("scipy*"))


def test_cancel_stops_pip_and_installs_nothing(tmp_path):
    lines = []
    result = dependencies.install(tmp_path / "deps", packages=["networkx==3.5"], index="", on_line=lines.append,
                                  cancelled=lambda: len(lines) >= 2)
    assert result.cancelled and not result.ok and "cancelled" in result.message
    assert not any((tmp_path / "deps").glob("networkx*"))


def wait_for(qgis_app, condition, timeout=240.0):
    started = time.monotonic()
    while not condition():
        qgis_app.processEvents()
        time.sleep(0.01)
        assert time.monotonic() - started < timeout, "timed out"


def distributions(folder: Path) -> dict[str, str]:
    """{name: version} of the packages installed in ``folder`` (from their .dist-info, not pip's messages)."""
    found = {}
    for info in folder.glob("*.dist-info"):
        fields = dict(line.split(": ", 1) for line in (info / "METADATA").read_text().splitlines() if ": " in line)
        found[fields["Name"].lower()] = fields["Version"]
    return found


def test_dialog_installs_in_a_task_with_progress_and_lines(qgis_app, tmp_path):
    target = tmp_path / "deps"
    # A small real package, with QGIS's Python here (Debian's mpmath is 1.2.1).
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import importlib.metadata as m; print(m.version('mpmath'))"],
                           capture_output=True, text=True)
    if probe.stdout.strip() == "1.3.0":
        pytest.skip(f"{SYSTEM_PYTHON} already has mpmath 1.3.0 outside any user site: nothing to install")
    dialog = InstallDialog(["mpmath==1.3.0"], target, python=SYSTEM_PYTHON)
    dialog.show()
    installed = []
    dialog.installed.connect(lambda: installed.append(True))
    task = dialog.start()
    assert not dialog.install_button.isEnabled() and dialog.close_button.text() == "Cancel"
    assert task.description().startswith("Building footprints: installing")
    wait_for(qgis_app, lambda: dialog.outcome is not None)
    assert dialog.outcome.ok, dialog.outcome.message
    assert installed and dialog.progress.value() == 100
    assert distributions(target) == {"mpmath": "1.3.0"} and (target / "mpmath" / "__init__.py").is_file()
    log = {line.strip() for line in dialog.log.toPlainText().splitlines()}
    lines = {line.strip() for line in dialog.outcome.lines if line.strip()}
    assert lines <= log and len(lines) > 3  # ours and pip's lines, as they came
    assert "--no-deps" in dialog.command() and "mpmath==1.3.0" in dialog.command()
    sys.path.remove(str(target))
    dialog.close()


def test_dialog_shows_a_failure_and_copies_the_command(qgis_app, tmp_path):
    dialog = InstallDialog(["footprint-no-such-package==1.0"], tmp_path / "deps")
    dialog.show()
    dialog.start()
    wait_for(qgis_app, lambda: dialog.outcome is not None)
    assert not dialog.outcome.ok
    assert "failed" in dialog.status.text() and "Copy command" in dialog.status.text()
    assert dialog.log.toPlainText().endswith(dialog.outcome.message)  # the one message: pip's last lines, command
    assert "pip's last lines:" in dialog.outcome.message and "footprint-no-such-package" in dialog.outcome.message
    assert dialog.install_button.isEnabled() and dialog.close_button.text() == "Close"
    dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == dialog.outcome.command
    assert "pip install" in dialog.outcome.command
    dialog.close()


@pytest.fixture(scope="module")
def clean_profile(tmp_path_factory):
    """A QGIS config root whose default profile has the plugin from the zip and nothing else."""
    root = tmp_path_factory.mktemp("qgis_config")
    profile = root / "profiles" / "default"
    zip_path = plugin_package.package(tmp_path_factory.mktemp("zip") / "footprint_plugin.zip")
    plugin_package.install(zip_path, profile)
    return root, profile


def qgis_process(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qgis_process.bin", *args], env=plain_env(QGIS_CUSTOM_CONFIG_PATH=str(root)),
                          capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not shutil.which("qgis_process.bin"), reason="needs QGIS (make setup installs it)")
def test_installer_makes_a_clean_qgis_profile_extract(clean_profile, tmp_path):
    root, profile = clean_profile
    assert subprocess.run([SYSTEM_PYTHON, "-c", "import torch"], env=plain_env(), capture_output=True).returncode != 0
    before = qgis_process(root, "run", "footprint:extract_buildings", "--", f"INPUT={SAMPLE_RASTER}",
                          f"OUTPUT={tmp_path / 'before.gpkg'}")
    assert before.returncode != 0 and "dependencies install --target" in before.stdout + before.stderr
    assert not (tmp_path / "before.gpkg").exists()

    target = dependencies.dependency_folder(profile)
    started = time.monotonic()
    done = subprocess.run([SYSTEM_PYTHON, "-m", "footprint_plugin.setup.dependencies", "install", "--target", str(target)],
                          cwd=profile / "python" / "plugins", env=plain_env(), capture_output=True, text=True,
                          timeout=900)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Installed torch, safetensors" in done.stdout, done.stdout[-2000:]
    assert (target / "torch").is_dir() and (target / "safetensors").is_dir()
    assert not list(target.glob("numpy*")), "numpy must stay QGIS's own"
    print(f"installer: {seconds:.0f} s")

    output = tmp_path / "after.gpkg"
    after = qgis_process(root, "run", "footprint:extract_buildings", "--", f"INPUT={SAMPLE_RASTER}", f"OUTPUT={output}")
    assert after.returncode == 0, after.stdout[-2000:] + after.stderr[-2000:]
    dataset = ogr.Open(str(output))  # keep the dataset referenced while its layer is used
    assert dataset.GetLayer(0).GetFeatureCount() > 20  # the default weights on the sample (about 100 buildings)


@pytest.mark.skipif(not (shutil.which("qgis") and shutil.which("xvfb-run") and shutil.which("import")),
                    reason="needs qgis, xvfb-run and ImageMagick (make setup installs them)")
def test_installer_in_the_qgis_desktop_then_extract_without_restart(tmp_path):
    root = tmp_path / "qgis_config"
    profile = root / "profiles" / "default"
    plugin_package.install(plugin_package.package(tmp_path / "footprint_plugin.zip"), profile)
    out = tmp_path / "e2e"
    out.mkdir()
    env = plain_env(FOOTPRINT_E2E_RASTER=str(SAMPLE_RASTER), FOOTPRINT_E2E_OUT=str(out))
    env.pop("QT_QPA_PLATFORM")  # a real (virtual) display
    command = ["xvfb-run", "-a", "-s", "-screen 0 1280x900x24", "qgis", "--profiles-path", str(root), "--nologo",
               "--code", str(REPO / "tests" / "desktop" / "install_in_qgis.py")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=420)
    report_path = out / "report.json"
    assert report_path.is_file(), f"QGIS wrote no report (exit {result.returncode}): {result.stderr[-2000:]}"
    report = json.loads(report_path.read_text())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "qgis_installer_report.json").write_text(json.dumps(report, indent=1))
    for shot in report.get("screenshots", []):
        shutil.copy(shot, ARTIFACTS / Path(shot).name)
    assert "error" not in report, report["error"]
    assert report["plugin_loaded"] and "torch" in report["missing_before"] and "safetensors" in report["missing_before"]
    assert report["installer_visible"] and not report["cuda_enabled"]  # no NVIDIA driver on this machine
    assert report["installer_target"] == str(dependencies.dependency_folder(profile))
    assert report["install_ok"], report["install_message"]
    assert not report["restart_needed"] and report["missing_after"] == []
    assert report["features"] > 20  # the default weights on the sample
    assert (out / "desktop_buildings.gpkg").is_file()
    assert len(report["screenshots"]) >= 3
