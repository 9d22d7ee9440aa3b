"""The instruction file: a JSON document naming the image, masks and operations, loaded and saved.

The format (the README, "Editing an image")::

    {
      "image": "image.png",
      "editable_mask": "editable.png",
      "prompt": "",
      "operations": [
        {"type": "translate", "region": "region_0.png", "handle": [20, 30], "target": [40, 30]},
        {"type": "rotate", "region": {"polygon": [[40, 10], [60, 10], [60, 30]]},
         "handle": [50, 20], "target": [60, 30], "center": [50, 30]}
      ]
    }

Choices made here (where the design leaves room):

- The image is read as stored: EXIF orientation is *not* applied, because the points are given in the
  pixels of the stored image.
- Files are read through :mod:`dragnext.limits`: regular files only, sizes checked before decoding, caps
  from a :class:`~dragnext.limits.Limits` (the CLI's defaults, or the UI's stricter ones).
- Given ``root`` (the UI's upload folder), a path in the JSON must be a plain relative path (no absolute
  path, no ``..``) that stays inside ``root`` after following links; anything else is refused with one
  message, whether or not the file exists, so the refusal says nothing about the server's files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..files import write_staged
from ..limits import DEFAULT_LIMITS, Limits, input_error, quote_path, read_image, read_limited_bytes, short_repr
from ..vocabulary import OPERATION_TYPES
from .request import DragRequest, InstructionError, Operation, Point, coerce_point, polygon_mask
from .validation import check_operation_count, check_polygon, validate_request

TOP_LEVEL_KEYS = ("image", "editable_mask", "prompt", "operations")
REQUIRED_TOP_LEVEL_KEYS = ("image", "operations")
OPERATION_KEYS = ("type", "region", "handle", "target", "center")
REQUIRED_OPERATION_KEYS = ("type", "region", "handle", "target")


# --------------------------------------------------------------------------------------------------------
# Loading


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object hook: a key given twice silently keeps the last value, which hides typos."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise input_error("", f"duplicate key {short_repr(key)} in the JSON")
        result[key] = value
    return result


def _check_keys(obj: dict[str, Any], where: str, allowed: Sequence[str], required: Sequence[str]) -> None:
    unknown = [key for key in obj if key not in allowed]
    if unknown:
        names = ", ".join(short_repr(k) for k in unknown[:3])  # a few, so a file of a million keys cannot flood
        if len(unknown) > 3:
            names += f" and {len(unknown) - 3} more"
        plural = "keys" if len(unknown) > 1 else "key"
        raise input_error(where or "instructions", f"unknown {plural} {names}; allowed: {', '.join(allowed)}")
    for key in required:
        if key not in obj:
            prefix = f"{where}." if where else ""
            raise input_error(f"{prefix}{key}", "required key is missing")


def _resolve(value: Any, where: str, base: Path, root: Path | None) -> Path:
    """The path a JSON value names, relative to the JSON's folder; with ``root``, only inside ``root``.

    Outside ``root`` the message is the same whether or not the file exists, and nothing outside is even
    looked at: the lexical checks come first, and ``realpath`` then only follows links inside the upload.
    """
    if not isinstance(value, str) or not value.strip():
        raise input_error(where, f"expected a file path (string), got {short_repr(value)}")
    if "\x00" in value:
        raise input_error(where, f"{quote_path(value)} is not a valid file path")
    path = base / value
    if root is None:
        return path
    outside = input_error(where, f"{quote_path(value)} is outside the uploaded files")
    if os.path.isabs(value) or ".." in Path(value).parts:
        raise outside
    try:
        inside = Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))
    except (OSError, ValueError):  # text the file system cannot encode
        raise outside from None
    if not inside:
        raise outside
    return path


def _read_picture(value: Any, where: str, base: Path, root: Path | None, mode: str, limits: Limits,
                  size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file named in the JSON as a uint8 array in ``mode``; errors name the field. ``size``:
    the ``(width, height)`` it must have, checked from its header before decoding."""
    path = _resolve(value, where, base, root)
    return read_image(path, where, mode, limits, name=value, size=size)


class _Masks:
    """The masks of one instruction file, each file decoded once and only if it has the image's size.

    An operation list may name one file 64 times (or through 64 links); each name is checked (its path, and at a
    file's first mention its header), the pixels are decoded once, and the operations share that array. Loading
    work is then bounded by the distinct files named, each no larger than the image.
    """

    def __init__(self, base: Path, root: Path | None, limits: Limits, image_shape: tuple[int, ...]):
        self.base, self.root, self.limits = base, root, limits
        self.size = (image_shape[1], image_shape[0])
        self.decoded: dict[str, np.ndarray] = {}

    def load(self, value: Any, where: str) -> np.ndarray:
        path = _resolve(value, where, self.base, self.root)
        try:  # the file itself, however it is spelled or linked
            info = os.stat(path)
            key = f"{info.st_dev}:{info.st_ino}"
        except (OSError, ValueError):  # read_image explains
            key = os.path.normpath(path)
        if key not in self.decoded:
            self.decoded[key] = read_image(path, where, "L", self.limits, name=value, size=self.size) > 127
        return self.decoded[key]


def _load_polygon(
    region: dict[str, Any], where: str, image_shape: tuple[int, ...], limits: Limits
) -> tuple[Point, ...]:
    _check_keys(region, where, ("polygon",), ("polygon",))
    points = region["polygon"]
    if not isinstance(points, list) or len(points) < 3:
        raise input_error(f"{where}.polygon", f"expected a list of at least 3 [x, y] points, got {short_repr(points)}")
    if len(points) > limits.max_polygon_points:
        raise input_error(f"{where}.polygon",
                          f"{len(points)} points, more than the limit of {limits.max_polygon_points}")
    polygon = tuple(coerce_point(p, f"{where}.polygon[{i}]") for i, p in enumerate(points))
    check_polygon(polygon, f"{where}.polygon", image_shape)
    return polygon


def _load_operation(raw: Any, where: str, masks: _Masks, image_shape: tuple[int, ...], limits: Limits) -> Operation:
    if not isinstance(raw, dict):
        raise input_error(where, f"expected an object, got {short_repr(raw)}")
    _check_keys(raw, where, OPERATION_KEYS, REQUIRED_OPERATION_KEYS)
    op_type = raw["type"]
    if not isinstance(op_type, str) or op_type not in OPERATION_TYPES:
        raise input_error(f"{where}.type", f"{short_repr(op_type)} is not one of {', '.join(OPERATION_TYPES)}")
    # The points first: they cost nothing, and a typo there should not wait for a mask to decode.
    handle = coerce_point(raw["handle"], f"{where}.handle")
    target = coerce_point(raw["target"], f"{where}.target")
    center = None if raw.get("center") is None else coerce_point(raw["center"], f"{where}.center")
    region_value = raw["region"]
    polygon = None
    if isinstance(region_value, dict):
        polygon = _load_polygon(region_value, f"{where}.region", image_shape, limits)
        region = polygon_mask(polygon, image_shape[1], image_shape[0])
    elif isinstance(region_value, str):
        region = masks.load(region_value, f"{where}.region")
    else:
        raise input_error(
            f"{where}.region",
            f'expected a mask file path or {{"polygon": [[x, y], ...]}}, got {short_repr(region_value)}',
        )
    return Operation(type=op_type, region=region, handle=handle, target=target, center=center, polygon=polygon)


def _parse_json(data: bytes, path: Path) -> Any:
    """The JSON value in ``data``; every way it can fail becomes one line naming the file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise input_error("", f"{quote_path(str(path))} is not valid JSON: it is not UTF-8 text") from None
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        problem = f"{quote_path(str(path))} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        raise input_error("", problem) from None
    except RecursionError:
        raise input_error("", f"{quote_path(str(path))} is not valid JSON: nested too deeply") from None
    except InstructionError:
        raise
    except ValueError:  # an integer literal over Python's 4300-digit conversion limit
        raise input_error("", f"{quote_path(str(path))} is not valid JSON: a number has too many digits") from None


def load_instructions(
    path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None, limits: Limits = DEFAULT_LIMITS
) -> DragRequest:
    """Read an instruction file (see module docstring) and return a validated :class:`DragRequest`.

    ``root``: when given (a server's upload folder), every file the JSON names must lie inside it; without
    it (the CLI), any path the user typed works. ``limits`` caps the file's size, the number of operations
    and polygon points, and every image's size (read from its header before decoding).

    Every problem, from a missing file to a point off the image, is an :class:`InstructionError` whose
    one-line message names the field, never a traceback from json or PIL.
    """
    path = Path(path)
    data = read_limited_bytes(path, "instructions", limits.max_json_bytes, name=str(path))
    raw = _parse_json(data, path)
    if not isinstance(raw, dict):
        raise input_error("", f"{quote_path(str(path))} must contain a JSON object at the top level, got "
                              f"{type(raw).__name__}")

    # 1. Everything that costs nothing to check, before any image is decoded.
    _check_keys(raw, "", TOP_LEVEL_KEYS, REQUIRED_TOP_LEVEL_KEYS)
    prompt = raw.get("prompt")
    if prompt is None:
        prompt = ""
    elif not isinstance(prompt, str):
        raise input_error("prompt", f"expected a string, got {short_repr(prompt)}")
    raw_operations = raw["operations"]
    if not isinstance(raw_operations, list):
        raise input_error("operations", f"expected a list of operations, got {short_repr(raw_operations)}")
    check_operation_count(len(raw_operations), limits)

    # 2. The images, each checked against the limits from its header first.
    base = path.parent
    root_path = None if root is None else Path(root)
    image = _read_picture(raw["image"], "image", base, root_path, "RGB", limits)
    masks = _Masks(base, root_path, limits, image.shape)
    editable_mask = None
    if raw.get("editable_mask") is not None:
        editable_mask = masks.load(raw["editable_mask"], "editable_mask")
    operations = tuple(
        _load_operation(op, f"operations[{i}]", masks, image.shape, limits) for i, op in enumerate(raw_operations)
    )
    named = [raw["image"], raw.get("editable_mask"), *(op["region"] for op in raw_operations)]
    files = (path, *(_resolve(name, "", base, root_path) for name in named if isinstance(name, str)))
    request = DragRequest(
        image=image, operations=operations, editable_mask=editable_mask, prompt=prompt, source=str(path),
        files=files,
    )
    return validate_request(request)


# --------------------------------------------------------------------------------------------------------
# Saving


def _json_number(value: float) -> int | float:
    """20.0 is written as 20 so hand-read files stay tidy; loading turns it back into 20.0."""
    return int(value) if float(value).is_integer() else float(value)


def _json_point(point: Point) -> list[int | float]:
    return [_json_number(point[0]), _json_number(point[1])]


def _polygon_reproduces_region(operation: Operation) -> bool:
    """Only write a polygon inline if loading it back gives exactly the same mask."""
    if operation.polygon is None:
        return False
    height, width = operation.region.shape
    return bool(np.array_equal(polygon_mask(operation.polygon, width, height), operation.region))


def request_to_dict(
    request: DragRequest,
    region_paths: Sequence[str | None],
    image_path: str = "image.png",
    editable_mask_path: str | None = "editable.png",
) -> dict[str, Any]:
    """The JSON object for ``request``, given the (relative) file names its arrays are stored under.

    ``region_paths[i]`` is the file for operation ``i``, or ``None`` to write its polygon inline.
    ``editable_mask_path`` is used only when the request has an editable mask.
    """
    if len(region_paths) != len(request.operations):
        raise ValueError(f"{len(region_paths)} region paths for {len(request.operations)} operations")
    operations = []
    for operation, region_path in zip(request.operations, region_paths, strict=True):
        if region_path is None:
            if operation.polygon is None:
                raise ValueError("region path None is only allowed for an operation with a polygon")
            region: Any = {"polygon": [_json_point(p) for p in operation.polygon]}
        else:
            region = region_path
        entry: dict[str, Any] = {
            "type": operation.type,
            "region": region,
            "handle": _json_point(operation.handle),
            "target": _json_point(operation.target),
        }
        if operation.center is not None:
            entry["center"] = _json_point(operation.center)
        operations.append(entry)
    result: dict[str, Any] = {"image": image_path}
    if request.editable_mask is not None:
        if editable_mask_path is None:
            raise ValueError("the request has an editable mask but no path was given for it")
        result["editable_mask"] = editable_mask_path
    result["prompt"] = request.prompt
    result["operations"] = operations
    return result


def _mask_image(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8) * np.uint8(255))


def save_instructions(request: DragRequest, path: str | os.PathLike[str]) -> Path:
    """Write ``request`` as a JSON file plus PNGs beside it; return the JSON path.

    Files: ``image.png``, ``editable.png`` (if there is a mask), ``region_<i>.png`` per operation, or the
    polygon inline when :attr:`Operation.polygon` reproduces the region exactly (otherwise the mask is
    written, so nothing is lost). A folder holds one request: the PNG names are fixed. If ``path`` is an
    existing folder, the JSON is ``instructions.json`` inside it.

    Everything is first written to temporary files in the same folder and only then renamed into place
    (``os.replace``, atomic per file), JSON last; a failure while writing leaves the old files untouched and
    no partial files behind.
    """
    request = validate_request(request)
    json_path = Path(path)
    if json_path.is_dir():
        json_path = json_path / "instructions.json"
    folder = json_path.parent
    folder.mkdir(parents=True, exist_ok=True)

    files: list[tuple[str, Any]] = [("image.png", Image.fromarray(np.ascontiguousarray(request.image)))]
    if request.editable_mask is not None:
        files.append(("editable.png", _mask_image(request.editable_mask)))
    region_paths: list[str | None] = []
    for index, operation in enumerate(request.operations):
        if _polygon_reproduces_region(operation):
            region_paths.append(None)
        else:
            name = f"region_{index}.png"
            files.append((name, _mask_image(operation.region)))
            region_paths.append(name)
    if json_path.name in {name for name, _ in files}:
        raise ValueError(f"the JSON file cannot be named {json_path.name!r}: that name is used for an image")
    document = request_to_dict(request, region_paths)
    json_text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    written: list[tuple[Path, Path]] = []
    try:
        for name, picture in files:
            temp = write_staged(folder, name, lambda stream, picture=picture: picture.save(stream, format="PNG"))
            written.append((temp, folder / name))
        temp = write_staged(folder, json_path.name, lambda stream: stream.write(json_text.encode("utf-8")))
        written.append((temp, json_path))
    except BaseException:
        for temp, _ in written:
            temp.unlink(missing_ok=True)
        raise
    try:
        for temp, final in written:
            os.replace(temp, final)
    finally:
        for temp, _ in written:
            temp.unlink(missing_ok=True)  # only left if a rename failed
    return json_path
