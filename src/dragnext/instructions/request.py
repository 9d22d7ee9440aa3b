"""The drag request's data model: :class:`Operation`, :class:`DragRequest` and how to build them.

Only the form of values is checked here (a type name, two numbers for a point); :mod:`.validation` checks a
request against its image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..limits import InputError, input_error, short_repr
from ..vocabulary import OPERATION_TYPES

Point = tuple[float, float]

# One error type for every refusal, of a file, a limit or a request: limits.py raises it for files and
# sizes, this package for content, and callers catch ``InstructionError`` for both.
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


def is_number(value: Any) -> bool:
    """True for int/float (and numpy scalars), false for bool: ``[true, 3]`` is a typo, not a point."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def to_float(value: Any) -> float:
    """float(), but an integer too large for a float becomes inf (then reported as not finite)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def coerce_point(value: Any, where: str) -> Point:
    """Turn ``[x, y]`` (list, tuple or array of two numbers) into a float tuple, or explain why not."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(is_number(v) for v in value):
        raise input_error(where, f"expected [x, y] with two numbers, got {short_repr(value)}")
    return (to_float(value[0]), to_float(value[1]))


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
        raise input_error("type", f"{short_repr(type)} is not one of {', '.join(OPERATION_TYPES)}")
    mask = np.asarray(region)
    mask = mask if mask.dtype == np.bool_ else mask != 0
    polygon_points = None
    if polygon is not None:
        polygon_points = tuple(coerce_point(p, f"polygon[{i}]") for i, p in enumerate(polygon))
    return Operation(
        type=type,
        region=mask,
        handle=coerce_point(handle, "handle"),
        target=coerce_point(target, "target"),
        center=None if center is None else coerce_point(center, "center"),
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

