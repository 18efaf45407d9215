"""Build the plugin ZIP (``make package``) and install it into a QGIS profile (``make install``).

python tools/plugin_package.py package [--output dist/footprint_plugin.zip]
python tools/plugin_package.py check [--zip dist/footprint_plugin.zip]    (make check-package)
python tools/plugin_package.py install [--zip dist/footprint_plugin.zip] [--profile DIR] [--no-deps]
python tools/plugin_package.py uninstall [--profile DIR]                  (make uninstall)

``install`` changes only the profile: the plugin folder, its line in QGIS/QGIS3.ini, and a record
(python/footprint_plugin_packages/developer_install.json) holding this checkout's .venv site-packages,
which the plugin puts on its sys.path at load, and what ``uninstall`` needs to undo the install exactly.

``check`` applies the checks the official plugin repository (plugins.qgis.org) runs on an upload:
size at most 25 MB, no path information, no compiled files, no __pycache__/.git/__MACOSX folders, an
intact archive, one top-level folder with a valid name holding __init__.py, metadata.txt with the
required fields, valid URLs, the icon and a LICENSE; and a few of our own (metadata version equal to
pyproject.toml's, changelog entry for that version). It cannot check that the URLs are reachable.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import shutil
import site
import sys
import zipfile
import zlib
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
NAME = "footprint_plugin"
VENDORED = "trainer"  # copied into the zip as footprint_plugin/vendor/trainer
RESOURCES = ["icon.svg", "default_weights.safetensors"]
DEFAULT_PROFILE = Path.home() / ".local/share/QGIS/QGIS3/profiles/default"
INI = Path("QGIS") / "QGIS3.ini"
PLUGINS_SECTION = "[PythonPlugins]"
# The profile's record of `make install`; the plugin reads it too (footprint_plugin/setup/dependencies.py).
RECORD = Path("python") / "footprint_plugin_packages" / "developer_install.json"
# What install may create in a profile, parents first (and the profile's missing parents): uninstall removes
# those it created, when they are empty.
CREATABLE = (Path("."), Path("python"), Path("python/plugins"), Path("python/footprint_plugin_packages"),
             Path("QGIS"), INI)

MAX_UPLOAD_BYTES = 25_000_000  # plugins.qgis.org's upload limit
REQUIRED_METADATA = ("name", "description", "version", "qgisMinimumVersion", "author", "email", "about",
                     "tracker", "repository")
BOOLEAN_METADATA = ("experimental", "deprecated", "server", "hasProcessingProvider", "supportsQt6")
FORBIDDEN_FOLDERS = ("__MACOSX", ".git", "__pycache__")
COMPILED_SUFFIXES = (".pyc", ".pyo", ".so", ".pyd", ".dll", ".dylib", ".exe", ".o")
PLACEHOLDER_URLS = ("http://bugs", "http://repo", "http://homepage")


def package(output: Path) -> Path:
    """Code, metadata.txt, README/NOTICE and the resources the plugin needs, under ``footprint_plugin/``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((REPO / NAME).rglob("*.py")):
            archive.write(path, f"{NAME}/{path.relative_to(REPO / NAME)}")
        # Fine-tuning and evaluation run the trainer: a copy, imported only then (footprint_plugin/setup/trainer_access.py).
        for path in sorted((REPO / VENDORED).rglob("*.py")):
            archive.write(path, f"{NAME}/vendor/{VENDORED}/{path.relative_to(REPO / VENDORED)}")
        for name in ("metadata.txt", "README.md", "NOTICE.md", "LICENSE"):
            if (REPO / name).is_file():
                archive.write(REPO / name, f"{NAME}/{name}")
        for name in RESOURCES:
            path = REPO / "resources" / name
            if path.is_file():
                archive.write(path, f"{NAME}/resources/{name}")
    os.replace(tmp, output)
    return output


def read_metadata(text: str) -> dict[str, str]:
    """The [general] section of a metadata.txt, keys as written (QGIS reads it case-sensitively)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment]
    parser.read_string(text)
    if not parser.has_section("general"):
        raise ValueError("metadata.txt has no [general] section")
    return {key: value.strip() for key, value in parser.items("general")}


def pyproject_version() -> str | None:
    match = re.search(r'^\[project\][^\[]*?^version\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M | re.S)
    return match.group(1) if match else None


def check_package(zip_path: Path) -> tuple[list[str], list[str]]:
    """(problems, facts) for a plugin zip; no problems means plugins.qgis.org's checks pass."""
    problems: list[str] = []
    size = zip_path.stat().st_size
    facts = [f"size {size / 1e6:.2f} MB of {MAX_UPLOAD_BYTES / 1e6:.0f} MB allowed"]
    if size > MAX_UPLOAD_BYTES:
        problems.append(f"the zip is {size / 1e6:.1f} MB; the plugin repository takes at most {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        return [f"{zip_path} is not a zip file"], facts
    with archive:
        names = archive.namelist()
        if not names:
            return ["the zip is empty"], facts
        for name in names:
            parts = name.split("/")
            if ".." in name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
                problems.append(f"{name}: path information (.. or an absolute path)")
            if name.endswith(COMPILED_SUFFIXES) or ".pyc" in name:
                problems.append(f"{name}: compiled file")
            for folder in FORBIDDEN_FOLDERS:
                if folder in parts[:-1] or (folder == parts[-1] and name.endswith("/")):
                    problems.append(f"{name}: {folder} folder")
        try:
            bad = archive.testzip()
        except (zipfile.BadZipFile, zlib.error, OSError) as exc:
            bad = f"a member ({exc})"
        if bad:
            problems.append(f"{bad}: damaged in the archive (CRC error)")
        tops = sorted({name.split("/")[0] for name in names})
        if len(tops) != 1 or "/" not in names[0]:
            problems.append(f"the zip must hold exactly one top-level folder (it holds {', '.join(tops)})")
        package_name = names[0].split("/")[0]
        if not re.match(r"^[A-Za-z][A-Za-z0-9-_]+$", package_name):
            problems.append(f"top-level folder {package_name!r}: an ASCII letter first, then letters, digits, - and _")
        for required in ("__init__.py", "metadata.txt", "LICENSE"):
            if f"{package_name}/{required}" not in names:
                problems.append(f"{package_name}/{required} is missing")
            elif not archive.read(f"{package_name}/{required}").strip() and required != "__init__.py":
                problems.append(f"{package_name}/{required} is empty")
        metadata: dict[str, str] = {}
        if f"{package_name}/metadata.txt" in names:
            try:
                metadata = read_metadata(archive.read(f"{package_name}/metadata.txt").decode("utf-8"))
            except (UnicodeDecodeError, ValueError, configparser.Error) as exc:
                problems.append(f"metadata.txt cannot be read: {exc}")
        problems += check_metadata(metadata, names, package_name) if metadata else []
        facts.append(f"{len(names)} files, {sum(i.file_size for i in archive.infolist()) / 1e6:.2f} MB unpacked")
        weights = f"{package_name}/resources/default_weights.safetensors"
        if weights in names:
            facts.append(f"default weights inside: {archive.getinfo(weights).file_size / 1e6:.2f} MB")
        if metadata:
            facts.append(f"{metadata.get('name')} {metadata.get('version')}, QGIS >= {metadata.get('qgisMinimumVersion')}")
    return problems, facts


def check_metadata(metadata: dict[str, str], names: list[str], package_name: str) -> list[str]:
    problems = [f"metadata.txt: required field {key!r} is missing or empty" for key in REQUIRED_METADATA
                if not metadata.get(key)]
    if "/" in metadata.get("author", ""):
        problems.append("metadata.txt: author must not contain slashes")
    if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", metadata.get("email", "")):
        problems.append(f"metadata.txt: email {metadata.get('email')!r} is not an e-mail address")
    version = metadata.get("version", "")
    if version and not re.match(r"^\d+(\.\d+){1,3}(-?[A-Za-z0-9]+)?$", version):
        problems.append(f"metadata.txt: version {version!r} is not like 1.2.3")
    for key in ("qgisMinimumVersion", "qgisMaximumVersion"):
        if key in metadata and not re.match(r"^\d+\.\d+(\.\d+)?$", metadata[key]):
            problems.append(f"metadata.txt: {key} {metadata[key]!r} is not like 3.22")
    for key in ("tracker", "repository", "homepage"):
        url = metadata.get(key)
        if url is None:
            continue
        parsed = urlparse(url)
        if url in PLACEHOLDER_URLS or not (parsed.scheme in ("http", "https") and parsed.netloc):
            problems.append(f"metadata.txt: {key} {url!r} is not a valid URL")
    for key in BOOLEAN_METADATA:
        if key in metadata and metadata[key].lower() not in ("true", "false", "yes", "no", "1", "0"):
            problems.append(f"metadata.txt: {key} {metadata[key]!r} is not a boolean")
    icon = metadata.get("icon", "").removeprefix("./")
    if not icon:
        problems.append("metadata.txt: no icon")
    elif f"{package_name}/{icon}" not in names:
        problems.append(f"metadata.txt: icon {icon!r} is not in the zip")
    own_version = pyproject_version()
    if own_version and version and own_version != version:
        problems.append(f"metadata.txt version {version} differs from pyproject.toml's {own_version}")
    changelog = metadata.get("changelog", "")
    if version and not re.search(rf"(^|\s){re.escape(version)}\b", changelog):
        problems.append(f"metadata.txt: the changelog has no entry for version {version}")
    return problems


def _plugins_section(lines: list[str]) -> tuple[int, int] | None:
    """(header line, end) of the [PythonPlugins] section of QGIS3.ini's lines."""
    for start, line in enumerate(lines):
        if line.strip() == PLUGINS_SECTION:
            end = start + 1
            while end < len(lines) and not lines[end].startswith("["):
                end += 1
            return start, end
    return None


def _is_our_key(line: str) -> bool:
    key, sep, _ = line.partition("=")
    return bool(sep) and key.strip() == NAME


def enabled_value(profile: Path) -> str | None:
    """The value of ``footprint_plugin=`` under [PythonPlugins] in the profile's QGIS3.ini (None: no such line)."""
    ini = profile / INI
    lines = ini.read_text().splitlines() if ini.is_file() else []
    span = _plugins_section(lines)
    if span is None:
        return None
    return next((line.partition("=")[2].strip() for line in lines[span[0] + 1:span[1]] if _is_our_key(line)), None)


def set_enabled(profile: Path, value: str | None) -> None:
    """Set ``footprint_plugin=<value>`` under [PythonPlugins] in the profile's QGIS3.ini; None removes the line
    (and the section, when nothing else is left in it). Every other line stays as it is."""
    ini = profile / INI
    lines = ini.read_text().splitlines() if ini.is_file() else []
    span = _plugins_section(lines)
    if value is not None:
        if span is None:
            lines += ([""] if lines and lines[-1].strip() else []) + [PLUGINS_SECTION, f"{NAME}={value}"]
        else:
            ours = [i for i in range(span[0] + 1, span[1]) if _is_our_key(lines[i])]
            if ours:
                lines[ours[0]] = f"{NAME}={value}"
            else:
                lines.insert(span[0] + 1, f"{NAME}={value}")
        ini.parent.mkdir(parents=True, exist_ok=True)
    elif span is not None:
        start, end = span
        kept = [line for line in lines[start + 1:end] if not _is_our_key(line)]
        if any(line.strip() for line in kept):
            lines[start:end] = [lines[start], *kept]
        else:
            at_end = end == len(lines)
            del lines[start:end]
            while at_end and lines and not lines[-1].strip():
                lines.pop()
    else:
        return
    ini.write_text("".join(f"{line}\n" for line in lines))


def enable_in_profile(profile: Path) -> None:
    """Set ``footprint_plugin=true`` under [PythonPlugins] in the profile's QGIS3.ini."""
    set_enabled(profile, "true")


def venv_site_packages() -> Path | None:
    """This checkout's .venv site-packages (where torch is installed), if there is one."""
    return next((REPO / ".venv" / "lib").glob("python3*/site-packages"), None)


def old_user_site_link() -> Path | None:
    """The ``footprint_plugin_deps.pth`` an older ``make install`` left in the user's site-packages, if any.

    Only looked at, never changed: this tool writes nothing outside the QGIS profile.
    """
    pth = Path(site.getusersitepackages()) / "footprint_plugin_deps.pth"
    return pth if pth.is_file() else None


def _python_tag(site_packages: Path) -> str:
    """``py311`` for ``.../lib/python3.11/site-packages``."""
    return "py" + site_packages.parent.name.removeprefix("python").replace(".", "")


def install(zip_path: Path, profile: Path, developer_site: Path | None = None) -> Path:
    """Unpack the ZIP into the profile's python/plugins folder (replacing an older copy), enable it, and write
    the profile's record of this install (what ``uninstall`` undoes). ``developer_site``: a checkout's .venv
    site-packages, which the plugin then puts on its sys.path at load (for developers)."""
    profile = profile.absolute()
    record_path = profile / RECORD
    try:
        earlier = json.loads(record_path.read_text())  # a second install keeps what the first one found
    except (OSError, ValueError):
        earlier = None
    if isinstance(earlier, dict):
        created, enabled_before = earlier.get("created", []), earlier.get("enabled_before")
    else:
        missing = [folder for folder in reversed(profile.parents) if not folder.exists()]
        created = [str(path) for path in [*missing, *(profile / rel for rel in CREATABLE)] if not path.exists()]
        enabled_before = enabled_value(profile)
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    target = plugins / NAME
    if target.exists():
        shutil.rmtree(target)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(plugins)
    enable_in_profile(profile)
    record = {
        "about": "Written by `make install` (tools/plugin_package.py) from a checkout, for developers; "
                 "`make uninstall` undoes it. The plugin puts site_packages on its sys.path.",
        "checkout": str(REPO),
        "python": _python_tag(developer_site) if developer_site else None,
        "site_packages": str(developer_site) if developer_site else None,
        "created": created,
        "enabled_before": enabled_before,
    }
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    return target


def uninstall(profile: Path) -> list[str]:
    """Undo ``install``: the plugin folder, the record, the enable line (back to its earlier value, if it had
    one), and the folders and files install created, when they are empty. What was done; [] if no record."""
    record_path = profile / RECORD
    if not record_path.is_file():
        return []
    try:
        record = json.loads(record_path.read_text())
    except ValueError:
        record = {}
    record = record if isinstance(record, dict) else {}
    done = []
    target = profile / "python" / "plugins" / NAME
    if target.is_dir():
        shutil.rmtree(target)
        done.append(f"removed {target}")
    before, now = record.get("enabled_before"), enabled_value(profile)
    if now != before:
        set_enabled(profile, before)
        done.append(f"restored {NAME}={before}" if before is not None else f"removed {NAME}={now}")
        done[-1] += f" in {profile / INI}"
    record_path.unlink()
    done.append(f"removed {record_path}")
    for name in reversed(record.get("created", [])):
        path = Path(name)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        elif path.is_file() and path.stat().st_size == 0:
            path.unlink()
        else:
            continue
        done.append(f"removed {path} (make install had created it)")
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("package")
    p.add_argument("--output", type=Path, default=REPO / "dist" / f"{NAME}.zip")
    c = sub.add_parser("check", help="the plugin repository's checks on a built zip")
    c.add_argument("--zip", type=Path, default=REPO / "dist" / f"{NAME}.zip")
    default_profile = Path(os.environ.get("QGIS_PROFILE_DIR", DEFAULT_PROFILE))
    i = sub.add_parser("install", help="into a QGIS profile, enabled, finding this checkout's .venv packages")
    i.add_argument("--zip", type=Path, default=REPO / "dist" / f"{NAME}.zip")
    i.add_argument("--profile", type=Path, default=default_profile)
    i.add_argument("--no-deps", action="store_true", help="do not make the plugin use this checkout's .venv packages")
    u = sub.add_parser("uninstall", help="undo install in that profile")
    u.add_argument("--profile", type=Path, default=default_profile)
    args = parser.parse_args(argv)
    if args.command == "package":
        path = package(args.output)
        print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB)")
    elif args.command == "check":
        if not args.zip.is_file():
            print(f"error: {args.zip} does not exist; run `make package` first.", file=sys.stderr)
            return 2
        problems, facts = check_package(args.zip)
        for fact in facts:
            print(f"{args.zip.name}: {fact}")
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"{args.zip.name}: passes the plugin repository's checks (URL reachability not checked offline)")
    elif args.command == "install":
        if not args.zip.is_file():
            print(f"error: {args.zip} does not exist; run `make package` first.", file=sys.stderr)
            return 2
        site_packages = None if args.no_deps else venv_site_packages()
        target = install(args.zip, args.profile, site_packages)
        print(f"installed into {target} and enabled in {args.profile / INI}")
        if site_packages:
            print(f"the plugin puts {site_packages} on its sys.path (recorded in {args.profile / RECORD})")
        elif not args.no_deps:
            print("no .venv found: install torch for QGIS's Python yourself (see README)")
    else:
        done = uninstall(args.profile)
        if not done:
            other = (" (the plugin there was installed another way: remove it in QGIS's plugin manager)"
                     if (args.profile / "python" / "plugins" / NAME).exists() else "")
            print(f"nothing to uninstall: {args.profile} has no {RECORD}{other}")
        for line in done:
            print(line)
    old = old_user_site_link() if args.command in ("install", "uninstall") else None
    if old:
        print(f"note: {old}, from an older `make install`, makes every Python of this user see "
              f"{old.read_text(errors='replace').strip()}; delete it by hand: rm {old}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
