"""Reading a DragBench sample: ``meta_data.pkl`` (prompt, points, editable mask) and ``original_image.png``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...limits import DEFAULT_LIMITS, read_image, read_limited_bytes
from .common import MARKER_FILES, ConversionError, describe, is_number
from .pickles import restricted_loads

# A DragBench pickle is an 8-bit mask plus a prompt and a few points (~0.4 MB at 512 x 768): allow a mask at the
# pixel limit of any image we read, and 1 MiB for the rest.
MAX_PICKLE_BYTES = DEFAULT_LIMITS.max_pixels + 2**20


def load_dragbench_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a DragBench ``meta_data.pkl`` safely: ``{"prompt": str, "points": [[x, y], ...], "mask": array}``.

    Only :data:`~dragnext.bench.convert.pickles.ALLOWED_GLOBALS` may be referenced (anything else raises
    :class:`~dragnext.bench.convert.pickles.UnsafePickleError` before it is called); any other problem, from a
    truncated file to a missing key, raises :class:`ConversionError` naming the file, and a file that is not a
    regular one or is larger than :data:`MAX_PICKLE_BYTES` raises :class:`~dragnext.instructions.InstructionError`
    without being read. Returns a new dict with exactly those keys: ``points`` as a list of ``[x, y]`` numbers,
    ``mask`` as the stored 2-D array (nonzero = editable). Extra keys in the file are ignored.
    """
    path = Path(path)
    source = str(path)
    data = read_limited_bytes(path, "", MAX_PICKLE_BYTES, name=source)  # regular files only: a FIFO would block
    meta = restricted_loads(data, source)

    if not isinstance(meta, dict):
        raise ConversionError(f"{source}: expected a pickled dict, got {type(meta).__name__}")
    missing = [key for key in ("prompt", "points", "mask") if key not in meta]
    if missing:
        raise ConversionError(f"{source}: missing key(s) {', '.join(repr(k) for k in missing)}")
    prompt = meta["prompt"]
    if not isinstance(prompt, str):
        raise ConversionError(f"{source}: 'prompt' must be a string, got {type(prompt).__name__}")
    points = meta["points"]
    if isinstance(points, np.ndarray) and points.dtype.kind in "iuf":
        points = points.tolist()
    if not isinstance(points, (list, tuple)):
        raise ConversionError(f"{source}: 'points' must be a list of [x, y], got {type(points).__name__}")
    checked = []
    for index, point in enumerate(points):
        if isinstance(point, np.ndarray) and point.dtype.kind in "iuf":
            point = point.tolist()
        if not isinstance(point, (list, tuple)) or len(point) != 2 or not all(is_number(v) for v in point):
            raise ConversionError(f"{source}: points[{index}] must be [x, y] with two numbers, got {describe(point)}")
        checked.append([point[0], point[1]])
    mask = meta["mask"]
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype.kind not in "biuf":
        got = f"{mask.dtype} array of shape {mask.shape}" if isinstance(mask, np.ndarray) else type(mask).__name__
        raise ConversionError(f"{source}: 'mask' must be an H x W numeric array, got {got}")
    return {"prompt": prompt, "points": checked, "mask": mask}


def read_dragbench(folder: Path) -> tuple[np.ndarray, np.ndarray, list[Any], str]:
    """A DragBench sample folder as (image, editable mask, points, prompt)."""
    meta = load_dragbench_meta(folder / MARKER_FILES["dragbench"])
    image = read_image(folder / "original_image.png", "image", "RGB", name="original_image.png")
    return image, meta["mask"] != 0, meta["points"], meta["prompt"]
