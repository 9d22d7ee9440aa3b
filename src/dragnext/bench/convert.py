"""Convert the point-based drag benchmarks (DragBench, Drag100) into instruction folders.

Each sample becomes ``<out>/<dataset>/<sample>/`` holding ``instructions.json`` and its PNGs (written by
:func:`~dragnext.instructions.save_instructions`) plus a sidecar ``conversion.json`` that says where the sample
came from and how its regions were derived (the instruction format forbids unknown keys, so the record cannot
go into ``instructions.json`` itself). ``<sample>`` is the sample folder relative to the root given, e.g.
``animals/JH_2023-09-14-1820-16`` for DragBench (the category is kept) and ``cat_6`` for Drag100.

The benchmarks give only points: ``[handle, target, handle, target, ...]``, no region and no drag type.
Choices made here:

- Every (handle, target) pair becomes a ``translate`` operation, in the order of the source.
- Its region is a disc of radius ``R`` around the handle (pixels whose centre lies within ``R``), intersected
  with the editable mask when that leaves it non-empty (otherwise the whole disc is kept; the sidecar records
  which). ``R`` defaults to ``max(8, round(0.04 * min(H, W)))``: 20 px on the 512-px-wide benchmark images,
  about the size of the feature patches point-based methods supervise; ``radius=`` / ``--radius`` overrides.
- A sample that cannot be converted (unreadable file, odd number of points, a point off the image, handle
  equal to target, mask and image of different sizes, ...) is skipped and reported with a one-line reason in
  :attr:`ConversionReport.skipped`, never dropped silently and never half-converted. Points on the image
  border are fine.
- ``meta_data.pkl`` is a pickle, so it is read with a restricted unpickler that admits only the handful of
  numpy globals an ``ndarray`` needs (:data:`ALLOWED_GLOBALS`) and refuses everything else before anything is
  called; the loaded object is then type-checked.
- Re-converting into the same folder leaves no stale files of an earlier conversion: where a
  ``conversion.json`` shows that a folder was written by this module, leftover ``region_<i>.png`` files are
  removed, and the folder of a sample that is now skipped is emptied of its converted files.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import math
import os
import pickle
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..files import write_text_atomic
from ..instructions import DragRequest, InstructionError, make_operation, save_instructions, validate_request

DATASETS = ("dragbench", "drag100")
MARKER_FILES = {"dragbench": "meta_data.pkl", "drag100": "points.json"}
DATASET_TITLES = {"dragbench": "DragBench", "drag100": "Drag100"}

MIN_DEFAULT_RADIUS = 8
DEFAULT_RADIUS_FRACTION = 0.04
DEFAULT_RADIUS_RULE = "max(8, round(0.04 * min(H, W)))"
NOTE = "point-based benchmark: each handle point became a translate of a disc around it"
SIDECAR_NAME = "conversion.json"

# What a pickled ndarray references, in numpy 1.x and 2.x spelling: `_reconstruct`, `ndarray` and `dtype` are all
# the DragBench files use (protocol 4); `_frombuffer` is what the same array needs when saved with protocol 5
# (the default from Python 3.14). Nothing here runs code given by the file: these only build arrays.
ALLOWED_GLOBALS = (
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.core.numeric._frombuffer",
    "numpy._core.numeric._frombuffer",
)


class ConversionError(InstructionError):
    """A sample or an argument that cannot be converted; the message is one line naming the file or setting."""


class UnsafePickleError(ConversionError):
    """A pickle that references a global outside :data:`ALLOWED_GLOBALS`; nothing of it was run."""


@dataclass
class ConversionReport:
    converted: list[Path] = field(default_factory=list)  # the instructions.json written, one per sample
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (sample, one-line reason)
    dataset: str = ""
    out: Path | None = None  # <out>/<dataset>
    radius: float | None = None  # as given; None = the default rule

    def summary(self) -> str:
        total = len(self.converted) + len(self.skipped)
        title = DATASET_TITLES.get(self.dataset, self.dataset)
        radius = DEFAULT_RADIUS_RULE if self.radius is None else _json_number(self.radius)
        text = (
            f"{title}: converted {len(self.converted)} of {total} samples into {self.out} "
            f"(translate of a disc around each handle, radius {radius} px)"
        )
        if self.skipped:
            text += f"; skipped {len(self.skipped)}: {', '.join(name for name, _ in self.skipped)}"
        return text


# --------------------------------------------------------------------------------------------------------
# The restricted unpickler


def _import_attribute(module_names: Sequence[str], name: str) -> Any:
    """The first ``module.name`` that imports (numpy 2 moved ``numpy.core`` to ``numpy._core``)."""
    for module_name in module_names:
        try:
            return getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError):
            continue
    return None


@cache
def _allowed_objects() -> dict[tuple[str, str], Any]:
    reconstruct = _import_attribute(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    frombuffer = _import_attribute(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    objects = {"_reconstruct": reconstruct, "_frombuffer": frombuffer, "ndarray": np.ndarray, "dtype": np.dtype}
    allowed = {}
    for dotted in ALLOWED_GLOBALS:
        module, _, name = dotted.rpartition(".")
        if objects[name] is not None:
            allowed[(module, name)] = objects[name]
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, source: str):
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        found = _allowed_objects().get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"{self._source}: refusing to load global '{module}.{name}' "
                "(only numpy arrays, dicts, lists, strings and numbers are allowed)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._source}: refusing a persistent id in the pickle")


def _is_number(value: Any) -> bool:
    """int/float or a numpy number, but not a bool: ``[true, 3]`` is a typo, not a point."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def load_dragbench_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a DragBench ``meta_data.pkl`` safely: ``{"prompt": str, "points": [[x, y], ...], "mask": array}``.

    Only :data:`ALLOWED_GLOBALS` may be referenced (anything else raises :class:`UnsafePickleError` before it
    is called); any other problem, from a truncated file to a missing key, raises :class:`ConversionError`
    naming the file. Returns a new dict with exactly those keys: ``points`` as a list of ``[x, y]`` numbers,
    ``mask`` as the stored 2-D array (nonzero = editable). Extra keys in the file are ignored.
    """
    path = Path(path)
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConversionError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        meta = _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # a malformed pickle can raise almost anything; report it as one line
        message = " ".join(str(exc).split()) or type(exc).__name__
        raise ConversionError(f"{source}: not a readable pickle: {message}") from None

    if not isinstance(meta, dict):
        raise ConversionError(f"{source}: expected a pickled dict, got {type(meta).__name__}")
    missing = [key for key in ("prompt", "points", "mask") if key not in meta]
    if missing:
        raise ConversionError(f"{source}: missing key(s) {', '.join(repr(k) for k in missing)}")
    prompt = meta["prompt"]
    if not isinstance(prompt, str):
        raise ConversionError(f"{source}: 'prompt' must be a string, got {type(prompt).__name__}")
    points = meta["points"]
    if isinstance(points, np.ndarray) and points.dtype.kind in "iuf":
        points = points.tolist()
    if not isinstance(points, (list, tuple)):
        raise ConversionError(f"{source}: 'points' must be a list of [x, y], got {type(points).__name__}")
    checked = []
    for index, point in enumerate(points):
        if isinstance(point, np.ndarray) and point.dtype.kind in "iuf":
            point = point.tolist()
        if not isinstance(point, (list, tuple)) or len(point) != 2 or not all(_is_number(v) for v in point):
            raise ConversionError(f"{source}: points[{index}] must be [x, y] with two numbers, got {point!r:.60}")
        checked.append([point[0], point[1]])
    mask = meta["mask"]
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype.kind not in "biuf":
        got = f"{mask.dtype} array of shape {mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise ConversionError(f"{source}: 'mask' must be an H x W numeric array, got {got}")
    return {"prompt": prompt, "points": checked, "mask": mask}


# --------------------------------------------------------------------------------------------------------
# Finding samples


def find_samples(root: str | os.PathLike[str], dataset: str | None = None) -> list[Path]:
    """The sample folders under ``root`` (``root`` itself included), sorted by their path relative to root.

    A sample folder is one holding the dataset's marker file (``meta_data.pkl`` for DragBench,
    ``points.json`` for Drag100; either when ``dataset`` is None). Hidden folders are not searched.
    """
    root = Path(root)
    if dataset is not None and dataset not in DATASETS:
        raise ConversionError(f"dataset: {dataset!r} is not one of {', '.join(DATASETS)}")
    if not root.is_dir():
        raise ConversionError(f"{root}: not a folder")
    markers = [MARKER_FILES[dataset]] if dataset else list(MARKER_FILES.values())
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        if any(marker in files for marker in markers):
            found.append(Path(folder))
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def _sample_name(folder: Path, root: Path) -> str:
    relative = folder.relative_to(root)
    return relative.as_posix() if relative.parts else root.resolve().name


# --------------------------------------------------------------------------------------------------------
# Conversion


def default_radius(height: int, width: int) -> int:
    """The default disc radius in pixels: ``max(8, round(0.04 * min(H, W)))`` (20 on a 512-px-wide image)."""
    return max(MIN_DEFAULT_RADIUS, round(DEFAULT_RADIUS_FRACTION * min(height, width)))


def _check_radius(radius: Any) -> float | None:
    if radius is None:
        return None
    if not _is_number(radius) or not math.isfinite(radius) or radius < 1:
        raise ConversionError(f"radius: must be a number of pixels >= 1, got {radius!r}")
    return float(radius)


def _json_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _format_point(point: Sequence[float]) -> str:
    return "(" + ", ".join(str(_json_number(v)) for v in point) + ")"


def _pairs(points: Sequence[Sequence[Any]], width: int, height: int) -> list[tuple[tuple[float, float], ...]]:
    """Split ``[h, t, h, t, ...]`` into (handle, target) pairs, checking every point against the image."""
    if len(points) == 0:
        raise ConversionError("points: the sample has no points")
    if len(points) % 2:
        raise ConversionError(f"points: {len(points)} points is an odd number; expected handle, target pairs")
    checked = []
    for index, point in enumerate(points):
        role = "handle" if index % 2 == 0 else "target"
        where = f"points[{index}] ({role} of pair {index // 2})"
        if not isinstance(point, (list, tuple)) or len(point) != 2 or not all(_is_number(v) for v in point):
            raise ConversionError(f"{where}: expected [x, y] with two numbers, got {point!r:.60}")
        x, y = float(point[0]), float(point[1])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ConversionError(f"{where}: coordinates must be finite numbers, got {_format_point((x, y))}")
        if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
            raise ConversionError(f"{where}: point {_format_point((x, y))} lies outside the {width}x{height} image")
        checked.append((x, y))
    pairs = list(zip(checked[0::2], checked[1::2], strict=True))
    for index, (handle, target) in enumerate(pairs):
        if math.hypot(handle[0] - target[0], handle[1] - target[1]) < 1e-6:
            raise ConversionError(
                f"points[{2 * index + 1}] (target of pair {index}): equals the handle {_format_point(handle)}; "
                "nothing to drag"
            )
    return pairs


def _build_request(
    image: np.ndarray, editable: np.ndarray | None, points: Sequence[Any], prompt: str, radius: float | None
) -> tuple[DragRequest, dict[str, Any]]:
    """The request for one sample and the ``region`` record of its sidecar."""
    height, width = image.shape[:2]
    if editable is not None and editable.shape != (height, width):
        raise ConversionError(
            f"mask: mask is {editable.shape[1]}x{editable.shape[0]} but the image is {width}x{height}"
        )
    pairs = _pairs(points, width, height)
    used_radius = default_radius(height, width) if radius is None else radius
    ys, xs = np.ogrid[:height, :width]
    operations, clipped = [], []
    for handle, target in pairs:
        region = (xs - handle[0]) ** 2 + (ys - handle[1]) ** 2 <= used_radius**2
        inside = editable is not None and bool((region & editable).any())
        if inside:
            region = region & editable
        clipped.append(inside)
        operations.append(make_operation("translate", region, handle, target))
    request = validate_request(
        DragRequest(image=image, operations=tuple(operations), editable_mask=editable, prompt=prompt)
    )
    record = {
        "kind": "disc",
        "radius": _json_number(used_radius),
        "radius_from": f"default {DEFAULT_RADIUS_RULE}" if radius is None else "given",
        "intersected_with_editable": clipped,
    }
    return request, record


def _read_image(path: Path, mode: str) -> np.ndarray:
    if not path.is_file():
        raise ConversionError(f"{path.name}: missing (looked for {path})")
    try:
        with Image.open(path) as opened:
            opened.load()
            return np.asarray(opened.convert(mode))
    except UnidentifiedImageError:
        raise ConversionError(f"{path.name}: not an image file") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ConversionError(f"{path.name}: cannot read: {' '.join(str(exc).split())}") from None


def _read_dragbench(folder: Path) -> tuple[np.ndarray, np.ndarray, list[Any], str]:
    meta = load_dragbench_meta(folder / MARKER_FILES["dragbench"])
    image = _read_image(folder / "original_image.png", "RGB")
    return image, meta["mask"] != 0, meta["points"], meta["prompt"]


def _read_drag100(folder: Path) -> tuple[np.ndarray, np.ndarray, list[Any], str]:
    points_path = folder / MARKER_FILES["drag100"]
    try:
        raw = json.loads(points_path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ConversionError(f"{points_path.name}: cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{points_path.name}: not valid JSON: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("points"), list):
        raise ConversionError(f'{points_path.name}: expected {{"points": [[x, y], ...]}}')
    image = _read_image(folder / "original.jpg", "RGB")
    mask = _read_image(folder / "mask.png", "L") > 127
    return image, mask, raw["points"], ""


_READERS = {"dragbench": _read_dragbench, "drag100": _read_drag100}
_REGION_FILE = re.compile(r"region_(\d+)\.png")
_CONVERTED_FILES = ("instructions.json", "image.png", "editable.png")


def _remove_stale(folder: Path, operations: int) -> None:
    """Remove what an earlier conversion (recognised by its sidecar) left that this one does not rewrite."""
    if not (folder / SIDECAR_NAME).is_file():
        return
    for entry in folder.iterdir():
        match = _REGION_FILE.fullmatch(entry.name)
        if match and int(match.group(1)) >= operations:
            entry.unlink(missing_ok=True)
    if operations == 0:  # the sample is skipped now: its old conversion must not be mistaken for a current one
        for name in (*_CONVERTED_FILES, SIDECAR_NAME):
            (folder / name).unlink(missing_ok=True)


def _convert(dataset: str, root: str | os.PathLike[str], out: str | os.PathLike[str], radius: Any) -> ConversionReport:
    radius = _check_radius(radius)
    root = Path(root)
    samples = find_samples(root, dataset)
    marker = MARKER_FILES[dataset]
    if not samples:
        raise ConversionError(f"{root}: no {DATASET_TITLES[dataset]} samples (folders with {marker}) found")
    target_root = Path(out) / dataset
    if target_root.exists() and not target_root.is_dir():
        raise ConversionError(f"{target_root}: exists and is not a folder")
    report = ConversionReport(dataset=dataset, out=target_root, radius=radius)
    for folder in samples:
        name = _sample_name(folder, root)
        destination = target_root / name
        try:
            image, editable, points, prompt = _READERS[dataset](folder)
            request, region = _build_request(image, editable, points, prompt, radius)
        except InstructionError as error:  # ConversionError included
            report.skipped.append((name, str(error)))
            if destination.is_dir():
                _remove_stale(destination, 0)
            continue
        destination.mkdir(parents=True, exist_ok=True)
        _remove_stale(destination, len(request.operations))
        json_path = save_instructions(request, destination / "instructions.json")
        sidecar = {
            "source": os.path.abspath(folder),
            "dataset": dataset,
            "points": [[_json_number(v) for v in point] for point in points],
            "region": region,
            "note": NOTE,
        }
        write_text_atomic(destination / SIDECAR_NAME, json.dumps(sidecar, indent=2) + "\n")
        report.converted.append(json_path)
    return report


def convert_dragbench(
    root: str | os.PathLike[str], out: str | os.PathLike[str], radius: float | None = None
) -> ConversionReport:
    """Convert every DragBench sample under ``root`` into ``<out>/dragbench/<category>/<sample>/``."""
    return _convert("dragbench", root, out, radius)


def convert_drag100(
    root: str | os.PathLike[str], out: str | os.PathLike[str], radius: float | None = None
) -> ConversionReport:
    """Convert every Drag100 sample under ``root`` into ``<out>/drag100/<sample>/``."""
    return _convert("drag100", root, out, radius)


def convert(
    dataset: str, root: str | os.PathLike[str], out: str | os.PathLike[str], radius: float | None = None
) -> ConversionReport:
    """:func:`convert_dragbench` or :func:`convert_drag100` by name (``"dragbench"`` or ``"drag100"``)."""
    if dataset not in DATASETS:
        raise ConversionError(f"dataset: {dataset!r} is not one of {', '.join(DATASETS)}")
    return _convert(dataset, root, out, radius)


# --------------------------------------------------------------------------------------------------------
# Command line


def command_convert(args: argparse.Namespace) -> int:
    """``dragnext convert``: skipped samples go to stderr, one per line, then a one-line summary to stdout.

    Exit status: 0 when at least one sample was converted, 2 for bad input (no samples, bad radius, every
    sample skipped), 1 when writing the output fails.
    """
    try:
        report = convert(args.dataset, args.root, args.out, args.radius)
    except InstructionError as error:
        print(f"dragnext: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"dragnext: error: cannot write {error.filename or args.out}: {error.strerror or error}", file=sys.stderr)
        return 1
    for name, reason in report.skipped:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    print(report.summary())
    return 0 if report.converted else 2


def add_convert_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``convert {dragbench,drag100} ROOT -o OUT [--radius R]`` on an argparse subparsers object."""
    parser = subparsers.add_parser(
        "convert",
        help="convert a point-based benchmark (DragBench, Drag100) into instruction folders",
        description="Convert a point-based benchmark into instruction folders OUT/<dataset>/<sample>/ "
        "(instructions.json + PNGs + conversion.json). Each handle point becomes a translate of a disc around it.",
    )
    parser.add_argument("dataset", choices=DATASETS, help="source format")
    parser.add_argument("root", help="the dataset folder, e.g. ../shared/data/dragbench")
    parser.add_argument("-o", "--out", required=True, help="output folder; samples go to OUT/<dataset>/<sample>/")
    parser.add_argument(
        "--radius", type=float, default=None, help=f"disc radius in pixels (default: {DEFAULT_RADIUS_RULE})"
    )
    parser.set_defaults(run=command_convert)
    return parser
