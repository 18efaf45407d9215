"""Command-line entry point: ``python -m trainer <command> --help``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from footprint_plugin.core.errors import FootprintError

COMMANDS = {
    "prepare": ("trainer.prepare", "rasterise labelled imagery into 3-class training chips"),
    "train": ("trainer.train", "train the U-Net on prepared chips"),
    "finetune": ("trainer.finetune", "fine-tune a weights file on your corrected buildings within minutes"),
    "export": ("trainer.export", "turn a training checkpoint into a plugin weights file"),
    "evaluate": ("trainer.evaluate", "score predicted buildings against ground truth (SpaceNet F1)"),
    "predict": ("trainer.predict", "extract building footprints from a raster into a GeoPackage"),
    "regularize": ("trainer.regularize", "regularise the building footprints of any polygon layer (right angles, "
                   "diagonals, any angle, circles)"),
}


def build_parser() -> argparse.ArgumentParser:
    # `footprints` when run as the console command of `pip install .`, else `python -m trainer`.
    prog = "footprints" if Path(sys.argv[0]).name.startswith("footprints") else "python -m trainer"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except FootprintError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
