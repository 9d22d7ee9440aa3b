"""The pictures the page shows over the image: the added operations, and the region and clicks being set.

Both are drawn at the image's display size (:func:`dragnext.ui.coordinates.display_size`), with the colours
of :mod:`dragnext.visualize`, so the page and the CLI's previews look alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..instructions import NEEDS_CENTER, Operation
from ..visualize import CENTER_COLOR, HANDLE_COLOR, TARGET_COLOR, draw_arrow, draw_instructions
from .coordinates import Point, display_size, image_to_display_point, to_display

PENDING_TINT = (0, 200, 255)  # the region being painted, before "add operation" (added ones are yellow)


def overlay(image: np.ndarray, operations: Sequence[Operation], editable_mask: np.ndarray | None = None) -> np.ndarray:
    """``image`` at display size with the regions tinted and the handle -> target arrows drawn
    (:func:`dragnext.visualize.draw_instructions`); outside the editable mask darkened."""
    height, width = image.shape[:2]
    zoom = max(1, display_size(height, width)[0] // height)
    return to_display(draw_instructions(image, operations, editable_mask, scale=zoom), image.shape)


def points_view(image: np.ndarray, operations: Sequence[Operation], pending: Mapping[str, Point], op_type: str,
                region: np.ndarray | None = None) -> np.ndarray:
    """:func:`overlay` plus the pending region (tinted cyan) and the pending clicks (dots and an arrow).

    ``pending`` holds the clicks by name (``handle``, ``target``, ``center``); a center is drawn only for an
    ``op_type`` that needs one.
    """
    base = image
    if region is not None and region.shape == image.shape[:2]:
        tinted = 0.55 * image.astype(np.float32) + 0.45 * np.asarray(PENDING_TINT, np.float32)
        base = np.where(region[..., None], tinted, image.astype(np.float32)).round().astype(np.uint8)
    height, width = image.shape[:2]
    zoom = max(1, display_size(height, width)[0] // height)
    picture = Image.fromarray(to_display(draw_instructions(base, operations, scale=zoom), image.shape))
    draw = ImageDraw.Draw(picture)
    display_height = picture.height
    radius = max(3, display_height // 80)
    line = max(2, radius // 2)
    spots = {name: image_to_display_point(point, image.shape) for name, point in pending.items()}
    if "center" in spots and op_type in NEEDS_CENTER and "handle" in spots:
        draw.line([spots["center"], spots["handle"]], fill=CENTER_COLOR, width=max(1, line // 2))
    if "handle" in spots and "target" in spots:
        draw_arrow(draw, spots["handle"], spots["target"], (255, 255, 255), line)
    colors = {"handle": HANDLE_COLOR, "target": TARGET_COLOR, "center": CENTER_COLOR}
    for name, (x, y) in spots.items():
        if name == "center" and op_type not in NEEDS_CENTER:
            continue
        box = [x - radius, y - radius, x + radius, y + radius]
        draw.ellipse(box, fill=colors[name], outline=(0, 0, 0), width=1)
    return np.asarray(picture)

