"""The drag request: data model, JSON load/save and validation.

A :class:`DragRequest` is the one input of the CLI, the API, the UI and the benchmark, so every way in
goes through :func:`validate_request`: the editor can then assume a request is consistent and spend no
code on checks, and a user learns what is wrong *before* minutes of diffusion, in one line that names the
field (``operations[1].handle: point (700, 20) lies outside the 512x512 image``).

The JSON format (the README, "Editing an image")::

    {
      "image": "image.png",
      "editable_mask": "editable.png",
      "prompt": "",
      "operations": [
        {"type": "translate", "region": "region_0.png", "handle": [20, 30], "target": [40, 30]},
        {"type": "rotate", "region": {"polygon": [[40, 10], [60, 10], [60, 30]]},
         "handle": [50, 20], "target": [60, 30], "center": [50, 30]}
      ]
    }

Choices made here (where the design leaves room):

- Sizes in messages are written ``WIDTHxHEIGHT``, as image tools do; arrays are still ``H x W``.
- A point is inside the image when ``0 <= x <= W-1`` and ``0 <= y <= H-1`` (pixel centres). This holds for
  ``center`` too: a rotation about a point off the canvas is possible in principle, but it is almost always
  a mistake in a hand-written file, and the benchmarks never need it.
- ``center`` on a ``translate``/``deform`` operation is allowed (checked, then unused), so a UI can switch
  the type without losing the point.
- The image is read as stored: EXIF orientation is *not* applied, because the points are given in the
  pixels of the stored image.
- Files are read through :mod:`dragnext.limits`: regular files only, sizes checked before decoding, caps
  from a :class:`~dragnext.limits.Limits` (the CLI's defaults, or the UI's stricter ones).
- Given ``root`` (the UI's upload folder), a path in the JSON must be a plain relative path (no absolute
  path, no ``..``) that stays inside ``root`` after following links; anything else is refused with one
  message, whether or not the file exists, so the refusal says nothing about the server's files.
- Degenerate operations are refused, since they would run minutes of diffusion to change nothing (or
  to make the region vanish): see the thresholds below.
- This module imports only numpy and PIL, so validating a file is instant and needs no model.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .files import write_staged
from .limits import (
    DEFAULT_LIMITS,
    InputError,
    Limits,
    check_image_size,
    input_error,
    quote_path,
    read_image,
    read_limited_bytes,
    short_repr,
)
from .planar import rotation_degrees

OPERATION_TYPES = ("translate", "deform", "rotate", "scale")
NEEDS_CENTER = ("rotate", "scale")

Point = tuple[float, float]

TOP_LEVEL_KEYS = ("image", "editable_mask", "prompt", "operations")
REQUIRED_TOP_LEVEL_KEYS = ("image", "operations")
OPERATION_KEYS = ("type", "region", "handle", "target", "center")
REQUIRED_OPERATION_KEYS = ("type", "region", "handle", "target")

# Two points closer than this (pixels) count as the same point: a drag of a millionth of a pixel is a
# mistake, not an edit, and an angle or scale about a center that close is numerically meaningless.
MIN_POINT_DISTANCE = 1e-6

# Degenerate operations. The editor moves features on the VAE's latent grid, one cell per 8 pixels, so an
# operation that moves no point of a large region by a cell changes nothing but costs a full edit:
# - a rotation below 0.5 degrees moves a point 500 px from the center by 4.4 px, under one cell;
MIN_ROTATION_DEGREES = 0.5
# - a scale within 1% of 1 moves that point by under 5 px;
MIN_SCALE_CHANGE = 0.01
# - a factor beyond 16 (or below 1/16) blows a 32 px region up past a 512 px image, or shrinks a 512 px
#   region to 4 latent cells; such factors come from a center placed a hair from the handle.
MAX_SCALE_FACTOR = 16.0
# A polygon vertex may lie at most one image width (height) beyond the border: enough to outline a region
# cut by the border; farther is a typo or a unit mix-up (1e308 once rasterised to a single pixel).
POLYGON_MARGIN = 1.0
# A polygon must enclose at least one pixel of area; less means collinear or repeated points, and the
# rasteriser would return only the outline.
MIN_POLYGON_AREA = 1.0

# One error type for every refusal, of a file, a limit or a request: limits.py raises it for files and
# sizes, this module for content, and callers catch ``InstructionError`` for both.
InstructionError = InputError


@dataclass(frozen=True, eq=False)
class Operation:
    type: str  # one of OPERATION_TYPES
    region: np.ndarray  # H x W bool, True = the handle region
    handle: Point  # (x, y) pixels
    target: Point  # (x, y) pixels
    center: Point | None = None  # required for rotate and scale
    polygon: tuple[Point, ...] | None = None  # set when the region was given inline as a polygon
    # a deform's field support radius in pixels; None: the editor reads it from the picture (support.py)
    support: float | None = None


@dataclass(frozen=True, eq=False)
class DragRequest:
    image: np.ndarray  # H x W x 3 uint8 RGB
    operations: tuple[Operation, ...]
    editable_mask: np.ndarray | None = None  # H x W bool, True = may change; None = everything may change
    prompt: str = ""
    source: str | None = field(default=None, compare=False)  # the JSON file it came from, for messages
    # every file it was read from, the JSON first (load_instructions), so a caller can refuse to overwrite one
    files: tuple[Path, ...] = field(default=(), compare=False)


# --------------------------------------------------------------------------------------------------------
# Small helpers


def _error(where: str, problem: str) -> InstructionError:
    """Build the error; newlines are flattened because callers print the message as one line."""
    return input_error(where, problem)


def _quote(value: Any) -> str:
    """A short repr of an offending value for a message (a huge list cannot flood the terminal)."""
    return short_repr(value)


def _format_number(value: float) -> str:
    """Write 700.0 as 700 and 12.5 as 12.5, so messages read like the file the user wrote (1e+308 stays short)."""
    if math.isfinite(value) and float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _format_point(point: Sequence[float]) -> str:
    return "(" + ", ".join(_format_number(v) for v in point) + ")"


def _size_text(shape: Sequence[int]) -> str:
    """``WIDTHxHEIGHT`` of an ``H x W (x C)`` shape."""
    return f"{shape[1]}x{shape[0]}"


def _is_number(value: Any) -> bool:
    """True for int/float (and numpy scalars), false for bool: ``[true, 3]`` is a typo, not a point."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _to_float(value: Any) -> float:
    """float(), but an integer too large for a float becomes inf (then reported as not finite)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _coerce_point(value: Any, where: str) -> Point:
    """Turn ``[x, y]`` (list, tuple or array of two numbers) into a float tuple, or explain why not."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_is_number(v) for v in value):
        raise _error(where, f"expected [x, y] with two numbers, got {_quote(value)}")
    return (_to_float(value[0]), _to_float(value[1]))


def _distance(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def polygon_mask(points: Iterable[Sequence[float]], width: int, height: int) -> np.ndarray:
    """Rasterise a polygon into an ``height x width`` bool mask (interior and outline are inside).

    Uses PIL's scan conversion so that the same polygon always gives the same pixels, which is what makes
    an inline polygon round-trip through the JSON file.
    """
    canvas = Image.new("L", (int(width), int(height)), 0)
    ImageDraw.Draw(canvas).polygon([(float(x), float(y)) for x, y in points], fill=1, outline=1)
    return np.asarray(canvas) > 0


def make_operation(
    type: str,
    region: Any,
    handle: Sequence[float],
    target: Sequence[float],
    center: Sequence[float] | None = None,
    *,
    polygon: Iterable[Sequence[float]] | None = None,
) -> Operation:
    """Build an :class:`Operation` from loose Python values.

    ``region`` may be any array-like (bool, 0/1, 0/255: nonzero is inside); points may be lists, tuples or
    arrays and become float tuples. ``polygon``, when given, is kept so that saving writes it inline.
    Only the form of the values is checked here; :func:`validate_request` checks them against the image.
    """
    if not isinstance(type, str) or type not in OPERATION_TYPES:
        raise _error("type", f"{_quote(type)} is not one of {', '.join(OPERATION_TYPES)}")
    mask = np.asarray(region)
    mask = mask if mask.dtype == np.bool_ else mask != 0
    polygon_points = None
    if polygon is not None:
        polygon_points = tuple(_coerce_point(p, f"polygon[{i}]") for i, p in enumerate(polygon))
    return Operation(
        type=type,
        region=mask,
        handle=_coerce_point(handle, "handle"),
        target=_coerce_point(target, "target"),
        center=None if center is None else _coerce_point(center, "center"),
        polygon=polygon_points,
    )


def requests_equal(a: DragRequest, b: DragRequest) -> bool:
    """Content equality (pixels, masks, points, types, prompt); the dataclasses compare by identity."""

    def same_array(x: np.ndarray | None, y: np.ndarray | None) -> bool:
        if x is None or y is None:
            return x is None and y is None
        return x.shape == y.shape and bool(np.array_equal(x, y))

    if not (same_array(a.image, b.image) and same_array(a.editable_mask, b.editable_mask)):
        return False
    if a.prompt != b.prompt or len(a.operations) != len(b.operations):
        return False
    return all(
        p.type == q.type
        and same_array(p.region, q.region)
        and p.handle == q.handle
        and p.target == q.target
        and p.center == q.center
        for p, q in zip(a.operations, b.operations, strict=True)
    )


# --------------------------------------------------------------------------------------------------------
# Validation


def _check_mask(mask: Any, where: str, image_shape: tuple[int, ...]) -> None:
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype != np.bool_:
        got = f"{mask.dtype} array of shape {mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise _error(where, f"expected an H x W bool array (see make_operation), got {got}")
    if mask.shape != tuple(image_shape[:2]):
        raise _error(where, f"mask is {_size_text(mask.shape)} but the image is {_size_text(image_shape)}")
    if not mask.any():
        raise _error(where, "mask is empty")


def _check_point(point: Any, where: str, image_shape: tuple[int, ...]) -> Point:
    if not isinstance(point, tuple) or len(point) != 2 or not all(_is_number(v) for v in point):
        raise _error(where, f"expected an (x, y) tuple of two numbers (see make_operation), got {_quote(point)}")
    x, y = _to_float(point[0]), _to_float(point[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise _error(where, f"coordinates must be finite numbers, got {_format_point((x, y))}")
    height, width = image_shape[:2]
    if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
        raise _error(where, f"point {_format_point((x, y))} lies outside the {_size_text(image_shape)} image")
    return (x, y)


def point_in_image(value: Any, where: str, image_shape: tuple[int, ...]) -> Point:
    """``[x, y]`` from a user (a list, tuple or array of two numbers) as a float point inside the image, or the
    one-line error validation gives: for clicks and other points that do not come with a request."""
    return _check_point(_coerce_point(value, where), where, image_shape)


def _polygon_area(points: Sequence[Point]) -> float:
    """Shoelace area (absolute) in square pixels."""
    twice_area = 0.0
    for (x0, y0), (x1, y1) in zip(points, (*points[1:], points[0]), strict=True):
        twice_area += x0 * y1 - x1 * y0
    return abs(twice_area) / 2.0


def _check_polygon(polygon: Sequence[Point], where: str, image_shape: tuple[int, ...]) -> None:
    """Finite points within :data:`POLYGON_MARGIN` image sizes of the canvas, enclosing some area.

    Checked before rasterising: PIL turns a vertex at 1e308 into a one-pixel region without complaint.
    """
    height, width = image_shape[:2]
    x_range = (-POLYGON_MARGIN * width, width - 1 + POLYGON_MARGIN * width)
    y_range = (-POLYGON_MARGIN * height, height - 1 + POLYGON_MARGIN * height)
    for i, (x, y) in enumerate(polygon):
        if not (math.isfinite(x) and math.isfinite(y)):
            raise _error(f"{where}[{i}]", f"coordinates must be finite numbers, got {_format_point((x, y))}")
        if not (x_range[0] <= x <= x_range[1] and y_range[0] <= y <= y_range[1]):
            raise _error(
                f"{where}[{i}]",
                f"point {_format_point((x, y))} is too far outside the {_size_text(image_shape)} image "
                "(a polygon may reach at most one image size beyond the border)",
            )
    if _polygon_area(polygon) < MIN_POLYGON_AREA:
        raise _error(where, "the polygon encloses no area (are its points on one line?); "
                            "give at least three points around the region")


def _check_motion(operation: Operation, where: str, handle: Point, target: Point, center: Point) -> None:
    """Refuse a rotation or scale too small to change anything, or a scale so large it is surely a slip."""
    if operation.type == "rotate":
        angle = rotation_degrees(handle, target, center)
        if abs(angle) < MIN_ROTATION_DEGREES:
            raise _error(
                f"{where}.target",
                f"rotates the region by only {abs(angle):.2g} degrees (at least {MIN_ROTATION_DEGREES} needed); "
                "move the target around the center, or use type 'scale' to drag along the line through it",
            )
        return
    factor = _distance(target, center) / _distance(handle, center)
    if abs(factor - 1.0) < MIN_SCALE_CHANGE:
        raise _error(
            f"{where}.target",
            f"scales the region by {factor:.4g}, within {MIN_SCALE_CHANGE:.0%} of 1 (no visible change); "
            "move the target nearer to or farther from the center than the handle",
        )
    if not 1.0 / MAX_SCALE_FACTOR <= factor <= MAX_SCALE_FACTOR:
        raise _error(
            f"{where}.target",
            f"scales the region by {factor:.3g}, outside 1/{MAX_SCALE_FACTOR:g} to {MAX_SCALE_FACTOR:g} "
            "(the ratio of the target's to the handle's distance from the center); "
            "place the center farther from the handle, or the target nearer to the handle",
        )


def _check_operation(operation: Any, where: str, image_shape: tuple[int, ...]) -> None:
    if not isinstance(operation, Operation):
        raise _error(where, f"expected an Operation, got {type(operation).__name__}")
    if not isinstance(operation.type, str) or operation.type not in OPERATION_TYPES:
        raise _error(f"{where}.type", f"{_quote(operation.type)} is not one of {', '.join(OPERATION_TYPES)}")
    _check_mask(operation.region, f"{where}.region", image_shape)
    if operation.polygon is not None:
        polygon = operation.polygon
        if not isinstance(polygon, (tuple, list)) or not all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(_is_number(v) for v in p) for p in polygon
        ):
            raise _error(f"{where}.polygon", f"expected a sequence of (x, y) points, got {_quote(polygon)}")
        _check_polygon([(_to_float(x), _to_float(y)) for x, y in polygon], f"{where}.polygon", image_shape)
    handle = _check_point(operation.handle, f"{where}.handle", image_shape)
    target = _check_point(operation.target, f"{where}.target", image_shape)
    if _distance(handle, target) < MIN_POINT_DISTANCE:
        raise _error(f"{where}.target", "equals the handle; nothing to drag")
    if operation.center is None:
        if operation.type in NEEDS_CENTER:
            raise _error(f"{where}.center", f"required for type {operation.type!r}")
        return
    center = _check_point(operation.center, f"{where}.center", image_shape)
    if operation.type not in NEEDS_CENTER:
        return
    quantity = "angle" if operation.type == "rotate" else "scale"
    if _distance(handle, center) < MIN_POINT_DISTANCE:
        raise _error(f"{where}.handle", f"lies on the center, so the {quantity} is undefined")
    if _distance(target, center) < MIN_POINT_DISTANCE:
        problem = "the angle is undefined" if operation.type == "rotate" else "the region would shrink to a point"
        raise _error(f"{where}.target", f"lies on the center, so {problem}")
    _check_motion(operation, where, handle, target, center)


def _check_operation_count(count: int, limits: Limits) -> None:
    if count > limits.max_operations:
        raise _error("operations", f"{count} operations, more than the limit of {limits.max_operations}")


def check_image(image: Any) -> np.ndarray:
    """``image`` if it is a non-empty H x W x 3 uint8 RGB array; else :class:`InstructionError`."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise _error("image", f"expected an H x W x 3 uint8 RGB array, got {got}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise _error("image", f"image is empty ({_size_text(image.shape)})")
    return image


def validate_request(request: DragRequest, *, limits: Limits | None = None) -> DragRequest:
    """Check a request completely; raise :class:`InstructionError` (one line, naming the field) if wrong.

    ``limits``, when given, also caps the image size and the number of operations (the UI passes
    :data:`~dragnext.limits.UI_LIMITS`); a Python caller who built the arrays has already paid for them, so
    by default there is no cap. Returns the request, with ``operations`` turned into a tuple if it was
    another sequence, so callers can write ``request = validate_request(request)``.
    """
    if not isinstance(request, DragRequest):
        raise _error("request", f"expected a DragRequest, got {type(request).__name__}")
    image = check_image(request.image)
    if limits is not None:
        check_image_size(image.shape[1], image.shape[0], "image", limits)
    if not isinstance(request.prompt, str):
        raise _error("prompt", f"expected a string, got {type(request.prompt).__name__}")
    if request.editable_mask is not None:
        _check_mask(request.editable_mask, "editable_mask", image.shape)
    operations = request.operations
    if isinstance(operations, (str, bytes)) or not isinstance(operations, Sequence):
        raise _error("operations", f"expected a sequence of operations, got {type(operations).__name__}")
    if len(operations) == 0:
        raise _error("operations", "at least one operation is required")
    if limits is not None:
        _check_operation_count(len(operations), limits)
    for index, operation in enumerate(operations):
        _check_operation(operation, f"operations[{index}]", image.shape)
        if request.editable_mask is not None and not (operation.region & request.editable_mask).any():
            raise _error(
                f"operations[{index}].region",
                "lies entirely outside the editable mask, so nothing in it may change; "
                "extend the editable mask over the region, or leave the mask out",
            )
    if not isinstance(operations, tuple):
        request = replace(request, operations=tuple(operations))
    return request


# --------------------------------------------------------------------------------------------------------
# Loading


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a key given twice silently keeps the last value, which hides typos."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _error("", f"duplicate key {_quote(key)} in the JSON")
        result[key] = value
    return result


def _check_keys(obj: dict[str, Any], where: str, allowed: Sequence[str], required: Sequence[str]) -> None:
    unknown = [key for key in obj if key not in allowed]
    if unknown:
        names = ", ".join(_quote(k) for k in unknown[:3])  # a few, so a file of a million keys cannot flood
        if len(unknown) > 3:
            names += f" and {len(unknown) - 3} more"
        plural = "keys" if len(unknown) > 1 else "key"
        raise _error(where or "instructions", f"unknown {plural} {names}; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in obj:
            prefix = f"{where}." if where else ""
            raise _error(f"{prefix}{key}", "required key is missing")


def _resolve(value: Any, where: str, base: Path, root: Path | None) -> Path:
    """The path a JSON value names, relative to the JSON's folder; with ``root``, only inside ``root``.

    Outside ``root`` the message is the same whether or not the file exists, and nothing outside is even
    looked at: the lexical checks come first, and ``realpath`` then only follows links inside the upload.
    """
    if not isinstance(value, str) or not value.strip():
        raise _error(where, f"expected a file path (string), got {_quote(value)}")
    if "\x00" in value:
        raise _error(where, f"{quote_path(value)} is not a valid file path")
    path = base / value
    if root is None:
        return path
    outside = _error(where, f"{quote_path(value)} is outside the uploaded files")
    if os.path.isabs(value) or ".." in Path(value).parts:
        raise outside
    try:
        inside = Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))
    except (OSError, ValueError):  # text the file system cannot encode
        raise outside from None
    if not inside:
        raise outside
    return path


def _read_picture(value: Any, where: str, base: Path, root: Path | None, mode: str, limits: Limits) -> np.ndarray:
    """Read an image file named in the JSON as a uint8 array in ``mode``; errors name the field."""
    path = _resolve(value, where, base, root)
    return read_image(path, where, mode, limits, name=value)


def _load_mask(value: Any, where: str, base: Path, root: Path | None, limits: Limits) -> np.ndarray:
    return _read_picture(value, where, base, root, "L", limits) > 127


def _load_polygon(
    region: dict[str, Any], where: str, image_shape: tuple[int, ...], limits: Limits
) -> tuple[Point, ...]:
    _check_keys(region, where, ("polygon",), ("polygon",))
    points = region["polygon"]
    if not isinstance(points, list) or len(points) < 3:
        raise _error(f"{where}.polygon", f"expected a list of at least 3 [x, y] points, got {_quote(points)}")
    if len(points) > limits.max_polygon_points:
        raise _error(f"{where}.polygon",
                     f"{len(points)} points, more than the limit of {limits.max_polygon_points}")
    polygon = tuple(_coerce_point(p, f"{where}.polygon[{i}]") for i, p in enumerate(points))
    _check_polygon(polygon, f"{where}.polygon", image_shape)
    return polygon


def _load_operation(
    raw: Any, where: str, base: Path, root: Path | None, image_shape: tuple[int, ...], limits: Limits
) -> Operation:
    if not isinstance(raw, dict):
        raise _error(where, f"expected an object, got {_quote(raw)}")
    _check_keys(raw, where, OPERATION_KEYS, REQUIRED_OPERATION_KEYS)
    op_type = raw["type"]
    if not isinstance(op_type, str) or op_type not in OPERATION_TYPES:
        raise _error(f"{where}.type", f"{_quote(op_type)} is not one of {', '.join(OPERATION_TYPES)}")
    # The points first: they cost nothing, and a typo there should not wait for a mask to decode.
    handle = _coerce_point(raw["handle"], f"{where}.handle")
    target = _coerce_point(raw["target"], f"{where}.target")
    center = None if raw.get("center") is None else _coerce_point(raw["center"], f"{where}.center")
    region_value = raw["region"]
    polygon = None
    if isinstance(region_value, dict):
        polygon = _load_polygon(region_value, f"{where}.region", image_shape, limits)
        region = polygon_mask(polygon, image_shape[1], image_shape[0])
    elif isinstance(region_value, str):
        region = _load_mask(region_value, f"{where}.region", base, root, limits)
    else:
        raise _error(
            f"{where}.region", f'expected a mask file path or {{"polygon": [[x, y], ...]}}, got {_quote(region_value)}'
        )
    return Operation(type=op_type, region=region, handle=handle, target=target, center=center, polygon=polygon)


def _parse_json(data: bytes, path: Path) -> Any:
    """The JSON value in ``data``; every way it can fail becomes one line naming the file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _error("", f"'{path}' is not valid JSON: it is not UTF-8 text") from None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise _error("", f"'{path}' is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise _error("", f"'{path}' is not valid JSON: nested too deeply") from None
    except InstructionError:
        raise
    except ValueError:  # an integer literal over Python's 4300-digit conversion limit
        raise _error("", f"'{path}' is not valid JSON: a number has too many digits") from None


def load_instructions(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None, limits: Limits = DEFAULT_LIMITS
) -> DragRequest:
    """Read an instruction file (see module docstring) and return a validated :class:`DragRequest`.

    ``root``: when given (a server's upload folder), every file the JSON names must lie inside it; without
    it (the CLI), any path the user typed works. ``limits`` caps the file's size, the number of operations
    and polygon points, and every image's size (read from its header before decoding).

    Every problem, from a missing file to a point off the image, is an :class:`InstructionError` whose
    one-line message names the field, never a traceback from json or PIL.
    """
    path = Path(path)
    data = read_limited_bytes(path, "instructions", limits.max_json_bytes, name=str(path))
    raw = _parse_json(data, path)
    if not isinstance(raw, dict):
        raise _error("", f"'{path}' must contain a JSON object at the top level, got {type(raw).__name__}")

    # 1. Everything that costs nothing to check, before any image is decoded.
    _check_keys(raw, "", TOP_LEVEL_KEYS, REQUIRED_TOP_LEVEL_KEYS)
    prompt = raw.get("prompt")
    if prompt is None:
        prompt = ""
    elif not isinstance(prompt, str):
        raise _error("prompt", f"expected a string, got {_quote(prompt)}")
    raw_operations = raw["operations"]
    if not isinstance(raw_operations, list):
        raise _error("operations", f"expected a list of operations, got {_quote(raw_operations)}")
    _check_operation_count(len(raw_operations), limits)

    # 2. The images, each checked against the limits from its header first.
    base = path.parent
    root_path = None if root is None else Path(root)
    image = _read_picture(raw["image"], "image", base, root_path, "RGB", limits)
    editable_mask = None
    if raw.get("editable_mask") is not None:
        editable_mask = _load_mask(raw["editable_mask"], "editable_mask", base, root_path, limits)
    operations = tuple(
        _load_operation(op, f"operations[{i}]", base, root_path, image.shape, limits)
        for i, op in enumerate(raw_operations)
    )
    named = [raw["image"], raw.get("editable_mask"), *(op["region"] for op in raw_operations)]
    files = (path, *(_resolve(name, "", base, root_path) for name in named if isinstance(name, str)))
    request = DragRequest(
        image=image, operations=operations, editable_mask=editable_mask, prompt=prompt, source=str(path),
        files=files,
    )
    return validate_request(request)


# --------------------------------------------------------------------------------------------------------
# Saving


def _json_number(value: float) -> int | float:
    """20.0 is written as 20 so hand-read files stay tidy; loading turns it back into 20.0."""
    return int(value) if float(value).is_integer() else float(value)


def _json_point(point: Point) -> list[int | float]:
    return [_json_number(point[0]), _json_number(point[1])]


def _polygon_reproduces_region(operation: Operation) -> bool:
    """Only write a polygon inline if loading it back gives exactly the same mask."""
    if operation.polygon is None:
        return False
    height, width = operation.region.shape
    return bool(np.array_equal(polygon_mask(operation.polygon, width, height), operation.region))


def request_to_dict(
    request: DragRequest,
    region_paths: Sequence[str | None],
    image_path: str = "image.png",
    editable_mask_path: str | None = "editable.png",
) -> dict[str, Any]:
    """The JSON object for ``request``, given the (relative) file names its arrays are stored under.

    ``region_paths[i]`` is the file for operation ``i``, or ``None`` to write its polygon inline.
    ``editable_mask_path`` is used only when the request has an editable mask.
    """
    if len(region_paths) != len(request.operations):
        raise ValueError(f"{len(region_paths)} region paths for {len(request.operations)} operations")
    operations = []
    for operation, region_path in zip(request.operations, region_paths, strict=True):
        if region_path is None:
            if operation.polygon is None:
                raise ValueError("region path None is only allowed for an operation with a polygon")
            region: Any = {"polygon": [_json_point(p) for p in operation.polygon]}
        else:
            region = region_path
        entry: dict[str, Any] = {
            "type": operation.type,
            "region": region,
            "handle": _json_point(operation.handle),
            "target": _json_point(operation.target),
        }
        if operation.center is not None:
            entry["center"] = _json_point(operation.center)
        operations.append(entry)
    result: dict[str, Any] = {"image": image_path}
    if request.editable_mask is not None:
        if editable_mask_path is None:
            raise ValueError("the request has an editable mask but no path was given for it")
        result["editable_mask"] = editable_mask_path
    result["prompt"] = request.prompt
    result["operations"] = operations
    return result


def _mask_image(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8) * np.uint8(255))


def save_instructions(request: DragRequest, path: str | os.PathLike[str]) -> Path:
    """Write ``request`` as a JSON file plus PNGs beside it; return the JSON path.

    Files: ``image.png``, ``editable.png`` (if there is a mask), ``region_<i>.png`` per operation, or the
    polygon inline when :attr:`Operation.polygon` reproduces the region exactly (otherwise the mask is
    written, so nothing is lost). A folder holds one request: the PNG names are fixed. If ``path`` is an
    existing folder, the JSON is ``instructions.json`` inside it.

    Everything is first written to temporary files in the same folder and only then renamed into place
    (``os.replace``, atomic per file), JSON last; a failure while writing leaves the old files untouched and
    no partial files behind.
    """
    request = validate_request(request)
    json_path = Path(path)
    if json_path.is_dir():
        json_path = json_path / "instructions.json"
    folder = json_path.parent
    folder.mkdir(parents=True, exist_ok=True)

    files: list[tuple[str, Any]] = [("image.png", Image.fromarray(np.ascontiguousarray(request.image)))]
    if request.editable_mask is not None:
        files.append(("editable.png", _mask_image(request.editable_mask)))
    region_paths: list[str | None] = []
    for index, operation in enumerate(request.operations):
        if _polygon_reproduces_region(operation):
            region_paths.append(None)
        else:
            name = f"region_{index}.png"
            files.append((name, _mask_image(operation.region)))
            region_paths.append(name)
    if json_path.name in {name for name, _ in files}:
        raise ValueError(f"the JSON file cannot be named {json_path.name!r}: that name is used for an image")
    document = request_to_dict(request, region_paths)
    json_text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    written: list[tuple[Path, Path]] = []
    try:
        for name, picture in files:
            temp = write_staged(folder, name, lambda stream, picture=picture: picture.save(stream, format="PNG"))
            written.append((temp, folder / name))
        temp = write_staged(folder, json_path.name, lambda stream: stream.write(json_text.encode("utf-8")))
        written.append((temp, json_path))
    except BaseException:
        for temp, _ in written:
            temp.unlink(missing_ok=True)
        raise
    try:
        for temp, final in written:
            os.replace(temp, final)
    finally:
        for temp, _ in written:
            temp.unlink(missing_ok=True)  # only left if a rename failed
    return json_path
