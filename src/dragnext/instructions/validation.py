"""Validation of a drag request: every way in (CLI, API, UI, benchmark) goes through :func:`validate_request`.

The editor can then assume a request is consistent and spend no code on checks, and a user learns what is
wrong *before* minutes of diffusion, in one line that names the field
(``operations[1].handle: point (700, 20) lies outside the 512x512 image``).

Choices made here (where the design leaves room):

- Sizes in messages are written ``WIDTHxHEIGHT``, as image tools do; arrays are still ``H x W``.
- A point is inside the image when ``0 <= x <= W-1`` and ``0 <= y <= H-1`` (pixel centres). This holds for
  ``center`` too: a rotation about a point off the canvas is possible in principle, but it is almost always
  a mistake in a hand-written file, and the benchmarks never need it.
- ``center`` on a ``translate``/``deform`` operation is allowed (checked, then unused), so a UI can switch
  the type without losing the point.
- Degenerate operations are refused, since they would run minutes of diffusion to change nothing (or
  to make the region vanish): see the thresholds below.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..limits import Limits, check_image_size, input_error, short_repr
from ..planar import rotation_degrees
from ..vocabulary import NEEDS_CENTER, OPERATION_TYPES
from .request import DragRequest, Operation, Point, coerce_point, is_number, to_float

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


def _distance(a: Point, b: Point) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def _check_mask(mask: Any, where: str, image_shape: tuple[int, ...]) -> None:
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype != np.bool_:
        got = f"{mask.dtype} array of shape {mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise input_error(where, f"expected an H x W bool array (see make_operation), got {got}")
    if mask.shape != tuple(image_shape[:2]):
        raise input_error(where, f"mask is {_size_text(mask.shape)} but the image is {_size_text(image_shape)}")
    if not mask.any():
        raise input_error(where, "mask is empty")


def _check_point(point: Any, where: str, image_shape: tuple[int, ...]) -> Point:
    if not isinstance(point, tuple) or len(point) != 2 or not all(is_number(v) for v in point):
        problem = f"expected an (x, y) tuple of two numbers (see make_operation), got {short_repr(point)}"
        raise input_error(where, problem)
    x, y = to_float(point[0]), to_float(point[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise input_error(where, f"coordinates must be finite numbers, got {_format_point((x, y))}")
    height, width = image_shape[:2]
    if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
        raise input_error(where, f"point {_format_point((x, y))} lies outside the {_size_text(image_shape)} image")
    return (x, y)


def point_in_image(value: Any, where: str, image_shape: tuple[int, ...]) -> Point:
    """``[x, y]`` from a user (a list, tuple or array of two numbers) as a float point inside the image, or the
    one-line error validation gives: for clicks and other points that do not come with a request."""
    return _check_point(coerce_point(value, where), where, image_shape)


def _polygon_area(points: Sequence[Point]) -> float:
    """Shoelace area (absolute) in square pixels."""
    twice_area = 0.0
    for (x0, y0), (x1, y1) in zip(points, (*points[1:], points[0]), strict=True):
        twice_area += x0 * y1 - x1 * y0
    return abs(twice_area) / 2.0


def check_polygon(polygon: Sequence[Point], where: str, image_shape: tuple[int, ...]) -> None:
    """Finite points within :data:`POLYGON_MARGIN` image sizes of the canvas, enclosing some area.

    Checked before rasterising: PIL turns a vertex at 1e308 into a one-pixel region without complaint.
    """
    height, width = image_shape[:2]
    x_range = (-POLYGON_MARGIN * width, width - 1 + POLYGON_MARGIN * width)
    y_range = (-POLYGON_MARGIN * height, height - 1 + POLYGON_MARGIN * height)
    for i, (x, y) in enumerate(polygon):
        if not (math.isfinite(x) and math.isfinite(y)):
            raise input_error(f"{where}[{i}]", f"coordinates must be finite numbers, got {_format_point((x, y))}")
        if not (x_range[0] <= x <= x_range[1] and y_range[0] <= y <= y_range[1]):
            raise input_error(
                f"{where}[{i}]",
                f"point {_format_point((x, y))} is too far outside the {_size_text(image_shape)} image "
                "(a polygon may reach at most one image size beyond the border)",
            )
    if _polygon_area(polygon) < MIN_POLYGON_AREA:
        raise input_error(where, "the polygon encloses no area (are its points on one line?); "
                                 "give at least three points around the region")


def _check_motion(operation: Operation, where: str, handle: Point, target: Point, center: Point) -> None:
    """Refuse a rotation or scale too small to change anything, or a scale so large it is surely a slip."""
    if operation.type == "rotate":
        angle = rotation_degrees(handle, target, center)
        if abs(angle) < MIN_ROTATION_DEGREES:
            raise input_error(
                f"{where}.target",
                f"rotates the region by only {abs(angle):.2g} degrees (at least {MIN_ROTATION_DEGREES} needed); "
                "move the target around the center, or use type 'scale' to drag along the line through it",
            )
        return
    factor = _distance(target, center) / _distance(handle, center)
    if abs(factor - 1.0) < MIN_SCALE_CHANGE:
        raise input_error(
            f"{where}.target",
            f"scales the region by {factor:.4g}, within {MIN_SCALE_CHANGE:.0%} of 1 (no visible change); "
            "move the target nearer to or farther from the center than the handle",
        )
    if not 1.0 / MAX_SCALE_FACTOR <= factor <= MAX_SCALE_FACTOR:
        raise input_error(
            f"{where}.target",
            f"scales the region by {factor:.3g}, outside 1/{MAX_SCALE_FACTOR:g} to {MAX_SCALE_FACTOR:g} "
            "(the ratio of the target's to the handle's distance from the center); "
            "place the center farther from the handle, or the target nearer to the handle",
        )


def _check_operation(operation: Any, where: str, image_shape: tuple[int, ...]) -> None:
    if not isinstance(operation, Operation):
        raise input_error(where, f"expected an Operation, got {type(operation).__name__}")
    if not isinstance(operation.type, str) or operation.type not in OPERATION_TYPES:
        raise input_error(f"{where}.type", f"{short_repr(operation.type)} is not one of {', '.join(OPERATION_TYPES)}")
    _check_mask(operation.region, f"{where}.region", image_shape)
    if operation.polygon is not None:
        polygon = operation.polygon
        if not isinstance(polygon, (tuple, list)) or not all(
            isinstance(p, (tuple, list)) and len(p) == 2 and all(is_number(v) for v in p) for p in polygon
        ):
            raise input_error(f"{where}.polygon", f"expected a sequence of (x, y) points, got {short_repr(polygon)}")
        check_polygon([(to_float(x), to_float(y)) for x, y in polygon], f"{where}.polygon", image_shape)
    handle = _check_point(operation.handle, f"{where}.handle", image_shape)
    target = _check_point(operation.target, f"{where}.target", image_shape)
    if _distance(handle, target) < MIN_POINT_DISTANCE:
        raise input_error(f"{where}.target", "equals the handle; nothing to drag")
    if operation.center is None:
        if operation.type in NEEDS_CENTER:
            raise input_error(f"{where}.center", f"required for type {operation.type!r}")
        return
    center = _check_point(operation.center, f"{where}.center", image_shape)
    if operation.type not in NEEDS_CENTER:
        return
    quantity = "angle" if operation.type == "rotate" else "scale"
    if _distance(handle, center) < MIN_POINT_DISTANCE:
        raise input_error(f"{where}.handle", f"lies on the center, so the {quantity} is undefined")
    if _distance(target, center) < MIN_POINT_DISTANCE:
        problem = "the angle is undefined" if operation.type == "rotate" else "the region would shrink to a point"
        raise input_error(f"{where}.target", f"lies on the center, so {problem}")
    _check_motion(operation, where, handle, target, center)


def check_operation_count(count: int, limits: Limits) -> None:
    if count > limits.max_operations:
        raise input_error("operations", f"{count} operations, more than the limit of {limits.max_operations}")


def check_image(image: Any) -> np.ndarray:
    """``image`` if it is a non-empty H x W x 3 uint8 RGB array; else :class:`InstructionError`."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise input_error("image", f"expected an H x W x 3 uint8 RGB array, got {got}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise input_error("image", f"image is empty ({_size_text(image.shape)})")
    return image


def validate_request(request: DragRequest, *, limits: Limits | None = None) -> DragRequest:
    """Check a request completely; raise :class:`InstructionError` (one line, naming the field) if wrong.

    ``limits``, when given, also caps the image size and the number of operations (the UI passes
    :data:`~dragnext.limits.UI_LIMITS`); a Python caller who built the arrays has already paid for them, so
    by default there is no cap. Returns the request, with ``operations`` turned into a tuple if it was
    another sequence, so callers can write ``request = validate_request(request)``.
    """
    if not isinstance(request, DragRequest):
        raise input_error("request", f"expected a DragRequest, got {type(request).__name__}")
    image = check_image(request.image)
    if limits is not None:
        check_image_size(image.shape[1], image.shape[0], "image", limits)
    if not isinstance(request.prompt, str):
        raise input_error("prompt", f"expected a string, got {type(request.prompt).__name__}")
    if request.editable_mask is not None:
        _check_mask(request.editable_mask, "editable_mask", image.shape)
    operations = request.operations
    if isinstance(operations, (str, bytes)) or not isinstance(operations, Sequence):
        raise input_error("operations", f"expected a sequence of operations, got {type(operations).__name__}")
    if len(operations) == 0:
        raise input_error("operations", "at least one operation is required")
    if limits is not None:
        check_operation_count(len(operations), limits)
    for index, operation in enumerate(operations):
        _check_operation(operation, f"operations[{index}]", image.shape)
        if request.editable_mask is not None and not (operation.region & request.editable_mask).any():
            raise input_error(
                f"operations[{index}].region",
                "lies entirely outside the editable mask, so nothing in it may change; "
                "extend the editable mask over the region, or leave the mask out",
            )
    if not isinstance(operations, tuple):
        request = replace(request, operations=tuple(operations))
    return request

