"""The plugin zip (`make package`) against the plugin repository's checks (`make check-package`), and what
`make install` / `make uninstall` change (only the QGIS profile)."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from footprint_plugin.setup import dependencies
from tools import plugin_package

from .helpers import REPO

SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    # A stray compiled file in the source tree must not reach the zip.
    stray = REPO / "footprint_plugin" / "__pycache__"
    stray.mkdir(exist_ok=True)
    (stray / "zz_stray.cpython-311.pyc").write_bytes(b"\x00")
    try:
        return plugin_package.package(tmp_path_factory.mktemp("zip") / "footprint_plugin.zip")
    finally:
        (stray / "zz_stray.cpython-311.pyc").unlink()


def rebuilt(source, dest, drop=(), add=None, metadata=None):
    """A copy of ``source`` without the ``drop`` members, with ``add`` {name: bytes} and metadata.txt replaced."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            if info.filename in drop:
                continue
            data = old.read(info)
            if metadata and info.filename.endswith("/metadata.txt"):
                data = metadata(data.decode()).encode()
            new.writestr(info.filename, data)
        for name, data in (add or {}).items():
            new.writestr(name, data)
    return dest


def test_the_built_zip_passes(built):
    problems, facts = plugin_package.check_package(built)
    assert problems == []
    assert any("default weights inside" in fact for fact in facts)
    names = zipfile.ZipFile(built).namelist()
    assert {"footprint_plugin/__init__.py", "footprint_plugin/metadata.txt", "footprint_plugin/LICENSE",
            "footprint_plugin/resources/icon.svg", "footprint_plugin/resources/default_weights.safetensors"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert built.stat().st_size < 10e6


def test_the_command_line_check(built, capsys):
    assert plugin_package.main(["check", "--zip", str(built)]) == 0
    out = capsys.readouterr().out
    assert "passes the plugin repository's checks" in out and "MB of 25 MB allowed" in out


@pytest.mark.parametrize("change,message", [
    ({"drop": ["footprint_plugin/LICENSE"]}, "LICENSE is missing"),
    ({"add": {"footprint_plugin/__pycache__/plugin.cpython-311.pyc": b"\x00"}}, "compiled file"),
    ({"add": {"footprint_plugin/core/.git/config": b"x"}}, ".git folder"),
    ({"add": {"footprint_plugin/../evil.py": b"x"}}, "path information"),
    ({"add": {"other/readme.txt": b"x"}}, "exactly one top-level folder"),
    ({"drop": ["footprint_plugin/resources/icon.svg"]}, "icon 'resources/icon.svg' is not in the zip"),
    ({"metadata": lambda t: t.replace("\ntracker=", "\n#tracker=")}, "'tracker' is missing"),
    ({"metadata": lambda t: t.replace("\nemail=", "\nemail=nobody\n#")}, "not an e-mail address"),
    ({"metadata": lambda t: t.replace("\nrepository=", "\nrepository=http://repo\n#")}, "repository 'http://repo'"),
    ({"metadata": lambda t: t.replace("\nauthor=", "\nauthor=a/b\n#")}, "slashes"),
    ({"metadata": lambda t: t.replace("[general]", "[other]")}, "no [general] section"),
])
def test_each_check_catches_its_problem(built, tmp_path, change, message):
    broken = rebuilt(built, tmp_path / "broken.zip", **change)
    problems, _ = plugin_package.check_package(broken)
    assert any(message in problem for problem in problems), problems


def test_metadata_version_must_match_pyproject_and_have_a_changelog_entry(built, tmp_path):
    broken = rebuilt(built, tmp_path / "v.zip", metadata=lambda t: t.replace("\nversion=", "\nversion=9.9.9\n#old="))
    problems, _ = plugin_package.check_package(broken)
    assert any("differs from pyproject.toml" in p for p in problems)
    assert any("no entry for version 9.9.9" in p for p in problems)


def test_too_big_and_damaged_zips(built, tmp_path):
    big = tmp_path / "big.zip"
    shutil.copy(built, big)
    with zipfile.ZipFile(big, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr("footprint_plugin/resources/huge.bin", bytes(plugin_package.MAX_UPLOAD_BYTES))
    problems, _ = plugin_package.check_package(big)
    assert any("at most 25 MB" in p for p in problems)
    big.unlink()
    damaged = tmp_path / "damaged.zip"
    raw = bytearray(built.read_bytes())
    info = zipfile.ZipFile(built).getinfo("footprint_plugin/resources/default_weights.safetensors")
    raw[info.header_offset + 200] ^= 0xFF  # inside that member's compressed bytes
    damaged.write_bytes(bytes(raw))
    problems, _ = plugin_package.check_package(damaged)
    assert any("damaged" in p or "CRC" in p or "not a zip" in p for p in problems), problems


def tree(root: Path) -> dict[str, bytes | None]:
    """Every folder (None) and file (its bytes) under ``root``, by relative path."""
    return {str(path.relative_to(root)): path.read_bytes() if path.is_file() else None for path in root.rglob("*")}


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
def test_make_install_changes_only_the_qgis_profile_and_uninstall_undoes_it(tmp_path):
    home = tmp_path / "home"  # the user's home: the default QGIS profile and the user site are in it
    env = {k: v for k, v in os.environ.items()
           if k not in ("QGIS_PROFILE_DIR", "PYTHONNOUSERSITE", "PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["HOME"] = str(home)
    user_site = Path(subprocess.run([SYSTEM_PYTHON, "-c", "import site; print(site.getusersitepackages())"], env=env,
                                    capture_output=True, text=True, check=True).stdout.strip())
    assert user_site.is_relative_to(home)
    user_site.mkdir(parents=True)
    (user_site / "someone_elses.pth").write_text("/nowhere\n")
    profile = home / ".local/share/QGIS/QGIS3/profiles/default"
    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[General]\nlocale=en\n\n[PythonPlugins]\nprocessing=true\n\n[qgis]\nx=1\n")
    before = tree(home)

    # Make does not redo the set-up (.venv is there: the tests run in it).
    done = subprocess.run(["make", "-o", ".venv/.installed", "install"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    after = tree(home)
    changed = sorted({name for name, _ in set(after.items()) ^ set(before.items())})
    prefix = str(profile.relative_to(home))
    plugin = f"{prefix}/python/plugins/footprint_plugin"
    record = f"{prefix}/python/footprint_plugin_packages/developer_install.json"
    assert [name for name in changed if not name.startswith(plugin + "/")] == [
        f"{prefix}/QGIS/QGIS3.ini", f"{prefix}/python", f"{prefix}/python/footprint_plugin_packages", record,
        f"{prefix}/python/plugins", plugin]
    assert tree(user_site) == {"someone_elses.pth": b"/nowhere\n"}  # the user site gained nothing
    assert ini.read_text() == "[General]\nlocale=en\n\n[PythonPlugins]\nfootprint_plugin=true\nprocessing=true\n\n[qgis]\nx=1\n"
    assert dependencies.developer_site(profile) == plugin_package.venv_site_packages()
    assert (profile / "python/plugins/footprint_plugin/metadata.txt").is_file()
    if subprocess.run([SYSTEM_PYTHON, "-s", "-c", "import torch"], capture_output=True).returncode != 0:
        # torch is not installed system-wide: Debian's Python, with its user site on, still does not find it
        assert subprocess.run([SYSTEM_PYTHON, "-c", "import torch"], env=env, capture_output=True).returncode != 0

    done = subprocess.run(["make", "uninstall"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert tree(home) == before
    again = subprocess.run(["make", "uninstall"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "nothing to uninstall" in again.stdout


def test_uninstall_restores_an_earlier_value_and_removes_what_install_created(built, tmp_path):
    profile = tmp_path / "profiles" / "default"
    plugin_package.install(built, profile)
    plugin_package.install(built, profile)  # a second install keeps the first one's record of the profile
    assert plugin_package.enabled_value(profile) == "true"
    assert plugin_package.uninstall(profile) and not tmp_path.joinpath("profiles").exists()
    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text("[PythonPlugins]\nfootprint_plugin=false\n")
    plugin_package.install(built, profile)
    assert ini.read_text() == "[PythonPlugins]\nfootprint_plugin=true\n"
    plugin_package.uninstall(profile)
    assert ini.read_text() == "[PythonPlugins]\nfootprint_plugin=false\n" and tree(profile) == {
        "QGIS": None, "QGIS/QGIS3.ini": ini.read_bytes()}
    assert plugin_package.uninstall(profile) == []  # nothing installed
    assert plugin_package.main(["uninstall", "--profile", str(profile)]) == 0
