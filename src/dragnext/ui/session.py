"""The web UI's logic, without Gradio: clicks and painted strokes in, a validated :class:`DragRequest` out.

Everything the page does that is not layout lives here, in ``uploads.py`` (files a browser sends, the download
format) and in ``workspace.py`` (the server's files per tab), as plain code with unit tests
(``tests/test_ui_logic.py``, ``test_ui_uploads.py``, ``test_ui_resources.py``); ``app.py`` only wires these
functions to Gradio components.

Coordinates. The page shows every image at a *display size* (:func:`display_size`): a 64 px scene is
enlarged by an integer factor so it can be painted and clicked, a large photo is shrunk to at most
:data:`MAX_DISPLAY_SIDE` px. Gradio reports a click as ``[x, y]`` pixel indices of the displayed picture
(its natural size, whatever the CSS size), and the painted layers come back at the displayed size.
:func:`display_to_image_point` and :func:`layers_to_mask` map both back to the input image's pixels, once,
here; nothing else converts coordinates.

Choices:

- A click lands on the image pixel that contains the centre of the clicked display pixel, so points are
  whole pixels (they read well in the instruction file and the operations list).
- A painted layer pixel counts when its alpha is nonzero (greyscale or RGB layers: when nonzero), and an
  image pixel is inside the region when at least half of its display pixels are painted (box filter).
- Clicks fill the points in the order handle, target, then center for ``rotate`` and ``scale``; a click
  after the last needed point starts over with a new handle. Changing the type keeps the clicks, so a
  third click can still add a center after switching from translate to rotate.
- Limits (:mod:`dragnext.ui.uploads` for files): at most :data:`MAX_OPERATIONS` operations, and the
  settings bounded by :data:`MAX_STEPS`, :data:`MAX_PBSI_TIMESTEPS` and :data:`MAX_ITERATIONS`, below the
  library's own limits: an edit holds the one model, so one request must not hold it for hours.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..config import SEED_LIMIT, ConfigError, EditConfig
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
from ..visualize import CENTER_COLOR, HANDLE_COLOR, TARGET_COLOR, display_scale, draw_instructions
from .uploads import UIError, check_image_size

MAX_DISPLAY_SIDE = 1024  # larger images are shown shrunk to this (clicks and strokes are mapped back)
MIN_DISPLAY_SIDE = 512  # smaller images are enlarged by an integer factor to about this (a 64 px scene: 8x)
MAX_OPERATIONS = UI_LIMITS.max_operations  # each keeps a full-size mask in the server's memory
# The settings' bounds: twice the paper preset's steps, four times its PBSI timesteps and five times its K (the
# presets use 25/50 steps, 2/5 timesteps, K = 5/10). Beyond them an edit gains nothing measurable and holds the
# shared model for many minutes; `dragnext edit` has no such bound.
MAX_STEPS = 100
MAX_PBSI_TIMESTEPS = 20
MAX_ITERATIONS = 50
MAX_SEED = SEED_LIMIT - 1  # the seeds an edit takes (config.check_seed), as in the CLI
MAX_PROMPT_CHARS = 1000  # CLIP reads 77 tokens; a longer prompt only costs memory

PENDING_TINT = (0, 200, 255)  # the region being painted, before "add operation" (added ones are yellow)

Point = tuple[float, float]


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
# Images in and out of the page


def display_size(height: int, width: int) -> tuple[int, int]:
    """``(height, width)`` at which an image is shown: small ones enlarged by an integer factor (as
    :func:`dragnext.visualize.display_scale`), large ones shrunk to :data:`MAX_DISPLAY_SIDE`."""
    longest = max(height, width)
    if longest > MAX_DISPLAY_SIDE:
        ratio = MAX_DISPLAY_SIDE / longest
        return max(1, round(height * ratio)), max(1, round(width * ratio))
    zoom = max(1, min(display_scale(height, width, MIN_DISPLAY_SIDE), MAX_DISPLAY_SIDE // longest))
    return height * zoom, width * zoom


def to_display(picture: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resize a picture made for an image of ``shape`` (or already zoomed) to that image's display size."""
    height, width = display_size(*shape[:2])
    if picture.shape[:2] == (height, width):
        return picture
    resample = Image.NEAREST if picture.shape[0] < height else Image.LANCZOS
    return np.asarray(Image.fromarray(np.asarray(picture, np.uint8)).resize((width, height), resample))


def display_to_image_point(index: Sequence[float] | None, shape: tuple[int, ...]) -> Point:
    """A click at display pixel ``index = [x, y]`` as an ``(x, y)`` pixel of the image of ``shape``."""
    height, width = shape[:2]
    if index is None or len(index) != 2:
        raise UIError("Click inside the image.")
    display_height, display_width = display_size(height, width)
    cx, cy = float(index[0]), float(index[1])
    if not (0 <= cx < display_width and 0 <= cy < display_height):
        raise UIError(f"The point ({cx:g}, {cy:g}) lies outside the {display_width}x{display_height} picture.")
    x = min(width - 1, math.floor((cx + 0.5) * width / display_width))
    y = min(height - 1, math.floor((cy + 0.5) * height / display_height))
    return (float(x), float(y))


def _layer_coverage(layer: Any) -> np.ndarray | None:
    """A layer's painted pixels as an ``H x W`` bool array (alpha > 0, or nonzero without alpha)."""
    if layer is None:
        return None
    if isinstance(layer, (str, os.PathLike)):
        with Image.open(layer) as opened:
            layer = np.asarray(opened.convert("RGBA"))
    array = np.asarray(layer)
    if array.ndim == 2:
        painted = array > 0
    elif array.ndim == 3 and array.shape[2] in (2, 4):
        painted = array[..., -1] > 0
    elif array.ndim == 3:
        painted = array.max(axis=2) > 0
    else:
        raise UIError(f"Unexpected painted layer of shape {array.shape}.")
    return painted


def layers_to_mask(value: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """The strokes painted in a Gradio ``ImageEditor`` as an ``H x W`` bool mask of the image of ``shape``.

    ``value`` is the editor's value (a dict with ``layers``), or a list of layers, or one layer; layers are
    RGBA / greyscale numpy arrays (or file paths) at display size. Returns ``None`` when nothing is painted.
    """
    if value is None:
        return None
    layers = value.get("layers") if isinstance(value, dict) else value
    if layers is None:
        return None
    if isinstance(layers, (np.ndarray, str, os.PathLike)):
        layers = [layers]
    union: np.ndarray | None = None
    for layer in layers:
        painted = _layer_coverage(layer)
        if painted is None:
            continue
        if union is not None and union.shape != painted.shape:
            raise UIError("The painted layers have different sizes; clear them and paint again.")
        union = painted if union is None else union | painted
    if union is None or not union.any():
        return None
    height, width = shape[:2]
    coverage = Image.fromarray(union.astype(np.uint8) * np.uint8(255)).resize((width, height), Image.BOX)
    mask = np.asarray(coverage) >= 128
    return mask if mask.any() else None


def mask_to_layer(mask: np.ndarray, color: tuple[int, int, int] = (255, 255, 255), alpha: int = 255) -> np.ndarray:
    """A bool mask as an RGBA layer at display size (``color`` with ``alpha`` inside), to restore painted strokes."""
    height, width = display_size(*mask.shape)
    zoomed = Image.fromarray(mask.astype(np.uint8) * np.uint8(255)).resize((width, height), Image.NEAREST)
    layer = np.zeros((height, width, 4), dtype=np.uint8)
    inside = np.asarray(zoomed) > 0
    layer[inside] = (*color, alpha)
    return layer


def _display_point(point: Point, shape: tuple[int, ...]) -> tuple[float, float]:
    height, width = shape[:2]
    display_height, display_width = display_size(height, width)
    return ((point[0] + 0.5) * display_width / width - 0.5, (point[1] + 0.5) * display_height / height - 0.5)


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
        self.name = f"round {len(self.rounds) + 1}"
        return f"Back to round {len(self.rounds) + 1}: its image and operations are restored."

    def all_rounds(self) -> list[Round]:
        """Every finished round, the latest edit of the current image last."""
        return self.rounds + ([self.last_edit] if self.last_edit is not None else [])

    # --- pictures

    def overlay(self, editable_mask: np.ndarray | None = None) -> np.ndarray:
        """The image at display size with the added operations drawn over it."""
        return overlay(self.require_image(), self.operations, editable_mask)

    def points_view(self, op_type: str, region: np.ndarray | None = None) -> np.ndarray:
        """:meth:`overlay` plus the pending region (tinted cyan) and the pending clicks (dots and an arrow)."""
        image = self.require_image()
        base = image
        if region is not None and region.shape == image.shape[:2]:
            tinted = 0.55 * image.astype(np.float32) + 0.45 * np.asarray(PENDING_TINT, np.float32)
            base = np.where(region[..., None], tinted, image.astype(np.float32)).round().astype(np.uint8)
        height, width = image.shape[:2]
        zoom = max(1, display_size(height, width)[0] // height)
        picture = Image.fromarray(to_display(draw_instructions(base, self.operations, scale=zoom), image.shape))
        draw = ImageDraw.Draw(picture)
        display_height = picture.height
        radius = max(3, display_height // 80)
        line = max(2, radius // 2)
        pending = self.pending(op_type)
        spots = {name: _display_point(point, image.shape) for name, point in pending.items()}
        if "center" in spots and op_type in NEEDS_CENTER and "handle" in spots:
            draw.line([spots["center"], spots["handle"]], fill=CENTER_COLOR, width=max(1, line // 2))
        if "handle" in spots and "target" in spots:
            draw.line([spots["handle"], spots["target"]], fill=(255, 255, 255), width=line)
            _arrow_head(draw, spots["handle"], spots["target"], line)
        colors = {"handle": HANDLE_COLOR, "target": TARGET_COLOR, "center": CENTER_COLOR}
        for name, (x, y) in spots.items():
            if name == "center" and op_type not in NEEDS_CENTER:
                continue
            box = [x - radius, y - radius, x + radius, y + radius]
            draw.ellipse(box, fill=colors[name], outline=(0, 0, 0), width=1)
        return np.asarray(picture)


def overlay(image: np.ndarray, operations: Sequence[Operation], editable_mask: np.ndarray | None = None) -> np.ndarray:
    """``image`` at display size with the regions tinted and the handle -> target arrows drawn
    (:func:`dragnext.visualize.draw_instructions`); outside the editable mask darkened."""
    height, width = image.shape[:2]
    zoom = max(1, display_size(height, width)[0] // height)
    return to_display(draw_instructions(image, operations, editable_mask, scale=zoom), image.shape)


def _arrow_head(draw: ImageDraw.ImageDraw, start: tuple[float, float], end: tuple[float, float], width: int) -> None:
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    size = 4 * width
    for side in (-1, 1):
        tip = (end[0] - size * math.cos(angle + side * 0.45), end[1] - size * math.sin(angle + side * 0.45))
        draw.line([end, tip], fill=(255, 255, 255), width=width)


# --------------------------------------------------------------------------------------------------------
# Settings


@dataclass(frozen=True)
class Settings:
    """The settings the page shows (the rest of :class:`EditConfig` comes from the backbone's preset)."""

    steps: Any
    pbsi_timesteps: Any
    iterations: Any
    learning_rate: Any
    lora: bool
    seed: Any
    preset: str = "default"  # the preset the rest of the settings come from (config.PRESET_NAMES)

    @classmethod
    def from_config(cls, config: EditConfig, seed: int = 0, preset: str = "default") -> Settings:
        return cls(config.num_steps, config.pbsi_timesteps, config.iterations, config.learning_rate, config.lora,
                   seed, preset)


def _number(value: Any, label: str) -> float:
    """A number typed in the page (a float from Gradio, or text from a script calling the API)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UIError(f"{label}: enter a number.")
    if isinstance(value, bool):
        raise UIError(f"{label}: {value!r} is not a number.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UIError(f"{label}: {_short(value)} is not a number.") from None
    except OverflowError:  # an int of hundreds of digits
        raise UIError(f"{label}: the number is too large.") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(value: Any, label: str, minimum: int, maximum: int) -> int:
    number = _number(value, label)
    if not (number.is_integer() and minimum <= number <= maximum):
        raise UIError(f"{label}: must be a whole number from {minimum} to {maximum}, got {number:g}.")
    return int(number)


def config_from_settings(base: EditConfig, settings: Settings) -> tuple[EditConfig, int]:
    """The :class:`EditConfig` (``base`` with the page's settings) and the seed; messages name the field.

    Every number is checked, finite and within the page's bounds, before anything is derived from it.
    """
    steps = _whole(settings.steps, "Steps", 1, MAX_STEPS)
    pbsi = _whole(settings.pbsi_timesteps, "PBSI timesteps", 0, MAX_PBSI_TIMESTEPS)
    iterations = _whole(settings.iterations, "K (Adam steps per timestep)", 1, MAX_ITERATIONS)
    seed = _whole(settings.seed, "Seed", 0, MAX_SEED)
    learning_rate = _number(settings.learning_rate, "Learning rate")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise UIError(f"Learning rate: must be a positive number, got {learning_rate:g}.")
    try:
        config = base.override(num_steps=steps, pbsi_timesteps=pbsi, iterations=iterations,
                               learning_rate=learning_rate, lora=bool(settings.lora))
    except ConfigError as error:
        raise UIError(str(error)) from None
    return config, seed
