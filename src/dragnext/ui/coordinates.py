"""Where the page's pictures meet the image: the display size, clicks to image pixels, painted layers to masks.

The page shows every image at a *display size* (:func:`display_size`): a 64 px scene is enlarged by an
integer factor so it can be painted and clicked, a large photo is shrunk to at most :data:`MAX_DISPLAY_SIDE`
px. Gradio reports a click as ``[x, y]`` pixel indices of the displayed picture (its natural size, whatever
the CSS size), and the painted layers come back at the displayed size. :func:`display_to_image_point` and
:func:`layers_to_mask` map both back to the input image's pixels, once, here; nothing else converts
coordinates.

Choices:

- A click lands on the image pixel that contains the centre of the clicked display pixel, so points are
  whole pixels (they read well in the instruction file and the operations list).
- A painted layer pixel counts when its alpha is nonzero (greyscale or RGB layers: when nonzero), and an
  image pixel is inside the region when at least half of its display pixels are painted (box filter).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..visualize import display_scale
from .uploads import UIError

MAX_DISPLAY_SIDE = 1024  # larger images are shown shrunk to this (clicks and strokes are mapped back)
MIN_DISPLAY_SIDE = 512  # smaller images are enlarged by an integer factor to about this (a 64 px scene: 8x)

Point = tuple[float, float]


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


def image_to_display_point(point: Point, shape: tuple[int, ...]) -> tuple[float, float]:
    """The centre of image pixel ``point = (x, y)`` in the display pixels of the image of ``shape``."""
    height, width = shape[:2]
    display_height, display_width = display_size(height, width)
    return ((point[0] + 0.5) * display_width / width - 0.5, (point[1] + 0.5) * display_height / height - 0.5)


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
