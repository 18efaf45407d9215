"""Build the plugin ZIP (``make package``) and install it into a QGIS profile (``make install``).

python tools/plugin_package.py package [--output dist/footprint_plugin.zip]
python tools/plugin_package.py install [--zip dist/footprint_plugin.zip] [--profile DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = "footprint_plugin"
RESOURCES = ["icon.svg", "default_weights.safetensors"]
DEFAULT_PROFILE = Path.home() / ".local/share/QGIS/QGIS3/profiles/default"


def package(output: Path) -> Path:
    """Code, metadata.txt, README/NOTICE and the resources the plugin needs, under ``footprint_plugin/``."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((REPO / NAME).rglob("*.py")):
            archive.write(path, f"{NAME}/{path.relative_to(REPO / NAME)}")
        for name in ("metadata.txt", "README.md", "NOTICE.md", "LICENSE"):
            if (REPO / name).is_file():
                archive.write(REPO / name, f"{NAME}/{name}")
        for name in RESOURCES:
            path = REPO / "resources" / name
            if path.is_file():
                archive.write(path, f"{NAME}/resources/{name}")
    os.replace(tmp, output)
    return output


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
    i = sub.add_parser("install")
    i.add_argument("--zip", type=Path, default=REPO / "dist" / f"{NAME}.zip")
    i.add_argument("--profile", type=Path, default=Path(os.environ.get("QGIS_PROFILE_DIR", DEFAULT_PROFILE)))
    i.add_argument("--no-deps", action="store_true", help="do not make .venv's torch visible to QGIS's Python")
    args = parser.parse_args(argv)
    if args.command == "package":
        path = package(args.output)
        print(f"built {path} ({path.stat().st_size / 1e6:.1f} MB)")
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
