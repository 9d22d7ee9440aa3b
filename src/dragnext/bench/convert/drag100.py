"""Reading a Drag100 sample: ``points.json``, ``original.jpg`` and ``mask.png`` (no prompt)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ...limits import DEFAULT_LIMITS, one_line, read_image, read_limited_bytes
from .common import MARKER_FILES, ConversionError


def read_drag100(folder: Path) -> tuple[np.ndarray, np.ndarray, list[Any], str]:
    """A Drag100 sample folder as (image, editable mask, points, prompt); the prompt is always empty."""
    points_path = folder / MARKER_FILES["drag100"]
    data = read_limited_bytes(points_path, "points", DEFAULT_LIMITS.max_json_bytes, name=points_path.name)
    try:
        raw = json.loads(data.decode("utf-8-sig"))
    except RecursionError:
        raise ConversionError(f"{points_path.name}: not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer past Python's digit limit
        raise ConversionError(f"{points_path.name}: not valid JSON: {one_line(exc, 300)}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("points"), list):
        raise ConversionError(f'{points_path.name}: expected {{"points": [[x, y], ...]}}')
    image = read_image(folder / "original.jpg", "image", "RGB", name="original.jpg")
    mask = read_image(folder / "mask.png", "mask", "L", name="mask.png") > 127
    return image, mask, raw["points"], ""
