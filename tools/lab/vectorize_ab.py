"""The vectoriser of a git revision against the working tree's, on one raster's real class maps.
Produced: docs/benchmarks.md, "The labelling change" (the 4k mosaic A/B).

    .venv/bin/python tools/lab/vectorize_ab.py RASTER [--rev HEAD] [--rounds 4]

Infers the raster once with the default model (default tiles), then runs both vectorisers on the same
strips, taking turns strip by strip (so the host's drift slows both alike), and prints the CPU
seconds of each and whether their buildings are identical: geometry, area and score, in order.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def vectorize_module(rev: str):
    """The vectoriser of ``footprint_plugin/core`` as it was at ``rev``: the revision's whole engine package,
    imported under a name of its own, so its vectoriser runs with its own helpers whatever the layout was."""
    folder = Path(tempfile.mkdtemp(prefix="vectorize-ab-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "footprint_plugin/core"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder)  # our own repository's files
    name = f"core_at_{rev.replace('~', '_').replace('^', '_')}"
    package = folder / "footprint_plugin" / "core"
    spec = importlib.util.spec_from_file_location(name, package / "__init__.py", submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{name}.vectorize")


def class_strips(raster: Path):
    """The raster's class maps strip by strip, with the vectoriser's transform, pixel area, width and options."""
    from rasterio.transform import Affine

    from footprint_plugin.core.geo import model_grid
    from footprint_plugin.core.inference import iter_class_strips, plan_inference
    from footprint_plugin.core.parameters import ExtractionParameters, vectorize_options
    from footprint_plugin.core.pipeline import load_model
    from footprint_plugin.core.predictor import Predictor
    from footprint_plugin.core.readers import RasterioReader, resolve_band_mapping
    from footprint_plugin.core.tiling import TilingOptions

    model, card, _ = load_model(None)
    predictor = Predictor(model, card, "cpu")
    options = vectorize_options(ExtractionParameters(), card)
    with RasterioReader(raster) as reader:
        grid = model_grid(reader.crs_wkt, reader.transform, reader.width, reader.height, card.resolution_m)
        bands = resolve_band_mapping(reader, card.input_bands)
        plan = plan_inference(reader, grid, bands, TilingOptions(), card, "cpu")
        strips = list(iter_class_strips(plan, predictor, options))
    padded = plan.padded
    transform = grid.transform * Affine.translation(-padded.margin, -padded.margin)
    return strips, transform, grid.pixel_area_m2, padded.width, options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("raster", type=Path)
    parser.add_argument("--rev", default="HEAD", help="the revision to compare with (default HEAD)")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)

    from footprint_plugin.core import vectorize as current

    before = vectorize_module(args.rev)
    strips, transform, pixel_area, width, options = class_strips(args.raster)
    seconds = {"rev": 0.0, "tree": 0.0}
    found: dict[str, list] = {}
    for round_ in range(args.rounds):
        pair = [("rev", before), ("tree", current)]
        runs = {name: (module, module.StripVectorizer(transform, pixel_area, width, options), [])
                for name, module in (pair if round_ % 2 == 0 else pair[::-1])}
        for strip in strips:
            for name, (module, vectorizer, out) in runs.items():
                maps = module.ClassMaps(*strip.maps.arrays())
                started = time.process_time()
                out += vectorizer.add_maps(strip.row_start, maps, strip.last)
                seconds[name] += time.process_time() - started
        found = {name: [(b.geometry, b.area_m2, b.score) for b in out] for name, (_, _, out) in runs.items()}
    verdict = compare(found["rev"], found["tree"])
    print(f"{args.raster.name}: {len(found['tree'])} buildings ({len(found['rev'])} at {args.rev}), "
          f"{verdict}; CPU s per run: {args.rev} {seconds['rev'] / args.rounds:.2f}, "
          f"working tree {seconds['tree'] / args.rounds:.2f} (x{seconds['tree'] / seconds['rev']:.3f})")
    return 0


def compare(first: list, second: list) -> str:
    """``identical`` (the same WKB, area and score, in order), ``identical within 1e-6 m`` (every vertex and
    value the same but for float rounding, e.g. outlines cleaned at another pixel origin) or ``NOT identical``."""
    if [(g.wkb, a, s) for g, a, s in first] == [(g.wkb, a, s) for g, a, s in second]:
        return "identical"
    if len(first) != len(second):
        return "NOT identical"
    import numpy as np

    for (g1, a1, s1), (g2, a2, s2) in zip(first, second):
        rings1 = [g1.exterior, *g1.interiors]
        rings2 = [g2.exterior, *g2.interiors]
        if len(rings1) != len(rings2) or abs(a1 - a2) > 1e-6 or abs(s1 - s2) > 1e-9:
            return "NOT identical"
        for r1, r2 in zip(rings1, rings2):
            c1, c2 = np.asarray(r1.coords), np.asarray(r2.coords)
            if c1.shape != c2.shape or np.abs(c1 - c2).max() > 1e-6:
                return "NOT identical"
    return "identical within 1e-6 m"


if __name__ == "__main__":
    sys.exit(main())
