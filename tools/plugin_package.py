"""Build the plugin ZIP (``make package``) and install it into a QGIS profile (``make install``).

python tools/plugin_package.py package [--output dist/footprint_plugin.zip]
python tools/plugin_package.py check [--zip dist/footprint_plugin.zip]    (make check-package)
python tools/plugin_package.py install [--zip dist/footprint_plugin.zip] [--profile DIR]

``check`` applies the checks the official plugin repository (plugins.qgis.org) runs on an upload:
size at most 25 MB, no path information, no compiled files, no __pycache__/.git/__MACOSX folders, an
intact archive, one top-level folder with a valid name holding __init__.py, metadata.txt with the
required fields, valid URLs, the icon and a LICENSE; and a few of our own (metadata version equal to
pyproject.toml's, changelog entry for that version). It cannot check that the URLs are reachable.
"""

from __future__ import annotations

import argparse
import configparser
import os
import re
import shutil
import subprocess
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


def enable_in_profile(profile: Path) -> None:
    """Set ``footprint_plugin=true`` under [PythonPlugins] in the profile's QGIS3.ini."""
    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    text = ini.read_text() if ini.is_file() else ""
    line = f"{NAME}=true"
    if re.search(r"^\[PythonPlugins\]", text, re.M):
        if re.search(rf"^{NAME}=", text, re.M):
            text = re.sub(rf"^{NAME}=.*$", line, text, flags=re.M)
        else:
            text = re.sub(r"^\[PythonPlugins\]\s*$", f"[PythonPlugins]\n{line}", text, count=1, flags=re.M)
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + f"[PythonPlugins]\n{line}\n"
    ini.write_text(text)


def venv_site_packages() -> Path | None:
    """This checkout's .venv site-packages (where torch is installed), if there is one."""
    return next((REPO / ".venv" / "lib").glob("python3*/site-packages"), None)


def link_dependencies() -> str:
    """Make this checkout's .venv packages (torch) importable by QGIS's Python, via a .pth file
    in the user's site-packages of /usr/bin/python3. Returns what was done."""
    system_python = "/usr/bin/python3"
    check = subprocess.run([system_python, "-c", "import torch"], capture_output=True)
    if check.returncode == 0:
        return "torch is already importable by QGIS's Python"
    venv_site = venv_site_packages()
    if venv_site is None:
        return "no .venv found: install torch for QGIS's Python yourself (see README)"
    user_site = subprocess.run([system_python, "-m", "site", "--user-site"], capture_output=True, text=True).stdout.strip()
    Path(user_site).mkdir(parents=True, exist_ok=True)
    pth = Path(user_site) / "footprint_plugin_deps.pth"
    pth.write_text(f"{venv_site}\n")
    return f"QGIS's Python now finds torch through {pth}"


def install(zip_path: Path, profile: Path) -> Path:
    """Unpack the ZIP into the profile's python/plugins folder (replacing an older copy) and enable it."""
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    target = plugins / NAME
    if target.exists():
        shutil.rmtree(target)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(plugins)
    enable_in_profile(profile)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("package")
    p.add_argument("--output", type=Path, default=REPO / "dist" / f"{NAME}.zip")
    c = sub.add_parser("check", help="the plugin repository's checks on a built zip")
    c.add_argument("--zip", type=Path, default=REPO / "dist" / f"{NAME}.zip")
    i = sub.add_parser("install")
    i.add_argument("--zip", type=Path, default=REPO / "dist" / f"{NAME}.zip")
    i.add_argument("--profile", type=Path, default=Path(os.environ.get("QGIS_PROFILE_DIR", DEFAULT_PROFILE)))
    i.add_argument("--no-deps", action="store_true", help="do not make .venv's torch visible to QGIS's Python")
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
    else:
        if not args.zip.is_file():
            print(f"error: {args.zip} does not exist; run `make package` first.", file=sys.stderr)
            return 2
        target = install(args.zip, args.profile)
        print(f"installed into {target} and enabled in {args.profile / 'QGIS' / 'QGIS3.ini'}")
        if not args.no_deps:
            print(link_dependencies())
    return 0


if __name__ == "__main__":
    sys.exit(main())
