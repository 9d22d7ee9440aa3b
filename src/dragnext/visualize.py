"""Pictures of edits: instructions drawn over an image, and labelled side-by-side panels (PIL only)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .instructions import Operation

REGION_TINT = (255, 200, 0)
HANDLE_COLOR = (230, 40, 40)
TARGET_COLOR = (40, 90, 230)
CENTER_COLOR = (250, 250, 250)


def display_scale(height: int, width: int, min_side: int = 256) -> int:
    """Integer zoom so that small images (64 px scenes) are drawn large enough to see."""
    return max(1, math.ceil(min_side / max(1, min(height, width))))


def _zoom(image: np.ndarray, scale: int) -> Image.Image:
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if scale == 1:
        return picture
    return picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)


def _outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """Pixels of ``mask`` within ``width`` steps (4-neighbourhood) of a pixel outside it."""
    interior = mask
    for _ in range(width):
        padded = np.pad(interior, 1)
        interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & interior
    return mask & ~interior


def _canvas_point(point, scale: int) -> tuple[float, float]:
    return ((point[0] + 0.5) * scale - 0.5, (point[1] + 0.5) * scale - 0.5)


def draw_arrow(draw: ImageDraw.ImageDraw, start, end, color, width: int) -> None:
    """A line from ``start`` to ``end`` with a head at ``end`` (the previews' and the page's arrows)."""
    draw.line([start, end], fill=color, width=width)
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    size = 4 * width
    for side in (-1, 1):
        tip = (end[0] - size * math.cos(angle + side * 0.45), end[1] - size * math.sin(angle + side * 0.45))
        draw.line([end, tip], fill=color, width=width)


def draw_instructions(image: np.ndarray, operations: Sequence[Operation], editable_mask: np.ndarray | None = None,
                      scale: int | None = None) -> np.ndarray:
    """The image (zoomed by ``scale``) with regions tinted, handle -> target arrows and rotation/scale centres."""
    height, width = image.shape[:2]
    scale = scale or display_scale(height, width)
    base = np.asarray(image, dtype=np.float32)
    if editable_mask is not None:
        base = np.where(editable_mask[..., None], base, base * 0.55)
    tint = np.asarray(REGION_TINT, np.float32)
    for op in operations:
        # A light tint inside and a solid outline: the region is plain to see and the content keeps its colour.
        base = np.where(op.region[..., None], 0.8 * base + 0.2 * tint, base)
    picture = _zoom(base.round().astype(np.uint8), scale)
    outline = np.zeros(picture.size[::-1], dtype=bool)
    for op in operations:
        outline |= _outline(np.asarray(_zoom(op.region.astype(np.uint8) * 255, scale)) > 127, max(1, scale // 2))
    picture = Image.fromarray(np.where(outline[..., None], tint.astype(np.uint8), np.asarray(picture)))
    draw = ImageDraw.Draw(picture)
    line = max(1, scale // 2)
    radius = max(2, scale)
    for op in operations:
        handle, target = _canvas_point(op.handle, scale), _canvas_point(op.target, scale)
        if op.center is not None:
            center = _canvas_point(op.center, scale)
            draw.line([center, handle], fill=CENTER_COLOR, width=max(1, line // 2))
            draw.ellipse([center[0] - radius, center[1] - radius, center[0] + radius, center[1] + radius],
                         outline=CENTER_COLOR, width=line)
        draw_arrow(draw, handle, target, (255, 255, 255), line)
        for point, color in ((handle, HANDLE_COLOR), (target, TARGET_COLOR)):
            draw.ellipse([point[0] - radius, point[1] - radius, point[0] + radius, point[1] + radius], fill=color)
    return np.asarray(picture)


def side_by_side(panels: Sequence[np.ndarray], labels: Sequence[str] | None = None, gap: int = 6,
                 min_side: int = 256) -> np.ndarray:
    """Panels in a row, each zoomed to the same height, with an optional caption strip above each."""
    height = max(max(p.shape[0] for p in panels), min_side)
    pictures = []
    for panel in panels:
        scale = max(1, round(height / panel.shape[0]))
        pictures.append(_zoom(panel, scale) if scale > 1 else Image.fromarray(np.asarray(panel, np.uint8)))
    caption = 16 if labels else 0
    total_width = sum(p.width for p in pictures) + gap * (len(pictures) + 1)
    total_height = max(p.height for p in pictures) + caption + 2 * gap
    sheet = Image.new("RGB", (total_width, total_height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x = gap
    for i, picture in enumerate(pictures):
        sheet.paste(picture, (x, gap + caption))
        if labels:
            draw.text((x, gap), labels[i], fill=(0, 0, 0))
        x += picture.width + gap
    return np.asarray(sheet)


def stack_rows(rows: Sequence[np.ndarray]) -> np.ndarray:
    """Rows of panels (from ``side_by_side``) one above the other, padded to the widest."""
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)
