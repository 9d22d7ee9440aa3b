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
  with the editable mask (the sidecar records ``intersected_with_editable``, false only for a sample without a
  mask). A disc entirely outside the editable mask fails the sample: nothing in it may change, so the editor
  refuses such a region. ``R`` defaults to ``max(8, round(0.04 * min(H, W)))``: 20 px on the 512-px-wide
  benchmark images, about the size of the feature patches point-based methods supervise; ``radius=`` /
  ``--radius`` overrides.
- A sample that cannot be converted (unreadable or hostile file, odd number of points, a point off the image,
  handle equal to target, mask and image of different sizes, ...) fails alone: it is recorded with a one-line
  reason in :attr:`ConversionReport.failed` and in ``<out>/<dataset>/failed.csv`` (``sample,reason``), and the
  conversion goes on with the next sample. Points on the image border are fine.
- Source files are read through :mod:`dragnext.limits`, like every other input: only regular files are opened
  (a FIFO named ``meta_data.pkl`` would block forever, a device could act), files are read up to a size limit,
  and an image's size is checked from its header before it is decoded.
- ``meta_data.pkl`` is a pickle, so it is read with a restricted unpickler that admits only the handful of
  numpy globals an ``ndarray`` needs (:data:`ALLOWED_GLOBALS`) and refuses everything else before anything is
  called; the loaded object is then type-checked.
- A sample folder is written whole or not at all: into a hidden staging folder beside it
  (``.<sample>.<random>.partial``), renamed into place once complete. Re-converting replaces a folder this
  module wrote (recognised by its ``conversion.json``) and removes the converted files of a sample that now
  fails; a folder holding anything else is left alone and the sample fails with a reason.
"""

from __future__ import annotations

import contextlib
import csv
import importlib
import io
import json
import logging
import math
import os
import pickle
import re
import reprlib
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from ..files import write_text_atomic
from ..instructions import DragRequest, InstructionError, make_operation, save_instructions, validate_request
from ..limits import DEFAULT_LIMITS, read_image, read_limited_bytes

logger = logging.getLogger(__name__)

DATASETS = ("dragbench", "drag100")
MARKER_FILES = {"dragbench": "meta_data.pkl", "drag100": "points.json"}
DATASET_TITLES = {"dragbench": "DragBench", "drag100": "Drag100"}

MIN_DEFAULT_RADIUS = 8
DEFAULT_RADIUS_FRACTION = 0.04
DEFAULT_RADIUS_RULE = "max(8, round(0.04 * min(H, W)))"
NOTE = "point-based benchmark: each handle point became a translate of a disc around it"
SIDECAR_NAME = "conversion.json"
# A DragBench pickle is an 8-bit mask plus a prompt and a few points (~0.4 MB at 512 x 768): allow a mask at the
# pixel limit of any image we read, and 1 MiB for the rest.
MAX_PICKLE_BYTES = DEFAULT_LIMITS.max_pixels + 2**20
FAILED_NAME = "failed.csv"  # in <out>/<dataset>/: one row (sample, reason) per sample that failed

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
    failed: list[tuple[str, str]] = field(default_factory=list)  # (sample, one-line reason)
    dataset: str = ""
    out: Path | None = None  # <out>/<dataset>
    radius: float | None = None  # as given; None = the default rule

    @property
    def failed_csv(self) -> Path | None:
        return None if self.out is None else self.out / FAILED_NAME

    def summary(self) -> str:
        total = len(self.converted) + len(self.failed)
        title = DATASET_TITLES.get(self.dataset, self.dataset)
        radius = DEFAULT_RADIUS_RULE if self.radius is None else _json_number(self.radius)
        text = (
            f"{title}: converted {len(self.converted)} of {total} samples into {self.out} "
            f"(translate of a disc around each handle, radius {radius} px)"
        )
        if self.failed:
            text += f"; {len(self.failed)} failed, listed in {self.failed_csv}"
        return text


# --------------------------------------------------------------------------------------------------------
# Reading source files safely


class _ShortRepr(reprlib.Repr):
    """``reprlib`` bounds nesting and length, but would still turn a huge integer into all its digits first
    (or fail past Python's 4300-digit limit); a hostile file's value is described, not printed."""

    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxlist, self.maxstring, self.maxother = 3, 4, 30, 30

    def repr_int(self, value: int, level: int) -> str:
        if value.bit_length() > 64:
            return f"<integer of about {int(value.bit_length() * math.log10(2)) + 1} digits>"
        return repr(value)


_describe = _ShortRepr().repr


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
    naming the file, and a file that is not a regular one or is larger than :data:`MAX_PICKLE_BYTES` raises
    :class:`~dragnext.instructions.InstructionError` without being read. Returns a new dict with exactly those
    keys: ``points`` as a list of ``[x, y]`` numbers, ``mask`` as the stored 2-D array (nonzero = editable).
    Extra keys in the file are ignored.
    """
    path = Path(path)
    source = str(path)
    data = read_limited_bytes(path, "", MAX_PICKLE_BYTES, name=source)  # regular files only: a FIFO would block
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
            raise ConversionError(f"{source}: points[{index}] must be [x, y] with two numbers, got {_describe(point)}")
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
            raise ConversionError(f"{where}: expected [x, y] with two numbers, got {_describe(point)}")
        try:
            x, y = float(point[0]), float(point[1])
        except OverflowError:  # an integer beyond the float range (a 400-digit one, say)
            raise ConversionError(f"{where}: coordinates must be finite numbers, got {_describe(point)}") from None
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
    if editable is not None and not editable.any():
        raise ConversionError("mask: the editable mask is empty, so nothing may change")
    pairs = _pairs(points, width, height)
    used_radius = default_radius(height, width) if radius is None else radius
    ys, xs = np.ogrid[:height, :width]
    operations, clipped = [], []
    for index, (handle, target) in enumerate(pairs):
        region = (xs - handle[0]) ** 2 + (ys - handle[1]) ** 2 <= used_radius**2
        if editable is not None:
            region = region & editable
            if not region.any():
                raise ConversionError(
                    f"points[{2 * index}] (handle of pair {index}): the {_json_number(used_radius)} px disc around "
                    f"{_format_point(handle)} lies entirely outside the editable mask, so nothing in it may change"
                )
        clipped.append(editable is not None)
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


def _read_dragbench(folder: Path) -> tuple[np.ndarray, np.ndarray, list[Any], str]:
    meta = load_dragbench_meta(folder / MARKER_FILES["dragbench"])
    image = read_image(folder / "original_image.png", "image", "RGB", name="original_image.png")
    return image, meta["mask"] != 0, meta["points"], meta["prompt"]


def _read_drag100(folder: Path) -> tuple[np.ndarray, np.ndarray, list[Any], str]:
    points_path = folder / MARKER_FILES["drag100"]
    data = read_limited_bytes(points_path, "points", DEFAULT_LIMITS.max_json_bytes, name=points_path.name)
    try:
        raw = json.loads(data.decode("utf-8-sig"))
    except RecursionError:
        raise ConversionError(f"{points_path.name}: not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer past Python's digit limit
        raise ConversionError(f"{points_path.name}: not valid JSON: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("points"), list):
        raise ConversionError(f'{points_path.name}: expected {{"points": [[x, y], ...]}}')
    image = read_image(folder / "original.jpg", "image", "RGB", name="original.jpg")
    mask = read_image(folder / "mask.png", "mask", "L", name="mask.png") > 127
    return image, mask, raw["points"], ""


_READERS = {"dragbench": _read_dragbench, "drag100": _read_drag100}
# What a conversion writes into a sample folder; instructions.json first and the sidecar last, the order in which
# a failing sample's old files are removed (an interrupted removal then leaves no loadable sample behind, and
# what is left is still recognised as ours).
_CONVERTED_FILES = ("instructions.json", "image.png", "editable.png", SIDECAR_NAME)
_REGION_FILE = re.compile(r"region_\d+\.png")
_REASON_LIMIT = 300  # characters of an unforeseen exception's message kept in a reason


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _is_converted_file(name: str) -> bool:
    return name in _CONVERTED_FILES or _REGION_FILE.fullmatch(name) is not None


def _read_sample(dataset: str, folder: Path, radius: float | None) -> tuple[DragRequest, dict[str, Any], list[Any]]:
    """The request of one sample, its sidecar ``region`` record and its points; any failure as one line."""
    try:
        image, editable, points, prompt = _READERS[dataset](folder)
        request, region = _build_request(image, editable, points, prompt, radius)
    except InstructionError:  # ConversionError included: already one line naming the file
        raise
    except Exception as error:  # a hostile file may raise what no check foresaw; it fails its own sample only
        logger.debug("unexpected error converting %s", folder, exc_info=True)
        message = _one_line(str(error))
        if len(message) > _REASON_LIMIT:
            message = message[: _REASON_LIMIT - 1] + "…"
        raise ConversionError(f"unexpected {type(error).__name__}: {message}") from None
    return request, region, points


def _check_destination(destination: Path, target_root: Path) -> None:
    """Refuse a destination that a conversion must not replace: a file, or a folder holding files that this
    module did not write (a folder it wrote holds ``conversion.json`` and only the names it writes)."""
    if destination == target_root / FAILED_NAME:
        raise ConversionError(f"{destination}: the name {FAILED_NAME} is kept for the list of failed samples")
    for folder in reversed(destination.relative_to(target_root).parents[:-1]):  # the folders in between
        if (target_root / folder).exists() and not (target_root / folder).is_dir():
            raise ConversionError(f"{target_root / folder}: exists and is not a folder; not replaced")
    if not os.path.lexists(destination):
        return
    if destination.is_symlink() or not destination.is_dir():
        raise ConversionError(f"{destination}: exists and is not a folder; not replaced")
    names = sorted(entry.name for entry in destination.iterdir())
    foreign = [name for name in names if not _is_converted_file(name)]
    if foreign or (names and SIDECAR_NAME not in names):
        listed = ", ".join((foreign or names)[:3]) + (", ..." if len(foreign or names) > 3 else "")
        raise ConversionError(f"{destination}: holds files this converter did not write ({listed}); not replaced")


def _write_sample(destination: Path, request: DragRequest, sidecar: dict[str, Any]) -> Path:
    """Write the sample into a hidden staging folder beside ``destination``, then rename it into place, so that
    ``destination`` holds either the earlier conversion or the complete new one, never a mix or a part."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(8)
    staging = destination.parent / f".{destination.name}.{token}.partial"
    staging.mkdir()
    try:
        save_instructions(request, staging / "instructions.json")
        write_text_atomic(staging / SIDECAR_NAME, json.dumps(sidecar, indent=2) + "\n")
        if os.path.lexists(destination):  # an earlier conversion (checked by _check_destination): set it aside
            retired = destination.parent / f".{destination.name}.{token}.old"
            os.rename(destination, retired)
            try:
                os.rename(staging, destination)
            except BaseException:
                os.rename(retired, destination)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination / "instructions.json"


def _withdraw(destination: Path) -> None:
    """Remove an earlier conversion of a sample that fails now, so that it is not taken for a current one.

    Only from a folder this module wrote (it holds ``conversion.json``), and only the files it writes; the folder
    itself goes when nothing else is left in it.
    """
    if not (destination / SIDECAR_NAME).is_file():
        return
    regions = [entry for entry in destination.iterdir() if _REGION_FILE.fullmatch(entry.name)]
    for path in [destination / _CONVERTED_FILES[0], *regions, *(destination / n for n in _CONVERTED_FILES[1:])]:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # not empty: it holds someone else's files, which stay
        destination.rmdir()


def _write_failed_csv(report: ConversionReport) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("sample", "reason"))
    writer.writerows(report.failed)
    write_text_atomic(report.failed_csv, buffer.getvalue())


def _prepare_output(target_root: Path) -> None:
    if target_root.exists() and not target_root.is_dir():
        raise ConversionError(f"{target_root}: exists and is not a folder")
    try:
        target_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConversionError(f"{target_root}: cannot create the output folder: {exc.strerror or exc}") from None
    if not os.access(target_root, os.W_OK | os.X_OK):
        raise ConversionError(f"{target_root}: the output folder is not writable")


def _convert(dataset: str, root: str | os.PathLike[str], out: str | os.PathLike[str], radius: Any) -> ConversionReport:
    radius = _check_radius(radius)
    root = Path(root)
    samples = find_samples(root, dataset)
    marker = MARKER_FILES[dataset]
    if not samples:
        raise ConversionError(f"{root}: no {DATASET_TITLES[dataset]} samples (folders with {marker}) found")
    target_root = Path(out) / dataset
    _prepare_output(target_root)
    report = ConversionReport(dataset=dataset, out=target_root, radius=radius)
    try:
        for folder in samples:
            name = _sample_name(folder, root)
            destination = target_root / name
            try:
                request, region, points = _read_sample(dataset, folder, radius)
            except InstructionError as error:
                report.failed.append((name, _one_line(str(error))))
                _withdraw(destination)
                continue
            try:
                _check_destination(destination, target_root)
            except ConversionError as error:
                report.failed.append((name, str(error)))
                continue
            sidecar = {
                "source": os.path.abspath(folder),
                "dataset": dataset,
                "points": [[_json_number(v) for v in point] for point in points],
                "region": region,
                "note": NOTE,
            }
            report.converted.append(_write_sample(destination, request, sidecar))
    finally:  # also when interrupted or when writing fails: the list then covers the samples looked at
        _write_failed_csv(report)
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
