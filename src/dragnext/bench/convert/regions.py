"""Points into operations: each (handle, target) pair becomes a ``translate`` of a disc around the handle.

The disc holds the pixels whose centre lies within the radius of the handle, intersected with the editable
mask when the sample has one; its radius is :func:`default_radius` unless one is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...instructions import DragRequest, make_operation, validate_request
from ...limits import DEFAULT_LIMITS
from .common import ConversionError, describe, format_point, is_number, json_number

MIN_DEFAULT_RADIUS = 8
DEFAULT_RADIUS_FRACTION = 0.04
DEFAULT_RADIUS_RULE = "max(8, round(0.04 * min(H, W)))"
# A larger disc than the diagonal of the largest image read (8192 px a side) changes nothing.
MAX_RADIUS = 2 * DEFAULT_LIMITS.max_side


def default_radius(height: int, width: int) -> int:
    """The default disc radius in pixels: ``max(8, round(0.04 * min(H, W)))`` (20 on a 512-px-wide image)."""
    return max(MIN_DEFAULT_RADIUS, round(DEFAULT_RADIUS_FRACTION * min(height, width)))


def check_radius(radius: Any) -> float | None:
    """A given radius as a float (None stays None, for the default rule); anything below 1 px or above
    :data:`MAX_RADIUS` (a disc that covers any image read, whose square would overflow at 1e308) is refused."""
    if radius is None:
        return None
    try:
        usable = is_number(radius) and math.isfinite(radius) and 1 <= radius <= MAX_RADIUS
    except OverflowError:  # an integer too large for a float
        usable = False
    if not usable:
        raise ConversionError(f"radius: must be a number of pixels in [1, {MAX_RADIUS}], got {describe(radius)}")
    return float(radius)


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
        if not isinstance(point, (list, tuple)) or len(point) != 2 or not all(is_number(v) for v in point):
            raise ConversionError(f"{where}: expected [x, y] with two numbers, got {describe(point)}")
        try:
            x, y = float(point[0]), float(point[1])
        except OverflowError:  # an integer beyond the float range (a 400-digit one, say)
            raise ConversionError(f"{where}: coordinates must be finite numbers, got {describe(point)}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ConversionError(f"{where}: coordinates must be finite numbers, got {format_point((x, y))}")
        if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
            raise ConversionError(f"{where}: point {format_point((x, y))} lies outside the {width}x{height} image")
        checked.append((x, y))
    pairs = list(zip(checked[0::2], checked[1::2], strict=True))
    for index, (handle, target) in enumerate(pairs):
        if math.hypot(handle[0] - target[0], handle[1] - target[1]) < 1e-6:
            raise ConversionError(
                f"points[{2 * index + 1}] (target of pair {index}): equals the handle {format_point(handle)}; "
                "nothing to drag"
            )
    return pairs


def build_request(
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
                    f"points[{2 * index}] (handle of pair {index}): the {json_number(used_radius)} px disc around "
                    f"{format_point(handle)} lies entirely outside the editable mask, so nothing in it may change"
                )
        clipped.append(editable is not None)
        operations.append(make_operation("translate", region, handle, target))
    request = validate_request(
        DragRequest(image=image, operations=tuple(operations), editable_mask=editable, prompt=prompt)
    )
    record = {
        "kind": "disc",
        "radius": json_number(used_radius),
        "radius_from": f"default {DEFAULT_RADIUS_RULE}" if radius is None else "given",
        "intersected_with_editable": clipped,
    }
    return request, record
