"""The web UI's logic, without Gradio: clicks and painted strokes in, a validated :class:`DragRequest` out.

Everything the page does that is not layout lives here and beside it, as plain code with unit tests
(``tests/test_ui_logic.py``, ``test_ui_uploads.py``, ``test_ui_resources.py``): ``coordinates.py`` (the
display size, clicks and painted strokes mapped to image pixels), ``drawing.py`` (the pictures drawn over the
image), ``settings.py`` (the page's settings to an :class:`EditConfig`), ``uploads.py`` (files a browser
sends, the download format), ``selecting.py`` (a region from clicks) and ``workspace.py`` (the server's files per
tab); ``handlers.py`` and ``app.py`` only wire these functions to Gradio components.

Choices:

- A region may also be selected by clicks (:mod:`dragnext.ui.selecting`): the clicks and unclicks belong to
  the operation being built and are forgotten when it is added, as the points are.
- Clicks fill the points in the order handle, target, then center for ``rotate`` and ``scale``; a click
  after the last needed point starts over with a new handle. Changing the type keeps the clicks, so a
  third click can still add a center after switching from translate to rotate.
- Limits (:mod:`dragnext.ui.uploads` for files, :mod:`dragnext.ui.settings` for the settings): at most
  :data:`MAX_OPERATIONS` operations and a prompt of at most :data:`MAX_PROMPT_CHARS` characters (the reasons
  are at the constants).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..instructions import (
    NEEDS_CENTER,
    OPERATION_TYPES,
    DragRequest,
    InstructionError,
    Operation,
    make_operation,
    validate_request,
)
from ..limits import UI_LIMITS
from .coordinates import Point, display_to_image_point
from .drawing import overlay, points_view
from .selecting import SELECT, Selection, check_tolerance
from .uploads import UIError, check_image_size

MAX_OPERATIONS = UI_LIMITS.max_operations  # each keeps a full-size mask in the server's memory
MAX_PROMPT_CHARS = 1000  # CLIP reads 77 tokens; a longer prompt only costs memory


def point_names(op_type: str) -> tuple[str, ...]:
    """The points an operation of this type needs, in click order."""
    if op_type not in OPERATION_TYPES:
        raise UIError(f"Choose the operation type: one of {', '.join(OPERATION_TYPES)}.")
    return ("handle", "target", "center") if op_type in NEEDS_CENTER else ("handle", "target")


def _format_point(point: Point | None) -> str:
    if point is None:
        return ""
    return "(" + ", ".join(str(int(v)) if float(v).is_integer() else f"{v:.1f}" for v in point) + ")"


# --------------------------------------------------------------------------------------------------------
# The session: one browser tab's image, operations and pending clicks


def _strip_operation_prefix(message: str) -> str:
    """``operations[0].handle: ...`` -> ``handle: ...`` for the one operation being added."""
    return message.removeprefix("operations[0].").removeprefix("operations[0]: ")


@dataclass(frozen=True)
class Round:
    """One finished edit of a multi-round session: what was edited and what came out."""

    request: DragRequest  # the round's input image, operations, editable mask and prompt
    result: np.ndarray  # H x W x 3 uint8, the next round's input if the user continues


@dataclass
class Session:
    image: np.ndarray | None = None  # H x W x 3 uint8
    operations: list[Operation] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)  # pending clicks: handle, target, center
    editable_mask: np.ndarray | None = None  # restored from an instruction file (the page shows it as strokes)
    prompt: str = ""
    name: str = ""  # where the image came from, for messages
    folder: Path | None = None  # the tab's folder on the server (workspace.SessionFolders), once one was needed
    rounds: list[Round] = field(default_factory=list)  # the earlier rounds whose results led to this image
    last_edit: Round | None = None  # the latest edit of this image, which "continue" makes a round
    selection: Selection = field(default_factory=Selection)  # clicks selecting the region being built

    # --- image

    def load_image(self, image: np.ndarray, name: str = "") -> None:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise UIError("The image must be RGB.")
        check_image_size(image.shape[1], image.shape[0])
        self.image = np.ascontiguousarray(image)
        self.operations = []
        self.points = []
        self.editable_mask = None
        self.prompt = ""
        self.name = name
        self.rounds, self.last_edit = [], None  # another picture: its own history
        self.selection.clear()

    def require_image(self) -> np.ndarray:
        if self.image is None:
            raise UIError("Load an image first: upload one or pick an example scene.")
        return self.image

    @property
    def shape(self) -> tuple[int, ...]:
        return self.require_image().shape

    # --- points

    def next_point(self, op_type: str) -> str | None:
        """The name of the point the next click sets, or None when all are set (the next click restarts)."""
        names = point_names(op_type)
        return names[len(self.points)] if len(self.points) < len(names) else None

    def click(self, display_index: Sequence[float] | None, op_type: str) -> str:
        """Record a click on the displayed image; return what happened and what to do next."""
        image = self.require_image()
        names = point_names(op_type)
        point = display_to_image_point(display_index, image.shape)
        if len(self.points) >= len(names):
            self.points = []
        self.points.append(point)
        name = names[len(self.points) - 1]
        following = self.next_point(op_type)
        if following is None:
            return f"{name.capitalize()} set at {_format_point(point)}. All points set: press Add operation."
        return f"{name.capitalize()} set at {_format_point(point)}. Next: click the {following}."

    def clear_points(self) -> None:
        self.points = []

    def pending(self, op_type: str) -> dict[str, Point]:
        """The pending clicks by name (a center clicked before switching to translate is kept, not drawn)."""
        return dict(zip(("handle", "target", "center"), self.points, strict=False))

    def hint(self, op_type: str) -> str:
        following = self.next_point(op_type)
        if self.image is None:
            return "Upload an image or pick an example scene."
        if following is None:
            return "All points set: press Add operation (a click starts over)."
        count = ("first", "second", "third")[len(self.points)]
        return f"Next click ({count}) sets the {following} of the {op_type} operation."

    # --- the region from clicks

    def select(self, display_index: Sequence[float] | None, mode: str, region: np.ndarray | None,
               tolerance: Any) -> tuple[np.ndarray | None, str]:
        """A click of the select (or unselect) tool at display pixel ``display_index``, with ``region`` the mask
        now painted; returns the new region (None: empty) and what happened."""
        image = self.require_image()
        point = display_to_image_point(display_index, image.shape)
        mask = self.selection.apply(image, region, point, mode, check_tolerance(tolerance))
        verb = "Selected" if mode == SELECT else "Unselected"
        return mask, f"{verb} at {_format_point(point)}: {self._region_note(mask)}"

    def reselect(self, region: np.ndarray | None, tolerance: Any) -> tuple[np.ndarray | None, str] | None:
        """The region selected again from the same clicks at another ``tolerance`` (None: no click to redo)."""
        tolerance = check_tolerance(tolerance)
        if self.image is None or not self.selection.clicks:
            return None
        mask = self.selection.apply(self.image, region, None, SELECT, tolerance)
        return mask, f"Selected again at tolerance {tolerance:g}: {self._region_note(mask)}"

    def clear_region(self) -> None:
        """Forget the clicks of the region being built (the page empties the painted layer)."""
        self.selection.clear()

    def _region_note(self, mask: np.ndarray | None) -> str:
        size = 0 if mask is None else int(mask.sum())
        if size == 0:
            return "the region is empty; click inside the part to move."
        return (f"region {size} px ({self.selection.summary()}). Click to add, paint or erase to adjust, then "
                "click the points.")

    # --- operations

    def add_operation(self, op_type: str, region: np.ndarray | None) -> Operation:
        """Turn the painted region and the clicks into an operation, validated; clears the pending clicks."""
        image = self.require_image()
        names = point_names(op_type)
        if len(self.operations) >= MAX_OPERATIONS:
            raise UIError(f"An edit takes at most {MAX_OPERATIONS} operations; run these first, or remove one.")
        if region is None or not np.asarray(region).any():
            raise UIError("The handle region is empty: paint over the part of the image to move.")
        region = np.asarray(region, dtype=bool)
        if region.shape != image.shape[:2]:
            raise UIError(f"The region is {region.shape[1]}x{region.shape[0]} but the image is "
                          f"{image.shape[1]}x{image.shape[0]}; paint it again.")
        points = dict(zip(names, self.points, strict=False))
        if "handle" not in points:
            raise UIError("Click the handle point first: a point on the region.")
        if "target" not in points:
            raise UIError("Click the target point: where the handle should go.")
        if "center" in names and "center" not in points:
            raise UIError(f"A {op_type} operation needs a center: click it after the target (third click).")
        operation = make_operation(op_type, region, points["handle"], points["target"], points.get("center"))
        try:
            validate_request(DragRequest(image=image, operations=(operation,)))
        except InstructionError as error:
            raise UIError(_strip_operation_prefix(str(error))) from None
        self.operations.append(operation)
        self.points = []
        self.selection.clear()
        return operation

    def remove_operation(self, index: int | None) -> Operation:
        if not self.operations:
            raise UIError("There is no operation to remove.")
        if index is None or not 0 <= int(index) < len(self.operations):
            raise UIError("Choose the operation to remove.")
        return self.operations.pop(int(index))

    def operation_rows(self) -> list[list[Any]]:
        """One row per operation for the page's table: number, type, handle, target, center, region size."""
        return [
            [i + 1, op.type, _format_point(op.handle), _format_point(op.target), _format_point(op.center),
             int(op.region.sum())]
            for i, op in enumerate(self.operations)
        ]

    def operation_choices(self) -> list[tuple[str, int]]:
        return [(f"{i + 1}: {op.type} {_format_point(op.handle)} -> {_format_point(op.target)}", i)
                for i, op in enumerate(self.operations)]

    # --- the request

    def request(self, editable_mask: np.ndarray | None = None, prompt: str | None = None) -> DragRequest:
        """The :class:`DragRequest` of the session, validated (``editable_mask`` None: everything may change)."""
        image = self.require_image()
        if not self.operations:
            raise UIError("Add at least one operation before running: paint a region, click the points, "
                          "press Add operation.")
        if editable_mask is not None and not np.asarray(editable_mask).any():
            editable_mask = None
        prompt = self.prompt if prompt is None else prompt
        if len(prompt) > MAX_PROMPT_CHARS:
            raise UIError(f"The prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}.")
        request = DragRequest(image=image, operations=tuple(self.operations), editable_mask=editable_mask,
                              prompt=prompt)
        try:
            return validate_request(request)
        except InstructionError as error:
            raise UIError(str(error)) from None

    def restore(self, request: DragRequest, name: str = "") -> None:
        """Make the session hold ``request`` (loaded from an instruction file)."""
        check_image_size(request.image.shape[1], request.image.shape[0])
        if len(request.operations) > MAX_OPERATIONS:
            raise UIError(f"The instruction file has {len(request.operations)} operations; the page takes at most "
                          f"{MAX_OPERATIONS}.")
        self.image = np.ascontiguousarray(request.image)
        self.operations = list(request.operations)
        self.points = []
        self.editable_mask = request.editable_mask
        self.prompt = request.prompt
        self.name = name
        self.rounds, self.last_edit = [], None
        self.selection.clear()

    # --- rounds: continuing from a result

    def record_edit(self, request: DragRequest, result: np.ndarray) -> None:
        """Remember the edit just made of the current image, so that the user may continue from its result."""
        self.last_edit = Round(request, np.ascontiguousarray(result))

    def continue_from_result(self) -> str:
        """Make the latest result the image to edit (operations cleared, the edit kept as a round)."""
        if self.last_edit is None:
            raise UIError("Run an edit first: continuing takes the latest result as the next image.")
        self.rounds.append(self.last_edit)
        self.image = self.last_edit.result
        self.operations, self.points, self.editable_mask, self.last_edit = [], [], None, None
        self.selection.clear()
        self.name = f"the result of round {len(self.rounds)}"
        return (f"Round {len(self.rounds) + 1}: editing the result of round {len(self.rounds)}. Add operations and "
                "run; Undo round goes back.")

    def undo_round(self) -> str:
        """Go back to the previous round: its image, operations, mask and prompt, and its result to continue from."""
        if not self.rounds:
            raise UIError("There is no earlier round to go back to.")
        previous = self.rounds.pop()
        request = previous.request
        self.image, self.operations, self.points = request.image, list(request.operations), []
        self.editable_mask, self.prompt = request.editable_mask, request.prompt
        self.last_edit = previous
        self.selection.clear()
        self.name = f"round {len(self.rounds) + 1}"
        return f"Back to round {len(self.rounds) + 1}: its image and operations are restored."

    def all_rounds(self) -> list[Round]:
        """Every finished round, the latest edit of the current image last."""
        return self.rounds + ([self.last_edit] if self.last_edit is not None else [])

    # --- pictures

    def overlay(self, editable_mask: np.ndarray | None = None) -> np.ndarray:
        """The image at display size with the added operations drawn over it."""
        return overlay(self.require_image(), self.operations, editable_mask)

    def selection_view(self, region: np.ndarray | None) -> np.ndarray:
        """:meth:`overlay` plus the region being built (tinted cyan): the picture the select tools are clicked on."""
        return points_view(self.require_image(), self.operations, {}, "translate", region)

    def points_view(self, op_type: str, region: np.ndarray | None = None) -> np.ndarray:
        """:meth:`overlay` plus the pending region (tinted cyan) and the pending clicks (dots and an arrow)."""
        return points_view(self.require_image(), self.operations, self.pending(op_type), op_type, region)
