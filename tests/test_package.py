"""The plugin zip (`make package`) against the plugin repository's checks (`make check-package`)."""

from __future__ import annotations

import shutil
import zipfile

import pytest

from tools import plugin_package

from .helpers import REPO


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
