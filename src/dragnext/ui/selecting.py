"""A handle region from clicks on the page: the "Click to select" and "Click to unselect" tools.

A click takes the area of like colour connected to it (:func:`dragnext.selection.select_region`, no model); an
unclick takes away the area a click there would take, so that an unclick where a click was undoes it. The page
keeps, for the operation being built, the clicks and unclicks so far (:class:`Selection`) and recomputes the
selection from all of them at each click, so that another tolerance can be tried on the same clicks.

The region editor's layer stays what "Add operation" reads: each click puts the selection there, and the brush
may paint over it or erase part of it afterwards. So that a later click does not undo those strokes, the
selection last put on the layer is remembered and the layer is compared with it at the next click:

- pixels on the layer outside that selection were painted by hand: they are kept (an unclick takes away those
  in the area of like colour under it, as it does the selected ones);
- pixels of that selection missing from the layer were erased by hand: they stay erased.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..instructions import InstructionError
from ..selection import DEFAULT_TOLERANCE, select_region
from .coordinates import Point
from .uploads import UIError

MAX_TOLERANCE = 50.0  # Delta E; at 25 a fill already leaks into a background of similar colour (docs/ui.md)
SELECT, UNSELECT = "select", "unselect"


def check_tolerance(value: Any) -> float:
    """The tolerance from the page's slider, or the message naming what is wrong."""
    try:
        tolerance = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UIError(f"Tolerance: {value!r} is not a number.") from None
    if not (math.isfinite(tolerance) and 0 <= tolerance <= MAX_TOLERANCE):
        raise UIError(f"Tolerance: must be a number from 0 to {MAX_TOLERANCE:g}, got {tolerance:g}.")
    return tolerance


@dataclass
class Selection:
    """The clicks and unclicks of the region being built, and the selection they made last."""

    clicks: list[Point] = field(default_factory=list)  # (x, y) image pixels
    unclicks: list[Point] = field(default_factory=list)
    selected: np.ndarray | None = None  # H x W bool: what the clicks selected, as last put on the layer
    erased: np.ndarray | None = None  # H x W bool: selected pixels the brush took away since

    def clear(self) -> None:
        self.clicks, self.unclicks, self.selected, self.erased = [], [], None, None

    def apply(self, image: np.ndarray, layer: np.ndarray | None, point: Point | None = None, mode: str = SELECT,
              tolerance: float = DEFAULT_TOLERANCE) -> np.ndarray | None:
        """The region after a click at ``point`` (``mode`` :data:`SELECT` or :data:`UNSELECT`) on ``image``,
        given the region now on the layer (``None``: nothing painted). ``point`` None: recompute the clicks so
        far (after a change of tolerance). Returns ``None`` when the region is empty."""
        if mode not in (SELECT, UNSELECT):
            raise UIError(f"Unknown selection mode {mode!r}.")
        shape = image.shape[:2]
        current = np.zeros(shape, bool) if layer is None else np.asarray(layer, bool)
        before = np.zeros(shape, bool) if self.selected is None or self.selected.shape != shape else self.selected
        if current.shape != shape:
            raise UIError("The painted region does not match the image; clear it and paint again.")
        painted = current & ~before
        erased = before & ~current
        if self.erased is not None and self.erased.shape == shape:
            erased |= self.erased & ~current
        if point is not None:
            (self.clicks if mode == SELECT else self.unclicks).append(point)
            if mode == UNSELECT:
                painted &= ~_area(image, [point], tolerance)
        selected = _selected(image, self.clicks, self.unclicks, tolerance)
        self.selected, self.erased = selected, erased
        region = (selected & ~erased) | painted
        return region if region.any() else None

    def summary(self) -> str:
        parts = [f"{len(self.clicks)} click{'s' if len(self.clicks) != 1 else ''}"]
        if self.unclicks:
            parts.append(f"{len(self.unclicks)} unclick{'s' if len(self.unclicks) != 1 else ''}")
        return ", ".join(parts)


def _selected(image: np.ndarray, clicks: list[Point], unclicks: list[Point], tolerance: float) -> np.ndarray:
    """What the clicks select less what the unclicks would select: an unclick where a click was undoes it."""
    if not clicks:
        return np.zeros(image.shape[:2], bool)
    selected = _area(image, clicks, tolerance)
    for point in unclicks:
        selected &= ~_area(image, [point], tolerance)
    return selected


def _area(image: np.ndarray, points: list[Point], tolerance: float) -> np.ndarray:
    """The area that clicks at ``points`` select (:func:`dragnext.selection.select_region`)."""
    try:
        return select_region(image, points, tolerance=tolerance)
    except InstructionError as error:
        raise UIError(str(error)) from None
