"""The run's parameters, and the one table of user options the three front ends are built from.

The command line (argparse), the Processing algorithm and the dialog's Advanced section all
list :data:`OPTIONS` with the same names, defaults and choices, and turn what the user chose
into :class:`ExtractionParameters` with :func:`build_parameters`. ``None`` as a default means
"the model's (or the device's) own value"; each front end shows that as its ``auto`` text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .buildings import REGULARIZE_MODES, VectorizeOptions
from .errors import FootprintError
from .tiling import BACKENDS, TilingOptions

if TYPE_CHECKING:  # the weights module needs torch; this one must import without it (plugin start-up, installer)
    from .weights import ModelCard

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class ExtractionParameters:
    """Everything a run needs besides the raster and the area; ``None`` takes defaults."""

    weights: str | None = None
    device: str = "auto"
    tiling: TilingOptions = field(default_factory=TilingOptions)
    min_area_m2: float = 5.0
    regularize: str = "orthogonal"  # right-angled outlines (docs/model_report.md, "Outlines")
    bands: list[int] | None = None
    mask_threshold: float | None = None  # model card's when None
    seed_threshold: float | None = None
    working_resolution_m: float | None = None  # model card's ground resolution when None
    instances: str = "three_class"  # "binary" ignores the border class (for comparison)
    vectorize_workers: int | None = None  # processes that vectorise (1: the run's own); None: automatic


def vectorize_options(parameters: ExtractionParameters, card: ModelCard) -> VectorizeOptions:
    """The post-processing of a run: the parameters' settings, thresholds from the model card unless given."""
    post = card.postprocess
    return VectorizeOptions(
        mask_threshold=float(post.get("mask_threshold", 0.5)) if parameters.mask_threshold is None
        else parameters.mask_threshold,
        seed_threshold=float(post.get("seed_threshold", 0.5)) if parameters.seed_threshold is None
        else parameters.seed_threshold,
        min_area_m2=parameters.min_area_m2,
        regularize=parameters.regularize,
        instances=parameters.instances,
    )


@dataclass(frozen=True)
class Option:
    """One user option: ``kind`` is int, float, str (with ``choices``), bool or bands."""

    name: str
    kind: str
    default: Any
    label: str
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    auto: str = ""  # what the default None means, e.g. "the model's"

    @property
    def flag(self) -> str:
        """The command-line flag: ``--name``, or ``--no-name`` for a switch that is on by default."""
        prefix = "--no-" if self.kind == "bool" and self.default else "--"
        return prefix + self.name.replace("_", "-")

    @property
    def key(self) -> str:
        return self.name.upper()

    def describe_default(self) -> str:
        if self.default is None:
            return self.auto
        if self.kind == "bool":
            return "off" if not self.default else "on"
        return str(self.default)


OPTIONS: tuple[Option, ...] = (
    Option("device", "str", "auto", "Device", "auto (CUDA, then MPS, then CPU), cpu, cuda or mps", DEVICES),
    Option("backend", "str", "auto", "Runtime", "auto/torch = PyTorch, onnxruntime = ONNX Runtime on CPU", BACKENDS),
    Option("bands", "bands", None, "Band mapping", "source bands feeding the model's inputs, e.g. 1,2,3 or 5,3,2",
           auto="by colour interpretation"),
    Option("flip_tta", "bool", False, "Test-time flips", "average with horizontally flipped tiles (slower)"),
    Option("seed_threshold", "float", None, "Seed threshold", "interior probability that seeds a building "
           "(lower: more sensitive)", minimum=0.01, maximum=0.99, auto="the model's"),
    Option("mask_threshold", "float", None, "Mask threshold", "building probability that counts as building "
           "(lower: more sensitive)", minimum=0.01, maximum=0.99, auto="the model's"),
    Option("working_resolution", "float", None, "Processing resolution (m)", "ground resolution the raster is "
           "resampled to for the model, metres", minimum=0.02, maximum=10.0, auto="the model's"),
    Option("min_area", "float", 5.0, "Minimum area (m²)", "drop buildings smaller than this, m2", minimum=0.0,
           maximum=100000.0),
    Option("regularize", "str", "orthogonal", "Outline", "outline clean-up: orthogonal = right angles, diagonals = "
           "right angles and 45 degrees, any-angle = straight walls, circle = circles where round (else right angles), "
           "simplify, none = pixel outline", REGULARIZE_MODES),
    Option("tile_size", "int", None, "Tile size (px)", "tile side in model pixels", minimum=32, maximum=4096,
           auto="768, or the model's tile if larger"),
    Option("overlap", "int", None, "Overlap (px)", "tile overlap in pixels", minimum=0, maximum=2048,
           auto="twice the model's reach (192 for the default model), at most three quarters of the tile"),
    Option("batch_size", "int", None, "Batch size", "tiles per forward pass", minimum=1, maximum=1024,
           auto="about 1 Mpx on CUDA, 0.26 Mpx elsewhere"),
    Option("amp", "bool", True, "Float16 on CUDA", "float16 autocast on CUDA (off: float32, slower)"),
    Option("vectorize_workers", "int", None, "Vectorising processes", "processes that turn the model's maps into "
           "polygons, on that many cores (1: in the run's own process)", minimum=1, maximum=256,
           auto="automatic: the cores less one when a GPU runs the model, else 1"),
    Option("block_size", "int", 8192, "Block size (px)", "larger rasters run in square blocks of about this many "
           "model pixels, independent of each other (memory, resuming, a cluster's tasks)", minimum=256,
           maximum=65536),
    Option("block_halo", "int", 384, "Block halo (px)", "model pixels each block also reads around its square; "
           "a building wider than this is cut at a block's edge", minimum=16, maximum=4096),
)
OPTION = {option.name: option for option in OPTIONS}


def parse_bands(text: str | list[int] | None) -> list[int] | None:
    """``"5,3,2"`` -> [5, 3, 2]; empty -> None (by colour interpretation)."""
    if text is None or isinstance(text, list):
        return text or None
    text = str(text).strip()
    if not text:
        return None
    try:
        return [int(part) for part in text.replace(" ", "").split(",")]
    except ValueError:
        raise FootprintError(f"Band mapping {text!r}: give band numbers separated by commas, e.g. 1,2,3.") from None


def check_value(option: Option, value: Any) -> Any:
    """``value`` checked against the option's choices and range; ``None`` stays None (the default)."""
    if value is None:
        return None
    if option.choices and value not in option.choices and not (option.name == "device" and str(value).startswith("cuda:")):
        raise FootprintError(f"{option.label}: {value!r} is not one of {', '.join(option.choices)}.")
    if option.kind in ("int", "float"):
        if option.minimum is not None and value < option.minimum or option.maximum is not None and value > option.maximum:
            raise FootprintError(f"{option.label}: {value} must lie between {option.minimum:g} and {option.maximum:g}.")
    return value


def build_parameters(values: Mapping[str, Any], weights: str | None = None) -> ExtractionParameters:
    """:class:`ExtractionParameters` from option name -> value (missing or None: the default)."""
    chosen = {}
    for option in OPTIONS:
        value = values.get(option.name)
        if option.kind == "bands":
            value = parse_bands(value)
        chosen[option.name] = check_value(option, value)
    pick = {name: option.default if chosen[name] is None else chosen[name] for name, option in OPTION.items()}
    tiling = TilingOptions(pick["tile_size"], pick["overlap"], pick["batch_size"], amp=bool(pick["amp"]),
                           flip_tta=bool(pick["flip_tta"]), backend=pick["backend"], block_size=pick["block_size"],
                           block_halo=pick["block_halo"])
    return ExtractionParameters(weights=weights or None, device=pick["device"], tiling=tiling,
                                min_area_m2=float(pick["min_area"]), regularize=pick["regularize"],
                                bands=pick["bands"], mask_threshold=pick["mask_threshold"],
                                seed_threshold=pick["seed_threshold"],
                                working_resolution_m=pick["working_resolution"],
                                vectorize_workers=pick["vectorize_workers"])
