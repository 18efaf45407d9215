"""The Python packages the engine needs, and their installer: pip into a folder of the QGIS profile.

QGIS ships its own Python with numpy, GDAL and PyQt; torch (and often rasterio, shapely, scipy and
safetensors) are missing. The installer runs ``pip install --target <folder>`` with QGIS's own Python,
in two steps: pip first resolves the pinned requirements against what that Python already has, with
numpy and the other packages QGIS ships held at their installed versions (``--dry-run --report``),
then installs exactly that list with ``--no-deps`` into the folder. QGIS's own packages are never
upgraded or replaced; the folder goes first on ``sys.path`` when the plugin loads (and right after an
install, so no restart is needed).

For developers, ``make install`` installs nothing with pip: it records the checkout's ``.venv`` site-packages
in the profile (``footprint_plugin_packages/developer_install.json``), which goes right after the folder.

Headless (tests, scripts, servers)::

    python3 -m footprint_plugin.setup.dependencies install --target DIR [--cuda] [--torch-index URL|none]
    python3 -m footprint_plugin.setup.dependencies check [--target DIR]

Nothing here imports QGIS at module level; the QGIS dialog and task are in ``ui/install_dialog.py``.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED = {  # import name -> pip name
    "torch": "torch",
    "safetensors": "safetensors",
    "numpy": "numpy",
    "rasterio": "rasterio",
    "shapely": "shapely",
    "scipy": "scipy",
}

TORCH_VERSION = "2.13.0"
PINS = {"torch": TORCH_VERSION, "safetensors": "0.8.0"}  # no numpy inside: any numpy goes
# Packages compiled against numpy: builds that work with the numpy QGIS has, by numpy's major version.
NUMPY_BUILDS = {
    1: {"rasterio": "1.3.11", "shapely": "2.0.7", "scipy": "1.13.1"},
    2: {"rasterio": "1.4.4", "shapely": "2.1.2", "scipy": "1.15.3"},
}
# PyTorch's own package index for its CPU and CUDA builds (PyPI's Linux torch is the large CUDA build).
TORCH_INDEX_CPU = "https://download.pytorch.org/whl/cpu"
TORCH_INDEX_CUDA = "https://download.pytorch.org/whl/cu130"
# Held at their installed versions during resolution: what QGIS ships and other plugins rely on.
PROTECTED = ("numpy", "gdal", "pyqt5", "pyqt5-sip", "pyqt6", "pyqt6-sip", "sip", "qscintilla", "scipy", "shapely",
             "rasterio", "pyproj", "matplotlib", "pandas", "pillow", "lxml", "psycopg2", "h5py", "netcdf4", "owslib")
FOLDER_NAME = "footprint_plugin_packages"
DEVELOPER_RECORD = "developer_install.json"  # make install: the checkout's .venv site-packages, for developers
LAST_LINES = 12

Line = Callable[[str], None]


def python_tag() -> str:
    return f"py{sys.version_info[0]}{sys.version_info[1]}"


def dependency_folder(profile_dir: str | os.PathLike[str]) -> Path:
    """``<QGIS profile>/python/footprint_plugin_packages/py311``: one folder per Python version (binary wheels)."""
    return Path(profile_dir) / "python" / FOLDER_NAME / python_tag()


def activate(folder: str | os.PathLike[str] | None) -> bool:
    """Put ``folder`` first on sys.path (if it exists and is not there yet); True when it was added."""
    if not folder or not Path(folder).is_dir():
        return False
    folder = str(Path(folder))
    if folder in sys.path:
        return False
    sys.path.insert(0, folder)
    importlib.invalidate_caches()
    return True


def developer_record(profile_dir: str | os.PathLike[str]) -> Path:
    """``<QGIS profile>/python/footprint_plugin_packages/developer_install.json``: written by ``make install``."""
    return Path(profile_dir) / "python" / FOLDER_NAME / DEVELOPER_RECORD


def developer_site(profile_dir: str | os.PathLike[str]) -> Path | None:
    """The checkout's ``.venv`` site-packages that ``make install`` recorded in this profile (developers only).

    None without a record, for another Python version, or when the folder is gone (the checkout was deleted).
    """
    try:
        record = json.loads(developer_record(profile_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    site = record.get("site_packages") if isinstance(record, dict) else None
    if not isinstance(site, str) or record.get("python") != python_tag() or not Path(site).is_dir():
        return None
    return Path(site)


def profile_dir() -> Path | None:
    """The running QGIS's active profile folder (None outside QGIS)."""
    try:
        from qgis.core import QgsApplication
    except ImportError:
        return None
    settings_dir = QgsApplication.qgisSettingsDirPath()
    return Path(settings_dir) if settings_dir else None


def profile_dependency_folder() -> Path | None:
    """The folder of the running QGIS's active profile (None outside QGIS)."""
    profile = profile_dir()
    return dependency_folder(profile) if profile else None


def activate_profile_folder(profile: str | os.PathLike[str] | None = None) -> Path | None:
    """At plugin load: the profile's package folder first on sys.path, then the developer's ``.venv`` packages
    if ``make install`` recorded them. Returns the package folder (whether or not it exists)."""
    profile = profile if profile is not None else profile_dir()
    if profile is None:
        return None
    folder = dependency_folder(profile)
    activate(folder)
    site = developer_site(profile)
    if site is not None and str(site) not in sys.path:
        position = sys.path.index(str(folder)) + 1 if str(folder) in sys.path else 0
        sys.path.insert(position, str(site))
        importlib.invalidate_caches()
    return folder


def missing_packages() -> list[str]:
    """pip names of the required packages that cannot be imported here."""
    importlib.invalidate_caches()
    return [pip for module, pip in REQUIRED.items() if importlib.util.find_spec(module) is None]


def installed_numpy() -> str | None:
    """The numpy version QGIS's Python has, without importing anything else."""
    try:
        from importlib.metadata import version

        return version("numpy")
    except Exception:  # noqa: BLE001 - no numpy, or metadata without a version
        return None


def qgis_python() -> str:
    """The Python interpreter of this QGIS, which pip must run with (not the QGIS binary itself).

    Embedded in QGIS, ``sys.executable`` may be the QGIS binary, or whatever ``python3`` comes first on PATH
    (pyenv, conda): each candidate must report this Python's version and installation (``sys.base_prefix``).
    """
    executable = Path(sys.executable)
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [executable] if executable.name.lower().startswith("python") else []
    if sys.platform == "win32":  # OSGeo4W and the standalone installer: <root>/apps/Python3x/python.exe
        candidates += [Path(sys.prefix) / "python.exe", Path(sys.exec_prefix) / "python.exe",
                       Path(sys.base_prefix) / "python.exe", Path(sys.base_prefix) / "python3.exe"]
    elif sys.platform == "darwin":  # QGIS.app/Contents/MacOS/bin/python3
        candidates += [executable.parent / "bin" / f"python{version}", executable.parent / "bin" / "python3"]
    for prefix in dict.fromkeys([sys.prefix, sys.base_prefix]):
        candidates += [Path(prefix) / "bin" / f"python{version}", Path(prefix) / "bin" / "python3"]
    for found in (shutil.which(f"python{version}"), shutil.which("python3")):
        if found:
            candidates.append(Path(found))
    for candidate in dict.fromkeys(candidates):
        if _is_this_python(str(candidate)):
            return str(candidate)
    return sys.executable


@functools.cache
def _is_this_python(candidate: str) -> bool:
    if not Path(candidate).is_file():
        return False
    probe = "import sys; print(sys.version_info[0], sys.version_info[1], sys.base_prefix)"
    try:
        done = subprocess.run([candidate, "-c", probe], capture_output=True, text=True, timeout=30, **_no_window())
    except (OSError, subprocess.SubprocessError):
        return False
    expected = f"{sys.version_info[0]} {sys.version_info[1]} {sys.base_prefix}"
    return done.returncode == 0 and done.stdout.strip() == expected


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver answers (``nvidia-smi -L`` lists a GPU)."""
    tool = shutil.which("nvidia-smi")
    if not tool:
        return False
    try:
        done = subprocess.run([tool, "-L"], capture_output=True, text=True, timeout=15, **_no_window())
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and "GPU" in done.stdout


def _no_window() -> dict:
    return {"creationflags": 0x08000000} if sys.platform == "win32" else {}  # CREATE_NO_WINDOW


def requirements(missing: list[str], numpy_version: str | None) -> list[str]:
    """Pinned pip requirements for the missing packages, matching the installed numpy."""
    major = int(numpy_version.split(".")[0]) if numpy_version else 2
    builds = NUMPY_BUILDS.get(major, NUMPY_BUILDS[2])
    specs = []
    for name in missing:
        if "=" in name or "<" in name or ">" in name:
            specs.append(name)  # already a requirement
            continue
        version = PINS.get(name) or builds.get(name)
        specs.append(f"{name}=={version}" if version else name)
    return specs


def torch_index(cuda: bool) -> str:
    """PyTorch's index for the wanted build; on macOS PyPI's torch is the right one (MPS).

    FOOTPRINT_TORCH_INDEX overrides it (a mirror's URL, or ``none`` for pip's configured indexes only).
    """
    override = os.environ.get("FOOTPRINT_TORCH_INDEX")
    if override is not None:
        return "" if override.strip().lower() in ("", "none") else override.strip()
    if sys.platform == "darwin":
        return ""
    return TORCH_INDEX_CUDA if cuda else TORCH_INDEX_CPU


def _index_args(wanted: list[str], cuda: bool, index: str | None) -> list[str]:
    index = torch_index(cuda) if index is None else index
    return ["--extra-index-url", index] if index and "torch" in wanted else []


def manual_command(target: str | os.PathLike[str], wanted: list[str], cuda: bool = False, python: str | None = None,
                   index: str | None = None) -> str:
    """The pip command a person can run instead (pinned like the installer, without its version check)."""
    python = python or sys.executable
    specs = requirements(wanted, installed_numpy())
    return _quote([python, "-m", "pip", "install", "--upgrade", "--target", str(Path(target)),
                   *_index_args(wanted, cuda, index), *specs])


@dataclass
class InstallResult:
    ok: bool
    message: str
    installed: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    command: str = ""
    cancelled: bool = False
    restart_needed: bool = False


def _protected_constraints(python: str, target: Path) -> list[str]:
    """``name==version`` for the protected packages that ``python`` has (outside ``target``)."""
    probe = ("import json, importlib.metadata as m\n"
             "out = {}\n"
             "for d in m.distributions():\n"
             "    name = (d.metadata['Name'] or '').lower().replace('_', '-')\n"
             "    if name and d.version: out.setdefault(name, d.version)\n"
             "print(json.dumps(out))")
    env = _pip_env(None)
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, env=env, timeout=120, **_no_window())
    if done.returncode != 0:
        return []
    versions = json.loads(done.stdout or "{}")
    pep440 = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[A-Za-z0-9.]+)?$")
    return [f"{name}=={versions[name]}" for name in PROTECTED if name in versions and pep440.match(versions[name])]


def _pip_env(target: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    if target is not None:  # pip then counts what an earlier install put there as installed
        env["PYTHONPATH"] = os.pathsep.join([str(target), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _quote(parts: list[str]) -> str:
    if sys.platform == "win32":
        return subprocess.list2cmdline(parts)
    return shlex.join(parts)


class _Cancelled(Exception):
    pass


def _run(command: list[str], env: dict[str, str], lines: list[str], on_line: Line | None,
         cancelled: Callable[[], bool] | None) -> int:
    """Run ``command``, passing each output line on as it comes; kill it when ``cancelled()``."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               text=True, encoding="utf-8", errors="replace", env=env, bufsize=1, **_no_window())
    output: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.put(line.rstrip("\n"))
        output.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while True:
        if cancelled and cancelled():
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            raise _Cancelled
        try:
            line = output.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        lines.append(line)
        if on_line:
            on_line(line)
    return process.wait()


def install(target: str | os.PathLike[str], cuda: bool = False, python: str | None = None,
            index: str | None = None, packages: list[str] | None = None, on_line: Line | None = None,
            on_progress: Callable[[float], None] | None = None,
            cancelled: Callable[[], bool] | None = None) -> InstallResult:
    """Install the missing required packages into ``target`` with ``python``'s pip.

    ``index``: PyTorch's index (None: its CPU or CUDA index; "": only pip's configured indexes).
    ``packages``: pip names to install (default: those missing here, with ``target`` on sys.path).
    """
    target = Path(target).resolve()
    python = python or sys.executable
    lines: list[str] = []
    progress = on_progress or (lambda _f: None)

    def say(text: str) -> None:
        lines.append(text)
        if on_line:
            on_line(text)

    activate(target)
    wanted = packages if packages is not None else missing_packages()
    if not wanted:
        return InstallResult(True, "All required packages are already installed.", lines=lines)
    numpy_version = installed_numpy()
    specs = requirements(wanted, numpy_version)
    index_args = _index_args(wanted, cuda, index)
    top_level = manual_command(target, wanted, cuda, python, index)
    exact = top_level
    target.mkdir(parents=True, exist_ok=True)
    say(f"Installing {', '.join(specs)} into {target} (numpy {numpy_version or 'none'} kept as it is)")
    progress(0.02)
    try:
        with tempfile.TemporaryDirectory(prefix="footprint-pip-") as work:
            constraints = Path(work) / "constraints.txt"
            held = _protected_constraints(python, target)
            constraints.write_text("\n".join(held) + "\n")
            report = Path(work) / "report.json"
            resolve = [python, "-m", "pip", "install", "--dry-run", "--report", str(report), "--progress-bar", "off",
                       "-c", str(constraints), *index_args, *specs]
            say("Resolving versions that fit the installed packages: " + ", ".join(held))
            if _run(resolve, _pip_env(target), lines, on_line, cancelled) != 0 or not report.is_file():
                return _failed(lines, top_level, "pip found no versions of these packages that fit the installed ones")
            items = json.loads(report.read_text()).get("install", [])
            chosen = [f"{item['metadata']['name']}=={item['metadata']['version']}" for item in items]
            progress(0.15)
            if not chosen:
                return InstallResult(True, "Nothing to install.", lines=lines)
            say("Installing " + " ".join(chosen))
            # The files pip just chose, by URL and hash: no second resolution, no other index consulted.
            command = [python, "-m", "pip", "install", "--no-deps", "--upgrade", "--target", str(target),
                       "--progress-bar", "off", *[_artifact(item) for item in items]]
            exact = _quote([python, "-m", "pip", "install", "--no-deps", "--upgrade", "--target", str(target),
                            *index_args, *chosen])
            seen = [0]

            def count(line: str) -> None:
                if line.startswith(("Collecting", "Processing", "Downloading", "Using cached")):
                    seen[0] += 1
                    progress(0.15 + 0.65 * min(1.0, seen[0] / (2 * len(chosen))))
                elif line.startswith("Installing collected packages"):
                    progress(0.85)
                if on_line:
                    on_line(line)

            if _run(command, _pip_env(None), lines, count, cancelled) != 0:
                return _failed(lines, exact, "pip could not install the packages")
    except _Cancelled:
        say("Cancelled.")
        return InstallResult(False, "The installation was cancelled; nothing was changed in QGIS.", lines=lines,
                             command=top_level, cancelled=True)
    except OSError as exc:
        say(str(exc))
        return _failed(lines, top_level, f"pip could not be started with {python} ({exc.strerror or exc})")
    progress(0.95)
    modules = [module for module, pip in REQUIRED.items() if pip in wanted]
    check = subprocess.run([python, "-c", "import " + ", ".join(modules or ["sys"])],
                           capture_output=True, text=True, env=_pip_env(target), timeout=300, **_no_window())
    if check.returncode != 0:
        lines.extend(check.stderr.splitlines())
        return _failed(lines, exact, "the packages were installed but do not import")
    activate(target)
    restart = _stale_modules(chosen)
    progress(1.0)
    say("Installed " + ", ".join(chosen))
    message = f"Installed {', '.join(wanted)} into {target}."
    if restart:
        message += f" Restart QGIS before extracting: {', '.join(restart)} were already loaded in an older version."
    return InstallResult(True, message, installed=chosen, lines=lines, command=exact, restart_needed=bool(restart))


def _artifact(item: dict) -> str:
    """A pip requirement for one entry of pip's installation report: its file's URL with its hash."""
    info = item.get("download_info") or {}
    url = info.get("url", "")
    if not url or "dir_info" in info or "vcs_info" in info:
        return f"{item['metadata']['name']}=={item['metadata']['version']}"
    digest = (info.get("archive_info") or {}).get("hash", "")
    name = item["metadata"]["name"]
    return f"{name} @ {url}#{digest}" if digest and "#" not in url else f"{name} @ {url}"


def _stale_modules(chosen: list[str]) -> list[str]:
    """Installed packages of which this process already imported another copy (it keeps using that one)."""
    stale = []
    for spec in chosen:
        module = spec.split("==")[0].lower().replace("-", "_")
        if module in sys.modules:
            stale.append(module)
    return stale


def _failed(lines: list[str], command: str, problem: str) -> InstallResult:
    tail = "\n".join([line for line in lines if line.strip()][-LAST_LINES:])
    message = (f"Installing the packages failed: {problem}.\n\npip's last lines:\n{tail}\n\n"
               f"You can run the command yourself, in a terminal (OSGeo4W Shell on Windows):\n{command}")
    return InstallResult(False, message, lines=lines, command=command)


def install_hint(missing: list[str]) -> str:
    """One line for places without the dialog (Processing, qgis_process): what is missing and how to install it."""
    folder = profile_dependency_folder()
    target = str(folder) if folder else "<QGIS profile>/python/" + FOLDER_NAME + "/" + python_tag()
    plugins = Path(__file__).resolve().parents[2]
    command = _quote(["cd", str(plugins)]) + " && " + _quote(
        [qgis_python(), "-m", "footprint_plugin.setup.dependencies", "install", "--target", target])
    return (f"Building footprints needs the Python package(s) {', '.join(missing)}, which QGIS's Python cannot "
            f"find. Click Extract buildings in QGIS to install them, or run: {command} "
            f"(it runs pip install --target with QGIS's Python).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m footprint_plugin.setup.dependencies", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("install", help="install the missing packages into --target")
    run.add_argument("--target", required=True, type=Path, help="folder to install into (the plugin puts it on sys.path)")
    run.add_argument("--cuda", action="store_true", help="PyTorch's CUDA build instead of the CPU build")
    run.add_argument("--torch-index", default=None,
                     help="package index for torch (default: PyTorch's CPU or CUDA index; 'none': pip's configured ones)")
    run.add_argument("--packages", help="comma-separated pip names to install (default: the missing ones)")
    check = sub.add_parser("check", help="list the required packages that cannot be imported; exit 1 if any")
    check.add_argument("--target", type=Path)
    args = parser.parse_args(argv)
    if args.command == "check":
        activate(args.target)
        missing = missing_packages()
        print("missing: " + ", ".join(missing) if missing else "all required packages import")
        return 1 if missing else 0
    index = "" if args.torch_index == "none" else args.torch_index
    packages = [p.strip() for p in args.packages.split(",") if p.strip()] if args.packages else None
    started = time.monotonic()
    result = install(args.target, cuda=args.cuda, index=index, packages=packages, on_line=print)
    if not result.ok:
        print(result.message, file=sys.stderr)
        return 130 if result.cancelled else 1
    print(f"{result.message} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
